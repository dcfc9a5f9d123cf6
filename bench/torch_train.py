#!/usr/bin/python3
"""bench/torch_train.py: training speed of a minimoe preset written as a PyTorch user would.

    /usr/bin/python3 bench/torch_train.py --preset minimoe --batch 8 --context 256 --steps 10 \\
        --warmup 2 --threads 2 [--blas-threads 1] [--json]

The model is the PyTorch MiniMoE layout (the architecture of tools/torch_reference.py, in
nn.Module form): token and learned position embeddings, pre-LayerNorm blocks of causal
attention (masked softmax) and an MoE FFN of GELU experts, softmax router, top-k with
renormalised weights, a loop over experts with index gathering and index_add_, the Switch
load-balancing loss, a tied LM head, cross-entropy, AdamW with gradient clipping. It trains on
random token ids (the speed does not depend on the data): --warmup steps, then --steps timed
steps; tokens/s = batch * context * steps / seconds.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# Sizes from include/minimoe/models/presets.hpp; both use minimoe's defaults for the rest.
PRESETS = {
    "minimoe": dict(vocab=50257, context=256, layers=6, d=256, heads=8, experts=4, topk=2,
                    hidden=512),
    "tiny": dict(vocab=4096, context=128, layers=4, d=128, heads=4, experts=4, topk=2,
                 hidden=256),
}
AUX_LOSS_WEIGHT = 0.01


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="minimoe")
    p.add_argument("--vocab", type=int, default=0,
                   help="override the preset's vocabulary (minimoe sizes it by its tokenizer)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=0, help="0: the preset's context")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--blas-threads", type=int, default=0, help="OpenBLAS threads; 0: --threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    a.threads = a.threads or os.cpu_count() or 1
    a.blas_threads = a.blas_threads or a.threads
    a.cfg = dict(PRESETS[a.preset])
    a.cfg["vocab"] = a.vocab or a.cfg["vocab"]
    a.context = a.context or a.cfg["context"]
    if a.steps < 1:
        p.error("--steps must be at least 1")
    if a.context > a.cfg["context"]:
        p.error(f"--context {a.context} exceeds the preset's {a.cfg['context']}")
    return a


args = parse_args()
# PyTorch's BLAS here is OpenBLAS, whose thread pool ignores torch.set_num_threads: fix both
# pools before torch loads.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Attention(nn.Module):
    def __init__(self, d, heads, context):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).tril())

    def forward(self, x):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        s = s.masked_fill(~self.mask[:T, :T], float("-inf"))
        y = torch.softmax(s, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C))


class Expert(nn.Module):
    def __init__(self, d, hidden):
        super().__init__()
        self.up = nn.Linear(d, hidden)
        self.down = nn.Linear(hidden, d)

    def forward(self, x):
        return self.down(F.gelu(self.up(x), approximate="tanh"))


class MoE(nn.Module):
    def __init__(self, d, hidden, experts, topk):
        super().__init__()
        self.topk = topk
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(Expert(d, hidden) for _ in range(experts))

    def forward(self, x):
        B, T, C = x.shape
        xs = x.reshape(-1, C)
        probs = torch.softmax(self.router(xs), dim=-1)
        w, idx = probs.topk(self.topk, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(xs)
        for e, expert in enumerate(self.experts):
            token, slot = torch.where(idx == e)
            if token.numel():
                out.index_add_(0, token, expert(xs[token]) * w[token, slot, None])
        E = len(self.experts)
        f = torch.bincount(idx.flatten(), minlength=E).to(x.dtype) / idx.numel()
        aux = E * (f * probs.mean(0)).sum()
        return out.view(B, T, C), aux


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln1 = nn.LayerNorm(c["d"])
        self.attn = Attention(c["d"], c["heads"], c["context"])
        self.ln2 = nn.LayerNorm(c["d"])
        self.moe = MoE(c["d"], c["hidden"], c["experts"], c["topk"])

    def forward(self, x):
        x = x + self.attn(self.ln1(x))
        y, aux = self.moe(self.ln2(x))
        return x + y, aux


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab"], c["d"])
        self.wpe = nn.Embedding(c["context"], c["d"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(c["d"])
        self.head = nn.Linear(c["d"], c["vocab"], bias=False)
        self.head.weight = self.wte.weight
        self.apply(self._init)

    @staticmethod
    def _init(m):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=0.02)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids, targets):
        x = self.wte(ids) + self.wpe(torch.arange(ids.shape[1]))
        aux = 0.0
        for block in self.blocks:
            x, a = block(x)
            aux = aux + a
        logits = self.head(self.ln_f(x))
        ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.reshape(-1))
        return ce + AUX_LOSS_WEIGHT * aux


def main():
    a = args
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.cfg)
    params = sum(p.numel() for p in model.parameters())  # the tied head counts once
    # minimoe's defaults: lr 1e-3, betas (0.9, 0.95), weight decay 0.1, gradient norm 1.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    log = sys.stderr if a.json else sys.stdout
    print(f"torch_train: preset {a.preset} vocab {a.cfg['vocab']}, {params:,} parameters, "
          f"batch {a.batch} x context {a.context}, {torch.get_num_threads()} threads, "
          f"OpenBLAS {a.blas_threads} (torch {torch.__version__})", file=log)

    def step():
        ids = torch.randint(a.cfg["vocab"], (a.batch, a.context + 1))
        loss = model(ids[:, :-1], ids[:, 1:])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        return loss.item()

    for i in range(a.warmup):
        print(f"warmup {i}: loss {step():.4f}", file=log)
    seconds = []
    for i in range(a.steps):
        t0 = time.perf_counter()
        loss = step()
        seconds.append(time.perf_counter() - t0)
        print(f"step {i}: loss {loss:.4f} {seconds[-1]:.3f} s", file=log)
    tokens_per_s = a.batch * a.context * a.steps / sum(seconds)
    if a.json:
        print(json.dumps({"impl": "torch", "preset": a.preset, "threads": a.threads,
                          "blas_threads": a.blas_threads, "batch": a.batch,
                          "context": a.context, "steps": a.steps,
                          "tokens_per_s": tokens_per_s, "params": params}))
    else:
        print(f"{tokens_per_s:.0f} tokens/s (median step {statistics.median(seconds):.3f} s)")


if __name__ == "__main__":
    main()
