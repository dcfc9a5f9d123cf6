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
// Beside each micro-kernel, a row-dot kernel for products with at most MR rows (decoding: an
// expert sees a token or a few), where packing B would cost more traffic than the product:
//
//   C[i, j] = sum_p a[i][p] w[j * ldw + p]      i < m <= MR, j < ncols, p < k
//
// It streams W in its Linear layout ([out, in], rows contiguous) exactly once, each loaded
// vector feeding the m rows, with several W rows in flight and their sums reduced together.
//
//   k.dot(kc, a_rows, m, w, ldw, ncols, c, ldc);           // an m x ncols block of C
//
// Selection: MINIMOE_FORCE_SCALAR gives the portable kernel everywhere. Otherwise ARM builds
// use NEON (8 x 12) and x86-64 builds (GCC, Clang) compile both the AVX2+FMA (6 x 16) and the
// AVX-512 (8 x 32) kernels with function target attributes, whatever -m flags the translation
// unit has, and take the widest one the CPU supports at run time. That keeps a GCC 12 build,
// which CMake restricts to AVX2 (GCC 12 miscompiles generic code under -mavx512f), on the
// AVX-512 kernel on machines that have it; only this intrinsic code is compiled for AVX-512.
// Every other type (double) uses the portable kernel. At MatmulPrecision::bf16, float products
// take a bf16 kernel instead (kernels/bf16.hpp): AVX-512 BF16 (8 x 32) where the CPU has it,
// else the portable one.
#pragma once

#include <algorithm>
#include <atomic>
#include <cmath>
#include <cstdint>
#include <iterator>
#include <type_traits>
#include <utility>
#include <vector>

#include "minimoe/kernels/bf16.hpp"
#include "minimoe/kernels/isa.hpp"

namespace minimoe {

inline constexpr int kGemmMaxMR = 8;

template <typename T>
using MicroKernelFn = void (*)(int64_t kc, const T* const* a, int64_t a_step, const T* b, T* c,
                               int64_t ldc, bool accumulate);

template <typename T>
using DotKernelFn = void (*)(int64_t k, const T* const* a, int m, const T* w, int64_t ldw,
                             int64_t ncols, T* c, int64_t ldc);

// A float kernel fills `rows`; a bf16 one (float in and out, its operands rounded to bfloat16
// while they are packed: kernels/bf16.hpp) fills `bf16_rows` instead, and its `dot` is a float
// one (the decode-size products stream W as it is stored).
template <typename T>
struct GemmKernel {
  const char* name = "";
  int mr = 0, nr = 0;
  MicroKernelFn<T> rows[kGemmMaxMR + 1] = {};  // rows[m] computes an m-row tile, 1 <= m <= mr
  DotKernelFn<T> dot = nullptr;                // m <= mr rows against W rows, see above
  Bf16MicroKernelFn bf16_rows[kGemmMaxMR + 1] = {};

  bool bf16() const { return bf16_rows[1] != nullptr; }
};

namespace detail {

// a * b + c, fused where the target fuses it cheaply. Left to the compiler, contraction into
// fused multiply-adds came out different for different positions of a tile, so the rounding of
// an output depended on where its tile started (gemm_streaming_w swaps rows and columns).
template <typename T>
inline T multiply_add(T a, T b, T c) {
#if defined(FP_FAST_FMA) && defined(FP_FAST_FMAF)
  return std::fma(a, b, c);
#else
  return a * b + c;
#endif
}

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
      for (int j = 0; j < NR; ++j) acc[i][j] = multiply_add(ai, bp[j], acc[i][j]);
    }
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = acc[i][j];
}

template <typename T>
void dot_ref(int64_t k, const T* const* a, int m, const T* w, int64_t ldw, int64_t ncols, T* c,
             int64_t ldc) {
  for (int64_t j = 0; j < ncols; ++j, w += ldw)
    for (int i = 0; i < m; ++i) {
      T sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += a[i][p] * w[p];
      c[i * ldc + j] = sum;
    }
}

