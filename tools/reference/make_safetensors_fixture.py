#!/usr/bin/env python3
"""Writes tests/fixtures/torch_small.safetensors from PyTorch tensors (Debian's python3-torch).

The file is laid out the way the `safetensors` library lays it out (it is not needed: the
format is a u64 little-endian header size, a compact JSON header padded with spaces to a
multiple of 8, then the raw little-endian bytes): tensors ordered by dtype alignment, largest
first, then by name. Every value has a closed form, so tests/test_safetensors.cpp states them
without PyTorch:
  linear.weight  F32 [2, 3]  arange(6) / 2 - 1
  token_ids      I64 [2, 2]  arange(4) * 10^12 - 3   (needs 64 bits)
  inv            F64 [3]     1 / (arange(3) + 1)
  temperature    F64 []      0.7
Run from anywhere: python3 tools/reference/make_safetensors_fixture.py
"""
import json
import os
import struct

import torch

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures",
                   "torch_small.safetensors")
NAMES = {torch.float32: "F32", torch.float64: "F64", torch.int64: "I64"}


def tensors():
    return {
        "linear.weight": (torch.arange(6, dtype=torch.float32) / 2 - 1).reshape(2, 3),
        "token_ids": (torch.arange(4, dtype=torch.int64) * 10**12 - 3).reshape(2, 2),
        "inv": 1 / (torch.arange(3, dtype=torch.float64) + 1),
        "temperature": torch.tensor(0.7, dtype=torch.float64),
    }


def save(path, named, metadata):
    order = sorted(named, key=lambda n: (-named[n].element_size(), n))
    header, blobs, offset = {"__metadata__": metadata}, [], 0
    for name in order:
        raw = named[name].contiguous().numpy().tobytes()
        header[name] = {"dtype": NAMES[named[name].dtype], "shape": list(named[name].shape),
                        "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(path + ".tmp", "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))
    os.replace(path + ".tmp", path)


if __name__ == "__main__":
    save(OUT, tensors(), {"format": "pt", "generator": "tools/reference/make_safetensors_fixture.py"})
    print(OUT, os.path.getsize(OUT), "bytes")
