#!/usr/bin/env bash
# Builds the libFuzzer targets of fuzz/ (preset fuzz: clang, ASan + UBSan) and runs each one:
# first on every input of fuzz/regressions/<target>/, which must all pass, then for
# FUZZ_SECONDS (default 30) on a fresh copy of its seed corpus (fuzz/corpus/<target>/ and the
# valid files minimoe_fuzz_seeds writes) in fuzz/corpus-work/, which git ignores. Prints the
# executions and coverage of each target; exits nonzero on any finding, whose input is left in
# fuzz/corpus-work/artifacts/ (fuzz/README.md: adding it as a regression).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

seconds=${FUZZ_SECONDS:-30}
jobs=${FUZZ_JOBS:-2}
bin=build/fuzz/fuzz
work=fuzz/corpus-work

# Inputs longer than a target's seeds need, and dictionaries, per target; a target not listed
# gets 4096 bytes and fuzz/dict/<target>.dict if there is one.
declare -A max_len=(
  [fuzz_safetensors]=32768 [fuzz_checkpoint]=32768 [fuzz_config]=4096
  [fuzz_bpe_file]=16384 [fuzz_gpt2_vocab]=16384 [fuzz_bpe_roundtrip]=4096
)
declare -A dicts=(
  [fuzz_safetensors]="json safetensors config" [fuzz_checkpoint]="json safetensors config checkpoint"
  [fuzz_config]="json config" [fuzz_bpe_file]="json bpe" [fuzz_gpt2_vocab]="json gpt2"
  [fuzz_bpe_roundtrip]="text"
)
options=(-timeout=10 -rss_limit_mb=2048)

scripts/install_deps.sh
echo "=== fuzz: build (${SECONDS} s so far)"
nice -n 10 cmake --preset fuzz >/dev/null
nice -n 10 cmake --build --preset fuzz -j "${jobs}"

rm -rf "${work}"
mkdir -p "${work}/artifacts"
"${bin}/minimoe_fuzz_seeds" "${work}/seeds"

targets=()
for source in fuzz/fuzz_*.cpp; do
  targets+=("$(basename "${source}" .cpp)")
done

# A number of libFuzzer's -print_final_stats=1 report.
final_stat() { sed -n "s/^stat::$1: *//p" "$2"; }

findings=0
summary=()
for target in "${targets[@]}"; do
  regressions=(fuzz/regressions/"${target}"/*)
  if [[ -e "${regressions[0]}" ]]; then
    echo "=== ${target}: ${#regressions[@]} regression inputs (${SECONDS} s so far)"
    if ! nice -n 10 "${bin}/${target}" "${options[@]}" "${regressions[@]}" \
        >"${work}/${target}.regressions.log" 2>&1; then
      tail -n 40 "${work}/${target}.regressions.log"
      echo "${target}: a regression input fails (log: ${work}/${target}.regressions.log)" >&2
      findings=$((findings + 1))
      summary+=("${target}: REGRESSION")
      continue
    fi
  fi

  corpus="${work}/${target}"
  mkdir -p "${corpus}"
  for seeds in "fuzz/corpus/${target}" "${work}/seeds/${target}"; do
    if [[ -d "${seeds}" ]]; then cp "${seeds}"/* "${corpus}"/; fi
  done
  dict="${work}/${target}.dict"
  : >"${dict}"
  for name in ${dicts[$target]:-${target}}; do
    if [[ -f "fuzz/dict/${name}.dict" ]]; then cat "fuzz/dict/${name}.dict" >>"${dict}"; fi
  done
  dict_option=()
  if [[ -s "${dict}" ]]; then dict_option=(-dict="${dict}"); fi

  echo "=== ${target}: ${seconds} s of fuzzing (${SECONDS} s so far)"
  log="${work}/${target}.log"
  status=0
  nice -n 10 "${bin}/${target}" "${options[@]}" -max_len="${max_len[$target]:-4096}" \
    -max_total_time="${seconds}" -print_final_stats=1 "${dict_option[@]}" \
    -artifact_prefix="${work}/artifacts/${target}-" "${corpus}" >"${log}" 2>&1 || status=$?
  coverage=$(grep -E '^#[0-9]+.*cov: ' "${log}" | tail -n 1 | grep -oE 'cov: [0-9]+ ft: [0-9]+' || true)
  line="${target}: $(final_stat number_of_executed_units "${log}") executions, $(final_stat average_exec_per_sec "${log}")/s, ${coverage:-no coverage}, corpus $(find "${corpus}" -type f | wc -l) files"
  if ((status != 0)); then
    tail -n 60 "${log}"
    echo "${target}: FINDING (exit ${status}; log ${log}; input in ${work}/artifacts/)" >&2
    findings=$((findings + 1))
    line+=" FINDING"
  fi
  echo "${line}"
  summary+=("${line}")
done

echo "=== fuzz summary (${SECONDS} s)"
printf '%s\n' "${summary[@]}"
if ((findings > 0)); then
  echo "${findings} fuzz target(s) with findings" >&2
  exit 1
fi
