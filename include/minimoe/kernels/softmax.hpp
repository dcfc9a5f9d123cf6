// minimoe/kernels/softmax.hpp: the row passes of a softmax (the max, the exponentials and their
// sum, the normalisation) for the LM head's cross-entropy and for attention.
//
//   const float max = row_max(x, n);
//   const float sum = exp_shifted(x, y, n, max);   // y[i] = exp(x[i] - max), returns their sum
//   scale_row(y, n, 1 / sum);                      // y is now softmax(x)
//
// A training step of the `minimoe` preset takes the exponential of 103 million logits. Eigen's
// vectorised exp runs 8 floats wide here (the build keeps generic code off AVX-512, see
// kernels/gemm_microkernel.hpp), and std::max_element is not vectorised at all (a reordered
// floating-point reduction needs -ffast-math): these three passes took 30 ms per 512 logit
// rows of GPT-2's vocabulary on one thread. The AVX-512 versions below, chosen at run time,
// take 11 ms (the exponential is kernels/vector_math.hpp's). Their sums run in 16 fixed lanes,
// so results do not depend on the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>

#include <Eigen/Core>

#include "minimoe/kernels/vector_math.hpp"

namespace minimoe {
namespace detail {

#ifdef MINIMOE_GEMM_X86
// The 16 lanes reduced in a fixed order, through memory (the reduce intrinsics use unmasked
// extracts, see kAllLanes in kernels/vector_math.hpp); once per row, so the store costs nothing.
template <typename Op>
MINIMOE_TARGET_AVX512 float reduce_lanes(__m512 v, Op op) {
  alignas(64) float lanes[16];
  _mm512_store_ps(lanes, v);
  float r = lanes[0];
  for (int i = 1; i < 16; ++i) r = op(r, lanes[i]);
  return r;
}

MINIMOE_TARGET_AVX512 inline float row_max_avx512(const float* x, int64_t n) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; i += 16)
    m = _mm512_maskz_max_ps(kAllLanes, m, _mm512_loadu_ps(x + i));
  if (n16 < n) {
    const __mmask16 k = tail_mask(n);
    m = _mm512_mask_max_ps(m, k, m, _mm512_maskz_loadu_ps(k, x + n16));
  }
  return reduce_lanes(m, [](float a, float b) { return std::max(a, b); });
}

MINIMOE_TARGET_AVX512 inline float exp_shifted_avx512(const float* x, float* y, int64_t n,
                                                      float shift) {
  const __m512 s = _mm512_set1_ps(shift);
  __m512 sum = _mm512_setzero_ps();
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; i += 16) {
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_loadu_ps(x + i), s));
    if (y) _mm512_storeu_ps(y + i, e);
    sum = _mm512_add_ps(sum, e);
  }
  if (n16 < n) {
    const __mmask16 k = tail_mask(n);
    const __m512 e = exp_avx512(_mm512_sub_ps(_mm512_maskz_loadu_ps(k, x + n16), s));
    if (y) _mm512_mask_storeu_ps(y + n16, k, e);
    sum = _mm512_add_ps(sum, _mm512_maskz_mov_ps(k, e));
  }
  return reduce_lanes(sum, [](float a, float b) { return a + b; });
}

MINIMOE_TARGET_AVX512 inline void scale_row_avx512(float* x, int64_t n, float factor) {
  const __m512 f = _mm512_set1_ps(factor);
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; i += 16)
    _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_loadu_ps(x + i), f));
  if (n16 < n) {
    const __mmask16 k = tail_mask(n);
    _mm512_mask_storeu_ps(x + n16, k, _mm512_mul_ps(_mm512_maskz_loadu_ps(k, x + n16), f));
  }
}

#endif  // MINIMOE_GEMM_X86

// max(x[0..n)), n >= 1.
template <typename T>
T row_max(const T* x, int64_t n) {
#ifdef MINIMOE_GEMM_X86
  if constexpr (std::is_same_v<T, float>)
    if (vector_math_avx512()) return row_max_avx512(x, n);
#endif
  return ConstArrayMap<T>(x, n).maxCoeff();
}

// y[i] = exp(x[i] - shift) for i < n (y may be x; none written when y is null); returns the sum
// of these exponentials.
template <typename T>
T exp_shifted(const T* x, T* y, int64_t n, T shift) {
#ifdef MINIMOE_GEMM_X86
  if constexpr (std::is_same_v<T, float>)
    if (vector_math_avx512()) return exp_shifted_avx512(x, y, n, shift);
#endif
  // In chunks through an aligned array: Eigen's vectorised sum of a row starts its packets at
  // the first aligned element, so its rounding would depend on where y is in memory.
  constexpr int64_t kChunk = 256;
  Eigen::Array<T, Eigen::Dynamic, 1, 0, kChunk, 1> e;
  T sum = 0;
  for (int64_t i = 0; i < n; i += kChunk) {
    const int64_t len = std::min(kChunk, n - i);
    e = (ConstArrayMap<T>(x + i, len) - shift).exp().unaryExpr(FlushBelowNormal<T>());
    sum += e.sum();
    if (y) ArrayMap<T>(y + i, len) = e;
  }
  return sum;
}

// x[i] *= factor for i < n.
template <typename T>
void scale_row(T* x, int64_t n, T factor) {
#ifdef MINIMOE_GEMM_X86
  if constexpr (std::is_same_v<T, float>)
    if (vector_math_avx512()) return scale_row_avx512(x, n, factor);
#endif
  ArrayMap<T>(x, n) *= factor;
}

}  // namespace detail
}  // namespace minimoe
