#!/usr/bin/python3
"""bench/torch_decode.py: batch-1 decoding speed of a minimoe preset, as a PyTorch user writes it.

    /usr/bin/python3 bench/torch_decode.py --preset minimoe --prompt 128 --tokens 64 --threads 2 \\
        [--blas-threads 1] [--repeat 3] [--mode inference|no_grad] [--json]

The model is bench/torch_train.py's, randomly initialised (the speed does not depend on the
weights), in eval mode. Each layer's KV cache grows by torch.cat of the past and the new keys and
values, as HF's past_key_values does; the MoE FFN loops over the experts with index gathering,
so at batch 1 only the chosen experts run. Prefill: one forward over a random --prompt-token
prompt fills the cache, with logits at every position as minimoe's generate computes them; its
last argmax is the first new token. Decode: --tokens greedy steps, each feeding the last token in
at the next position (so --prompt + --tokens must fit in the context). Figures are medians over
--repeat runs after --warmup untimed ones.
"""
import argparse
import json
import math
import os
import statistics
import sys
import time

# Sizes from include/minimoe/models/presets.hpp; the rest are minimoe's defaults.
PRESETS = {
    "minimoe": dict(vocab=50257, context=256, layers=6, d=256, heads=8, experts=4, topk=2,
                    hidden=512),
    "tiny": dict(vocab=4096, context=128, layers=4, d=128, heads=4, experts=4, topk=2,
                 hidden=256),
}
PARAMS = {"minimoe": 20_833_024, "tiny": 1_863_936}  # the tied head counts once
DEFAULT_LENGTHS = {"minimoe": (128, 64), "tiny": (64, 64)}  # (prompt, tokens)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=sorted(PRESETS), default="minimoe")
    p.add_argument("--prompt", type=int, default=0, help="prompt tokens; 0: 128 (tiny: 64)")
    p.add_argument("--tokens", type=int, default=0, help="decoded tokens; 0: 64")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--blas-threads", type=int, default=0, help="OpenBLAS threads; 0: --threads")
    p.add_argument("--repeat", type=int, default=3, help="timed runs; the median is reported")
    p.add_argument("--warmup", type=int, default=1, help="untimed runs first")
    p.add_argument("--mode", choices=("inference", "no_grad"), default="inference",
                   help="torch.inference_mode() or torch.no_grad()")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    a.threads = a.threads or os.cpu_count() or 1
    a.blas_threads = a.blas_threads or a.threads
    a.cfg = PRESETS[a.preset]
    a.prompt = a.prompt or DEFAULT_LENGTHS[a.preset][0]
    a.tokens = a.tokens or DEFAULT_LENGTHS[a.preset][1]
    if a.prompt < 1 or a.tokens < 1 or a.repeat < 1 or a.warmup < 0:
        p.error("--prompt, --tokens and --repeat must be at least 1, --warmup at least 0")
    if a.prompt + a.tokens > a.cfg["context"]:
        p.error(f"--prompt {a.prompt} + --tokens {a.tokens} exceeds the preset's context "
                f"{a.cfg['context']}")
    return a


args = parse_args()
# PyTorch's BLAS here is OpenBLAS, whose thread pool ignores torch.set_num_threads: fix both
# pools before torch loads.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402


class Attention(nn.Module):
    def __init__(self, d, heads, context):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).tril())

    def forward(self, x, past):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:  # HF-style cache: a new, longer tensor every step
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        L = k.shape[2]
        s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        s = s.masked_fill(~self.mask[L - T:L, :L], float("-inf"))  # the new rows of the mask
        y = torch.softmax(s, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), (k, v)


