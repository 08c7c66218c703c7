#!/usr/bin/env python3
"""Loads a polygrad GPT checkpoint into the PyTorch reference model and reports its validation
loss on exactly the windows gpt.py uses (8 batches of 32x128 from a generator seeded 0), so
polygrad's and PyTorch's trained models are compared on the same characters.
Usage: python3 tools/reference/eval_polygrad_gpt.py out/gpt/checkpoint.safetensors
"""
import json
import struct
import sys

import numpy as np
import torch
import torch.nn as nn

from gpt import GPT, batch, corpus


def load_safetensors(path):
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    meta = header.pop("__metadata__", {})
    kinds = {"F32": np.float32, "F64": np.float64, "I64": np.int64, "I32": np.int32}
    tensors = {k: torch.from_numpy(np.frombuffer(data[v["data_offsets"][0]:v["data_offsets"][1]],
                                                 dtype=kinds[v["dtype"]]).reshape(v["shape"]).copy())
               for k, v in header.items()}
    return tensors, meta


def main():
    tensors, meta = load_safetensors(sys.argv[1])
    cfg = json.loads(meta["config"])
    vocab, train, val = corpus()
    assert vocab == cfg["vocab_size"], f"vocabulary sizes differ: {vocab} vs {cfg['vocab_size']}"
    model = GPT(vocab, cfg["attn"], cfg["context"], cfg["dim"], cfg["layers"], cfg["heads"],
                cfg["mlp_ratio"])
    state = {k[len("model."):].replace("mlp.", ""): v for k, v in tensors.items()
             if k.startswith("model.")}
    model.load_state_dict(state, strict=True)
    model.eval()
    vgen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        vl = sum(nn.functional.cross_entropy(model(x).flatten(0, 1), y.flatten()).item()
                 for x, y in (batch(val, 32, cfg["context"], vgen) for _ in range(8))) / 8
    print(f"polygrad checkpoint {sys.argv[1]}: validation loss {vl:.4f} nats/char "
          f"(gpt.py's windows)")


if __name__ == "__main__":
    main()
