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


def text():
    root = os.path.join(out, "text")
    if not os.path.isdir(root):
        return
    print("\n| context | activation | val loss | loss by position bucket | train ms/step | "
          "steps | train tok/s | generation tok/s |")
    print("|---|---|---|---|---|---|---|---|")
    for ctx in sorted((c for c in os.listdir(root) if c.startswith("T")), key=lambda c: int(c[1:])):
        for d in sorted(os.listdir(os.path.join(root, ctx)), key=lambda d: (d != "softmax", d)):
            runs = seeds(os.path.join(root, ctx, d))
            if not runs:
                continue
            a = spec(runs[0])
            loss, buckets, ms, steps, gen = [], [], [], [], []
            for r in runs:
                ev, tr = evals(r)
                if not ev:
                    continue
                loss.append(ev[-1]["val_loss"])
                buckets.append(ev[-1]["val_loss_by_position"])
                steps.append(tr[-1]["step"])
                ms.append(1000 * tr[-1]["train_s"] / tr[-1]["step"])
                speed = open(os.path.join(r, "sample_speed.txt")).read()
                gen.append(float(re.search(r"\(([0-9.]+) tokens/s\)", speed).group(1)))
            if not loss:
                continue
            by_pos = ", ".join(f"{statistics.mean(b):.3f}" for b in zip(*buckets))
            T = int(ctx[1:])
            print(f"| {T} | `{a}` | {mean_std(loss)} | {by_pos} | {statistics.mean(ms):.0f} | "
                  f"{statistics.mean(steps):.0f} | {8192 / statistics.mean(ms) * 1000:.0f} | "
                  f"{statistics.mean(gen):.0f} |")


def gnuplot(script):
    try:
        subprocess.run(["gnuplot", "-e", "set terminal pngcairo size 800,480; " + script],
                       cwd=data, check=True)
    except (OSError, subprocess.CalledProcessError) as e:
        print(f"(no plot: {e})", file=sys.stderr)


recall()
text()
