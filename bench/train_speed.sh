#!/usr/bin/env bash
# Training speed of minimoe against the same model in PyTorch (bench/torch_train.py), as
# tokens/s of whole optimizer steps (forward, backward, clipping, AdamW), batch 8.
#
#   bench/train_speed.sh [--preset minimoe|tiny] [--steps N] [--torch-steps N] [--threads N]
#                        [--precision fp32|bf16]
#
# The same settings come from PRESET, STEPS (minimoe, default 20), TORCH_STEPS (default 10),
# THREADS (default 2), PRECISION (default fp32) and PYTHON (an interpreter with torch, default
# Debian's /usr/bin/python3). At bf16 both sides multiply bfloat16 operands: minimoe with
# --precision bf16, PyTorch under torch.autocast.
# Both figures are tokens / seconds over the steps after the first 2 (warm-up). PyTorch runs
# at 1 thread, at THREADS threads, and at THREADS threads with one OpenBLAS thread (its pool
# otherwise fights PyTorch's); the ratio is against the best of the three. Runs in a temporary
# directory: only the minimoe binary (built if missing) and the GPT-2 vocabulary (fetched if
# missing) are left behind.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/common.sh

preset=${PRESET:-minimoe} steps=${STEPS:-20} torch_steps=${TORCH_STEPS:-10}
threads=${THREADS:-2} precision=${PRECISION:-fp32} python=${PYTHON:-/usr/bin/python3}


while (($#)); do
  case $1 in
    --preset) preset=${2:?--preset needs a value} ;;
    --steps) steps=${2:?--steps needs a value} ;;
    --torch-steps) torch_steps=${2:?--torch-steps needs a value} ;;
    --threads) threads=${2:?--threads needs a value} ;;
    --precision) precision=${2:?--precision needs a value} ;;
    -h | --help)
      print_help
      exit 0
      ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
  shift 2
done
case $preset in
  minimoe) context=256 tokenizer=gpt2 ;;
  tiny) context=128 tokenizer=bpe ;;  # trained on the corpus: its vocabulary may come out smaller
  *) fail "--preset must be minimoe or tiny, got '$preset'" ;;
esac
[[ $precision == fp32 || $precision == bf16 ]] ||
  fail "--precision must be fp32 or bf16, got '$precision'"
((steps > 2)) || fail "--steps must exceed the 2 steps that are not counted"

bin=build/default/cli/minimoe
[[ -x $bin ]] || cmake --build build/default --target minimoe_cli
[[ $tokenizer != gpt2 || -f data/gpt2/encoder.json ]] || scripts/fetch_gpt2_vocab.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

# Runs a command with its output in a log, shown only when it fails.
logged() {
  local log=$work/$1.log
  shift
  "$@" >"$log" 2>&1 || { cat "$log" >&2; fail "failed: $*"; }
}

write_corpus "$work/corpus.txt"

echo "minimoe: $steps steps of preset $preset, $threads threads, $precision..." >&2
logged minimoe "$bin" train --preset "$preset" --tokenizer "$tokenizer" \
  --corpus "$work/corpus.txt" --out "$work/run" --batch-size 8 --context "$context" \
  --steps "$steps" --eval-every 0 --eval-batches 1 --checkpoint-every 0 --sample-tokens 0 \
  --threads "$threads" --precision "$precision"
vocab=$(sed -n 's/^model: .* vocab \([0-9]*\):.*/\1/p' "$work/minimoe.log")
[[ -n $vocab ]] || fail "no vocabulary size in minimoe's log"
logged inspect "$bin" inspect "$work/run/model.safetensors"

configs=("1 1")
((threads == 1)) || configs+=("$threads $threads" "$threads 1")
for config in "${configs[@]}"; do
  read -r t blas <<<"$config"
  echo "torch: $torch_steps steps, $t threads, OpenBLAS $blas, $precision..." >&2
  logged torch "$python" bench/torch_train.py --preset "$preset" --vocab "$vocab" --batch 8 \
    --context "$context" --steps "$torch_steps" --warmup 2 --threads "$t" --blas-threads "$blas" \
    --precision "$precision" --json
  tail -n 1 "$work/torch.log" >>"$work/torch.jsonl"
done

"$python" - "$work/run/metrics.jsonl" "$work/torch.jsonl" "$work/inspect.log" \
  "$preset" "$vocab" "$context" "$threads" "$precision" <<'EOF'
import json, re, statistics, sys
metrics, torch_runs, inspect, preset, vocab, context, threads, precision = sys.argv[1:]
steps = [r for r in map(json.loads, open(metrics)) if r["type"] == "train" and r["step"] >= 2]
# Every step has the same tokens: their harmonic mean is tokens / seconds, as for torch.
ours = statistics.harmonic_mean([r["tokens_per_s"] for r in steps])
runs = [json.loads(line) for line in open(torch_runs)]
params = int(re.search(r"parameters: (\d+) total", open(inspect).read()).group(1))
print(f"preset {preset} (vocab {vocab}), batch 8 x context {context}, {precision} matrix "
      f"products; parameters: minimoe {params:,}, torch {runs[0]['params']:,}")
print(f"{'implementation':<34} {'tokens/s':>9} {'timed steps':>12}")
print(f"{f'minimoe, {threads} threads':<34} {ours:>9.0f} {len(steps):>12}")
for r in runs:
    name = f"torch, {r['threads']} threads, OpenBLAS {r['blas_threads']}"
    print(f"{name:<34} {r['tokens_per_s']:>9.0f} {r['steps']:>12}")
best = max(runs, key=lambda r: r["tokens_per_s"])
print(f"minimoe / best torch: {ours / best['tokens_per_s']:.2f}x")
if params != runs[0]["params"]:
    sys.exit("train_speed.sh: the two models differ in size")
EOF
