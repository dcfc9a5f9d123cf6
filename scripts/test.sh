#!/usr/bin/env bash
# The whole test suite, from a fresh machine: dependencies, then build and test in the release,
# sanitizer and scalar configurations (see CMakePresets.json), the kernel tests on emulated
# CPUs, the fuzzers' smoke runs, then the formatting check.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install_deps.sh
scripts/fetch_gpt2_vocab.sh  # GPT-2's vocabulary, for the tests/text GPT-2 vectors

jobs=$(nproc)
# The release build compiles and runs everything; the others build what they check, which keeps
# CI under its time limit: asan every test area and the command line (not the kill/resume test,
# CMakePresets.json), scalar and tsan the areas with SIMD, OpenMP or threads that their build
# presets name.
declare -A preset_flags=(
  [default]="-DMINIMOE_WITH_MPI=ON"  # and the multi-process training tests (tests/distributed)
  [asan]="-DMINIMOE_BUILD_BENCH=OFF -DMINIMOE_BUILD_EXAMPLES=OFF"
  [scalar]="-DMINIMOE_BUILD_BENCH=OFF -DMINIMOE_BUILD_EXAMPLES=OFF -DMINIMOE_BUILD_CLI=OFF"
  [tsan]="-DMINIMOE_BUILD_BENCH=OFF -DMINIMOE_BUILD_EXAMPLES=OFF -DMINIMOE_BUILD_CLI=OFF"
)
# Unity builds: each test area and the command-line tool compile as one source, so the
# templates they share are instantiated and optimised once, not once per file (about half the
# compile time).
common_flags="-DCMAKE_UNITY_BUILD=ON -DCMAKE_UNITY_BUILD_BATCH_SIZE=16"
for preset in default asan scalar tsan; do
  echo "=== preset ${preset} (${SECONDS} s so far)"
  # shellcheck disable=SC2086  # the flags are words
  cmake --preset "${preset}" ${common_flags} ${preset_flags[$preset]}
  cmake --build --preset "${preset}" -j "${jobs}"
  # The test presets set OMP_WAIT_POLICY=passive: ctest runs tests side by side, each with a
  # thread per core, and threads spinning at a barrier for a descheduled partner made the
  # trainer tests up to 100 times slower.
  # The package tests check installation and add_subdirectory, which do not depend on the
  # build's flags: the release build runs them.
  package_filter=()
  if [[ "${preset}" != default ]]; then package_filter=(-LE package); fi
  ctest --preset "${preset}" -j "${jobs}" "${package_filter[@]}"
done
# The kernel tests on the CPUs this one is not (AArch64 with NEON, x86-64 without AVX-512),
# under emulation.
scripts/test_emulated.sh
# A smoke run per target (10 s keeps CI within its 30 minutes on the slower 2-core machines);
# fuzz/README.md has the long runs.
FUZZ_SECONDS=${FUZZ_SECONDS:-10} scripts/fuzz.sh

# Formats the tracked sources in place and fails if that changed anything; a diff the tree
# already had before formatting is not counted, so uncommitted work does not fail the check.
check_format() {
  if ! git rev-parse --is-inside-work-tree >/dev/null 2>&1; then
    echo "=== not a git checkout: skipping the clang-format check"
    return 0
  fi
  echo "=== clang-format"
  local files=()
  mapfile -d '' files < <(git ls-files -z -- include tests examples bench tools cli fuzz |
                          grep -zE '\.(hpp|cpp)$')
  ((${#files[@]} > 0)) || return 0
  local before
  before=$(git diff -- "${files[@]}")
  clang-format -i "${files[@]}"
  if [[ "$(git diff -- "${files[@]}")" != "${before}" ]]; then
    git --no-pager diff -- "${files[@]}"
    echo "clang-format changed the files above: review and commit the formatting" >&2
    return 1
  fi
}
check_format
