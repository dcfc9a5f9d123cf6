#!/usr/bin/python3
"""bench/torch_train.py: training speed of a minimoe preset written as a PyTorch user would.

    /usr/bin/python3 bench/torch_train.py --preset minimoe --batch 8 --context 256 --steps 10 \\
        --warmup 2 --threads 2 [--blas-threads 1] [--precision bf16] [--json]

The model is the PyTorch MiniMoE layout of bench/torch_minimoe.py (the architecture of
tools/torch_reference.py, in nn.Module form): token and learned position embeddings,
pre-LayerNorm blocks of causal attention (masked softmax) and an MoE FFN of GELU experts, softmax
router, top-k with renormalised weights, a loop over experts with index gathering and
index_add_, the Switch load-balancing loss, a tied LM head, cross-entropy, AdamW with gradient
clipping. With --precision bf16 the forward runs under torch.autocast("cpu", bfloat16), as a
PyTorch user would speed it up. It trains on random token ids (the speed does not depend on the
data): --warmup steps, then --steps timed steps; tokens/s = batch * context * steps / seconds.
"""
import argparse
import json
import os
import statistics
import sys
import time

# The preset names of torch_minimoe.PRESETS, which comes with torch (imported after the threads).
PRESET_NAMES = ("minimoe", "tiny")
AUX_LOSS_WEIGHT = 0.01


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=PRESET_NAMES, default="minimoe")
    p.add_argument("--vocab", type=int, default=0,
                   help="override the preset's vocabulary (minimoe sizes it by its tokenizer)")
    p.add_argument("--batch", type=int, default=8)
    p.add_argument("--context", type=int, default=0, help="0: the preset's context")
    p.add_argument("--steps", type=int, default=10, help="timed steps")
    p.add_argument("--warmup", type=int, default=2, help="untimed steps first")
    p.add_argument("--threads", type=int, default=0, help="0: all cores")
    p.add_argument("--blas-threads", type=int, default=0, help="OpenBLAS threads; 0: --threads")
    p.add_argument("--seed", type=int, default=1)
    p.add_argument("--precision", choices=("fp32", "bf16"), default="fp32",
                   help="bf16: forward under torch.autocast (bfloat16 matrix products)")
    p.add_argument("--json", action="store_true")
    a = p.parse_args()
    a.threads = a.threads or os.cpu_count() or 1
    a.blas_threads = a.blas_threads or a.threads
    if a.steps < 1:
        p.error("--steps must be at least 1")
    a.error = p.error
    return a


def preset_args(a):
    """The preset's sizes in a, once torch_minimoe is imported."""
    a.cfg = dict(PRESETS[a.preset])
    a.cfg["vocab"] = a.vocab or a.cfg["vocab"]
    a.context = a.context or a.cfg["context"]
    if a.context > a.cfg["context"]:
        a.error(f"--context {a.context} exceeds the preset's {a.cfg['context']}")


args = parse_args()
# PyTorch's BLAS here is OpenBLAS, whose thread pool ignores torch.set_num_threads: fix both
# pools before torch loads.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_minimoe import GPT, PRESETS, count_parameters  # noqa: E402

preset_args(args)


def loss_of(model, ids):
    """Next-token cross-entropy of ids[:, 1:] given ids[:, :-1], plus the weighted aux loss."""
    logits, _, aux = model(ids[:, :-1])
    ce = F.cross_entropy(logits.view(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
    return ce + AUX_LOSS_WEIGHT * aux


def main():
    a = args
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.cfg, init_std=0.02)
    # The preset's count unless --vocab changes it.
    params = count_parameters(model, a.preset if a.cfg["vocab"] == PRESETS[a.preset]["vocab"]
                              else None)
    # minimoe's defaults: lr 1e-3, betas (0.9, 0.95), weight decay 0.1, gradient norm 1.
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, betas=(0.9, 0.95), weight_decay=0.1)
    log = sys.stderr if a.json else sys.stdout
    print(f"torch_train: preset {a.preset} vocab {a.cfg['vocab']}, {params:,} parameters, "
          f"batch {a.batch} x context {a.context}, {torch.get_num_threads()} threads, "
          f"OpenBLAS {a.blas_threads}, {a.precision} (torch {torch.__version__})", file=log)

    def step():
        ids = torch.randint(a.cfg["vocab"], (a.batch, a.context + 1))
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=a.precision == "bf16"):
            loss = loss_of(model, ids)
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
                          "blas_threads": a.blas_threads, "precision": a.precision,
                          "batch": a.batch,
                          "context": a.context, "steps": a.steps,
                          "tokens_per_s": tokens_per_s, "params": params}))
    else:
        print(f"{tokens_per_s:.0f} tokens/s (median step {statistics.median(seconds):.3f} s)")


if __name__ == "__main__":
    main()
