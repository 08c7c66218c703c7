#!/usr/bin/env python3
"""Golden values from PyTorch for polygrad's tests (needs Debian's python3-torch).

1. Builds a small pre-norm transformer block with fixed weights, runs forward and backward for
each built-in attention activation (polynomial, ReLU, sigmoid and squared-ReLU attention
written out by hand in tools/reference/common.py), and writes weights, input, upstream gradient, outputs and gradients to
tests/fixtures/transformer_block.safetensors.
2. Runs three steps of AdamW, Adam (L2 weight decay) and SGD (Nesterov momentum, weight
decay) on a fixed parameter with fixed gradients and writes the parameter after each step to
tests/fixtures/optim_steps.safetensors.
3. Trains the PyTorch reference models of tools/reference (a tiny GPT and a tiny ViT, every
built-in activation) for a few steps of the training programs' recipe -- AdamW with decay on
matrices only, warm-up + cosine, global-norm clipping -- from recorded weights on recorded
batches, and writes the weights, batches, per-step losses and gradient norms and the final
weights to tests/fixtures/training_lockstep.safetensors.
The tests read the files; they never need PyTorch. Run from the repository root: python3 tools/reference/make_fixtures.py
"""
import json
import math
import os

import sys

import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from common import adamw, attention_weights, lr_at, polygrad_name, save_safetensors  # noqa: E402
from gpt import GPT  # noqa: E402
from vit import ViT  # noqa: E402

torch.manual_seed(0)
torch.set_default_dtype(torch.float64)

B, T, D, H = 2, 5, 8, 2
POLICIES = ["softmax", "poly:3", "relu", "sigmoid", "relu2"]
FIXTURES = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "tests", "fixtures")


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
        a = attention_weights(spec, s, visible)
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
    meta = {"generator": "tools/reference/make_fixtures.py", "torch": torch.__version__,
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
    # AdamW in f32 with PyTorch's defaults, parameters and state after each step: f32 rounding
    # of the update (1 - beta2 in f32 is 1.3e-5 off 0.001, say) shows in exp_avg_sq.
    p = p0.float().requires_grad_()
    opt = torch.optim.AdamW([p], lr=2e-3, weight_decay=0.05)
    for i, g in enumerate(grads):
        p.grad = g.float()
        opt.step()
        out["adamw32.step%d" % i] = p.detach().clone()
        out["adamw32.exp_avg%d" % i] = opt.state[p]["exp_avg"].clone()
        out["adamw32.exp_avg_sq%d" % i] = opt.state[p]["exp_avg_sq"].clone()
    meta = {"generator": "tools/reference/make_fixtures.py", "torch": torch.__version__,
            "config": json.dumps({"adamw": {"lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1},
                                  "adam": {"lr": 0.01, "betas": [0.9, 0.99], "eps": 1e-8, "weight_decay": 0.1},
                                  "sgd": {"lr": 0.1, "momentum": 0.9, "nesterov": True, "weight_decay": 0.01},
                                  "adamw32": {"lr": 2e-3, "weight_decay": 0.05, "dtype": "f32"}})}
    save_safetensors(os.path.join(FIXTURES, "optim_steps.safetensors"), out, meta)


# The models' parts are polygrad's GptConfig and VitConfig JSON, so the test rebuilds them as is.
LOCKSTEP = {"steps": 6, "warmup": 2, "lr": 1e-2, "min_lr": 1e-3, "weight_decay": 0.05,
            "clip": 0.5, "label_smoothing": 0.1, "gpt_batch": 3, "vit_batch": 4,
            "gpt": {"model": "gpt", "vocab_size": 7, "context": 6, "dim": 8, "layers": 2, "heads": 2,
                    "mlp_ratio": 4, "dropout": 0.0, "attn": "softmax", "tie_weights": False},
            "vit": {"model": "vit", "image_size": 8, "channels": 1, "patch": 4, "classes": 3,
                    "dim": 8, "layers": 2, "heads": 2, "mlp_ratio": 2, "dropout": 0.0,
                    "attn": "softmax", "pool": "cls"}}


def lockstep_run(out, prefix, model, batches, loss_fn, no_decay):
    c = LOCKSTEP
    opt = adamw(model, c["lr"], c["weight_decay"], no_decay=no_decay)
    losses, norms = [], []
    for step, (x, y) in enumerate(batches):
        for group in opt.param_groups:
            group["lr"] = lr_at(step, c["lr"], c["warmup"], c["steps"], c["min_lr"])
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        norms.append(torch.nn.utils.clip_grad_norm_(model.parameters(), c["clip"]))
        opt.step()
        losses.append(loss.detach())
    out[prefix + ".loss"] = torch.stack(losses)
    out[prefix + ".grad_norm"] = torch.stack(norms)
    for name, p in model.named_parameters():
        out[prefix + ".final." + polygrad_name(name)] = p.detach().clone()


def training_lockstep():
    c, g, v = LOCKSTEP, LOCKSTEP["gpt"], LOCKSTEP["vit"]
    torch.manual_seed(2)
    tokens = (c["steps"], c["gpt_batch"], g["context"])
    out = {"gpt.x": torch.randint(0, g["vocab_size"], tokens),
           "gpt.y": torch.randint(0, g["vocab_size"], tokens),
           "vit.x": torch.rand(c["steps"], c["vit_batch"], 1, v["image_size"], v["image_size"]),
           "vit.y": torch.randint(0, v["classes"], (c["steps"], c["vit_batch"]))}
    for spec in POLICIES:
        torch.manual_seed(3)
        gpt = GPT(g["vocab_size"], spec, g["context"], g["dim"], g["layers"], g["heads"], g["mlp_ratio"])
        if spec == POLICIES[0]:
            out.update({"gpt.init." + polygrad_name(n): p.detach().clone()
                        for n, p in gpt.named_parameters()})
        else:
            gpt.load_state_dict({n: out["gpt.init." + polygrad_name(n)] for n, _ in gpt.named_parameters()})
        gpt_loss = lambda logits, y: torch.nn.functional.cross_entropy(logits.flatten(0, 1), y.flatten())
        lockstep_run(out, "gpt." + spec, gpt, zip(out["gpt.x"], out["gpt.y"]), gpt_loss, ())

        torch.manual_seed(4)
        vit = ViT(spec, v["image_size"], v["patch"], v["dim"], v["layers"], v["heads"], v["mlp_ratio"],
                  v["classes"])
        if spec == POLICIES[0]:
            out.update({"vit.init." + polygrad_name(n): p.detach().clone()
                        for n, p in vit.named_parameters()})
        else:
            vit.load_state_dict({n: out["vit.init." + polygrad_name(n)] for n, _ in vit.named_parameters()})
        vit_loss = lambda logits, y: torch.nn.functional.cross_entropy(
            logits, y, label_smoothing=c["label_smoothing"])
        lockstep_run(out, "vit." + spec, vit, zip(out["vit.x"], out["vit.y"]), vit_loss,
                     ("cls_token", "pos_embed"))
    meta = {"generator": "tools/reference/make_fixtures.py", "torch": torch.__version__,
            "config": json.dumps(LOCKSTEP), "policies": json.dumps(POLICIES)}
    save_safetensors(os.path.join(FIXTURES, "training_lockstep.safetensors"), out, meta)


if __name__ == "__main__":
    main()
    optimizer_steps()
    training_lockstep()
