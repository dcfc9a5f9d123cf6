#!/usr/bin/python3
"""bench/torch_moe.py: the MoE FFN layer of bench/moe_dispatch.cpp, written as a PyTorch user
would, timed with the same options and printed with the same JSON fields.

    /usr/bin/python3 bench/torch_moe.py --tokens 2048 --d 256 --hidden 1024 --experts 4 \\
        --topk 2 --threads 2 --pass fwdbwd [--glu 1] [--skew zipf] [--precision bf16] [--json]

The layer (router excluded, routing given): y[n] = sum_k w[n, k] * Expert_{e(n, k)}(x[n]), each
expert a GPT-2 MLP (GELU, tanh form) or a SwiGLU (--glu 1), biases on every projection
(--bias 1). Each token's K distinct experts are drawn with a fixed seed, uniformly or from a
zipf law (p(e) ~ 1 / (e + 1)^s), and its K weights are positive and sum to 1. Strategies:

    torch_loop         for e in experts: token, slot = where(idx == e); out.index_add_(...)
                       (nanoMoE, HF Mixtral)
    torch_dense_all    every expert on every token times a mostly-zero [T, E] gate (TinyGPT)
    torch_dense_equiv  one nn.Linear FFN with hidden K*h: the active FLOPs, PyTorch's ceiling

Every strategy is first checked against a float64 reference (the gate formulation, itself
checked against the float64 loop), then timed: warm-up, then the median of repeated runs.
--pass fwd runs under torch.no_grad(); --pass fwdbwd runs forward and backward from a fixed
seed gradient dL/dy.
"""
import argparse
import copy
import json
import os
import statistics
import sys
import time

STRATEGIES = ("torch_loop", "torch_dense_all", "torch_dense_equiv")


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tokens", type=int, default=2048)
    p.add_argument("--d", type=int, default=256)
    p.add_argument("--hidden", type=int, default=1024)
    p.add_argument("--experts", type=int, default=4)
    p.add_argument("--topk", type=int, default=2)
    p.add_argument("--glu", type=int, choices=(0, 1), default=0)
    p.add_argument("--bias", type=int, choices=(0, 1), default=1)
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--skew", choices=("uniform", "zipf"), default="uniform")
    p.add_argument("--zipf-s", type=float, default=1.0)
    p.add_argument("--pass", dest="pass_", choices=("fwd", "fwdbwd"), default="fwdbwd")
    p.add_argument("--json", action="store_true")
    p.add_argument("--repeat", type=int, default=5, help="minimum timed runs per strategy")
    p.add_argument("--min-time", type=float, default=0.5, help="minimum timed seconds")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--only", default="", help="comma-separated strategies (default: all)")
    p.add_argument("--no-verify", action="store_true")
    p.add_argument("--tolerance", type=float, default=0,
                   help="verification: max |error| / max |reference| (default 1e-4, 3e-2 at bf16)")
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: the float32 passes run under torch.autocast (bfloat16 products)")
    a = p.parse_args()
    a.tolerance = a.tolerance or (3e-2 if a.precision == "bf16" else 1e-4)
    if a.topk > a.experts:
        p.error(f"--topk {a.topk} exceeds --experts {a.experts}")
    if a.threads == 0:
        a.threads = os.cpu_count() or 1
    return a


args = parse_args()
# PyTorch's BLAS here is OpenBLAS, whose thread pool ignores torch.set_num_threads: fix both
# pools before torch loads.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.threads)

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
import torch.nn.functional as F  # noqa: E402


class Expert(nn.Module):
    def __init__(self, d, hidden, glu, bias):
        super().__init__()
        self.up = nn.Linear(d, hidden, bias=bias)
        self.gate = nn.Linear(d, hidden, bias=bias) if glu else None
        self.down = nn.Linear(hidden, d, bias=bias)

    def forward(self, x):
        if self.gate is not None:
            return self.down(F.silu(self.gate(x)) * self.up(x))
        return self.down(F.gelu(self.up(x), approximate="tanh"))


def moe_loop(x, experts, idx, w):
    """nanoMoE / HF Mixtral: per expert, find its (token, slot) pairs, run, scatter-add."""
    out = torch.zeros_like(x)
    for e, expert in enumerate(experts):
        token, slot = torch.where(idx == e)
        if token.numel() == 0:
            continue
        y = expert(x[token]) * w[token, slot, None]  # (n_e, C)
        out.index_add_(0, token, y.to(out.dtype))  # under autocast y is bf16, out float
    return out


