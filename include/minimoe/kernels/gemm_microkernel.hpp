// minimoe/kernels/gemm_microkernel.hpp: register-blocked GEMM micro-kernels, one per ISA, each
// beside the portable reference they are tested against.
//
// A micro-kernel computes one tile of at most MR rows and exactly NR columns over a block of kc:
//
//   C[i, j] (+)= sum_p A(i, p) B[p, j]          i < m <= MR, j < NR, p < kc
//   A(i, p) = a[i][p * a_step]                  each row through its own pointer
//   B[p, j] = b[p * NR + j]                     a packed panel (kernels/pack.hpp)
//
// Rows through pointers make the gather of routed tokens free (a_step = 1, a[i] = token row)
// and let the same kernel read A^T straight from a row-major matrix (a[i] = column i,
// a_step = its row stride). The m < MR tails of ragged expert groups get their own
// instantiation, so no row is ever padded. The accumulators stay in registers for all of kc.
//
//   const GemmKernel<float>& k = gemm_kernel<float>();    // the best one for this CPU
//   k.rows[m](kc, a_rows, 1, packed_b, c, ldc, false);   // an m x k.nr tile of C
//
// Selection: MINIMOE_FORCE_SCALAR gives the portable kernel everywhere. Otherwise ARM builds
// use NEON (8 x 12) and x86-64 builds (GCC, Clang) compile both the AVX2+FMA (6 x 16) and the
// AVX-512 (8 x 32) kernels with function target attributes, whatever -m flags the translation
// unit has, and take the widest one the CPU supports at run time. That keeps a GCC 12 build,
// which CMake restricts to AVX2 (GCC 12 miscompiles generic code under -mavx512f), on the
// AVX-512 kernel on machines that have it; only this intrinsic code is compiled for AVX-512.
// Every other type (double) uses the portable kernel.
#pragma once

#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#if !defined(MINIMOE_FORCE_SCALAR) && defined(__x86_64__) && \
    (defined(__GNUC__) || defined(__clang__))
#define MINIMOE_GEMM_X86 1
#include <immintrin.h>
#define MINIMOE_TARGET_AVX2 __attribute__((target("avx2,fma")))
#define MINIMOE_TARGET_AVX512 __attribute__((target("avx512f")))
#elif !defined(MINIMOE_FORCE_SCALAR) && defined(__ARM_NEON) && defined(__aarch64__)
#define MINIMOE_GEMM_NEON 1
#include <arm_neon.h>
#endif

