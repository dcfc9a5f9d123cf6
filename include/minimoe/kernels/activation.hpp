// minimoe/kernels/activation.hpp: the expert activations with their derivatives, for the
// fused expert kernels (the autograd versions are in ops/pointwise.hpp): scalar functions, and
// row functions over contiguous values that the GEMM epilogues call on a strip while it is in
// cache. The row functions are Eigen array expressions, so exp is vectorised for float, and
// GELU's tanh is kernels/vector_math.hpp's (GELUExact's erf stays scalar).
//
//   float h = activate(Activation::SiLU, x);
//   float dh = activate_derivative(Activation::SiLU, x);   // d act / dx at x
//   activation_forward(Activation::GELU, h, a, n);         // a[i] = gelu(h[i]), i < n
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include <Eigen/Core>

#include "minimoe/error.hpp"
#include "minimoe/kernels/vector_math.hpp"

namespace minimoe {

enum class Activation {
  GELU,       // tanh approximation (GPT-2)
  GELUExact,  // erf form
  ReLU,
  SiLU,   // x * sigmoid(x), the gate of SwiGLU
  ReLU2,  // relu(x)^2 (Primer)
};

inline const char* to_string(Activation a) {
  switch (a) {
    case Activation::GELU:
      return "gelu";
    case Activation::GELUExact:
      return "gelu_exact";
    case Activation::ReLU:
      return "relu";
    case Activation::SiLU:
      return "silu";
    case Activation::ReLU2:
      return "relu2";
  }
  return "?";
}

inline Activation activation_from_string(const std::string& name) {
  for (Activation a : {Activation::GELU, Activation::GELUExact, Activation::ReLU, Activation::SiLU,
                       Activation::ReLU2})
    if (name == to_string(a)) return a;
  throw ValueError(fmt::format(
      "unknown activation '{}' (expected gelu, gelu_exact, relu, silu or relu2)", name));
}

namespace detail {
template <typename T>
constexpr T kSqrt2OverPi = T(0.7978845608028654);
template <typename T>
constexpr T kGeluCubic = T(0.044715);
template <typename T>
constexpr T kInvSqrt2 = T(0.7071067811865476);
template <typename T>
constexpr T kInvSqrt2Pi = T(0.3989422804014327);
}  // namespace detail

template <typename T>
T activate(Activation a, T x) {
  using namespace detail;
  switch (a) {
    case Activation::GELU:
      return T(0.5) * x * (T(1) + std::tanh(kSqrt2OverPi<T> * (x + kGeluCubic<T> * x * x * x)));
    case Activation::GELUExact:
      return T(0.5) * x * (T(1) + std::erf(x * kInvSqrt2<T>));
    case Activation::ReLU:
      return x > T(0) ? x : T(0);
    case Activation::SiLU:
      return x / (T(1) + std::exp(-x));
    case Activation::ReLU2:
      return x > T(0) ? x * x : T(0);
  }
  return x;
}

template <typename T>
T activate_derivative(Activation a, T x) {
  using namespace detail;
  switch (a) {
    case Activation::GELU: {
      const T t = std::tanh(kSqrt2OverPi<T> * (x + kGeluCubic<T> * x * x * x));
      const T dinner = kSqrt2OverPi<T> * (T(1) + T(3) * kGeluCubic<T> * x * x);
      return T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t * t) * dinner;
    }
    case Activation::GELUExact:
      return T(0.5) * (T(1) + std::erf(x * kInvSqrt2<T>)) +
             x * kInvSqrt2Pi<T> * std::exp(T(-0.5) * x * x);
    case Activation::ReLU:
      return x > T(0) ? T(1) : T(0);
    case Activation::SiLU: {
      const T s = T(1) / (T(1) + std::exp(-x));
      return s * (T(1) + x * (T(1) - s));
    }
    case Activation::ReLU2:
      return x > T(0) ? T(2) * x : T(0);
  }
  return T(1);
}

