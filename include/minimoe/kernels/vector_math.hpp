// minimoe/kernels/vector_math.hpp: exp and tanh over float vectors with AVX-512, for the
// softmax passes (kernels/softmax.hpp) and the GELU of the expert epilogues
// (kernels/activation.hpp). Eigen's vectorised versions run 8 floats wide here, since the build
// keeps generic code off AVX-512 (kernels/gemm_microkernel.hpp); these run 16 wide, chosen at
// run time, with Eigen's as the portable path.
//
//   tanh_in_place(x, n);   // x[i] = tanh(x[i]), i < n
//
// exp(x) = 2^j exp(r), j = round(x / ln 2), r = x - j ln 2 (ln 2 in two parts, so that r is
// exact), exp(r) for |r| <= ln(2) / 2 by a degree-6 polynomial, 2^j applied with scalef (which
// rounds to 0 or infinity at the ends of the range instead of wrapping): within 2 ulp of the
// exact result; NaN stays NaN, -inf gives 0, +inf gives +inf.
// tanh(x) = 1 - 2 / (exp(2x) + 1): within 2e-7 of the exact result (an absolute bound: near 0
// the subtraction costs relative precision, which GELU's 0.5 x (1 + tanh) does not see).
#pragma once

#include <cmath>
#include <cstdint>
#include <limits>
#include <type_traits>

#include <Eigen/Core>

#include "minimoe/kernels/gemm_microkernel.hpp"

namespace minimoe {
namespace detail {

// n values at x as an Eigen array: the portable paths here and the row functions of
// kernels/activation.hpp and kernels/softmax.hpp.
template <typename T>
using ArrayMap = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
template <typename T>
using ConstArrayMap = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;

// Corrections of Eigen's vectorised exp and tanh at the ends of their range, for the portable
// paths. Each has a packet form: Eigen evaluates a whole expression one coefficient at a time
// as soon as one of its functors lacks one.
//
// e < the smallest normal value ? 0 : e. Eigen's exp clamps its input, so exp(-inf) (a masked
// logit) is a subnormal there (NEON), not 0. NaN compares false and stays NaN.
template <typename T>
struct FlushBelowNormal {
  T operator()(T e) const { return e < std::numeric_limits<T>::min() ? T(0) : e; }
  template <typename Packet>
  Packet packetOp(const Packet& e) const {
    namespace ei = Eigen::internal;
    const Packet below = ei::pcmp_lt(e, ei::pset1<Packet>(std::numeric_limits<T>::min()));
    return ei::pselect(below, ei::pzero(e), e);
  }
};

// |x| > 9 ? sign(x) : t, for t Eigen's float tanh(x): it levels off below 1 (at 1 - 6e-8 on
// NEON), where float's tanh rounds to +-1 beyond 9.
struct SaturateTanh {
  float operator()(float x, float t) const {
    return std::fabs(x) > 9.0f ? std::copysign(1.0f, x) : t;
  }
  template <typename Packet>
  Packet packetOp(const Packet& x, const Packet& t) const {
    namespace ei = Eigen::internal;
    const Packet one = ei::pset1<Packet>(1.0f);
    const Packet sign = ei::pselect(ei::pcmp_lt(x, ei::pzero(x)), ei::pnegate(one), one);
    return ei::pselect(ei::pcmp_lt(ei::pset1<Packet>(9.0f), ei::pabs(x)), sign, t);
  }
};

}  // namespace detail
}  // namespace minimoe

// Both may take Eigen's packet path where the packet type has comparisons.
namespace Eigen::internal {
template <typename T>
struct functor_traits<minimoe::detail::FlushBelowNormal<T>> {
  enum { Cost = 2 * NumTraits<T>::AddCost, PacketAccess = packet_traits<T>::HasCmp };
};
template <>
struct functor_traits<minimoe::detail::SaturateTanh> {
  enum { Cost = 4 * NumTraits<float>::AddCost, PacketAccess = packet_traits<float>::HasCmp };
};
}  // namespace Eigen::internal

namespace minimoe {
namespace detail {

#ifdef MINIMOE_GEMM_X86
// The masked forms with every lane set: GCC 12's unmasked ones pass an undefined vector that
// trips its own -Wuninitialized (as in kernels/gemm_microkernel.hpp).
inline constexpr __mmask16 kAllLanes = 0xFFFF;

MINIMOE_TARGET_AVX512 inline __m512 exp_avx512(__m512 x) {
  // The clamps keep NaN: max and min return their second operand when either one is NaN.
  x = _mm512_maskz_min_ps(kAllLanes, _mm512_set1_ps(89.0f),
                          _mm512_maskz_max_ps(kAllLanes, _mm512_set1_ps(-104.0f), x));
  const __m512 j =
      _mm512_maskz_roundscale_ps(kAllLanes, _mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
                                 _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(j, _mm512_set1_ps(0.693359375f), x);  // ln 2, high part
  r = _mm512_fnmadd_ps(j, _mm512_set1_ps(-2.12194440e-4f), r);      // and the rest
  __m512 p = _mm512_set1_ps(1.9875691500e-4f);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.3981999507e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(8.3334519073e-3f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(4.1665795894e-2f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.6666665459e-1f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(5.0000001201e-1f));
  p = _mm512_fmadd_ps(p, _mm512_mul_ps(r, r), _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  return _mm512_maskz_scalef_ps(kAllLanes, p, j);
}

// The lanes of the last, partial vector of a row of n floats.
inline __mmask16 tail_mask(int64_t n) { return static_cast<__mmask16>((1u << (n % 16)) - 1u); }

MINIMOE_TARGET_AVX512 inline __m512 tanh_avx512(__m512 x) {
  const __m512 one = _mm512_set1_ps(1.0f);
  const __m512 e = exp_avx512(_mm512_add_ps(x, x));
  return _mm512_sub_ps(one, _mm512_div_ps(_mm512_set1_ps(2.0f), _mm512_add_ps(e, one)));
}

MINIMOE_TARGET_AVX512 inline void tanh_avx512_in_place(float* x, int64_t n) {
  const int64_t n16 = n / 16 * 16;
  for (int64_t i = 0; i < n16; i += 16)
    _mm512_storeu_ps(x + i, tanh_avx512(_mm512_loadu_ps(x + i)));
  if (n16 < n) {
    const __mmask16 k = tail_mask(n);
    _mm512_mask_storeu_ps(x + n16, k, tanh_avx512(_mm512_maskz_loadu_ps(k, x + n16)));
  }
}

// Whether the float vector functions take the AVX-512 path.
inline bool vector_math_avx512() {
  static const bool yes = cpu_has_avx512();
  return yes;
}
#endif  // MINIMOE_GEMM_X86

// x[i] = tanh(x[i]) for i < n.
template <typename T>
void tanh_in_place(T* x, int64_t n) {
#ifdef MINIMOE_GEMM_X86
  if constexpr (std::is_same_v<T, float>)
    if (vector_math_avx512()) return tanh_avx512_in_place(x, n);
#endif
  ArrayMap<T> a(x, n);
  if constexpr (std::is_same_v<T, float>) {
    a = a.binaryExpr(a.tanh(), SaturateTanh());
  } else {
    a = a.tanh();
  }
}

}  // namespace detail
}  // namespace minimoe
