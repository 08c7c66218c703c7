"""Shared parts of the PyTorch references: attention activations, blocks, schedule, data.

The models mirror models/gpt.cpp and models/vit.cpp: pre-norm blocks, qkv and output
projections, GELU (tanh) MLP, AdamW with decay on matrices only, linear warm-up + cosine.
"""
import gzip
import json
import math
import os
import struct

import torch
import torch.nn as nn
import torch.nn.functional as F


def attention_weights(spec, s, visible):
    """The policy table of docs/design.md for scores s [B,H,T,S] and a bool mask (or None)."""
    n = s.shape[-1]
    if spec == "softmax":
        return (s if visible is None else s.masked_fill(~visible, float("-inf"))).softmax(-1)
    m = 1.0 if visible is None else visible.to(s.dtype)
    if spec.startswith("poly:"):
        return s.pow(int(spec[5:])) * n ** -0.5 * m
    if spec == "relu":
        return torch.relu(s) / n * m
    if spec == "relu2":
        return torch.relu(s).square() / n * m
    if spec == "sigmoid":
        return torch.sigmoid(s - math.log(n)) * m
    raise ValueError(spec)


class Attention(nn.Module):
    def __init__(self, dim, heads, spec, causal):
        super().__init__()
        self.qkv, self.proj = nn.Linear(dim, 3 * dim), nn.Linear(dim, dim)
        self.heads, self.spec, self.causal = heads, spec, causal

    def forward(self, x):
        b, t, d = x.shape
        q, k, v = self.qkv(x).view(b, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        if self.spec == "softmax":  # PyTorch at its best: the fused kernel
            y = F.scaled_dot_product_attention(q, k, v, is_causal=self.causal) \
                if hasattr(F, "scaled_dot_product_attention") else None
            if y is not None:
                return self.proj(y.transpose(1, 2).reshape(b, t, d))
        s = q @ k.transpose(-1, -2) / math.sqrt(d // self.heads)
        visible = torch.ones(t, t, dtype=torch.bool, device=x.device).tril() if self.causal else None
        return self.proj((attention_weights(self.spec, s, visible) @ v).transpose(1, 2).reshape(b, t, d))


class Block(nn.Module):
    def __init__(self, dim, heads, hidden, spec, causal):
        super().__init__()
        self.ln1, self.ln2 = nn.LayerNorm(dim), nn.LayerNorm(dim)
        self.attn = Attention(dim, heads, spec, causal)
        self.fc1, self.fc2 = nn.Linear(dim, hidden), nn.Linear(hidden, dim)

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x)), approximate="tanh"))


def adamw(model, lr, wd, no_decay=()):
    decay = [p for n, p in model.named_parameters() if p.dim() >= 2 and n not in no_decay]
    rest = [p for n, p in model.named_parameters() if not (p.dim() >= 2 and n not in no_decay)]
    return torch.optim.AdamW([{"params": decay, "weight_decay": wd},
                              {"params": rest, "weight_decay": 0.0}], lr=lr)


def lr_at(step, base, warmup, total, min_lr):
    if step < warmup:
        return base * (step + 1) / warmup
    if step >= total:
        return min_lr
    p = (step - warmup) / max(total - warmup, 1)
    return min_lr + 0.5 * (base - min_lr) * (1 + math.cos(math.pi * p))


def load_idx(path):
    with (gzip.open(path) if path.endswith(".gz") else open(path, "rb")) as f:
        data = f.read()
    magic, n = struct.unpack(">II", data[:8])
    if magic == 2051:
        rows, cols = struct.unpack(">II", data[8:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).view(n, rows, cols).float() / 255
    return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()


def fashion_mnist(root="/usr/share/datasets/fashion-mnist"):
    get = lambda stem: load_idx(os.path.join(root, stem + ".gz"))
    return (get("train-images-idx3-ubyte"), get("train-labels-idx1-ubyte"),
            get("t10k-images-idx3-ubyte"), get("t10k-labels-idx1-ubyte"))


def polygrad_name(name):
    """The reference models keep fc1/fc2 in the block; polygrad's block holds them in its MLP."""
    return name.replace(".fc1.", ".mlp.fc1.").replace(".fc2.", ".mlp.fc2.")


def save_safetensors(path, tensors, metadata):
    """The safetensors layout, written by hand: u64 header size, JSON header, raw bytes."""
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in sorted(tensors):
        t = tensors[name].detach().contiguous()
        raw = t.numpy().tobytes()
        dtype = {torch.float64: "F64", torch.float32: "F32", torch.int64: "I64"}[t.dtype]
        header[name] = {"dtype": dtype, "shape": list(t.shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    tmp = path + ".tmp"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(text)))
        f.write(text)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)