namespace minimoe {

inline constexpr int kGemmMaxMR = 8;

template <typename T>
using MicroKernelFn = void (*)(int64_t kc, const T* const* a, int64_t a_step, const T* b, T* c,
                               int64_t ldc, bool accumulate);

template <typename T>
struct GemmKernel {
  const char* name = "";
  int mr = 0, nr = 0;
  MicroKernelFn<T> rows[kGemmMaxMR + 1] = {};  // rows[m] computes an m-row tile, 1 <= m <= mr
};

namespace detail {

// The portable reference: plain loops, which compilers may vectorise over j.
template <typename T, int NR, int M>
void microkernel_ref(int64_t kc, const T* const* a, int64_t a_step, const T* b, T* c, int64_t ldc,
                     bool accumulate) {
  T acc[M][NR];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : T(0);
  for (int64_t p = 0; p < kc; ++p) {
    const T* bp = b + p * NR;
    for (int i = 0; i < M; ++i) {
      const T ai = a[i][p * a_step];
      for (int j = 0; j < NR; ++j) acc[i][j] += ai * bp[j];
    }
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = acc[i][j];
}

template <typename T, int NR, int... M>
constexpr GemmKernel<T> make_ref_kernel(std::integer_sequence<int, M...>) {
  return {"scalar", sizeof...(M), NR, {nullptr, &microkernel_ref<T, NR, M + 1>...}};
}

#ifdef MINIMOE_GEMM_X86
// 6 x 16: 12 ymm accumulators, two B vectors and one broadcast A value.
template <int M>
MINIMOE_TARGET_AVX2 void microkernel_avx2(int64_t kc, const float* const* a, int64_t a_step,
                                          const float* b, float* c, int64_t ldc, bool accumulate) {
  __m256 c0[M], c1[M];
  const float* ap[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    ap[i] = a[i];
    c0[i] = accumulate ? _mm256_loadu_ps(c + i * ldc) : _mm256_setzero_ps();
    c1[i] = accumulate ? _mm256_loadu_ps(c + i * ldc + 8) : _mm256_setzero_ps();
  }
  for (int64_t p = 0, off = 0; p < kc; ++p, off += a_step, b += 16) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m256 ai = _mm256_broadcast_ss(ap[i] + off);
      c0[i] = _mm256_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm256_fmadd_ps(ai, b1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    _mm256_storeu_ps(c + i * ldc, c0[i]);
    _mm256_storeu_ps(c + i * ldc + 8, c1[i]);
  }
}

// 8 x 32: 16 zmm accumulators (enough in flight for two FMA pipes of latency 4).
template <int M>
MINIMOE_TARGET_AVX512 void microkernel_avx512(int64_t kc, const float* const* a, int64_t a_step,
                                              const float* b, float* c, int64_t ldc,
                                              bool accumulate) {
  __m512 c0[M], c1[M];
  const float* ap[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    ap[i] = a[i];
    c0[i] = accumulate ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
    c1[i] = accumulate ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t p = 0, off = 0; p < kc; ++p, off += a_step, b += 32) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m512 ai = _mm512_set1_ps(ap[i][off]);
      c0[i] = _mm512_fmadd_ps(ai, b0, c0[i]);
      c1[i] = _mm512_fmadd_ps(ai, b1, c1[i]);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    _mm512_storeu_ps(c + i * ldc, c0[i]);
    _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
  }
}

template <int... M>
constexpr GemmKernel<float> make_avx2_kernel(std::integer_sequence<int, M...>) {
  return {"avx2", sizeof...(M), 16, {nullptr, &microkernel_avx2<M + 1>...}};
}
template <int... M>
constexpr GemmKernel<float> make_avx512_kernel(std::integer_sequence<int, M...>) {
  return {"avx512", sizeof...(M), 32, {nullptr, &microkernel_avx512<M + 1>...}};
}

inline bool cpu_has_avx2_fma() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
}
inline bool cpu_has_avx512() {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx512f");
}
#endif  // MINIMOE_GEMM_X86

#ifdef MINIMOE_GEMM_NEON
// 8 x 12: 24 of the 32 q registers accumulate, three hold the B row.
template <int M>
void microkernel_neon(int64_t kc, const float* const* a, int64_t a_step, const float* b, float* c,
                      int64_t ldc, bool accumulate) {
  float32x4_t acc[M][3];
  const float* ap[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    ap[i] = a[i];
    for (int v = 0; v < 3; ++v)
      acc[i][v] = accumulate ? vld1q_f32(c + i * ldc + 4 * v) : vdupq_n_f32(0.0f);
  }
  for (int64_t p = 0, off = 0; p < kc; ++p, off += a_step, b += 12) {
    const float32x4_t b0 = vld1q_f32(b), b1 = vld1q_f32(b + 4), b2 = vld1q_f32(b + 8);
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const float32x4_t ai = vdupq_n_f32(ap[i][off]);
      acc[i][0] = vfmaq_f32(acc[i][0], ai, b0);
      acc[i][1] = vfmaq_f32(acc[i][1], ai, b1);
      acc[i][2] = vfmaq_f32(acc[i][2], ai, b2);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i)
    for (int v = 0; v < 3; ++v) vst1q_f32(c + i * ldc + 4 * v, acc[i][v]);
}

template <int... M>
constexpr GemmKernel<float> make_neon_kernel(std::integer_sequence<int, M...>) {
  return {"neon", sizeof...(M), 12, {nullptr, &microkernel_neon<M + 1>...}};
}
#endif  // MINIMOE_GEMM_NEON

}  // namespace detail

// The portable kernel for T (4 x 8).
template <typename T>
const GemmKernel<T>& gemm_kernel_ref() {
  static const GemmKernel<T> kernel =
      detail::make_ref_kernel<T, 8>(std::make_integer_sequence<int, 4>{});
  return kernel;
}

// Every kernel this build and this CPU can run, the reference first (for tests and benches).
template <typename T>
std::vector<GemmKernel<T>> gemm_kernels() {
  std::vector<GemmKernel<T>> kernels{gemm_kernel_ref<T>()};
  if constexpr (std::is_same_v<T, float>) {
#ifdef MINIMOE_GEMM_X86
    if (detail::cpu_has_avx2_fma())
      kernels.push_back(detail::make_avx2_kernel(std::make_integer_sequence<int, 6>{}));
    if (detail::cpu_has_avx512())
      kernels.push_back(detail::make_avx512_kernel(std::make_integer_sequence<int, 8>{}));
#endif
#ifdef MINIMOE_GEMM_NEON
    kernels.push_back(detail::make_neon_kernel(std::make_integer_sequence<int, 8>{}));
#endif
  }
  return kernels;
}

// The kernel the library uses: the widest one available.
template <typename T>
const GemmKernel<T>& gemm_kernel() {
  static const GemmKernel<T> kernel = gemm_kernels<T>().back();
  return kernel;
}

}  // namespace minimoe
