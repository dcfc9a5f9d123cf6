// minimoe/ops/pointwise.hpp: differentiable elementwise functions.
//
//   Var<float> h = gelu(x);                               // tanh approximation (GPT-2)
//   Var<float> e = gelu(x, GeluApproximation::Exact);     // erf form
//   Var<float> s = silu(gate) * up;                       // SwiGLU
//
// Each function is one unary_op (ops/elementwise.hpp): the value and its derivative, where the
// derivative may read the cached output (exp, sqrt, tanh, sigmoid reuse y instead of
// recomputing it). The activations of MLPs (relu, silu, gelu) are activation_ops instead: the
// vectorised row functions of the fused expert kernels (kernels/activation.hpp), spread over
// the threads, as they run on every hidden unit of every dense MLP.
#pragma once

#include <algorithm>
#include <cmath>

#include "minimoe/kernels/activation.hpp"
#include "minimoe/ops/elementwise.hpp"

namespace minimoe {

namespace detail {

// f(begin, length) over [0, n) in blocks, on all threads when there are several blocks.
template <typename F>
void for_each_block(int64_t n, F&& f) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 1)
  for (int64_t b = 0; b < blocks; ++b) f(b * kBlock, std::min(kBlock, n - b * kBlock));
}

template <typename T>
Var<T> activation_op(const char* name, const Var<T>& x, Activation a) {
  const Tensor<T> xc = x.value().contiguous();
  Tensor<T> y = Tensor<T>::empty(xc.shape());
  for_each_block(xc.numel(), [&](int64_t i, int64_t len) {
    activation_forward(a, xc.data() + i, y.data() + i, len);
  });
  return make_op<T>(name, std::move(y), {x},
                    [a](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> xc = in[0].value().contiguous();
                      Tensor<T> dx = g.contiguous().clone();  // scaled in place by act'(x)
                      for_each_block(dx.numel(), [&](int64_t i, int64_t len) {
                        activation_backward(a, xc.data() + i, dx.data() + i, len);
                      });
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace detail

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
  return detail::activation_op("relu", x, Activation::ReLU);
}

// x * sigmoid(x), the gate of SwiGLU.
template <typename T>
Var<T> silu(const Var<T>& x) {
  return detail::activation_op("silu", x, Activation::SiLU);
}

enum class GeluApproximation {
  Exact,  // x * Phi(x) with the normal CDF Phi written with erf
  Tanh,   // 0.5 x (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))), GPT-2's form
};

template <typename T>
Var<T> gelu(const Var<T>& x, GeluApproximation approximation = GeluApproximation::Tanh) {
  return approximation == GeluApproximation::Exact
             ? detail::activation_op("gelu", x, Activation::GELUExact)
             : detail::activation_op("gelu_tanh", x, Activation::GELU);
}

}  // namespace minimoe
