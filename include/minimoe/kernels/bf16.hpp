// minimoe/kernels/bf16.hpp: bfloat16 operands for the GEMM micro-kernels: the rounding, the
// packing into pairs, and the micro-kernels that multiply them.
//
// A bfloat16 is a float cut to its upper 16 bits (sign, the 8 exponent bits, 7 mantissa bits),
// rounded to nearest, ties to even. The product of two is exact in float, so a product of bf16
// operands with float sums loses precision only where the operands are rounded (2^-9 relative
// each). That is the mixed precision of GPU training: weights, gradients, optimizer state and
// every op but the GEMMs stay in float; a GEMM rounds its operands while it packs them.
//
// Packed bf16 operands hold pairs along K in 32-bit words, the even k in the low half:
//
//   word q of a row of A = (A[i, 2q], A[i, 2q + 1])      a packed strip or row (K padded to even
//   word q * NR + j of a B panel = (B[2q, j], B[2q + 1, j])    with a zero)
//
// and a micro-kernel computes, like the float ones (gemm_microkernel.hpp), for i < m <= MR:
//
//   C[i, j] (+)= sum_q lo(A(i, q)) lo(B[q, j]) + hi(A(i, q)) hi(B[q, j])
//   A(i, q) = a[i][q * a_step]      B[q, j] = b[q * NR + j]
//
// VDPBF16PS does 16 such pair products and their sums in one instruction: twice the
// multiply-adds of a float FMA, at the same rate (Zen 4: 233 against 116 GFLOP/s per core, a
// register-only loop). Like the hardware, the rounding flushes subnormals to zero and quiets
// NaNs, so the portable path gives the same operands.
#pragma once

#include <cstdint>
#include <cstring>

#include "minimoe/kernels/isa.hpp"

