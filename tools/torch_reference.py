#!/usr/bin/env python3
"""The minimoe GPT rebuilt in PyTorch, as the reference for the parity tests.

    torch_reference.py MODEL.safetensors BATCH.safetensors OUT.safetensors

Reads a minimoe model file (weights + config JSON in the metadata) and a batch (`ids` and
`targets`, int32 [B, T]), runs forward and backward in float32, and writes OUT with `logits`,
`loss`, `cross_entropy`, `aux_loss`, `z_loss` and `grad.<name>` for every parameter.

Written the plain PyTorch way, independently of the C++ code: the same architecture from
its description in docs/routing.md and docs/formats.md. Needs only `torch` (Debian's
python3-torch); safetensors files are read and written by hand.
"""
import json
import math
import struct
import sys

import torch
import torch.nn.functional as F

DTYPES = {"F32": torch.float32, "F64": torch.float64, "I32": torch.int32, "I64": torch.int64}
NAMES = {v: k for k, v in DTYPES.items()}


def read_safetensors(path):
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    base = 8 + n
    tensors = {}
    for name, e in header.items():
        begin, end = e["data_offsets"]
        buf = bytearray(data[base + begin : base + end])
        t = torch.frombuffer(buf, dtype=DTYPES[e["dtype"]]) if buf else torch.empty(0, dtype=DTYPES[e["dtype"]])
        tensors[name] = t.reshape(e["shape"]).clone()
    return tensors, meta