def moe_dense_all(x, experts, idx, w):
    """TinyGPT: every expert on every token, weighted by a dense gate that is mostly zero."""
    gate = torch.zeros(x.shape[0], len(experts), dtype=x.dtype).scatter(1, idx, w)  # (T, E)
    out = 0
    for e, expert in enumerate(experts):
        out = out + expert(x) * gate[:, e:e + 1]
    return out


def make_problem(a):
    g = torch.Generator().manual_seed(a.seed)

    def randomize(module):
        with torch.no_grad():
            for p in module.parameters():
                std = 1.0 / p.shape[1] ** 0.5 if p.dim() == 2 else 0.1
                p.copy_(torch.randn(p.shape, generator=g) * std)
        return module

    experts = nn.ModuleList(
        [randomize(Expert(a.d, a.hidden, a.glu, a.bias)) for _ in range(a.experts)])
    dense = randomize(Expert(a.d, a.topk * a.hidden, a.glu, a.bias))
    e = torch.arange(a.experts, dtype=torch.float64)
    p = 1.0 / (e + 1) ** a.zipf_s if a.skew == "zipf" else torch.ones(a.experts)
    # K distinct experts per token, sequentially without replacement, as moe_dispatch draws.
    idx = torch.multinomial(p.expand(a.tokens, -1), a.topk, replacement=False, generator=g)
    w = torch.rand(a.tokens, a.topk, generator=g) * 0.9 + 0.1
    w = w / w.sum(dim=1, keepdim=True)
    x = torch.randn(a.tokens, a.d, generator=g)
    seed = torch.randn(a.tokens, a.d, generator=g)
    return experts, dense, idx, w, x, seed


def probes(idx, n_experts):
    """The most and the least loaded (non-empty) experts, whose weight gradients are checked."""
    load = torch.bincount(idx.flatten(), minlength=n_experts)
    used = [e for e in range(n_experts) if load[e] > 0]
    most = max(used, key=lambda e: load[e].item())
    least = min(used, key=lambda e: load[e].item())
    return [most] if most == least else [most, least]


def run(strategy, backward, experts, dense, idx, w, x, seed):
    """One pass; returns (y, dx, dw) with dx, dw None for a forward pass. Float32 passes run
    under autocast at --precision bf16 (the float64 references never)."""
    bf16 = args.precision == "bf16" and x.dtype == torch.float32
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        return run_pass(strategy, backward, experts, dense, idx, w, x, seed)


def run_pass(strategy, backward, experts, dense, idx, w, x, seed):
    if not backward:
        with torch.no_grad():
            if strategy == "torch_loop":
                return moe_loop(x, experts, idx, w), None, None
            if strategy == "torch_dense_all":
                return moe_dense_all(x, experts, idx, w), None, None
            return dense(x), None, None
    modules = dense if strategy == "torch_dense_equiv" else experts
    modules.zero_grad(set_to_none=True)
    xv = x.detach().requires_grad_()
    wv = w.detach().requires_grad_()
    if strategy == "torch_loop":
        y = moe_loop(xv, experts, idx, wv)
    elif strategy == "torch_dense_all":
        y = moe_dense_all(xv, experts, idx, wv)
    else:
        y = dense(xv)
    y.backward(seed)
    return y.detach(), xv.grad, wv.grad


def rel_error(a, ref):
    scale = ref.abs().max().item()
    err = (a.double() - ref).abs().max().item()
    return err / scale if scale > 0 else err


