// minimoe/kernels/activation.hpp: the expert activations as scalar functions with their
// derivatives, for the fused expert kernels (the autograd versions are in ops/pointwise.hpp).
//
//   float h = activate(Activation::SiLU, x);
//   float dh = activate_derivative(Activation::SiLU, x);   // d act / dx at x
#pragma once

#include <cmath>
#include <string>

#include "minimoe/error.hpp"

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

}  // namespace minimoe
