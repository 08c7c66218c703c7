#!/usr/bin/env python3
"""Golden values of rotary position embeddings from PyTorch, for tests/test_rope.cpp (needs
Debian's python3-torch; the test never does). RoPE as GPT-NeoX and LLaMA (Hugging Face's
rotate_half) compute it: inv_freq = base^(-arange(0, d, 2) / d), angles = outer(positions,
inv_freq) repeated for both halves, out = x * cos + rotate_half(x) * sin with
rotate_half(x) = cat(-x2, x1). Writes tests/fixtures/rope.safetensors: x [2, 3, 5, 8] and its
rotation from position 0 and from position 7, base 10000, in f64.
Run from the repository root: python3 tools/reference/make_rope_fixture.py
"""
import os
import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import save_safetensors  # noqa: E402

FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


def rotate_half(x):
    x1, x2 = x.chunk(2, dim=-1)
    return torch.cat((-x2, x1), dim=-1)


def rope(x, first_position, base=10000.0):
    d, t = x.shape[-1], x.shape[-2]
    inv_freq = 1.0 / (base ** (torch.arange(0, d, 2, dtype=torch.float64) / d))
    positions = torch.arange(first_position, first_position + t, dtype=torch.float64)
    freqs = torch.outer(positions, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return x * emb.cos() + rotate_half(x) * emb.sin()


def main():
    torch.manual_seed(0)
    x = torch.randn(2, 3, 5, 8, dtype=torch.float64)
    out = {"x": x, "from_0": rope(x, 0), "from_7": rope(x, 7)}
    save_safetensors(os.path.join(FIXTURES, "rope.safetensors"), out,
                     {"script": "tools/reference/make_rope_fixture.py", "torch": torch.__version__,
                      "base": "10000"})


if __name__ == "__main__":
    main()
