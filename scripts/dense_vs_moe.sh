#!/usr/bin/env bash
# The dense-versus-MoE experiment of docs/results.md: the `dense` preset and the `tiny` MoE
# preset with 4, 8 and 16 experts (top-2 each, so every model has the same active FLOPs per
# token), trained for the same steps on the same tokens, then compared, and the 4-expert
# model's routing analysed per domain.
#
#   scripts/dense_vs_moe.sh            # STEPS=1500 by default; runs land in runs/dense-vs-moe/
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

steps=${STEPS:-1500}
out=runs/dense-vs-moe
minimoe=build/default/cli/minimoe
scripts/install_deps.sh
scripts/fetch_data.sh
cmake --preset default >/dev/null
cmake --build --preset default -j "$(nproc)" --target minimoe_cli

# One seed for all: the same tokenizer (trained on the same text), the same batches.
common=(--data data/corpus --steps "$steps" --eval-every 100 --eval-batches 8 --seed 1
        --sample-tokens 0 --force)
train() {
  local name=$1
  shift
  echo "=== $name" >&2
  "$minimoe" train "${common[@]}" --out "$out/$name" "$@" 2>&1 | grep -E "^(model|trained)" >&2
}
train dense --preset dense
train moe-4e --preset tiny
train moe-8e --preset tiny --moe-experts 8
train moe-16e --preset tiny --moe-experts 16

"$minimoe" compare "$out/dense" "$out/moe-4e" "$out/moe-8e" "$out/moe-16e" \
  --out "$out/compare.svg"
"$minimoe" analyze --ckpt "$out/moe-4e/model.safetensors" --data data/corpus \
  --svg "$out/routing.svg"
