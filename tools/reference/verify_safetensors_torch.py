#!/usr/bin/env python3
"""Checks that a safetensors file written by polygrad loads in PyTorch (Debian's python3-torch).

Usage: python3 tools/reference/verify_safetensors_torch.py FILE
Parses the file the way the safetensors library does (u64 header size, JSON header, raw
little-endian bytes), builds torch tensors and prints each name, dtype, shape and sum.
"""
import json
import struct
import sys

import torch

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I64": torch.int64, "I32": torch.int32,
          "F16": torch.float16, "BF16": torch.bfloat16}


def main(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8:8 + n])
    data = raw[8 + n:]
    print("metadata:", header.pop("__metadata__", {}))
    for name, entry in sorted(header.items()):
        begin, end = entry["data_offsets"]
        t = torch.frombuffer(bytearray(data[begin:end]), dtype=DTYPES[entry["dtype"]]) if end > begin \
            else torch.empty(0, dtype=DTYPES[entry["dtype"]])
        t = t.reshape(entry["shape"])
        print(f"{name}: {entry['dtype']} {list(t.shape)} sum={t.double().sum().item():.6g}")


if __name__ == "__main__":
    main(sys.argv[1])
