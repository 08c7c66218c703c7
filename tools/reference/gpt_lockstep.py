#!/usr/bin/env python3
"""polygrad and PyTorch trained in lockstep: the same initial weights, the same batches, the same
recipe, f32. Writes PyTorch's initial GPT and its first K batches to safetensors files, runs
build/lockstep_gpt on them, trains the PyTorch model on the same batches and prints both loss
trajectories. Identical programs agree to the last bits until the training dynamics amplify
rounding differences (around step 250 here); an implementation difference shows up as a drift
from the first steps. Run with OMP_WAIT_POLICY=PASSIVE.
Usage: python3 tools/reference/gpt_lockstep.py [--steps 300] [--total 2000] [--seed 1337]
       [--lockstep build/lockstep_gpt] [--dir /tmp/pg_lockstep]
"""
import argparse
import os
import subprocess

import torch
import torch.nn as nn

from common import adamw, lr_at, polygrad_name, save_safetensors
from gpt import GPT, batch, corpus


def main():
    root = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=300)
    ap.add_argument("--total", type=int, default=2000, help="schedule length")
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--lockstep", default=os.path.join(root, "build", "lockstep_gpt"))
    ap.add_argument("--dir", default="/tmp/pg_lockstep")
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(1)
    vocab, train, _ = corpus()
    model = GPT(vocab, "softmax")
    os.makedirs(a.dir, exist_ok=True)
    init, data = os.path.join(a.dir, "init.safetensors"), os.path.join(a.dir, "batches.safetensors")
    save_safetensors(init, {polygrad_name(n): p.detach() for n, p in model.named_parameters()},
                     {"generator": "tools/reference/gpt_lockstep.py"})
    gen = torch.Generator().manual_seed(a.seed)  # gpt.py's batches, in gpt.py's order
    xs, ys = zip(*(batch(train, 32, 128, gen) for _ in range(a.steps)))
    save_safetensors(data, {"x": torch.stack(xs), "y": torch.stack(ys)}, {})
    ours = subprocess.run([a.lockstep, init, data, str(a.total)], check=True, capture_output=True,
                          text=True).stdout.split("\n")
    ours = [float(line.split()[1]) for line in ours if line.strip()]
    opt = adamw(model, 2e-3, 0.05)
    first_drift = None
    print("step  PyTorch      polygrad     |difference|")
    for step in range(a.steps):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, 2e-3, a.total // 20, a.total, 2e-4)
        loss = nn.functional.cross_entropy(model(xs[step]).flatten(0, 1), ys[step].flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        diff = abs(loss.item() - ours[step])
        if first_drift is None and diff > 1e-5:
            first_drift = step
        if step % 20 == 0 or step == a.steps - 1:
            print(f"{step:4d}  {loss.item():.9f}  {ours[step]:.9f}  {diff:.2e}")
    print(f"first step differing by more than 1e-5: {first_drift}")


if __name__ == "__main__":
    main()
