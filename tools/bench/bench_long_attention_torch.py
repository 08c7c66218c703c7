#!/usr/bin/env python3
"""PyTorch on the shapes of build/bench_long_attention: causal attention forward + backward as
Debian's PyTorch 1.13 computes it (no scaled_dot_product_attention there: matmul, masked softmax,
matmul), 4 heads, f32, B = TOKENS / T. Each (d, T) runs in a fresh process, so that its peak
resident memory (above what the inputs hold) is its own. Run with OMP_WAIT_POLICY=PASSIVE.

Usage: python3 tools/bench/bench_long_attention_torch.py [TOKENS [REPEATS [MAX_T [THREADS]]]]
       (default 16384 3 16384 2)
"""
import resource
import subprocess
import sys

CHILD = r"""
import resource, statistics, sys, time, torch
tokens, repeats, T, d, threads = map(int, sys.argv[1:6])
torch.set_num_threads(threads)
torch.manual_seed(0)
B, H = tokens // T, 4
q, k, v = (torch.randn(B, H, T, d, requires_grad=True) for _ in range(3))
g = torch.randn(B, H, T, d)
mask = torch.ones(T, T, dtype=torch.bool).triu(1)
base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
def step():
    s = (q @ k.transpose(-1, -2)) * d ** -0.5
    a = torch.softmax(s.masked_fill(mask, float("-inf")), dim=-1)
    torch.autograd.grad(((a @ v) * g).sum(), (q, k, v))
step()
times = []
for _ in range(repeats):
    t0 = time.perf_counter()
    step()
    times.append(1e3 * (time.perf_counter() - t0))
peak = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - base) / 1024
print(f"{statistics.median(times):.1f} {peak:.1f}")
"""


def main():
    args = [int(a) for a in sys.argv[1:]]
    tokens, repeats, max_t, threads = (args + [16384, 3, 16384, 2][len(args):])[:4]
    print(f"PyTorch {__import__('torch').__version__} causal attention forward+backward "
          f"(matmul, masked softmax, matmul), {tokens} tokens per batch, 4 heads, f32, "
          f"{threads} threads, median of {repeats}; ms and peak MiB per batch")
    for d in (32, 64):
        print(f"\nd = {d}\n{'T':>7} {'B':>5} {'PyTorch ms':>12} {'MiB':>9}")
        T = 128
        while T <= min(max_t, tokens):
            out = subprocess.run([sys.executable, "-c", CHILD, str(tokens), str(repeats), str(T),
                                  str(d), str(threads)], capture_output=True, text=True)
            if out.returncode != 0:
                print(f"{T:>7} {tokens // T:>5} failed: {out.stderr.strip().splitlines()[-1:]}")
            else:
                ms, mib = out.stdout.split()
                print(f"{T:>7} {tokens // T:>5} {float(ms):>12.1f} {float(mib):>9.1f}", flush=True)
            T *= 2


if __name__ == "__main__":
    main()