namespace detail {

// Rows are processed in chunks whose temporaries live on the stack.
inline constexpr int64_t kActivationChunk = 256;
template <typename T>
using ChunkArray = Eigen::Array<T, Eigen::Dynamic, 1, 0, kActivationChunk, 1>;

// act(x) and act'(x) of one chunk; erf has no vectorised form, so GELUExact loops.
template <typename T>
void activation_chunk(Activation a, const ConstArrayMap<T>& x, ChunkArray<T>* value,
                      ChunkArray<T>* derivative) {
  const int64_t n = x.size();
  switch (a) {
    case Activation::GELU: {
      ChunkArray<T> t = kSqrt2OverPi<T> * (x + kGeluCubic<T> * x.cube());
      tanh_in_place(t.data(), n);
      if (value) *value = T(0.5) * x * (T(1) + t);
      if (derivative)
        *derivative = T(0.5) * (T(1) + t) + T(0.5) * x * (T(1) - t.square()) * kSqrt2OverPi<T> *
                                                (T(1) + T(3) * kGeluCubic<T> * x.square());
      return;
    }
    case Activation::SiLU: {
      const ChunkArray<T> s = T(1) / (T(1) + (-x).exp());
      if (value) *value = x * s;
      if (derivative) *derivative = s * (T(1) + x * (T(1) - s));
      return;
    }
    case Activation::ReLU:
      if (value) *value = x.max(T(0));
      if (derivative) *derivative = (x > T(0)).template cast<T>();
      return;
    case Activation::ReLU2:
      if (value) *value = x.max(T(0)).square();
      if (derivative) *derivative = T(2) * x.max(T(0));
      return;
    case Activation::GELUExact:
      if (value) value->resize(n);
      if (derivative) derivative->resize(n);
      for (int64_t i = 0; i < n; ++i) {
        if (value) (*value)[i] = activate(a, x[i]);
        if (derivative) (*derivative)[i] = activate_derivative(a, x[i]);
      }
      return;
  }
}

}  // namespace detail

// y[i] = act(x[i]) for i < n; y may be x.
template <typename T>
void activation_forward(Activation a, const T* x, T* y, int64_t n) {
  detail::ChunkArray<T> v;
  for (int64_t i = 0; i < n; i += detail::kActivationChunk) {
    const int64_t len = std::min(detail::kActivationChunk, n - i);
    detail::activation_chunk<T>(a, detail::ConstArrayMap<T>(x + i, len), &v, nullptr);
    detail::ArrayMap<T>(y + i, len) = v;
  }
}

// y[i] = act(g[i]) u[i] (GLU); y may be g or u.
template <typename T>
void glu_forward(Activation a, const T* g, const T* u, T* y, int64_t n) {
  detail::ChunkArray<T> v;
  for (int64_t i = 0; i < n; i += detail::kActivationChunk) {
    const int64_t len = std::min(detail::kActivationChunk, n - i);
    detail::activation_chunk<T>(a, detail::ConstArrayMap<T>(g + i, len), &v, nullptr);
    detail::ArrayMap<T>(y + i, len) = v * detail::ConstArrayMap<T>(u + i, len);
  }
}

// d[i] *= act'(x[i]): dL/da in, dL/dx out.
template <typename T>
void activation_backward(Activation a, const T* x, T* d, int64_t n) {
  detail::ChunkArray<T> dv;
  for (int64_t i = 0; i < n; i += detail::kActivationChunk) {
    const int64_t len = std::min(detail::kActivationChunk, n - i);
    detail::activation_chunk<T>(a, detail::ConstArrayMap<T>(x + i, len), nullptr, &dv);
    detail::ArrayMap<T>(d + i, len) *= dv;
  }
}

// GLU y = act(g) u: du holds dL/dy on entry; dg = dL/dy u act'(g), du = dL/dy act(g) on exit.
template <typename T>
void glu_backward(Activation a, const T* g, const T* u, T* dg, T* du, int64_t n) {
  detail::ChunkArray<T> v, dv;
  for (int64_t i = 0; i < n; i += detail::kActivationChunk) {
    const int64_t len = std::min(detail::kActivationChunk, n - i);
    detail::activation_chunk<T>(a, detail::ConstArrayMap<T>(g + i, len), &v, &dv);
    detail::ArrayMap<T> dy(du + i, len);
    detail::ArrayMap<T>(dg + i, len) = dy * detail::ConstArrayMap<T>(u + i, len) * dv;
    dy *= v;
  }
}

}  // namespace minimoe
