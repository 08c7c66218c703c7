#!/usr/bin/env python3
"""Tables and plots of the long-context study from the runs docs/long_context/study.sh made.

Usage: python3 docs/long_context/summarize.py OUT   (prints markdown; writes the plots' data and
PNGs into docs/long_context/ with gnuplot; the plots' data goes to OUT/plots)."""
import json, os, re, statistics, struct, subprocess, sys

out = sys.argv[1] if len(sys.argv) > 1 else "out/long_context"
here = os.path.dirname(os.path.abspath(__file__))
data = os.path.join(out, "plots")
os.makedirs(data, exist_ok=True)


def evals(run):
    rows = [json.loads(l) for l in open(os.path.join(run, "metrics.jsonl")) if l.strip()]
    return [r for r in rows if "eval_s" in r], [r for r in rows if "loss" in r]


def spec(run):
    """The attention spec a run trained with, from its checkpoint's metadata."""
    with open(os.path.join(run, "checkpoint.safetensors"), "rb") as f:
        header = json.loads(f.read(struct.unpack("<Q", f.read(8))[0]))
    return json.loads(header["__metadata__"]["config"])["attn"]


def finished(run):
    return os.path.exists(os.path.join(run, "checkpoint.safetensors")) and evals(run)[0]


def mean_std(v, pct=False):
    k = 100 if pct else 1
    m = statistics.mean(v) * k
    s = statistics.stdev(v) * k if len(v) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}" if pct else f"{m:.4f} ± {s:.4f}"


def seeds(d):
    return sorted(os.path.join(d, s) for s in os.listdir(d) if s.startswith("seed-") and
                  os.path.isdir(os.path.join(d, s)) and finished(os.path.join(d, s)))


def recall():
    root = os.path.join(out, "recall")
    if not os.path.isdir(root):
        return
    tasks = sorted(os.listdir(root), key=lambda t: int(re.search(r"kv(\d+)", t).group(1)))
    acts, table, dirs = [], {}, {}
    for t in tasks:
        for d in sorted(os.listdir(os.path.join(root, t)), key=lambda d: (d != "softmax", d)):
            runs = seeds(os.path.join(root, t, d))
            if not runs:
                continue
            a = spec(runs[0])
            dirs[a] = d
            table[(t, a)] = [evals(r)[0][-1]["test_accuracy"] for r in runs]
            if a not in acts:
                acts.append(a)
    print("| activation | " + " | ".join(t for t in tasks) + " |")
    print("|---|" + "---|" * len(tasks))
    for a in acts:
        print(f"| `{a}` | " + " | ".join(
            f"{mean_std(table[(t, a)], True)} ({len(table[(t, a)])})" if (t, a) in table else "–"
            for t in tasks) + " |")
    with open(os.path.join(data, "recall.tsv"), "w") as f:
        f.write("# pairs\t" + "\t".join(f"{a} mean\t{a} std" for a in acts) + "\n")
        for t in tasks:
            kv = re.search(r"kv(\d+)", t).group(1)
            cells = []
            for a in acts:
                v = table.get((t, a), [float("nan")])
                cells += [100 * statistics.mean(v), 100 * (statistics.stdev(v) if len(v) > 1 else 0)]
            f.write(kv + "\t" + "\t".join(f"{c:.2f}" for c in cells) + "\n")
    if len(tasks) > 1:
        plot = "; ".join(f"'recall.tsv' using 1:{2 + 2 * i}:{3 + 2 * i} with yerrorlines "
                         f"title '{a}'" for i, a in enumerate(acts))
        gnuplot(f"set output '{here}/recall.png'; set logscale x 2; set xlabel 'key-value pairs'; "
                f"set ylabel 'test accuracy (%)'; set key outside; plot {plot}")
    # Per task: test accuracy against steps, the mean over seeds of each activation.
    for t in tasks:
        series = []
        for a in acts:
            runs = seeds(os.path.join(root, t, dirs[a]))
            curves = [[(e["step"], e["test_accuracy"]) for e in evals(r)[0]] for r in runs]
            if not curves:
                continue
            n = min(len(c) for c in curves)
            name = f"recall_{t}_{dirs[a]}.tsv"
            with open(os.path.join(data, name), "w") as f:
                f.write("# step\tmean test accuracy (%) over seeds\n")
                for i in range(n):
                    f.write(f"{curves[0][i][0]}\t{100 * statistics.mean(c[i][1] for c in curves):.2f}\n")
            series.append(f"'{name}' using 1:2 with linespoints title '{a}'")
        gnuplot(f"set output '{here}/recall_{t}.png'; set xlabel 'step'; set ylabel 'test accuracy (%)'; "
                f"set yrange [0:100]; set key outside; set title 'associative recall, {t}, "
                f"mean over seeds'; plot " + ", ".join(series))


