#!/usr/bin/python3
"""bench/torch_decode.py: batch-1 decoding speed of a minimoe preset, as a PyTorch user writes it.

    /usr/bin/python3 bench/torch_decode.py --preset minimoe --prompt 128 --tokens 64 --threads 2 \\
        [--blas-threads 1] [--repeat 3] [--mode inference|no_grad] [--json]

The model is bench/torch_minimoe.py's (bench/torch_train.py's too), randomly initialised (the
speed does not depend on the weights), in eval mode. Each layer's KV cache grows by torch.cat of
the past and the new keys and values, as HF's past_key_values does; the MoE FFN loops over the
experts with index gathering, so at batch 1 only the chosen experts run. Prefill: one forward
over a random --prompt-token prompt fills the cache, with logits at every position as minimoe's
generate computes them; its last argmax is the first new token. Decode: --tokens greedy steps,
each feeding the last token in at the next position (so --prompt + --tokens must fit in the
context). Figures are medians over --repeat runs after --warmup untimed ones.
"""
import argparse
import json
import os
import statistics
import sys
import time

# The preset names of torch_minimoe.PRESETS, which comes with torch (imported after the threads).
PRESET_NAMES = ("minimoe", "tiny")
DEFAULT_LENGTHS = {"minimoe": (128, 64), "tiny": (64, 64)}  # (prompt, tokens)


def parse_args():
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--preset", choices=PRESET_NAMES, default="minimoe")
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
    a.prompt = a.prompt or DEFAULT_LENGTHS[a.preset][0]
    a.tokens = a.tokens or DEFAULT_LENGTHS[a.preset][1]
    if a.prompt < 1 or a.tokens < 1 or a.repeat < 1 or a.warmup < 0:
        p.error("--prompt, --tokens and --repeat must be at least 1, --warmup at least 0")
    a.error = p.error
    return a


def preset_args(a):
    """The preset's sizes in a, once torch_minimoe is imported."""
    a.cfg = PRESETS[a.preset]
    if a.prompt + a.tokens > a.cfg["context"]:
        a.error(f"--prompt {a.prompt} + --tokens {a.tokens} exceeds the preset's context "
                f"{a.cfg['context']}")


args = parse_args()
# PyTorch's BLAS here is OpenBLAS, whose thread pool ignores torch.set_num_threads: fix both
# pools before torch loads.
os.environ["OMP_NUM_THREADS"] = str(args.threads)
os.environ["OPENBLAS_NUM_THREADS"] = str(args.blas_threads)

import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from torch_minimoe import GPT, PRESETS, count_parameters  # noqa: E402

preset_args(args)


def run(model, prompt, tokens):
    """One generation from an empty cache: (prefill seconds, decode seconds, generated ids)."""
    t0 = time.perf_counter()
    logits, past, _ = model(prompt, last_only=True)  # the LM head on the last position only
    next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
    t1 = time.perf_counter()
    out = [next_id]
    for _ in range(tokens):  # each step feeds the last token at the next position
        logits, past, _ = model(next_id, past)
        next_id = logits[:, -1].argmax(dim=-1, keepdim=True)
        out.append(next_id)
    t2 = time.perf_counter()
    return t1 - t0, t2 - t1, torch.cat(out, dim=1)


def main():
    a = args
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    model = GPT(a.cfg).eval()
    params = count_parameters(model, a.preset)
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