template <typename T, int NR, int... M>
constexpr GemmKernel<T> make_ref_kernel(std::integer_sequence<int, M...>) {
  return {"scalar", sizeof...(M), NR, {nullptr, &microkernel_ref<T, NR, M + 1>...}, &dot_ref<T>};
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

MINIMOE_TARGET_AVX2 inline float hsum_avx2(__m256 v) {
  const __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  const __m128 h = _mm_add_ps(s, _mm_movehl_ps(s, s));
  return _mm_cvtss_f32(_mm_add_ss(h, _mm_movehdup_ps(h)));
}

// The four sums {sum(v0), sum(v1), sum(v2), sum(v3)}, without leaving the registers.
MINIMOE_TARGET_AVX2 inline __m128 hsum4_avx2(__m256 v0, __m256 v1, __m256 v2, __m256 v3) {
  const __m256 s = _mm256_hadd_ps(_mm256_hadd_ps(v0, v1), _mm256_hadd_ps(v2, v3));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// The two halves added, through masked extracts: GCC 12's unmasked ones (and the 512 -> 256
// casts built on them) trip its own -Wuninitialized.
MINIMOE_TARGET_AVX512 inline __m256 fold_avx512(__m512 v) {
  const __m512d d = _mm512_castps_pd(v);
  return _mm256_add_ps(_mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, d, 0)),
                       _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, d, 1)));
}

// C[i, j..j+CB) for M rows against CB rows of W at once: M * CB independent accumulators keep
// the FMA units busy even for one row, each loaded W vector feeds the M rows, and the CB sums
// of a row are reduced together in registers (a horizontal add per output would cost as much
// as the dot itself at the k of a small model). The accumulators and the M loaded A vectors
// must fit in the registers: AVX2 (16 ymm) takes strips of up to 2 rows, AVX-512 (32 zmm) up
// to 4; DotAvx2 and DotAvx512 split taller strips.
template <int M, int CB>
MINIMOE_TARGET_AVX2 void dot_block_avx2(int64_t k, const float* const* a, const float* w,
                                        int64_t ldw, float* c, int64_t ldc) {
  static_assert(CB % 4 == 0 && M * CB + M < 16, "accumulators must fit in the registers");
  const int64_t k8 = k / 8 * 8;
  __m256 s[M][CB];
#pragma GCC unroll 32
  for (int i = 0; i < M * CB; ++i) s[i / CB][i % CB] = _mm256_setzero_ps();
  for (int64_t p = 0; p < k8; p += 8) {
    __m256 av[M];
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) av[i] = _mm256_loadu_ps(a[i] + p);
#pragma GCC unroll 8
    for (int j = 0; j < CB; ++j) {
      const __m256 wj = _mm256_loadu_ps(w + j * ldw + p);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i) s[i][j] = _mm256_fmadd_ps(av[i], wj, s[i][j]);
    }
  }
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < CB; j += 4) {
      alignas(16) float sums[4];
      _mm_store_ps(sums, hsum4_avx2(s[i][j], s[i][j + 1], s[i][j + 2], s[i][j + 3]));
      for (int q = 0; q < 4; ++q) {
        const float* wq = w + (j + q) * ldw;
        for (int64_t p = k8; p < k; ++p) sums[q] += a[i][p] * wq[p];
        c[i * ldc + j + q] = sums[q];
      }
    }
}

template <int M>
MINIMOE_TARGET_AVX2 void dot_rows_avx2(int64_t k, const float* const* a, const float* w,
                                       int64_t ldw, int64_t ncols, float* c, int64_t ldc) {
  constexpr int CB = M == 1 ? 8 : 4;
  int64_t j = 0;
  for (; j + CB <= ncols; j += CB) dot_block_avx2<M, CB>(k, a, w + j * ldw, ldw, c + j, ldc);
  for (; j < ncols; ++j)  // the last columns, one at a time
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      __m256 sum = _mm256_setzero_ps();
      int64_t p = 0;
      for (; p + 8 <= k; p += 8)
        sum = _mm256_fmadd_ps(_mm256_loadu_ps(a[i] + p), _mm256_loadu_ps(w + j * ldw + p), sum);
      float total = hsum_avx2(sum);
      for (; p < k; ++p) total += a[i][p] * w[j * ldw + p];
      c[i * ldc + j] = total;
    }
}

