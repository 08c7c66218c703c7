#!/usr/bin/python3
"""What a polynomial attention state can hold, without training: n key-value pairs written into
one head's state, every key then queried. For poly:p the linear path's readout of query q is
r * sum_i (s q.k_i)^p v_i (the state sum_i phi(k_i) v_i^T read by phi(q); the scalar r and the
N rule change no ranking), so the pairs interfere through (q.k_i)^p. Keys and values are random
unit vectors in d = e = 32 (a head of the study's model); a query is answered right when its
readout is closer (by dot product) to its own value than to the other n - 1. Softmax, for
reference, weights exp(tau q.k_i) (tau = 8; it keeps no fixed-size state).

Usage: /usr/bin/python3 docs/long_context/capacity.py [TRIALS]   (prints a markdown table;
needs Debian's python3-numpy). Each size is drawn TRIALS times (default 5), and at least often
enough for 4,096 queries."""
import sys
from math import comb

import numpy as np

d = e = 32
trials = int(sys.argv[1]) if len(sys.argv) > 1 else 5
pairs = [4, 16, 64, 256, 1024, 4096]
rng = np.random.default_rng(1)


def unit(n, k):
    x = rng.standard_normal((n, k))
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def accuracy(weights_of, n):
    right, draws = 0, max(trials, 4096 // n)
    for _ in range(draws):
        keys, values = unit(n, d), unit(n, e)
        readout = weights_of(keys @ keys.T) @ values  # row j: query j's readout
        right += np.sum(np.argmax(readout @ values.T, axis=1) == np.arange(n))
    return right / (draws * n)


def softmax(s, tau=8.0):
    w = np.exp(tau * (s - s.max(axis=1, keepdims=True)))
    return w / w.sum(axis=1, keepdims=True)


arms = [(f"poly:{p}", comb(d + p - 1, p), (lambda s, p=p: s ** p)) for p in (1, 2, 3)]
print(f"| pairs | " + " | ".join(f"`{name}` (D = {D:,})" for name, D, _ in arms) +
      " | `softmax` |")
print("|---|" + "---|" * (len(arms) + 1))
for n in pairs:
    cells = [f"{100 * accuracy(f, n):.1f} %" for _, _, f in arms]
    cells.append(f"{100 * accuracy(softmax, n):.1f} %")
    print(f"| {n} | " + " | ".join(cells) + " |")
