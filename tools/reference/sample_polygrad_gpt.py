#!/usr/bin/env python3
"""Generation speed of PyTorch's GPT (gpt.py) with a polygrad checkpoint's weights, in the plain
cache-free loop (every new token runs the model over the last `context` tokens), for comparison
with `polygrad sample` (incremental decoding with a KV cache). Greedy, from the prompt "\\n".
Usage: python3 tools/reference/sample_polygrad_gpt.py CHECKPOINT [TOKENS] [THREADS] [REPEATS]
"""
import json
import statistics
import sys
import time

import torch

from eval_polygrad_gpt import load_safetensors
from gpt import GPT


def main():
    path = sys.argv[1]
    tokens = int(sys.argv[2]) if len(sys.argv) > 2 else 300
    torch.set_num_threads(int(sys.argv[3]) if len(sys.argv) > 3 else 1)
    repeats = int(sys.argv[4]) if len(sys.argv) > 4 else 5
    tensors, meta = load_safetensors(path)
    cfg = json.loads(meta["config"])
    vocab = meta["vocab"]
    model = GPT(cfg["vocab_size"], cfg["attn"], cfg["context"], cfg["dim"], cfg["layers"],
                cfg["heads"], cfg["mlp_ratio"])
    model.load_state_dict({k[len("model."):].replace("mlp.", ""): v for k, v in tensors.items()
                           if k.startswith("model.")}, strict=True)
    model.eval()
    times = []
    with torch.no_grad():
        for _ in range(repeats):
            ids = [vocab.index("\n")]
            t0 = time.perf_counter()
            for _ in range(tokens):
                window = torch.tensor([ids[-cfg["context"]:]])
                ids.append(int(model(window)[0, -1].argmax()))
            times.append(time.perf_counter() - t0)
    t = statistics.median(times)
    print(f"pytorch {torch.__version__}, {torch.get_num_threads()} threads, cache-free loop: "
          f"{tokens} tokens in {t:.3f} s ({tokens / t:.1f} tokens/s, median of {repeats})")


if __name__ == "__main__":
    main()