class MoE(nn.Module):
    def __init__(self, d, hidden, experts, topk):
        super().__init__()
        self.topk = topk
        self.router = nn.Linear(d, experts, bias=False)
        self.experts = nn.ModuleList(
            nn.Sequential(nn.Linear(d, hidden), nn.GELU(approximate="tanh"), nn.Linear(hidden, d))
            for _ in range(experts))

    def forward(self, x):
        B, T, C = x.shape
        xs = x.reshape(-1, C)
        w, idx = torch.softmax(self.router(xs), dim=-1).topk(self.topk, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(xs)
        for e, expert in enumerate(self.experts):  # skips experts no token chose
            token, slot = torch.where(idx == e)
            if token.numel():
                out.index_add_(0, token, expert(xs[token]) * w[token, slot, None])
        return out.view(B, T, C)


class Block(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ln1 = nn.LayerNorm(c["d"])
        self.attn = Attention(c["d"], c["heads"], c["context"])
        self.ln2 = nn.LayerNorm(c["d"])
        self.moe = MoE(c["d"], c["hidden"], c["experts"], c["topk"])

    def forward(self, x, past):
        y, present = self.attn(self.ln1(x), past)
        x = x + y
        return x + self.moe(self.ln2(x)), present


class GPT(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.wte = nn.Embedding(c["vocab"], c["d"])
        self.wpe = nn.Embedding(c["context"], c["d"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(c["d"])
        self.head = nn.Linear(c["d"], c["vocab"], bias=False)
        self.head.weight = self.wte.weight

    def forward(self, ids, past=None):
        """Logits [B, T, V] of the new ids, and the cache extended by them."""
        start = 0 if past is None else past[0][0].shape[2]
        x = self.wte(ids) + self.wpe(torch.arange(start, start + ids.shape[1]))
        presents = []
        for i, block in enumerate(self.blocks):
            x, kv = block(x, None if past is None else past[i])
            presents.append(kv)
        return self.head(self.ln_f(x)), presents


def run(model, prompt, tokens):
    """One generation from an empty cache: (prefill seconds, decode seconds, generated ids)."""
    t0 = time.perf_counter()
    logits, past = model(prompt)
    next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
    t1 = time.perf_counter()
    out = [next_id]
    for _ in range(tokens):  # each step feeds the last token at the next position
        logits, past = model(next_id, past)
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
        out.append(next_id)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.cat(out, dim=1)


def main():
    a = args
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.cfg).eval()
    params = sum(p.numel() for p in model.parameters())
    assert params == PARAMS[a.preset], f"{params:,} parameters, expected {PARAMS[a.preset]:,}"
    log = sys.stderr if a.json else sys.stdout
    print(f"torch_decode: preset {a.preset}, {params:,} parameters, prompt {a.prompt} + "
          f"{a.tokens} tokens, {torch.get_num_threads()} threads, OpenBLAS {a.blas_threads}, "
          f"{a.mode} (torch {torch.__version__})", file=log)
    prompt = torch.randint(a.cfg["vocab"], (1, a.prompt))
    mode = torch.inference_mode if a.mode == "inference" else torch.no_grad
    prefill, decode = [], []
    with mode():
        for i in range(a.warmup + a.repeat):
            p, d, ids = run(model, prompt, a.tokens)
            if i >= a.warmup:
                prefill.append(p)
                decode.append(d)
            print(f"run {i}{' (warmup)' if i < a.warmup else ''}: prefill {p:.3f} s, "
                  f"decode {d:.3f} s, last ids {ids[0, -4:].tolist()}", file=log)
    prefill_tps = a.prompt / statistics.median(prefill)
    decode_tps = a.tokens / statistics.median(decode)
    if a.json:
        print(json.dumps({"impl": "torch", "preset": a.preset, "threads": a.threads,
                          "blas_threads": a.blas_threads, "prompt": a.prompt,
                          "tokens": a.tokens, "mode": a.mode,
                          "prefill_tokens_per_s": prefill_tps,
                          "decode_tokens_per_s": decode_tps, "params": params}))
    else:
        print(f"prefill {prefill_tps:.0f} tokens/s, decode {decode_tps:.1f} tokens/s "
              f"(median of {a.repeat})")


if __name__ == "__main__":
    main()
