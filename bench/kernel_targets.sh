#!/usr/bin/env bash
# The expert kernels' targets, measured in one run: bench/moe_dispatch and bench/torch_moe.py
# on the shapes below, back to back, then one table of the ratios (docs/kernels.md, "All the targets in one run").
#
#   bench/kernel_targets.sh [--threads N] [--json FILE]
#
#   seed      T=2048 d=256 h=1024 E=4 k=2, fwd+bwd: grouped against dense_equiv(openblas), the
#             C++ loop over experts and PyTorch's loop over experts (at N threads and at 1)
#   experts   E=64 against E=4 at h=512, fwd+bwd: the cost of more, smaller experts
#   skew      zipf-routed against uniform tokens, seed shape
#   threads   N threads against 1, seed shape
#   decode    T=1, 4, 8, forward, cold caches: time against the memory-bandwidth bound
#
# THREADS (default 2) and PYTHON (an interpreter with torch, default Debian's /usr/bin/python3)
# set the same. Every JSON line of the runs goes to --json FILE when given. moe_dispatch is
# built in build/default if missing; each of its runs first verifies its strategies. Takes about
# a minute.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/common.sh

threads=${THREADS:-2} python=${PYTHON:-/usr/bin/python3} json_out=""
while (($#)); do
  case $1 in
    --threads) threads=${2:?--threads needs a value} ;;
    --json) json_out=${2:?--json needs a file} ;;
    -h | --help)
      print_help
      exit 0
      ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
  shift 2
done
((threads > 1)) || fail "--threads must be at least 2 (the scaling is against 1 thread)"

bin=build/default/bench/moe_dispatch
[[ -x $bin ]] || cmake --build build/default --target moe_dispatch
"$python" -c "import torch" 2>/dev/null || fail "$python has no torch (set PYTHON)"

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# measure LABEL COMMAND...: runs a benchmark with --json, each of its lines tagged with LABEL.
# Each strategy is timed for at least 2 s (the programs' default is 0.5 s), which steadies the
# medians on a shared machine.
measure() {
  local label=$1
  shift
  echo "  ${label}: $*" >&2
  "$@" --min-time 2 --json 2>"$work/$label.err" | sed "s/^/${label} /" >>"$work/results" ||
    { cat "$work/$label.err" >&2; fail "failed: $*"; }
}

seed=(--tokens 2048 --d 256 --hidden 1024 --experts 4 --topk 2)
echo "measuring (each program verifies its strategies first):" >&2
measure seed "$bin" "${seed[@]}" --threads "$threads" --pass fwdbwd \
  --only "grouped,loop,dense_equiv(openblas)"
measure torch "$python" bench/torch_moe.py "${seed[@]}" --threads "$threads" --pass fwdbwd \
  --only torch_loop
measure torch1 "$python" bench/torch_moe.py "${seed[@]}" --threads 1 --pass fwdbwd \
  --only torch_loop
measure e4 "$bin" --tokens 2048 --d 256 --hidden 512 --experts 4 --topk 2 --threads "$threads" \
  --pass fwdbwd --only grouped
measure e64 "$bin" --tokens 2048 --d 256 --hidden 512 --experts 64 --topk 2 \
  --threads "$threads" --pass fwdbwd --only grouped
measure zipf "$bin" "${seed[@]}" --threads "$threads" --pass fwdbwd --skew zipf --only grouped
measure one "$bin" "${seed[@]}" --threads 1 --pass fwdbwd --only grouped
for tokens in 1 4 8; do
  measure "decode${tokens}" "$bin" --tokens "$tokens" --d 256 --hidden 1024 --experts 4 \
    --topk 2 --threads "$threads" --pass fwd --cold 1 --only grouped
done
[[ -z $json_out ]] || cp "$work/results" "$json_out"

"$python" - "$work/results" "$threads" <<'EOF'
import json, sys

runs = {}
for line in open(sys.argv[1]):
    label, _, text = line.partition(" ")
    record = json.loads(text)
    runs.setdefault(label, {})[record.get("strategy", next(iter(record)))] = record
threads = sys.argv[2]

def ms(label, strategy="grouped"):
    return runs[label][strategy]["seconds"] * 1e3

peak = runs["seed"]["peak_fma_gflops"]["peak_fma_gflops"]
grouped = ms("seed")
rows = [
    ("grouped, seed shape", f"{grouped:.1f} ms, {runs['seed']['grouped']['gflops']:.0f} GFLOP/s "
     f"({runs['seed']['grouped']['gflops'] / peak:.0%} of the {peak:.0f} GFLOP/s FMA peak)", "", ""),
]
def ratio(name, baseline_ms, goal):
    rows.append((name, f"{baseline_ms:.1f} / {grouped:.1f} ms", f"{baseline_ms / grouped:.2f}x", goal))
ratio("vs dense_equiv(openblas)", ms("seed", "dense_equiv(openblas)"), ">= 0.9x")
ratio("vs the C++ loop over experts", ms("seed", "loop"), ">= 2.5x")
ratio(f"vs PyTorch's loop, {threads} threads", ms("torch", "torch_loop"), ">= 3x")
ratio("vs PyTorch's loop, 1 thread", ms("torch1", "torch_loop"), "")
e4, e64 = ms("e4"), ms("e64")
rows.append(("E=64 against E=4, h=512", f"{e64:.1f} / {e4:.1f} ms", f"{e64 / e4:.2f}x", "<= 1.25x"))
rows.append(("zipf against uniform", f"{ms('zipf'):.1f} / {grouped:.1f} ms",
             f"{ms('zipf') / grouped:.2f}x", "<= 1.15x"))
rows.append((f"{threads} threads against 1", f"{ms('one'):.1f} / {grouped:.1f} ms",
             f"{ms('one') / grouped:.2f}x", ">= 1.8x"))
for tokens in (1, 4, 8):
    record = runs[f"decode{tokens}"]["grouped"]
    rows.append((f"decode T={tokens}, cold caches",
                 f"{record['seconds'] * 1e6:.0f} us at {record['runs_read_bandwidth_gbs']:.1f} GB/s",
                 f"{record['bound_fraction']:.0%} of the bound", ">= 60%"))

widths = [max(len(row[i]) for row in rows + [("target", "measured", "ratio", "goal")])
          for i in range(4)]
for row in [("target", "measured", "ratio", "goal")] + rows:
    print("  ".join(cell.ljust(width) for cell, width in zip(row, widths)).rstrip())
EOF
