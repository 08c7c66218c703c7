#!/usr/bin/env python3
"""PyTorch on the shapes of build/bench_gpu, and the joint table of tools/gpu_check.

Reads bench_gpu's JSON lines (--polygrad FILE), measures the same things with PyTorch on the
same GPU (medians over repeats, TF32 only where the row says so) and prints one Markdown table.
Usage: python3 tools/bench/bench_gpu_torch.py --polygrad out.jsonl [--repeats 20] [--no-torch]
"""
import argparse
import json
import math
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "reference"))


def median_ms(f, repeats):
    import torch
    f()
    f()
    torch.cuda.synchronize()
    t = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        f()
        torch.cuda.synchronize()
        t.append(1e3 * (time.perf_counter() - t0))
    return sorted(t)[len(t) // 2]


def torch_numbers(repeats):
    import torch
    import torch.nn.functional as F
    from common import attention_weights
    from gpt import GPT
    dev = "cuda"
    res = {}
    n = 8192
    a, b = torch.randn(n, n, device=dev), torch.randn(n, n, device=dev)
    for tf32 in (False, True):
        torch.backends.cuda.matmul.allow_tf32 = tf32
        ms = median_ms(lambda: a @ b, repeats)
        res[f"gemm f32 8192^3 {'tf32' if tf32 else 'fp32'} TFLOP/s"] = 2 * n ** 3 / ms / 1e9
    torch.backends.cuda.matmul.allow_tf32 = False
    with torch.autocast("cuda", dtype=torch.bfloat16):  # f32 tensors, bf16 GEMM (as polygrad)
        ms = median_ms(lambda: a @ b, repeats)
    res["gemm f32 8192^3 bf16 TFLOP/s"] = 2 * n ** 3 / ms / 1e9
    a16, b16 = a.bfloat16(), b.bfloat16()
    ms = median_ms(lambda: a16 @ b16, repeats)
    res["gemm f32 8192^3 bf16 raw cuBLAS TFLOP/s"] = 2 * n ** 3 / ms / 1e9
    B, H, T, d = 8, 16, 1024, 64
    q, k, v = (torch.randn(B, H, T, d, device=dev, requires_grad=True) for _ in range(3))
    g = torch.randn(B, H, T, d, device=dev)
    visible = torch.ones(T, T, dtype=torch.bool, device=dev).tril()
    for spec in ("softmax", "poly:1", "poly:2", "poly:3", "relu", "sigmoid"):
        if spec == "softmax":  # PyTorch's fused SDPA (flash / memory-efficient kernels)
            fwd = lambda: F.scaled_dot_product_attention(q, k, v, is_causal=True)
        else:  # the composite a user of PyTorch writes: no fused kernel exists
            fwd = lambda: attention_weights(spec, q @ k.transpose(-1, -2) / 8.0, visible) @ v
        ms = median_ms(lambda: torch.autograd.grad(fwd(), (q, k, v), g), repeats)
        res[f"attention fwd+bwd causal B8 H16 T1024 d64 {spec} ms"] = ms
        if spec in ("softmax", "poly:3"):  # f32 tensors, bf16 products (as polygrad's bf16 rows)
            def bf16_step():
                with torch.autocast("cuda", dtype=torch.bfloat16):
                    out = fwd()
                return torch.autograd.grad(out, (q, k, v), g.to(out.dtype))
            res[f"attention fwd+bwd causal B8 H16 T1024 d64 {spec} bf16 ms"] = median_ms(
                bf16_step, repeats)
    for spec, bf16 in (("softmax", False), ("poly:3", False), ("softmax", True), ("poly:3", True)):
        torch.manual_seed(3)
        model = GPT(96, spec, context=256, dim=384, layers=6, heads=6).to(dev)
        size = sum(p.numel() for p in model.parameters()) / 1e6
        opt = torch.optim.AdamW(model.parameters(), lr=3e-4, weight_decay=0.1)
        x = torch.randint(0, 96, (32, 256), device=dev)
        y = torch.randint(0, 96, (32, 256), device=dev)

        def step():
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=bf16):
                loss = F.cross_entropy(model(x).float().view(-1, 96), y.view(-1))
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
        step()  # the optimizer state exists before the peak is measured, as in bench_gpu
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        base = torch.cuda.memory_allocated()
        ms = median_ms(step, repeats)
        name = f"gpt train {size:.1f}M ctx256 batch32 {spec}{' bf16' if bf16 else ''}"
        res[f"{name} tok/s"] = 32 * 256 / ms * 1e3
        res[f"{name} peak MiB"] = (torch.cuda.max_memory_allocated() - base) / 2**20
    torch.manual_seed(3)
    model = GPT(96, "softmax", context=256, dim=384, layers=6, heads=6).to(dev)
    params = list(model.parameters())
    grads = [torch.randn_like(p) for p in params]
    opt = torch.optim.AdamW(params, lr=3e-4, weight_decay=0.1)  # its default (foreach on 2.x)

    def clip_and_step():
        for p, g in zip(params, grads):
            p.grad = g
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
    ms = median_ms(clip_and_step, repeats)
    size = sum(p.numel() for p in params) / 1e6
    res[f"clip_grad_norm + adamw step, {len(params)} tensors {size:.1f}M ms"] = ms
    return res, torch.__version__, torch.cuda.get_device_name()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--polygrad", required=True)
    ap.add_argument("--repeats", type=int, default=20)
    ap.add_argument("--no-torch", action="store_true", help="polygrad's column alone")
    args = ap.parse_args()
    rows = [json.loads(line) for line in open(args.polygrad) if line.startswith("{")]
    if args.no_torch:
        theirs, header = {}, "PyTorch not measured (--no-torch)"
    else:
        try:
            theirs, version, gpu = torch_numbers(args.repeats)
            header = f"PyTorch {version} on {gpu}"
        except Exception as e:  # no PyTorch or no GPU for it: polygrad's column alone
            theirs, header = {}, f"PyTorch unavailable ({type(e).__name__}: {e})"
    print(f"\n{header}\n")
    print("| benchmark | polygrad | PyTorch | polygrad / PyTorch |")
    print("|---|---:|---:|---:|")
    for r in rows:
        mine, other = r["polygrad"], theirs.get(r["name"])
        if other is None:
            ratio = "—"
        elif r["unit"] == "ms":  # lower is better: report speed-up
            ratio = f"{other / mine:.2f}× faster" if mine < other else f"{mine / other:.2f}× slower"
        else:
            ratio = f"{mine / other:.2f}"
        shown = "—" if other is None else f"{other:.4g}"
        print(f"| {r['name']} | {mine:.4g} | {shown} | {ratio} |")
    # The attention target: polygrad's fused poly:3 against PyTorch's softmax SDPA.
    ours = {r["name"]: r["polygrad"] for r in rows}
    key = "attention fwd+bwd causal B8 H16 T1024 d64 {} ms"
    if key.format("poly:3") in ours and key.format("softmax") in theirs:
        mine, other = ours[key.format("poly:3")], theirs[key.format("softmax")]
        print(f"\ntarget: polygrad poly:3 {mine:.4g} ms vs PyTorch softmax SDPA {other:.4g} ms: "
              f"{other / mine:.2f}× ({'met' if mine <= other else 'not met'})")


if __name__ == "__main__":
    main()