// The AVX-512 version reads each of its CB W rows from start to end before the next, its
// loaded vector feeding the M rows, instead of interleaving the rows as dot_block_avx2 does:
// one sequential stream is what the hardware prefetcher follows best when W comes from DRAM
// (the LM head, experts beyond the caches), and with 32 registers the M * CB sums still stay
// in them. A single row keeps two accumulators in flight to hide the FMA latency; M rows give
// M independent chains. Measured against the interleaved order (docs/kernels.md): 1.4x the
// bandwidth on a 51 MB LM head, 5-15% faster decode-size expert products with cold caches.
template <int M, int CB>
MINIMOE_TARGET_AVX512 void dot_seq_avx512(int64_t k, const float* const* a, const float* w,
                                          int64_t ldw, float* c, int64_t ldc) {
  constexpr int L = M == 1 ? 2 : 1;  // accumulators per row of A in flight
  static_assert(M * CB + M * L < 32, "accumulators must fit in the registers");
  const int64_t k16 = k / 16 * 16;
  __m512 s[M][CB];
#pragma GCC unroll 8
  for (int j = 0; j < CB; ++j) {
    const float* r = w + j * ldw;
    __m512 acc[M][L];
#pragma GCC unroll 8
    for (int i = 0; i < M * L; ++i) acc[i / L][i % L] = _mm512_setzero_ps();
    int64_t p = 0;
    for (; p + 16 * L <= k16; p += 16 * L)
#pragma GCC unroll 2
      for (int l = 0; l < L; ++l) {
        const __m512 wv = _mm512_loadu_ps(r + p + 16 * l);
#pragma GCC unroll 4
        for (int i = 0; i < M; ++i)
          acc[i][l] = _mm512_fmadd_ps(_mm512_loadu_ps(a[i] + p + 16 * l), wv, acc[i][l]);
      }
    for (; p < k; p += 16) {  // the rest, the last step masked: nothing read past k
      const __mmask16 mask =
          p < k16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - k16)) - 1);
      const __m512 wv = _mm512_maskz_loadu_ps(mask, r + p);
#pragma GCC unroll 4
      for (int i = 0; i < M; ++i)
        acc[i][0] = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a[i] + p), wv, acc[i][0]);
    }
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i)
      s[i][j] = L == 2 ? _mm512_add_ps(acc[i][0], acc[i][L - 1]) : acc[i][0];
  }
#pragma GCC unroll 4
  for (int i = 0; i < M; ++i)
#pragma GCC unroll 2
    for (int j = 0; j < CB; j += 4)
      _mm_storeu_ps(c + i * ldc + j,
                    hsum4_avx2(fold_avx512(s[i][j]), fold_avx512(s[i][j + 1]),
                               fold_avx512(s[i][j + 2]), fold_avx512(s[i][j + 3])));
}

template <int M>
MINIMOE_TARGET_AVX512 void dot_rows_avx512(int64_t k, const float* const* a, const float* w,
                                           int64_t ldw, int64_t ncols, float* c, int64_t ldc) {
  constexpr int CB = M == 1 ? 8 : 4;
  int64_t j = 0;
  for (; j + CB <= ncols; j += CB) dot_seq_avx512<M, CB>(k, a, w + j * ldw, ldw, c + j, ldc);
  for (; j < ncols; ++j)  // the last columns, one at a time
#pragma GCC unroll 4
    for (int i = 0; i < M; ++i) {
      __m512 sum = _mm512_setzero_ps();
      for (int64_t p = 0; p < k; p += 16) {
        const __mmask16 mask =
            k - p >= 16 ? __mmask16(0xFFFF) : static_cast<__mmask16>((1u << (k - p)) - 1);
        sum = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(mask, a[i] + p),
                              _mm512_maskz_loadu_ps(mask, w + j * ldw + p), sum);
      }
      c[i * ldc + j] = hsum_avx2(fold_avx512(sum));
    }
}

