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

options=(-timeout=10 -rss_limit_mb=2048)

scripts/install_deps.sh
echo "=== fuzz: build (${SECONDS} s so far)"
nice -n 10 cmake --preset fuzz >/dev/null
nice -n 10 cmake --build --preset fuzz -j "${jobs}"

rm -rf "${work}"
mkdir -p "${work}/artifacts"
"${bin}/minimoe_fuzz_seeds" "${work}/seeds"

# A number of libFuzzer's -print_final_stats=1 report.
final_stat() { sed -n "s/^stat::$1: *//p" "$2"; }

# The targets fuzz/CMakeLists.txt adds, a line each: name, max_len, dictionaries.
mapfile -t fuzzers <"${bin}/fuzzers.txt"
findings=0
summary=()
for fuzzer in "${fuzzers[@]}"; do
  read -r target max_len dict_names <<<"${fuzzer}"
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
  for name in ${dict_names}; do
    if [[ -f "fuzz/dict/${name}.dict" ]]; then cat "fuzz/dict/${name}.dict" >>"${dict}"; fi
  done
  dict_option=()
  if [[ -s "${dict}" ]]; then dict_option=(-dict="${dict}"); fi

  echo "=== ${target}: ${seconds} s of fuzzing (${SECONDS} s so far)"
  log="${work}/${target}.log"
  status=0
  nice -n 10 "${bin}/${target}" "${options[@]}" -max_len="${max_len}" \
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
