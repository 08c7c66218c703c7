#!/usr/bin/env python3
"""PyTorch reference of polygrad's character GPT on the fortunes corpus (same config, init,
optimizer, schedule and budget as `polygrad train gpt`). Run with OMP_WAIT_POLICY=PASSIVE.
Usage: python3 tools/reference/gpt.py [--attn softmax] [--steps 2000] [--seed 1337] [--threads 2]
"""
import argparse
import math
import os
import time

import torch
import torch.nn as nn

from common import Block, adamw, lr_at


def corpus(root="/usr/share/games/fortunes"):
    names = sorted(n for n in os.listdir(root)
                   if not n.endswith(".dat") and not os.path.islink(os.path.join(root, n))
                   and os.path.isfile(os.path.join(root, n)))
    text = b"".join(open(os.path.join(root, n), "rb").read() for n in names).decode("utf-8", "replace")
    n = int(len(text) * 0.9)
    chars = sorted(set(text[:n]))
    index = {c: i for i, c in enumerate(chars)}
    train = torch.tensor([index[c] for c in text[:n]])
    val = torch.tensor([index[c] for c in text[n:] if c in index])
    return len(chars), train, val


class GPT(nn.Module):
    def __init__(self, vocab, spec, context=128, dim=128, layers=4, heads=4, mlp_ratio=4):
        super().__init__()
        self.tok, self.pos = nn.Embedding(vocab, dim), nn.Embedding(context, dim)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio * dim, spec, True) for _ in range(layers))
        self.ln_f, self.head = nn.LayerNorm(dim), nn.Linear(dim, vocab, bias=False)
        for name, p in self.named_parameters():  # GPT-2's init, as models/gpt.cpp
            if name.endswith(".bias") or "ln" in name:
                continue
            std = 0.02 / math.sqrt(2 * layers) if name.endswith(("proj.weight", "fc2.weight")) else 0.02
            nn.init.normal_(p, 0.0, std)

    def forward(self, idx):
        x = self.tok(idx) + self.pos(torch.arange(idx.shape[1], device=idx.device))
        for blk in self.blocks:
            x = blk(x)
        return self.head(self.ln_f(x))


def batch(data, b, t, gen):
    off = torch.randint(0, len(data) - t - 1, (b,), generator=gen)
    return torch.stack([data[o:o + t] for o in off]), torch.stack([data[o + 1:o + t + 1] for o in off])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="softmax")
    ap.add_argument("--steps", type=int, default=2000)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--lr", type=float, default=2e-3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    vocab, train, val = corpus()
    model = GPT(vocab, a.attn)
    opt = adamw(model, a.lr, 0.05)
    gen = torch.Generator().manual_seed(a.seed)
    t0 = time.time()
    for step in range(a.steps):
        for grp in opt.param_groups:
            grp["lr"] = lr_at(step, a.lr, a.steps // 20, a.steps, a.lr * 0.1)
        x, y = batch(train, a.batch, 128, gen)
        loss = nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten())
        opt.zero_grad()
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
    seconds = time.time() - t0
    model.eval()
    vgen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vl = sum(nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                 for x, y in (batch(val, a.batch, 128, vgen) for _ in range(8))) / 8
    print(f"pytorch gpt {a.attn}: validation loss {vl:.4f} nats/char, {1e3 * seconds / a.steps:.1f} ms/step, "
          f"{a.steps * a.batch * 128 / seconds:.0f} tok/s, {a.threads} threads")


if __name__ == "__main__":
    main()
