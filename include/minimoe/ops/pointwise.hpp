// minimoe/ops/pointwise.hpp: differentiable elementwise functions.
//
//   Var<float> h = gelu(x);                               // tanh approximation (GPT-2)
//   Var<float> e = gelu(x, GeluApproximation::Exact);     // erf form
//   Var<float> s = silu(gate) * up;                       // SwiGLU
//
// Each function is one unary_op (ops/elementwise.hpp): the value and its derivative, where the
// derivative may read the cached output (exp, sqrt, tanh, sigmoid reuse y instead of
// recomputing it).
#pragma once

#include <cmath>

#include "minimoe/ops/elementwise.hpp"

namespace minimoe {

template <typename T>
Var<T> exp(const Var<T>& x) {
  return unary_op(
      "exp", x, [](T v) { return std::exp(v); }, [](T, T y) { return y; });
}

template <typename T>
Var<T> log(const Var<T>& x) {
  return unary_op(
      "log", x, [](T v) { return std::log(v); }, [](T v, T) { return T(1) / v; });
}

template <typename T>
Var<T> sqrt(const Var<T>& x) {
  return unary_op(
      "sqrt", x, [](T v) { return std::sqrt(v); }, [](T, T y) { return T(0.5) / y; });
}

// x^p for a constant exponent p. p does not take part in deducing T, so pow(x, 2) and
// pow(x, 0.5) work for Var<float> as well as Var<double>.
template <typename T>
Var<T> pow(const Var<T>& x, typename Var<T>::Scalar p) {
  return unary_op(
      "pow", x, [p](T v) { return std::pow(v, p); },
      [p](T v, T) { return p == T(0) ? T(0) : p * std::pow(v, p - T(1)); });
}

template <typename T>
Var<T> square(const Var<T>& x) {
  return unary_op(
      "square", x, [](T v) { return v * v; }, [](T v, T) { return T(2) * v; });
}

template <typename T>
Var<T> tanh(const Var<T>& x) {
  return unary_op(
      "tanh", x, [](T v) { return std::tanh(v); }, [](T, T y) { return T(1) - y * y; });
}

template <typename T>
T sigmoid(T v) {
  return T(1) / (T(1) + std::exp(-v));
}

template <typename T>
Var<T> sigmoid(const Var<T>& x) {
  return unary_op(
      "sigmoid", x, [](T v) { return sigmoid(v); }, [](T, T y) { return y * (T(1) - y); });
}

// max(x, 0); the derivative at 0 is taken as 0, as in PyTorch.
template <typename T>
Var<T> relu(const Var<T>& x) {
  return unary_op(
      "relu", x, [](T v) { return v > T(0) ? v : T(0); },
      [](T v, T) { return v > T(0) ? T(1) : T(0); });
}

// x * sigmoid(x), the gate of SwiGLU.
template <typename T>
Var<T> silu(const Var<T>& x) {
  return unary_op(
      "silu", x, [](T v) { return v * sigmoid(v); },
      [](T v, T) {
        const T s = sigmoid(v);
        return s * (T(1) + v * (T(1) - s));
      });
}

enum class GeluApproximation {
  Exact,  // x * Phi(x) with the normal CDF Phi written with erf
  Tanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's form
};

template <typename T>
Var<T> gelu(const Var<T>& x, GeluApproximation approximation = GeluApproximation::Tanh) {
  constexpr T kSqrt2OverPi = T(0.7978845608028654);
  constexpr T kCubic = T(0.044715);
  constexpr T kInvSqrt2 = T(0.7071067811865476);
  constexpr T kInvSqrt2Pi = T(0.3989422804014327);
  if (approximation == GeluApproximation::Exact) {
    return unary_op(
        "gelu", x, [=](T v) { return T(0.5) * v * (T(1) + std::erf(v * kInvSqrt2)); },
        [=](T v, T) {
          const T cdf = T(0.5) * (T(1) + std::erf(v * kInvSqrt2));
          return cdf + v * kInvSqrt2Pi * std::exp(T(-0.5) * v * v);
        });
  }
  return unary_op(
      "gelu_tanh", x,
      [=](T v) { return T(0.5) * v * (T(1) + std::tanh(kSqrt2OverPi * (v + kCubic * v * v * v))); },
      [=](T v, T) {
        const T t = std::tanh(kSqrt2OverPi * (v + kCubic * v * v * v));
        const T dinner = kSqrt2OverPi * (T(1) + T(3) * kCubic * v * v);
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * dinner;
      });
}

}  // namespace minimoe
