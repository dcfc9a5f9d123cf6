// minimoe/ops/elementwise.hpp: broadcasting arithmetic on Vars (add, sub, mul, div, neg) and
// the unary_op builder that the pointwise functions in ops/pointwise.hpp are made of.
//
//   Var<float> y = x * w + b;     // x [N, C], w [C], b [C]: row broadcast
//   Var<float> z = 2.0f * y - 1;  // scalars broadcast too
//
// Binary ops broadcast like NumPy; backward sums each gradient back to its input's shape.
#pragma once

#include <utility>

#include "minimoe/autograd/var.hpp"
#include "minimoe/tensor/broadcast.hpp"

namespace minimoe {

namespace detail {

// Builds a broadcasting binary op. grad_a(g, a, b) and grad_b(g, a, b) return the gradient
// with respect to each operand at the broadcast output shape; sum_to reduces it.
template <typename T, typename F, typename GradA, typename GradB>
Var<T> binary_op(const char* name, const Var<T>& a, const Var<T>& b, F f, GradA grad_a,
                 GradB grad_b) {
  Tensor<T> out = broadcast_binary(a.value(), b.value(), f, name);
  return make_op<T>(name, std::move(out), {a, b},
                    [grad_a, grad_b](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T>& va = in[0].value();
                      const Tensor<T>& vb = in[1].value();
                      if (in[0].requires_grad())
                        in[0].add_grad(sum_to(grad_a(g, va, vb), va.shape()));
                      if (in[1].requires_grad())
                        in[1].add_grad(sum_to(grad_b(g, va, vb), vb.shape()));
                    });
}

// f(g, x, y) elementwise over g's shape, reading x and y broadcast to it.
template <typename T, typename F>
Tensor<T> ternary(const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y, F f) {
  const Tensor<T> gc = g.contiguous();
  const Tensor<T> xc = x.contiguous();
  const Tensor<T> yc = y.contiguous();
  Tensor<T> out = Tensor<T>::empty(gc.shape());  // every element written below
  const Shape sx = broadcast_strides(x.shape(), out.shape());
  const Shape sy = broadcast_strides(y.shape(), out.shape());
  const T* pg = gc.data();
  const T* px = xc.data();
  const T* py = yc.data();
  T* po = out.data();
  for_each_broadcast(out.shape(), sx, sy,
                     [&](int64_t i, int64_t ix, int64_t iy) { po[i] = f(pg[i], px[ix], py[iy]); });
  return out;
}

}  // namespace detail

// y = f(x) elementwise, with dy/dx = df(x, y). Pointwise functions are one line each on top.
template <typename T, typename F, typename DF>
Var<T> unary_op(const char* name, const Var<T>& x, F f, DF df) {
  const Tensor<T> xc = x.value().contiguous();
  Tensor<T> y = Tensor<T>::empty(xc.shape());  // every element written below
  const T* px = xc.data();
  T* py = y.data();
  for (int64_t i = 0; i < y.numel(); ++i) py[i] = f(px[i]);
  return make_op<T>(name, y, {x}, [df, y](const std::vector<Var<T>>& in, const Tensor<T>& g) {
    const Tensor<T> xc = in[0].value().contiguous();
    const Tensor<T> gc = g.contiguous();
    Tensor<T> dx = Tensor<T>::empty(xc.shape());
    for (int64_t i = 0; i < dx.numel(); ++i)
      dx.data()[i] = gc.data()[i] * df(xc.data()[i], y.data()[i]);
    in[0].add_grad(std::move(dx));
  });
}

template <typename T>
Var<T> add(const Var<T>& a, const Var<T>& b) {
  return detail::binary_op(
      "add", a, b, [](T x, T y) { return x + y; },
      [](const Tensor<T>& g, const Tensor<T>&, const Tensor<T>&) { return g; },
      [](const Tensor<T>& g, const Tensor<T>&, const Tensor<T>&) { return g; });
}

template <typename T>
Var<T> sub(const Var<T>& a, const Var<T>& b) {
  return detail::binary_op(
      "sub", a, b, [](T x, T y) { return x - y; },
      [](const Tensor<T>& g, const Tensor<T>&, const Tensor<T>&) { return g; },
      [](const Tensor<T>& g, const Tensor<T>&, const Tensor<T>&) {
        Tensor<T> out = g.clone();
        out.array() = -out.array();
        return out;
      });
}

template <typename T>
Var<T> mul(const Var<T>& a, const Var<T>& b) {
  return detail::binary_op(
      "mul", a, b, [](T x, T y) { return x * y; },
      [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
        return detail::ternary(g, x, y, [](T gi, T, T yi) { return gi * yi; });
      },
      [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
        return detail::ternary(g, x, y, [](T gi, T xi, T) { return gi * xi; });
      });
}

template <typename T>
Var<T> div(const Var<T>& a, const Var<T>& b) {
  return detail::binary_op(
      "div", a, b, [](T x, T y) { return x / y; },
      [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
        return detail::ternary(g, x, y, [](T gi, T, T yi) { return gi / yi; });
      },
      [](const Tensor<T>& g, const Tensor<T>& x, const Tensor<T>& y) {
        return detail::ternary(g, x, y, [](T gi, T xi, T yi) { return -gi * xi / (yi * yi); });
      });
}

template <typename T>
Var<T> neg(const Var<T>& x) {
  return unary_op(
      "neg", x, [](T v) { return -v; }, [](T, T) { return T(-1); });
}

// A constant (no gradient) holding a scalar, for mixed Var/scalar arithmetic.
template <typename T>
Var<T> constant(T value) {
  return Var<T>(Tensor<T>::scalar(value));
}

template <typename T>
Var<T> operator+(const Var<T>& a, const Var<T>& b) {
  return add(a, b);
}
template <typename T>
Var<T> operator-(const Var<T>& a, const Var<T>& b) {
  return sub(a, b);
}
template <typename T>
Var<T> operator*(const Var<T>& a, const Var<T>& b) {
  return mul(a, b);
}
template <typename T>
Var<T> operator/(const Var<T>& a, const Var<T>& b) {
  return div(a, b);
}
template <typename T>
Var<T> operator-(const Var<T>& x) {
  return neg(x);
}

// Var (op) scalar, scalar (op) Var. The scalar converts to the Var's element type.
#define MINIMOE_SCALAR_OPERATOR(OP, FN)                                                   \
  template <typename T, typename S, typename = std::enable_if_t<std::is_arithmetic_v<S>>> \
  Var<T> operator OP(const Var<T>& a, S b) {                                              \
    return FN(a, constant(static_cast<T>(b)));                                            \
  }                                                                                       \
  template <typename T, typename S, typename = std::enable_if_t<std::is_arithmetic_v<S>>> \
  Var<T> operator OP(S a, const Var<T>& b) {                                              \
    return FN(constant(static_cast<T>(a)), b);                                            \
  }
MINIMOE_SCALAR_OPERATOR(+, add)
MINIMOE_SCALAR_OPERATOR(-, sub)
MINIMOE_SCALAR_OPERATOR(*, mul)
MINIMOE_SCALAR_OPERATOR(/, div)
#undef MINIMOE_SCALAR_OPERATOR

}  // namespace minimoe