def write_safetensors(path, tensors):
    header, blobs, offset = {}, [], 0
    for name, t in tensors.items():
        t = t.detach().contiguous().cpu()
        raw = t.numpy().tobytes()
        header[name] = {"dtype": NAMES[t.dtype], "shape": list(t.shape), "data_offsets": [offset, offset + len(raw)]}
        blobs.append(raw)
        offset += len(raw)
    text = json.dumps(header).encode()
    text += b" " * ((8 - len(text) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text + b"".join(blobs))


def activation(name, x):
    if name == "gelu":
        return F.gelu(x, approximate="tanh")
    if name == "gelu_exact":
        return F.gelu(x)
    if name == "relu":
        return F.relu(x)
    if name == "silu":
        return F.silu(x)
    if name == "relu2":
        return F.relu(x).square()
    raise ValueError(name)


class Model:
    def __init__(self, cfg, params):
        self.cfg = cfg
        self.p = params

    def has(self, name):
        return name in self.p

    def linear(self, x, prefix):
        y = x @ self.p[prefix + ".weight"].t()
        return y + self.p[prefix + ".bias"] if self.has(prefix + ".bias") else y

    def norm(self, x, prefix):
        w = self.p[prefix + ".weight"]
        if self.cfg["norm"] == "layernorm":
            return F.layer_norm(x, (x.shape[-1],), w, self.p.get(prefix + ".bias"), self.cfg["norm_eps"])
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg["norm_eps"]) * w

    def rms(self, x, w, eps):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w

    def rope(self, x):  # x [B, T, H, D], rotate-half convention
        B, T, H, D = x.shape
        half = D // 2
        inv = self.cfg["rope_base"] ** (-2.0 * torch.arange(half, dtype=torch.float64) / D)
        ang = torch.arange(T, dtype=torch.float64)[:, None] * inv[None, :]
        cos = torch.cos(ang).to(x.dtype)[None, :, None, :]
        sin = torch.sin(ang).to(x.dtype)[None, :, None, :]
        x1, x2 = x[..., :half], x[..., half:]
        return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)

    def attention(self, x, prefix):
        c = self.cfg
        B, T, C = x.shape
        H = c["n_heads"]
        Hkv = c["n_kv_heads"] or H
        D = C // H
        q = self.linear(x, prefix + ".q_proj").view(B, T, H, D)
        k = self.linear(x, prefix + ".k_proj").view(B, T, Hkv, D)
        v = self.linear(x, prefix + ".v_proj").view(B, T, Hkv, D)
        if c["qk_norm"]:
            q = self.rms(q, self.p[prefix + ".q_norm.weight"], 1e-6)
            k = self.rms(k, self.p[prefix + ".k_norm.weight"], 1e-6)
        if c["positions"] == "rope":
            q, k = self.rope(q), self.rope(k)
        q, k, v = q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2)  # (B, nh, T, D)
        k = k.repeat_interleave(H // Hkv, dim=1)
        v = v.repeat_interleave(H // Hkv, dim=1)
        s = (q @ k.transpose(-1, -2)) / math.sqrt(D)
        if c["attn_softcap"] > 0:
            s = c["attn_softcap"] * torch.tanh(s / c["attn_softcap"])
        mask = torch.ones(T, T, dtype=torch.bool).tril()
        s = s.masked_fill(~mask, float("-inf"))
        y = torch.softmax(s, dim=-1) @ v
        return self.linear(y.transpose(1, 2).reshape(B, T, C), prefix + ".o_proj")

    def expert(self, x, prefix):
        if self.cfg["glu"]:
            h = activation(self.cfg["activation"], self.linear(x, prefix + ".gate")) * self.linear(x, prefix + ".up")
        else:
            h = activation(self.cfg["activation"], self.linear(x, prefix + ".up"))
        return self.linear(h, prefix + ".down")

    def moe(self, x, prefix):
        c = self.cfg
        B, T, C = x.shape
        xs = x.reshape(-1, C)
        N, E, K = xs.shape[0], c["n_experts"], c["top_k"]
        logits = self.linear(xs, prefix + ".router.gate")
        probs = torch.softmax(logits, dim=-1)
        score = probs.detach()
        if self.has(prefix + ".router.selection_bias"):
            score = score + self.p[prefix + ".router.selection_bias"]
        experts = torch.topk(score, K, dim=-1).indices  # (N, K)
        w = probs.gather(1, experts)
        if c["normalize_topk"]:
            w = w / w.sum(-1, keepdim=True)
        keep = torch.ones(N, K, dtype=torch.bool)
        if c["capacity_factor"] > 0:
            cap = max(1, math.ceil(c["capacity_factor"] * N * K / E))
            load = [0] * E
            for k in range(K):
                for n in range(N):
                    e = int(experts[n, k])
                    if load[e] < cap:
                        load[e] += 1
                    else:
                        keep[n, k] = False
        y = torch.zeros_like(xs)
        for e in range(E):
            n_idx, k_idx = torch.where((experts == e) & keep)
            if len(n_idx) == 0:
                continue
            out = self.expert(xs[n_idx], f"{prefix}.experts.{e}")
            y = y.index_add(0, n_idx, out * w[n_idx, k_idx][:, None])
        s = 0
        while self.has(f"{prefix}.shared_experts.{s}.up.weight"):
            y = y + self.expert(xs, f"{prefix}.shared_experts.{s}")
            s += 1
        counts = torch.bincount(experts.reshape(-1), minlength=E).to(x.dtype)
        f = counts / (N * K)
        aux = E * (f * probs.mean(0)).sum()
        z = torch.logsumexp(logits, dim=-1).square().mean()
        return y.view(B, T, C), aux, z

    def forward(self, ids, targets):
        c = self.cfg
        B, T = ids.shape
        x = self.p["wte.weight"][ids]
        if c["positions"] == "learned":
            x = x + self.p["wpe.weight"][:T]
        aux_total = torch.zeros(())
        z_total = torch.zeros(())
        for l in range(c["n_layers"]):
            b = f"blocks.{l}"
            x = x + self.attention(self.norm(x, b + ".ln1"), b + ".attn")
            h = self.norm(x, b + ".ln2")
            if c["n_experts"] > 0 and (l + 1) % c["moe_every"] == 0:
                y, aux, z = self.moe(h, b + ".moe")
                aux_total, z_total = aux_total + aux, z_total + z
            else:
                y = self.expert(h, b + ".mlp")
            x = x + y
        x = self.norm(x, "ln_f")
        head = self.p["wte.weight"] if c["tie_embeddings"] else self.p["lm_head.weight"]
        logits = x @ head.t()
        ce = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), targets.reshape(-1), ignore_index=-100)
        loss = ce
        if c["n_experts"] > 0:
            loss = loss + c["aux_loss_weight"] * aux_total + c["z_loss_weight"] * z_total
        return logits, loss, ce, aux_total, z_total


def main():
    model_path, batch_path, out_path = sys.argv[1:4]
    torch.set_num_threads(1)
    weights, meta = read_safetensors(model_path)
    cfg = json.loads(meta["config"])
    params = {}
    for name, t in weights.items():
        is_buffer = name.endswith("selection_bias")
        params[name] = t.float().requires_grad_(not is_buffer)
    batch, _ = read_safetensors(batch_path)
    ids, targets = batch["ids"].long(), batch["targets"].long()
    logits, loss, ce, aux, z = Model(cfg, params).forward(ids, targets)
    loss.backward()
    out = {"logits": logits, "loss": loss, "cross_entropy": ce, "aux_loss": aux, "z_loss": z}
    for name, t in params.items():
        if t.requires_grad:
            out["grad." + name] = t.grad if t.grad is not None else torch.zeros_like(t)
    write_safetensors(out_path, out)


if __name__ == "__main__":
    main()