namespace minimoe {

inline uint16_t to_bf16(float x) {
  uint32_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  if ((bits & 0x7F800000u) == 0) return static_cast<uint16_t>((bits >> 16) & 0x8000u);  // +-0
  if ((bits & 0x7FFFFFFFu) > 0x7F800000u) return static_cast<uint16_t>((bits | 0x400000u) >> 16);
  bits += 0x7FFFu + ((bits >> 16) & 1u);  // to nearest, ties to even; may carry into infinity
  return static_cast<uint16_t>(bits >> 16);
}

inline float from_bf16(uint16_t h) {
  const uint32_t bits = uint32_t{h} << 16;
  float x;
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// The float a bf16 GEMM multiplies in place of x.
inline float round_to_bf16(float x) { return from_bf16(to_bf16(x)); }

// Whether this CPU multiplies bf16 in hardware (and packs it with SIMD): without it a bf16
// product takes the portable kernel, several times slower than the float ones.
inline bool bf16_accelerated() {
#ifdef MINIMOE_GEMM_X86
  static const bool available = detail::cpu_has_avx512_bf16();
  return available;
#else
  return false;
#endif
}

using Bf16MicroKernelFn = void (*)(int64_t kp, const uint32_t* const* a, int64_t a_step,
                                   const uint32_t* b, float* c, int64_t ldc, bool accumulate);

namespace detail {

inline uint32_t bf16_pair(float even, float odd) {
  return uint32_t{to_bf16(even)} | uint32_t{to_bf16(odd)} << 16;
}

#ifdef MINIMOE_GEMM_X86
MINIMOE_TARGET_AVX512_BF16 inline __m512i as_words(__m512bh v) { return (__m512i)v; }
MINIMOE_TARGET_AVX512_BF16 inline __m512bh as_bf16(__m512i v) { return (__m512bh)v; }

// cvtne2ps(odd, even) puts the 16 even-line values in the low 16 words: vpermw interleaves them.
MINIMOE_TARGET_AVX512_BF16 inline __m512i interleave_index() {
  return _mm512_set_epi16(31, 15, 30, 14, 29, 13, 28, 12, 27, 11, 26, 10, 25, 9, 24, 8, 23, 7, 22,
                          6, 21, 5, 20, 4, 19, 3, 18, 2, 17, 1, 16, 0);
}

MINIMOE_TARGET_AVX512_BF16 inline __mmask16 first_lanes(int64_t count) {
  return count >= 16  ? __mmask16(0xFFFF)
         : count <= 0 ? __mmask16(0)
                      : static_cast<__mmask16>((1u << count) - 1);
}

MINIMOE_TARGET_AVX512_BF16 inline void pack_pairs_avx512(const float* even, const float* odd,
                                                         int64_t n, int nr, int64_t panel,
                                                         uint32_t* out) {
  const __m512i interleave = interleave_index();
  for (int64_t j0 = 0; j0 < n; j0 += nr, out += panel)
    for (int c = 0; c < nr; c += 16) {
      const __mmask16 valid = first_lanes(n - j0 - c), stored = first_lanes(nr - c);
      const __m512 e = _mm512_maskz_loadu_ps(valid, even + j0 + c);
      const __m512 o = odd ? _mm512_maskz_loadu_ps(valid, odd + j0 + c) : _mm512_setzero_ps();
      _mm512_mask_storeu_epi32(
          out + c, stored,
          _mm512_permutexvar_epi16(interleave, as_words(_mm512_cvtne2ps_pbh(o, e))));
    }
}

MINIMOE_TARGET_AVX512_BF16 inline void pack_pair_lines_avx512(const float* src, int64_t step,
                                                              int64_t lines, int n, uint32_t* out,
                                                              int64_t out_step) {
  const __m512i interleave = interleave_index();
  const __mmask16 valid = first_lanes(n);
  for (int64_t l = 0; l < lines; l += 2, out += out_step) {
    const __m512 e = _mm512_maskz_loadu_ps(valid, src + l * step);
    const __m512 o =
        l + 1 < lines ? _mm512_maskz_loadu_ps(valid, src + (l + 1) * step) : _mm512_setzero_ps();
    _mm512_mask_storeu_epi32(
        out, valid, _mm512_permutexvar_epi16(interleave, as_words(_mm512_cvtne2ps_pbh(o, e))));
  }
}

MINIMOE_TARGET_AVX512_BF16 inline void pack_row_pairs_avx512(const float* x, int64_t k,
                                                             uint32_t* out) {
  // 32 consecutive floats round to 32 words in order: 16 pairs, the even k low.
  for (int64_t p = 0; p < k; p += 32) {
    const int64_t rest = k - p;
    const __m512 a = _mm512_maskz_loadu_ps(first_lanes(rest), x + p);
    const __m512 b = _mm512_maskz_loadu_ps(first_lanes(rest - 16), x + p + 16);
    _mm512_mask_storeu_epi32(out + p / 2, first_lanes((rest + 1) / 2),
                             as_words(_mm512_cvtne2ps_pbh(b, a)));
  }
}
#endif

// Two rows of B as a line of pairs across the panels of a block: out[q * panel + jj] =
// (even[j], odd[j]) for j = q * nr + jj < n, and zero up to the panel width past n. No odd row
// (the padding of an odd K): zeros.
inline void pack_pairs(const float* even, const float* odd, int64_t n, int nr, int64_t panel,
                       uint32_t* out) {
#ifdef MINIMOE_GEMM_X86
  if (bf16_accelerated()) return pack_pairs_avx512(even, odd, n, nr, panel, out);
#endif
  for (int64_t j0 = 0; j0 < n; j0 += nr, out += panel)
    for (int jj = 0; jj < nr; ++jj) {
      const int64_t j = j0 + jj;
      out[jj] = j < n ? bf16_pair(even[j], odd ? odd[j] : 0.0f) : 0u;
    }
}

// Lines of pairs from lines of floats: out[q * out_step + j] = (line(2q)[j], line(2q + 1)[j])
// for q < ceil(lines / 2), j < n <= 16, line(l) = src + l * step (a missing odd line: zeros).
inline void pack_pair_lines(const float* src, int64_t step, int64_t lines, int n, uint32_t* out,
                            int64_t out_step) {
#ifdef MINIMOE_GEMM_X86
  if (bf16_accelerated()) return pack_pair_lines_avx512(src, step, lines, n, out, out_step);
#endif
  for (int64_t l = 0; l < lines; l += 2, out += out_step)
    for (int j = 0; j < n; ++j)
      out[j] = bf16_pair(src[l * step + j], l + 1 < lines ? src[(l + 1) * step + j] : 0.0f);
}

// out[q] = (x[2q], x[2q + 1]) for q < ceil(k / 2), the last odd half zero when k is odd.
inline void pack_row_pairs(const float* x, int64_t k, uint32_t* out) {
#ifdef MINIMOE_GEMM_X86
  if (bf16_accelerated()) return pack_row_pairs_avx512(x, k, out);
#endif
  for (int64_t p = 0; p < k; p += 2) out[p / 2] = bf16_pair(x[p], p + 1 < k ? x[p + 1] : 0.0f);
}

// An A strip given as float rows (A(i, p) = a[i][p * a_step], p < kc) as bf16 pairs in `out`
// (room for rows * ceil(kc / 2) words); points pairs[i] at row i and returns their step.
inline int64_t pack_strip_bf16(const float* const* a, int64_t a_step, int rows, int mr, int64_t kc,
                               uint32_t* out, const uint32_t** pairs) {
  const int64_t kp = (kc + 1) / 2;
  if (a_step == 1) {  // rows along K: each converts on its own
    for (int i = 0; i < rows; ++i) {
      pack_row_pairs(a[i], kc, out + i * kp);
      pairs[i] = out + i * kp;
    }
    return 1;
  }
  bool adjacent = true;  // the strip read down columns: row i of A next to row i - 1 in memory
  for (int i = 1; i < rows; ++i) adjacent = adjacent && a[i] == a[0] + i;
  if (adjacent) {  // K runs down the strip: two of its lines make a line of pairs
    pack_pair_lines(a[0], a_step, kc, rows, out, mr);
    for (int i = 0; i < rows; ++i) pairs[i] = out + i;
    return mr;
  }
  for (int i = 0; i < rows; ++i) {
    for (int64_t p = 0; p < kc; p += 2)
      out[i * kp + p / 2] = bf16_pair(a[i][p * a_step], p + 1 < kc ? a[i][(p + 1) * a_step] : 0.0f);
    pairs[i] = out + i * kp;
  }
  return 1;
}

// The portable bf16 kernel: the operands decoded to float, both products of a pair added.
template <int NR, int M>
void microkernel_bf16_ref(int64_t kp, const uint32_t* const* a, int64_t a_step, const uint32_t* b,
                          float* c, int64_t ldc, bool accumulate) {
  float acc[M][NR];
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < NR; ++j) acc[i][j] = accumulate ? c[i * ldc + j] : 0.0f;
  for (int64_t q = 0; q < kp; ++q) {
    const uint32_t* bq = b + q * NR;
    for (int i = 0; i < M; ++i) {
      const uint32_t ai = a[i][q * a_step];
      const float even = from_bf16(static_cast<uint16_t>(ai)), odd = from_bf16(ai >> 16);
      for (int j = 0; j < NR; ++j)
        acc[i][j] += even * from_bf16(static_cast<uint16_t>(bq[j])) + odd * from_bf16(bq[j] >> 16);
    }
  }
  for (int i = 0; i < M; ++i)
    for (int j = 0; j < NR; ++j) c[i * ldc + j] = acc[i][j];
}

#ifdef MINIMOE_GEMM_X86
// 8 x 32, the shape of the float AVX-512 kernel: 16 zmm sums, each step two K.
template <int M>
MINIMOE_TARGET_AVX512_BF16 void microkernel_avx512_bf16(int64_t kp, const uint32_t* const* a,
                                                        int64_t a_step, const uint32_t* b, float* c,
                                                        int64_t ldc, bool accumulate) {
  __m512 c0[M], c1[M];
  const uint32_t* ap[M];
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    ap[i] = a[i];
    c0[i] = accumulate ? _mm512_loadu_ps(c + i * ldc) : _mm512_setzero_ps();
    c1[i] = accumulate ? _mm512_loadu_ps(c + i * ldc + 16) : _mm512_setzero_ps();
  }
  for (int64_t q = 0, off = 0; q < kp; ++q, off += a_step, b += 32) {
    const __m512bh b0 = as_bf16(_mm512_loadu_si512(b)), b1 = as_bf16(_mm512_loadu_si512(b + 16));
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i) {
      const __m512bh ai = as_bf16(_mm512_set1_epi32(static_cast<int>(ap[i][off])));
      c0[i] = _mm512_dpbf16_ps(c0[i], ai, b0);
      c1[i] = _mm512_dpbf16_ps(c1[i], ai, b1);
    }
  }
#pragma GCC unroll 8
  for (int i = 0; i < M; ++i) {
    _mm512_storeu_ps(c + i * ldc, c0[i]);
    _mm512_storeu_ps(c + i * ldc + 16, c1[i]);
  }
}
#endif

}  // namespace detail
}  // namespace minimoe
