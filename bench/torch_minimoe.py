"""bench/torch_minimoe.py: the minimoe presets as a PyTorch user writes them, in nn.Module form.

Shared by bench/torch_train.py and bench/torch_decode.py. The layout is tools/torch_reference.py's
architecture: token and learned position embeddings, pre-LayerNorm blocks of causal attention
(masked softmax) and an MoE FFN of GELU experts, softmax router, top-k with renormalised weights,
a loop over experts with index gathering and index_add_ (so only the experts some token chose
run), and a head tied to the token embedding.

GPT(cfg)(ids, past=None) returns (logits [B, T, V], presents, aux): each layer's KV cache grows
by torch.cat of the past and the new keys and values, as HF's past_key_values does; aux is the
summed Switch load-balancing loss of the MoE layers in training mode, None in eval mode.

This module imports torch: the scripts set OMP_NUM_THREADS / OPENBLAS_NUM_THREADS first.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

# Sizes from include/minimoe/models/presets.hpp; the rest are minimoe's defaults.
PRESETS = {
    "minimoe": dict(vocab=50257, context=256, layers=6, d=256, heads=8, experts=4, topk=2,
                    hidden=512),
    "tiny": dict(vocab=4096, context=128, layers=4, d=128, heads=4, experts=4, topk=2,
                 hidden=256),
}
PARAMS = {"minimoe": 20_833_024, "tiny": 1_863_936}  # the tied head counts once


class Attention(nn.Module):
    def __init__(self, d, heads, context):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(d, 3 * d)
        self.proj = nn.Linear(d, d)
        self.register_buffer("mask", torch.ones(context, context, dtype=torch.bool).tril())

    def forward(self, x, past=None):
        B, T, C = x.shape
        q, k, v = self.qkv(x).view(B, T, 3, self.heads, C // self.heads).permute(2, 0, 3, 1, 4)
        if past is not None:  # HF-style cache: a new, longer tensor every step
            k, v = torch.cat((past[0], k), dim=2), torch.cat((past[1], v), dim=2)
        L = k.shape[2]
        s = (q @ k.transpose(-2, -1)) / math.sqrt(C // self.heads)
        s = s.masked_fill(~self.mask[L - T:L, :L], float("-inf"))  # the new rows of the mask
        y = torch.softmax(s, dim=-1) @ v
        return self.proj(y.transpose(1, 2).reshape(B, T, C)), (k, v)


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
        """(output, Switch load-balancing loss); the loss only in training mode, else None."""
        B, T, C = x.shape
        xs = x.reshape(-1, C)
        probs = torch.softmax(self.router(xs), dim=-1)
        w, idx = probs.topk(self.topk, dim=-1)
        w = w / w.sum(dim=-1, keepdim=True)
        out = torch.zeros_like(xs)
        for e, expert in enumerate(self.experts):  # skips experts no token chose
            token, slot = torch.where(idx == e)
            if token.numel():
                # Under autocast the expert's output is bf16, the sum float.
                out.index_add_(0, token, (expert(xs[token]) * w[token, slot, None]).to(out.dtype))
        aux = None
        if self.training:
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

    def forward(self, x, past=None):
        y, present = self.attn(self.ln1(x), past)
        x = x + y
        y, aux = self.moe(self.ln2(x))
        return x + y, present, aux


class GPT(nn.Module):
    def __init__(self, c, init_std=None):
        """init_std: normal(0, init_std) weights and zero biases; None: PyTorch's defaults."""
        super().__init__()
        self.wte = nn.Embedding(c["vocab"], c["d"])
        self.wpe = nn.Embedding(c["context"], c["d"])
        self.blocks = nn.ModuleList(Block(c) for _ in range(c["layers"]))
        self.ln_f = nn.LayerNorm(c["d"])
        self.head = nn.Linear(c["d"], c["vocab"], bias=False)
        self.head.weight = self.wte.weight
        if init_std is not None:
            self.apply(lambda m: self._init(m, init_std))

    @staticmethod
    def _init(m, std):
        if isinstance(m, (nn.Linear, nn.Embedding)):
            nn.init.normal_(m.weight, std=std)
        if isinstance(m, nn.Linear) and m.bias is not None:
            nn.init.zeros_(m.bias)

    def forward(self, ids, past=None, last_only=False):
        """Logits [B, T, V] of the new ids ([B, 1, V] of the last one with last_only, as
        generation needs), the cache extended by them, and the summed MoE aux loss (None in
        eval mode)."""
        start = 0 if past is None else past[0][0].shape[2]
        x = self.wte(ids) + self.wpe(torch.arange(start, start + ids.shape[1]))
        presents = []
        aux = 0.0 if self.training else None
        for i, block in enumerate(self.blocks):
            x, kv, a = block(x, None if past is None else past[i])
            presents.append(kv)
            if a is not None:
                aux = aux + a
        if last_only:
            x = x[:, -1:]
        return self.head(self.ln_f(x)), presents, aux


def count_parameters(model, preset=None):
    """The model's parameters (the tied head counts once), checked against PARAMS[preset]."""
    params = sum(p.numel() for p in model.parameters())
    if preset is not None:
        assert params == PARAMS[preset], f"{params:,} parameters, expected {PARAMS[preset]:,}"
    return params
