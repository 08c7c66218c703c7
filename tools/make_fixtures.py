#!/usr/bin/env python3
"""Golden values from PyTorch for polygrad's tests (needs Debian's python3-torch).

1. Builds a small pre-norm transformer block with fixed weights, runs forward and backward for
each built-in attention activation (polynomial, ReLU and sigmoid attention written out by
hand), and writes weights, input, upstream gradient, outputs and gradients to
tests/fixtures/transformer_block.safetensors.
2. Runs three steps of AdamW, Adam (L2 weight decay) and SGD (Nesterov momentum, weight
decay) on a fixed parameter with fixed gradients and writes the parameter after each step to
tests/fixtures/optim_steps.safetensors.
The tests read the files; they never need PyTorch. Run from the repository root: python3 tools/make_fixtures.py
"""
import json
import math
import os
import struct

import torch

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

B, T, D, H = 2, 5, 8, 2
POLICIES = ["softmax", "poly:3", "relu", "sigmoid"]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures")


def activation(spec, s, visible):
    """Weights from scores s [B,H,T,S]; visible is a bool [T,S] causal mask."""
    n = s.shape[-1]
    m = visible.to(s.dtype)
    if spec == "softmax":
        return s.masked_fill(~visible, float("-inf")).softmax(-1)
    if spec == "poly:3":
        return s.pow(3) * n ** -0.5 * m
    if spec == "relu":
        return torch.relu(s) / n * m
    if spec == "sigmoid":
        return torch.sigmoid(s - math.log(n)) * m
    raise ValueError(spec)


class Attention(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.qkv = torch.nn.Linear(D, 3 * D)
        self.proj = torch.nn.Linear(D, D)

    def forward(self, x, spec):
        b, t, _ = x.shape
        qkv = self.qkv(x).view(b, t, 3, H, D // H).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        s = q @ k.transpose(-1, -2) / math.sqrt(D // H)
        visible = torch.ones(t, t, dtype=torch.bool).tril()
        a = activation(spec, s, visible)
        return self.proj((a @ v).transpose(1, 2).reshape(b, t, D))


class MLP(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = torch.nn.Linear(D, 4 * D)
        self.fc2 = torch.nn.Linear(4 * D, D)

    def forward(self, x):
        return self.fc2(torch.nn.functional.gelu(self.fc1(x), approximate="tanh"))


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1 = torch.nn.LayerNorm(D)
        self.attn = Attention()
        self.ln2 = torch.nn.LayerNorm(D)
        self.mlp = MLP()

    def forward(self, x, spec):
        x = x + self.attn(self.ln1(x), spec)
        return x + self.mlp(self.ln2(x))


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


def main():
    block = Block()
    # LayerNorm starts at weight 1, bias 0: perturb so the test exercises them.
    with torch.no_grad():
        for ln in (block.ln1, block.ln2):
            ln.weight.add_(0.1 * torch.randn(D))
            ln.bias.add_(0.1 * torch.randn(D))
    x = torch.randn(B, T, D)
    g = torch.randn(B, T, D)
    out = {"x": x, "g": g}
    for name, p in block.named_parameters():
        out["param." + name] = p.detach().clone()
    for spec in POLICIES:
        xi = x.clone().requires_grad_()
        block.zero_grad()
        y = block(xi, spec)
        (y * g).sum().backward()
        out["out." + spec] = y.detach()
        out["grad." + spec + ".x"] = xi.grad
        for name, p in block.named_parameters():
            out["grad." + spec + "." + name] = p.grad.clone()
    meta = {"generator": "tools/make_fixtures.py", "torch": torch.__version__,
            "config": json.dumps({"B": B, "T": T, "D": D, "H": H, "causal": True,
                                  "policies": POLICIES, "gelu": "tanh"})}
    os.makedirs(FIXTURES, exist_ok=True)
    save_safetensors(os.path.join(FIXTURES, "transformer_block.safetensors"), out, meta)


def optimizer_steps():
    torch.manual_seed(1)
    p0 = torch.randn(3, 4)
    grads = [torch.randn(3, 4) for _ in range(3)]
    out = {"p0": p0}
    for i, g in enumerate(grads):
        out["grad%d" % i] = g
    makers = {
        "adamw": lambda p: torch.optim.AdamW([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1),
        "adam": lambda p: torch.optim.Adam([p], lr=0.01, betas=(0.9, 0.99), eps=1e-8, weight_decay=0.1),
        "sgd": lambda p: torch.optim.SGD([p], lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01),
    }
    for name, make in makers.items():
        p = p0.clone().requires_grad_()
        opt = make(p)
        for i, g in enumerate(grads):
            p.grad = g.clone()
            opt.step()
            out["%s.step%d" % (name, i)] = p.detach().clone()
    meta = {"generator": "tools/make_fixtures.py", "torch": torch.__version__,
            "config": json.dumps({"adamw": {"lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1},
                                  "adam": {"lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1},
                                  "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01}})}
    save_safetensors(os.path.join(FIXTURES, "optim_steps.safetensors"), out, meta)


if __name__ == "__main__":
    main()
    optimizer_steps()
