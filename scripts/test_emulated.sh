#!/usr/bin/env bash
# The kernel tests (tests/kernels) on CPUs other than the one running them, under QEMU's
# user-mode emulation:
#   aarch64   the NEON micro-kernels, row-dot and int8 kernels, Eigen's NEON exp and tanh;
#   avx2      x86-64 with AVX2 and FMA but no AVX-512: the avx2 kernels as the fastest ones, and
#             Eigen's AVX code in the portable exp and tanh, which an AVX-512 CPU never runs;
#   baseline  x86-64 with SSE2 only: the scalar kernels beside Eigen's SSE code.
# Each build must report the kernels it is meant to run, so an emulator that offered more (or
# less) than asked fails the script instead of testing the wrong code.
#
# The tests are built with plain compiler calls, without -march: what they include is
# header-only (fmt in its header-only mode), so the cross build needs no AArch64 packages.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

scripts/install_deps.sh g++-aarch64-linux-gnu qemu-user-static

out=build/emulated
mkdir -p "${out}/include"
# The cross compiler must not search the host's /usr/include (its C library headers are
# x86-64's): a folder with links to the header-only libraries alone.
for dir in /usr/include/eigen3/Eigen /usr/include/fmt /usr/include/doctest; do
  ln -sfn "${dir}" "${out}/include/"
done
# -Wno-array-bounds: GCC 12 reports Eigen's packet loads from short vectors as out of bounds
# (CMakeLists.txt).
flags=(-std=c++17 -O2 -fopenmp -Wall -Wextra -Wpedantic -Werror -Wno-array-bounds
       -DFMT_HEADER_ONLY -Iinclude -I"${out}/include")
sources=(tests/main.cpp tests/kernels/*.cpp)

echo "=== emulated: build for aarch64 and x86-64 (${SECONDS} s so far)"
aarch64-linux-gnu-g++ "${flags[@]}" "${sources[@]}" -o "${out}/test_kernels_aarch64" &
aarch64_build=$!
g++ "${flags[@]}" "${sources[@]}" -o "${out}/test_kernels_x86_64"
wait "${aarch64_build}"

# run <name> <expected kernel list> <command...>: runs the tests, and checks that the float
# kernels they report are the expected ones.
run() {
  local name=$1 expected=$2
  shift 2
  echo "=== emulated: ${name} (${SECONDS} s so far)"
  local log="${out}/${name}.log"
  if ! OMP_NUM_THREADS=2 "$@" >"${log}" 2>&1; then
    cat "${log}"
    echo "the kernel tests failed on the emulated ${name} CPU" >&2
    return 1
  fi
  tail -n 3 "${log}"
  if ! grep -qF "kernels: ${expected}" "${log}"; then
    grep -F "kernels:" "${log}" | sort -u
    echo "the emulated ${name} CPU ran other float kernels than: ${expected}" >&2
    return 1
  fi
}

run aarch64 "scalar (4x8) neon (8x12) scalar-bf16 (4x8)" \
  qemu-aarch64-static -L /usr/aarch64-linux-gnu "${out}/test_kernels_aarch64"
# QEMU's Haswell model names a few system features its emulator lacks; it warns about each.
run avx2 "scalar (4x8) avx2 (6x16) scalar-bf16 (4x8)" \
  qemu-x86_64-static -cpu Haswell "${out}/test_kernels_x86_64"
run baseline "scalar (4x8) scalar-bf16 (4x8)" \
  qemu-x86_64-static -cpu qemu64 "${out}/test_kernels_x86_64"