def loss_at(run, seconds):
    """Validation loss after `seconds` of training, linear between the run's evaluations."""
    ev, tr = evals(run)
    train_s = {t["step"]: t["train_s"] for t in tr}
    points = [(train_s[e["step"]], e["val_loss"]) for e in ev]
    for (t0, l0), (t1, l1) in zip(points, points[1:]):
        if t0 <= seconds <= t1:
            return l0 + (l1 - l0) * (seconds - t0) / (t1 - t0)
    return points[-1][1] if seconds >= points[-1][0] else float("nan")


def text():
    root = os.path.join(out, "text")
    if not os.path.isdir(root):
        return
    print("\n| context | activation | val loss at the end | at the common time | loss by position "
          "bucket | training s | steps | train ms/step | train tok/s | generation tok/s |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for ctx in sorted((c for c in os.listdir(root) if c.startswith("T")), key=lambda c: int(c[1:])):
        arms = []
        for d in sorted(os.listdir(os.path.join(root, ctx)), key=lambda d: (d != "softmax", d)):
            runs = seeds(os.path.join(root, ctx, d))
            if runs:
                arms.append((d, spec(runs[0]), runs))
        if not arms:
            continue
        # Every arm's runs trained at least this long: their losses compare at equal time.
        common = min(evals(r)[1][-1]["train_s"] for _, _, runs in arms for r in runs)
        series = []
        for d, a, runs in arms:
            loss, buckets, ms, steps, gen, seconds = [], [], [], [], [], []
            for r in runs:
                ev, tr = evals(r)
                loss.append(ev[-1]["val_loss"])
                buckets.append(ev[-1]["val_loss_by_position"])
                steps.append(tr[-1]["step"])
                seconds.append(tr[-1]["train_s"])
                ms.append(1000 * tr[-1]["train_s"] / tr[-1]["step"])
                speed = os.path.join(r, "sample_speed.txt")
                found = re.search(r"\(([0-9.]+) tokens/s\)", open(speed).read()) \
                    if os.path.exists(speed) else None
                gen.append(float(found.group(1)) if found else float("nan"))
            at_common = [loss_at(r, common) for r in runs]
            by_pos = ", ".join(f"{statistics.mean(b):.3f}" for b in zip(*buckets))
            series.append(loss_against_time(runs, f"text_{ctx}_{d}.tsv", a))
            print(f"| {ctx[1:]} | `{a}` | {mean_std(loss)} | {mean_std(at_common)} ({common:.0f} s) | "
                  f"{by_pos} | {statistics.mean(seconds):.0f} | {statistics.mean(steps):.0f} | "
                  f"{statistics.mean(ms):.0f} | {8192 / statistics.mean(ms) * 1000:.0f} | "
                  f"{statistics.mean(gen):.0f} |")
        gnuplot(f"set output '{here}/text_{ctx}.png'; set xlabel 'training seconds (evaluations "
                f"excluded)'; set ylabel 'validation loss (nats/char)'; set key top right; "
                f"set title 'Python sources, context {ctx[1:]}, mean over seeds'; plot " +
                ", ".join(series))


def loss_against_time(runs, name, title):
    """Writes validation loss against training seconds, the mean over seeds at each evaluation,
    and returns the gnuplot series that draws it."""
    curves = []
    for r in runs:
        ev, tr = evals(r)
        train_s = {t["step"]: t["train_s"] for t in tr}
        curves.append([(train_s[e["step"]], e["val_loss"]) for e in ev])
    n = min(len(c) for c in curves)
    with open(os.path.join(data, name), "w") as f:
        f.write("# training seconds\tvalidation loss, mean over seeds\n")
        for i in range(n):
            f.write(f"{statistics.mean(c[i][0] for c in curves):.1f}\t"
                    f"{statistics.mean(c[i][1] for c in curves):.4f}\n")
    return f"'{name}' using 1:2 with linespoints title '{title}'"


def gnuplot(script):
    try:
        subprocess.run(["gnuplot", "-e", "set terminal pngcairo size 800,480; " + script],
                       cwd=data, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no plot: {e})", file=sys.stderr)


recall()
text()