// A taller strip goes in parts; the parts after the first read the W block from L1.
struct DotAvx2 {
  template <int M>
  static void rows(int64_t k, const float* const* a, const float* w, int64_t ldw, int64_t ncols,
                   float* c, int64_t ldc) {
    if constexpr (M > 2) {
      dot_rows_avx2<2>(k, a, w, ldw, ncols, c, ldc);
      rows<M - 2>(k, a + 2, w, ldw, ncols, c + 2 * ldc, ldc);
    } else {
      dot_rows_avx2<M>(k, a, w, ldw, ncols, c, ldc);
    }
  }
};
struct DotAvx512 {
  template <int M>
  static void rows(int64_t k, const float* const* a, const float* w, int64_t ldw, int64_t ncols,
                   float* c, int64_t ldc) {
    if constexpr (M > 4) {
      dot_rows_avx512<4>(k, a, w, ldw, ncols, c, ldc);
      rows<M - 4>(k, a + 4, w, ldw, ncols, c + 4 * ldc, ldc);
    } else {
      dot_rows_avx512<M>(k, a, w, ldw, ncols, c, ldc);
    }
  }
};
#endif  // MINIMOE_GEMM_X86

// The row count picks its instantiation: M is a template argument so that the accumulators
// live in registers.
template <typename Impl>
void dot_by_rows(int64_t k, const float* const* a, int m, const float* w, int64_t ldw,
                 int64_t ncols, float* c, int64_t ldc) {
  static_assert(kGemmMaxMR == 8, "one case per row count");
  switch (m) {
    case 1:
      return Impl::template rows<1>(k, a, w, ldw, ncols, c, ldc);
    case 2:
      return Impl::template rows<2>(k, a, w, ldw, ncols, c, ldc);
    case 3:
      return Impl::template rows<3>(k, a, w, ldw, ncols, c, ldc);
    case 4:
      return Impl::template rows<4>(k, a, w, ldw, ncols, c, ldc);
    case 5:
      return Impl::template rows<5>(k, a, w, ldw, ncols, c, ldc);
    case 6:
      return Impl::template rows<6>(k, a, w, ldw, ncols, c, ldc);
    case 7:
      return Impl::template rows<7>(k, a, w, ldw, ncols, c, ldc);
    default:
      return Impl::template rows<8>(k, a, w, ldw, ncols, c, ldc);
  }
}

template <int NR, int... M>
GemmKernel<float> make_bf16_ref_kernel(std::integer_sequence<int, M...>) {
  GemmKernel<float> k = make_ref_kernel<float, NR>(std::integer_sequence<int, M...>{});
  k.name = "scalar-bf16";
  for (int m = 1; m <= k.mr; ++m) k.rows[m] = nullptr;
  const Bf16MicroKernelFn rows[] = {nullptr, &microkernel_bf16_ref<NR, M + 1>...};
  std::copy(std::begin(rows), std::end(rows), k.bf16_rows);
  return k;
}

#ifdef MINIMOE_GEMM_X86
template <int... M>
GemmKernel<float> make_avx512_bf16_kernel(std::integer_sequence<int, M...>) {
  GemmKernel<float> k;
  k.name = "avx512-bf16";
  k.mr = sizeof...(M);
  k.nr = 32;
  k.dot = &dot_by_rows<DotAvx512>;
  const Bf16MicroKernelFn rows[] = {nullptr, &microkernel_avx512_bf16<M + 1>...};
  std::copy(std::begin(rows), std::end(rows), k.bf16_rows);
  return k;
}

