// minimoe/kernels/isa.hpp: which SIMD code this build compiles, and what the CPU runs.
//
// MINIMOE_FORCE_SCALAR compiles none of it. Otherwise x86-64 builds (GCC, Clang) compile the
// AVX2+FMA, AVX-512 and AVX-512 BF16 kernels with function target attributes, whatever -m flags
// the translation unit has, and pick among them at run time with cpu_has_*(); AArch64 builds
// use NEON, which every AArch64 CPU has.
#pragma once

#if !defined(MINIMOE_FORCE_SCALAR) && defined(__x86_64__) && \
    (defined(__GNUC__) || defined(__clang__))
#define MINIMOE_GEMM_X86 1
#include <immintrin.h>
#define MINIMOE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MINIMOE_TARGET_AVX512 __attribute__((target("avx512f")))
#define MINIMOE_TARGET_AVX512_BF16 __attribute__((target("avx512f,avx512bw,avx512bf16")))
#elif !defined(MINIMOE_FORCE_SCALAR) && defined(__ARM_NEON) && defined(__aarch64__)
#define MINIMOE_GEMM_NEON 1
#include <arm_neon.h>
#endif

namespace minimoe {
namespace detail {

#ifdef MINIMOE_GEMM_X86
inline bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
inline bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
// The dot products of bfloat16 pairs (VDPBF16PS): Cooper Lake, Sapphire Rapids, Zen 4 and later.
inline bool cpu_has_avx512_bf16() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512bf16");
}
#endif

}  // namespace detail
}  // namespace minimoe
