"""Multi-query associative recall in PyTorch: the sanity check of docs/results.md#associative-recall.

The same task as nn/recall.h (key-value pairs, random tokens, each key again at a power-law slot,
loss at the queries only; its own random stream) and a model of the same size as `polygrad train
recall`'s defaults, but with learned positions and nn.MultiheadAttention (softmax). It shows
whether the plateau at 1/pairs is the task's or polygrad's.

    OMP_WAIT_POLICY=PASSIVE python3 tools/reference/recall_torch.py [STEPS] [LR] [BATCH]
"""
import math
import sys
import time

import numpy as np
import torch

V, T, PAIRS = 256, 64, 4
STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 2000
LR = float(sys.argv[2]) if len(sys.argv) > 2 else 3e-3
BATCH = int(sys.argv[3]) if len(sys.argv) > 3 else 32
torch.manual_seed(0)
rng = np.random.default_rng(0)
torch.set_num_threads(1)


def batch(n):
    x = rng.integers(0, V, size=(n, T))
    y = np.full((n, T), -100)
    slots = (T - 2 * PAIRS) // 2
    w = np.arange(1, slots + 1) ** (0.01 - 1)
    for s in range(n):
        keys = rng.choice(np.arange(1, V // 2), PAIRS, replace=False)
        values = rng.choice(np.arange(V // 2, V), PAIRS, replace=False)
        x[s, 0:2 * PAIRS:2], x[s, 1:2 * PAIRS:2] = keys, values
        at = 2 * PAIRS + 2 * rng.choice(slots, PAIRS, replace=False, p=w / w.sum())
        x[s, at], y[s, at] = keys, values
    return torch.tensor(x), torch.tensor(y)


class Block(torch.nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.ln1, self.ln2 = torch.nn.LayerNorm(d), torch.nn.LayerNorm(d)
        self.attn = torch.nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = torch.nn.Sequential(torch.nn.Linear(d, 4 * d), torch.nn.GELU(),
                                       torch.nn.Linear(4 * d, d))

    def forward(self, x):
        mask = torch.triu(torch.ones(x.shape[1], x.shape[1], dtype=torch.bool), 1)
        h = self.ln1(x)
        x = x + self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]
        return x + self.mlp(self.ln2(x))


class Model(torch.nn.Module):
    def __init__(self, d=64, heads=2, layers=2):
        super().__init__()
        self.tok, self.pos = torch.nn.Embedding(V, d), torch.nn.Embedding(T, d)
        self.blocks = torch.nn.ModuleList([Block(d, heads) for _ in range(layers)])
        self.ln, self.head = torch.nn.LayerNorm(d), torch.nn.Linear(d, V, bias=False)

    def forward(self, x):
        x = self.tok(x) + self.pos(torch.arange(x.shape[1]))
        for b in self.blocks:
            x = b(x)
        return self.head(self.ln(x))


model = Model()
opt = torch.optim.AdamW(model.parameters(), lr=LR, weight_decay=0.05)
test_x, test_y = batch(256)
start = time.time()
for step in range(STEPS):
    warm = min(1.0, (step + 1) / (STEPS / 20))
    for g in opt.param_groups:
        g["lr"] = LR * warm * (0.1 + 0.45 * (1 + math.cos(math.pi * step / STEPS)))
    x, y = batch(BATCH)
    loss = torch.nn.functional.cross_entropy(model(x).reshape(-1, V), y.reshape(-1))
    opt.zero_grad()
    loss.backward()
    torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
    opt.step()
    if (step + 1) % (STEPS // 10) == 0:
        with torch.no_grad():
            queries = test_y != -100
            accuracy = (model(test_x).argmax(-1)[queries] == test_y[queries]).float().mean()
        print(f"step {step + 1}: loss {loss.item():.4f}, test accuracy {100 * accuracy:.1f}%, "
              f"{time.time() - start:.0f} s", flush=True)