template <int... M>
constexpr GemmKernel<float> make_avx2_kernel(std::integer_sequence<int, M...>) {
  return {"avx2", sizeof...(M), 16, {nullptr, &microkernel_avx2<M + 1>...}, &dot_by_rows<DotAvx2>};
}
template <int... M>
constexpr GemmKernel<float> make_avx512_kernel(std::integer_sequence<int, M...>) {
  return {"avx512",
          sizeof...(M),
          32,
          {nullptr, &microkernel_avx512<M + 1>...},
          &dot_by_rows<DotAvx512>};
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

struct DotNeon {
  template <int M>
  static void rows(int64_t k, const float* const* a, const float* w, int64_t ldw, int64_t ncols,
                   float* c, int64_t ldc) {
    const int64_t k8 = k / 8 * 8, k4 = k / 4 * 4;
    for (int64_t j = 0; j < ncols; ++j, w += ldw) {
      float32x4_t s0[M], s1[M];
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) s0[i] = s1[i] = vdupq_n_f32(0.0f);
      int64_t p = 0;
      for (; p < k8; p += 8) {
        const float32x4_t w0 = vld1q_f32(w + p), w1 = vld1q_f32(w + p + 4);
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
          s0[i] = vfmaq_f32(s0[i], vld1q_f32(a[i] + p), w0);
          s1[i] = vfmaq_f32(s1[i], vld1q_f32(a[i] + p + 4), w1);
        }
      }
      if (p < k4) {
        const float32x4_t w0 = vld1q_f32(w + p);
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) s0[i] = vfmaq_f32(s0[i], vld1q_f32(a[i] + p), w0);
        p += 4;
      }
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        float sum = vaddvq_f32(vaddq_f32(s0[i], s1[i]));
        for (int64_t q = p; q < k; ++q) sum += a[i][q] * w[q];
        c[i * ldc + j] = sum;
      }
    }
  }
};

template <int... M>
constexpr GemmKernel<float> make_neon_kernel(std::integer_sequence<int, M...>) {
  return {"neon", sizeof...(M), 12, {nullptr, &microkernel_neon<M + 1>...}, &dot_by_rows<DotNeon>};
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

// Every kernel this build and this CPU can run: the float ones from the reference to the
// widest, then (for float) the bf16 ones likewise. For tests and benches.
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
    kernels.push_back(detail::make_bf16_ref_kernel<8>(std::make_integer_sequence<int, 4>{}));
#ifdef MINIMOE_GEMM_X86
    if (detail::cpu_has_avx512_bf16())
      kernels.push_back(detail::make_avx512_bf16_kernel(std::make_integer_sequence<int, 8>{}));
#endif
  }
  return kernels;
}

// What float products may round their operands to (torch.set_float32_matmul_precision's
// "medium" is bf16): fp32 exactly as given, or bf16 (kernels/bf16.hpp), on every thread.
enum class MatmulPrecision { fp32, bf16 };

namespace detail {
inline std::atomic<MatmulPrecision>& matmul_precision_setting() {
  static std::atomic<MatmulPrecision> precision{MatmulPrecision::fp32};
  return precision;
}
}  // namespace detail

inline MatmulPrecision matmul_precision() {
  return detail::matmul_precision_setting().load(std::memory_order_relaxed);
}
inline void set_matmul_precision(MatmulPrecision precision) {
  detail::matmul_precision_setting().store(precision, std::memory_order_relaxed);
}

// Sets the matmul precision for the lifetime of a scope, then restores the one before.
class ScopedMatmulPrecision {
 public:
  explicit ScopedMatmulPrecision(MatmulPrecision precision) : before_(matmul_precision()) {
    set_matmul_precision(precision);
  }
  ~ScopedMatmulPrecision() { set_matmul_precision(before_); }
  ScopedMatmulPrecision(const ScopedMatmulPrecision&) = delete;
  ScopedMatmulPrecision& operator=(const ScopedMatmulPrecision&) = delete;

 private:
  MatmulPrecision before_;
};

inline const char* to_string(MatmulPrecision p) {
  return p == MatmulPrecision::bf16 ? "bf16" : "fp32";
}

// The kernel the library uses: the widest one available, at matmul_precision() for float.
template <typename T>
const GemmKernel<T>& gemm_kernel() {
  static const GemmKernel<T> best = [] {
    const std::vector<GemmKernel<T>> kernels = gemm_kernels<T>();
    GemmKernel<T> widest = kernels.front();
    for (const GemmKernel<T>& k : kernels)
      if (!k.bf16()) widest = k;
    return widest;
  }();
  if constexpr (std::is_same_v<T, float>) {
    static const GemmKernel<float> best_bf16 = gemm_kernels<float>().back();
    if (matmul_precision() == MatmulPrecision::bf16) return best_bf16;
  }
  return best;
}

}  // namespace minimoe
