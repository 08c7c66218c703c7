#!/usr/bin/env python3
"""PyTorch reference of polygrad's ViT on Fashion-MNIST (same config, init family, optimizer,
schedule and budget as `polygrad train vit`). Run with OMP_WAIT_POLICY=PASSIVE.
Usage: python3 tools/reference/vit.py [--attn softmax] [--epochs 10] [--batch 128] [--pool cls]
       [--no-normalize] [--seed 1337] [--threads 2]
"""
import argparse
import time

import torch
import torch.nn as nn

from common import Block, adamw, fashion_mnist, lr_at


class ViT(nn.Module):
    def __init__(self, spec, image=28, patch=4, dim=64, layers=4, heads=4, mlp_ratio=4, classes=10,
                 pool="cls", mean=0.0, std=1.0):
        super().__init__()
        self.pool, self.mean, self.std = pool, mean, std
        self.patch, self.g = patch, image // patch
        self.patch_embed = nn.Linear(patch * patch, dim)
        self.cls_token = nn.Parameter(torch.randn(1, 1, dim) * 0.02)
        self.pos_embed = nn.Parameter(torch.randn(1, self.g * self.g + 1, dim) * 0.02)
        self.blocks = nn.ModuleList(Block(dim, heads, mlp_ratio * dim, spec, False) for _ in range(layers))
        self.ln, self.head = nn.LayerNorm(dim), nn.Linear(dim, classes)

    def forward(self, x):
        b, g, p = x.shape[0], self.g, self.patch
        if self.mean != 0.0 or self.std != 1.0:
            x = (x - self.mean) * (1.0 / self.std)
        x = x.view(b, 1, g, p, g, p).permute(0, 2, 4, 1, 3, 5).reshape(b, g * g, p * p)
        x = torch.cat([self.cls_token.expand(b, 1, -1), self.patch_embed(x)], 1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        h = self.ln(x)
        return self.head(h.mean(1) if self.pool == "mean" else h[:, 0])


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--attn", default="softmax")
    ap.add_argument("--epochs", type=float, default=10)
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--pool", default="cls", choices=("cls", "mean"))
    ap.add_argument("--no-normalize", dest="normalize", action="store_false",
                    help="raw pixels instead of standardising by the training set's mean and std")
    ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--seed", type=int, default=1337)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    torch.manual_seed(a.seed)
    torch.set_num_threads(a.threads)
    xtr, ytr, xte, yte = fashion_mnist()
    stats = {}
    if a.normalize:
        px = xtr.double()
        stats = {"mean": px.mean().item(), "std": (px.square().mean() - px.mean() ** 2).sqrt().item()}
    model = ViT(a.attn, pool=a.pool, **stats)
    opt = adamw(model, a.lr, 0.05, no_decay=("cls_token", "pos_embed"))
    per_epoch = len(xtr) // a.batch
    total = int(a.epochs * per_epoch)
    warmup, step, t0 = total // 20, 0, time.time()
    while step < total:
        perm = torch.randperm(len(xtr))
        for i in range(per_epoch):
            if step == total:
                break
            for grp in opt.param_groups:
                grp["lr"] = lr_at(step, a.lr, warmup, total, a.lr * 0.05)
            idx = perm[i * a.batch:(i + 1) * a.batch]
            loss = nn.functional.cross_entropy(model(xtr[idx].unsqueeze(1)), ytr[idx])
            opt.zero_grad()
            loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            step += 1
    seconds = time.time() - t0
    model.eval()
    with torch.no_grad():
        correct = sum((model(xte[i:i + 500].unsqueeze(1)).argmax(1) == yte[i:i + 500]).sum().item()
                      for i in range(0, len(xte), 500))
    print(f"pytorch vit {a.attn}: test accuracy {100 * correct / len(xte):.2f}%, "
          f"{1e3 * seconds / total:.1f} ms/step, {total * a.batch / seconds:.0f} img/s, "
          f"{total} steps, {a.threads} threads")


if __name__ == "__main__":
    main()
