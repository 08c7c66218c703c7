#!/usr/bin/env python3
"""Writes the seed corpora of the fuzz targets (tests/fuzz/corpus/<target>/seed-*).

Run from the repository root after a build: the checkpoint seeds are real checkpoints written
by build/polygrad (tiny models, one step); everything else is made here with the standard
library. Regression inputs (crash-*, found by tools/fuzz) live beside the seeds and are kept.
"""
import gzip
import json
import os
import shutil
import struct
import subprocess
import sys
import tempfile

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
CORPUS = os.path.join(ROOT, "tests", "fuzz", "corpus")


def write(target, name, data):
    folder = os.path.join(CORPUS, target)
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "seed-" + name), "wb") as f:
        f.write(data if isinstance(data, bytes) else data.encode())


def safetensors(tensors, metadata=None):
    """tensors: list of (name, dtype, shape, raw bytes)."""
    header, offset, blob = {}, 0, b""
    if metadata is not None:
        header["__metadata__"] = metadata
    for name, dtype, shape, raw in tensors:
        header[name] = {"dtype": dtype, "shape": shape, "data_offsets": [offset, offset + len(raw)]}
        offset += len(raw)
        blob += raw
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return struct.pack("<Q", len(text)) + text + blob


def safetensors_seeds():
    f32 = struct.pack("<6f", 1, -2, 3.5, 0, 1e-3, 7)
    write("safetensors", "f32", safetensors([("w", "F32", [2, 3], f32)], {"k": "v"}))
    write("safetensors", "mixed", safetensors([
        ("a", "F64", [2], struct.pack("<2d", 1.5, -2)),
        ("b", "I64", [3], struct.pack("<3q", 1, 2, -3)),
        ("c", "I32", [1, 2], struct.pack("<2i", 4, 5)),
        ("d", "BF16", [2], bytes([0x80, 0x3f, 0x00, 0xc0])),
        ("e", "F16", [2], bytes([0x00, 0x3c, 0x00, 0xc0])),
        ("s", "F32", [], struct.pack("<f", 2)),
        ("z", "F32", [0, 4], b""),
    ]))
    write("safetensors", "empty", safetensors([], {}))
    shutil.copy(os.path.join(ROOT, "tests", "fixtures", "torch_small.safetensors"),
                os.path.join(CORPUS, "safetensors", "seed-torch_small"))


def idx_seeds():
    images = struct.pack(">IIII", 2051, 2, 3, 3) + bytes(range(18))
    labels = struct.pack(">II", 2049, 2) + bytes([3, 9])
    write("idx", "images", images)
    write("idx", "labels", labels)
    write("idx", "images_gz", gzip.compress(images, mtime=0))
    write("idx", "labels_gz", gzip.compress(labels, mtime=0))


def spec_seeds():
    for i, spec in enumerate(["softmax", "poly", "poly:3", "poly:p=2,scale=n^-0.5",
                              "poly:3,n=visible", "relu", "relu:n=visible", "relu2",
                              "sigmoid:n=visible", "poly:p=8,scale=n^-1,n=visible"]):
        write("attention_spec", str(i), spec)


def text_seeds():
    write("text_corpus", "ascii", "A fortune a day.\n\t-- polygrad\n%\nTwo lines\nof text.\n")
    write("text_corpus", "utf8", "naïve café — ∑ x² ≤ 𝔼[y]\n日本語のテキスト\n")
    write("text_corpus", "invalid_utf8", b"ok \xff\xfe bad \xc3 \xe2\x82 end\n")
    # A surrogate, a code point past U+10FFFF and an overlong '/': not characters.
    write("text_corpus", "surrogate_overlong", b"ab\xed\xa0\x80cd\xf4\x90\x80\x80ef\xc0\xafgh\n")


def checkpoint_seeds():
    exe = os.path.join(ROOT, "build", "polygrad")
    if not os.path.exists(exe):
        sys.exit("build/polygrad not found: build first (tools/test)")
    with tempfile.TemporaryDirectory() as tmp:
        text = os.path.join(tmp, "corpus.txt")
        with open(text, "w") as f:
            f.write("the quick brown fox jumps over the lazy dog\n" * 4)
        runs = {
            "gpt": ["train", "gpt", "--data", text, "--context", "8", "--dim", "8",
                    "--layers", "1", "--heads", "2", "--batch", "2", "--attn", "poly:3"],
            "vit": ["train", "vit", "--patch", "7", "--dim", "8", "--layers", "1",
                    "--heads", "2", "--batch", "4", "--attn", "relu"],
        }
        env = dict(os.environ, OMP_NUM_THREADS="1")
        for name, args in runs.items():
            out = os.path.join(tmp, name)
            subprocess.run([exe] + args + ["--steps", "1", "--eval-every", "1", "--out", out],
                           check=True, env=env, stdout=subprocess.DEVNULL)
            shutil.copy(os.path.join(out, "checkpoint.safetensors"),
                        os.path.join(CORPUS, "checkpoint", "seed-" + name))


if __name__ == "__main__":
    for target in ["safetensors", "idx", "attention_spec", "text_corpus", "checkpoint"]:
        folder = os.path.join(CORPUS, target)
        if os.path.isdir(folder):
            for f in os.listdir(folder):
                if f.startswith("seed-"):
                    os.remove(os.path.join(folder, f))
    safetensors_seeds()
    idx_seeds()
    spec_seeds()
    text_seeds()
    checkpoint_seeds()
