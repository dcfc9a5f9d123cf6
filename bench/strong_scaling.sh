#!/usr/bin/env bash
# Strong scaling of training from 1 to 2 MPI ranks, one thread each, at the same global batch:
# one process, 2 data-parallel ranks, and 2 ranks with each MoE layer's experts split over them
# (--expert-parallel 2). Prints a Markdown table of training tokens/s (docs/distributed.md).
#
#   bench/strong_scaling.sh [--preset tiny|minimoe] [--runs N] [--steps N]
#
# Each configuration runs --runs times (default 3); a run's figure is the median tokens/s over
# its steps after the first (step 0 warms caches up), and the table shows the median run with
# all runs in brackets. MINIMOE is the binary (default build/mpi/cli/minimoe, which must be
# configured with -DMINIMOE_WITH_MPI=ON), MPIRUN the launcher (default mpirun). The machine
# should be idle: a data-parallel step waits for its slowest rank.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
source bench/common.sh

preset=tiny runs=3 steps=
bin=${MINIMOE:-build/mpi/cli/minimoe} mpirun=${MPIRUN:-mpirun}


while (($#)); do
  case $1 in
    --preset) preset=${2:?--preset needs a value} ;;
    --runs) runs=${2:?--runs needs a value} ;;
    --steps) steps=${2:?--steps needs a value} ;;
    -h | --help)
      print_help
      exit 0
      ;;
    *) fail "unknown argument '$1' (see --help)" ;;
  esac
  shift 2
done
case $preset in
  minimoe) context=256 batch=8 tokenizer=gpt2 steps=${steps:-8} ;;
  tiny) context=128 batch=16 tokenizer=bpe steps=${steps:-30} ;;
  *) fail "--preset must be minimoe or tiny, got '$preset'" ;;
esac
((steps > 1 && runs > 0)) || fail "--steps must be at least 2 and --runs at least 1"
[[ -x $bin ]] || fail "no $bin: build it with -DMINIMOE_WITH_MPI=ON (see docs/distributed.md)"
command -v "$mpirun" >/dev/null || fail "no $mpirun (apt-get install openmpi-bin)"
[[ $tokenizer != gpt2 || -f data/gpt2/encoder.json ]] || scripts/fetch_gpt2_vocab.sh

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
write_corpus "$work/corpus.txt"
# one_run NAME RANKS [FLAGS...]: prints the run's median tokens/s over steps 1..last.
one_run() {
  local name=$1 ranks=$2 out=$work/$1
  shift 2
  local cmd=("$bin" train --preset "$preset" --tokenizer "$tokenizer" --corpus "$work/corpus.txt"
    --out "$out" --force --batch-size "$batch" --context "$context" --steps "$steps"
    --eval-every 0 --eval-batches 1 --checkpoint-every 0 --sample-tokens 0 --threads 1 "$@")
  if ((ranks > 1)); then
    cmd=("$mpirun" --allow-run-as-root --oversubscribe --bind-to core -np "$ranks" "${cmd[@]}")
  fi
  "${cmd[@]}" >"$work/$name.log" 2>&1 || {
    cat "$work/$name.log" >&2
    fail "failed: ${cmd[*]}"
  }
  python3 - "$out/metrics.jsonl" <<'EOF'
import json, statistics, sys
rates = [r["tokens_per_s"] for r in map(json.loads, open(sys.argv[1]))
         if r.get("type") == "train" and r["step"] >= 1]
print(round(statistics.median(rates)))
EOF
}

# median of the words on stdin
median() { tr ' ' '\n' | sort -n | awk '{v[NR] = $1} END {print v[int((NR + 1) / 2)]}'; }

declare -A figure
for config in "1:1" "dp:2" "ep:2:--expert-parallel 2"; do
  IFS=: read -r name ranks flags <<<"$config"
  all=()
  for ((r = 0; r < runs; ++r)); do
    # shellcheck disable=SC2086  # the flags are words
    all+=("$(one_run "$name" "$ranks" $flags)")
    echo "$preset $name run $r: ${all[-1]} tokens/s" >&2
  done
  figure[$name]=$(echo "${all[*]}" | median)
  joined="${all[*]}"
  figure[$name.all]=${joined// /, }
done
ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2fx", a / b}'; }

echo "| preset | batch | 1 rank | 2 ranks, data parallel | 2 ranks, expert parallel |"
echo "|---|---|---|---|---|"
echo "| \`$preset\`, $steps steps | $batch x $context | ${figure[1]} (${figure[1.all]}) |" \
  "${figure[dp]} (${figure[dp.all]}), $(ratio "${figure[dp]}" "${figure[1]}") |" \
  "${figure[ep]} (${figure[ep.all]}), $(ratio "${figure[ep]}" "${figure[1]}") |"