def verify(a, problem, strategies, log):
    experts, dense, idx, w, x, seed = problem
    backward = a.pass_ == "fwdbwd"
    probe = probes(idx, a.experts)

    def reference(strategy):
        e64, d64 = copy.deepcopy(experts).double(), copy.deepcopy(dense).double()
        y, dx, dw = run(strategy, backward, e64, d64, idx, w.double(), x.double(), seed.double())
        mods = [d64] if strategy == "torch_dense_equiv" else [e64[p] for p in probe]
        grads = [(m.up.weight.grad, m.down.weight.grad) for m in mods] if backward else []
        return y, dx, dw, grads

    moe_ref = reference("torch_dense_all")
    loop_ref = reference("torch_loop")  # two formulations must agree in float64
    for r, l in zip(moe_ref[:3], loop_ref[:3]):
        if r is not None and rel_error(l, r) > 1e-10:
            sys.exit("torch_moe: verification failed: the float64 loop and gate formulations differ")
    dense_ref = reference("torch_dense_equiv") if "torch_dense_equiv" in strategies else None

    for s in strategies:
        y, dx, dw = run(s, backward, experts, dense, idx, w, x, seed)
        mods = [dense] if s == "torch_dense_equiv" else [experts[p] for p in probe]
        grads = [(m.up.weight.grad, m.down.weight.grad) for m in mods] if backward else []
        ref = dense_ref if s == "torch_dense_equiv" else moe_ref
        checks = [("y", y, ref[0])]
        if backward:
            checks.append(("dx", dx, ref[1]))
            if s != "torch_dense_equiv":
                checks.append(("dw_routing", dw, ref[2]))
            for i, (got, want) in enumerate(zip(grads, ref[3])):
                checks += [(f"dW_up[{i}]", got[0], want[0]), (f"dW_down[{i}]", got[1], want[1])]
        summary = ""
        for what, got, want in checks:
            err = rel_error(got, want)
            if not err <= a.tolerance:
                sys.exit(f"torch_moe: verification failed: {s} {what}: max |error| / max "
                         f"|reference| = {err:.3g} > {a.tolerance:.3g}")
            summary += f" {what} {err:.1e}"
        print(f"verified {s:<18} max rel. error:{summary}", file=log)


def time_strategy(a, strategy, problem):
    backward = a.pass_ == "fwdbwd"
    for _ in range(a.warmup):
        run(strategy, backward, *problem)
    samples = []
    while True:
        t0 = time.perf_counter()
        run(strategy, backward, *problem)
        samples.append(time.perf_counter() - t0)
        n, total = len(samples), sum(samples)
        if n >= a.repeat and total >= a.min_time:
            break
        if (n >= 3 and total >= 20) or n >= 100000:
            break
    return statistics.median(samples), min(samples), len(samples)


def main():
    a = args
    torch.set_num_threads(a.threads)
    strategies = [s for s in STRATEGIES if not a.only or s in a.only.split(",")]
    if not strategies:
        sys.exit(f"torch_moe: no strategy selected by --only {a.only}")
    log = sys.stderr if a.json else sys.stdout
    problem = make_problem(a)
    load = torch.bincount(problem[2].flatten(), minlength=a.experts)
    print(f"torch_moe: T={a.tokens} C={a.d} h={a.hidden} E={a.experts} K={a.topk} glu={a.glu} "
          f"bias={a.bias} skew={a.skew} pass={a.pass_} threads={a.threads} "
          f"precision={a.precision} (torch {torch.__version__}, {torch.get_num_threads()} "
          f"threads)\n"
          f"routing: expert load min {load.min().item()} mean {load.double().mean().item():.1f} "
          f"max {load.max().item()}", file=log)
    if not a.no_verify:
        verify(a, problem, strategies, log)

    forward = 2.0 * a.tokens * a.topk * a.d * a.hidden * (3 if a.glu else 2)
    flops = forward * (3 if a.pass_ == "fwdbwd" else 1)
    results = {s: time_strategy(a, s, problem) for s in strategies}
    if a.json:
        for s, (median, _, _) in results.items():
            print(json.dumps({"strategy": s, "pass": a.pass_, "tokens": a.tokens, "d": a.d,
                              "hidden": a.hidden, "experts": a.experts, "topk": a.topk,
                              "threads": a.threads, "skew": a.skew, "seconds": median,
                              "tokens_per_s": a.tokens / median, "gflops": flops / median / 1e9,
                              "precision": a.precision}))
        return
    base = results.get("torch_dense_equiv", (None,))[0]
    print(f"\n{'strategy':<18} {'median ms':>11} {'best ms':>11} {'runs':>5} {'tokens/s':>12} "
          f"{'GFLOP/s':>9} {'vs dense_equiv':>14}")
    for s, (median, best, runs) in results.items():
        ratio = f"{base / median:.2f}x" if base else "-"
        print(f"{s:<18} {median * 1e3:>11.3f} {best * 1e3:>11.3f} {runs:>5} "
              f"{a.tokens / median:>12.0f} {flops / median / 1e9:>9.1f} {ratio:>14}")


if __name__ == "__main__":
    main()
