// minimoe/ops/reduce.hpp: sum, mean and max, over everything or over one axis.
//
//   Var<float> total = sum(x);                          // -> []
//   Var<float> rows = mean(x, -1, /*keepdim=*/true);    // [N, C] -> [N, 1]
//   Var<float> best = max(logits, 1);                   // [N, C] -> [N]
//
// An axis reduction views the contiguous input as [outer, n, inner] and reduces the middle.
// max sends its gradient to the first maximal element only (like torch.max with an axis).
#pragma once

#include <limits>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

namespace detail {

// The input of an axis reduction seen as [outer, n, inner], and the output shape.
struct AxisSplit {
  int64_t outer = 1, n = 1, inner = 1;
  Shape out_shape;
};

inline AxisSplit split_axis(const Shape& shape, int64_t axis, bool keepdim, const char* op) {
  const int64_t ndim = static_cast<int64_t>(shape.size());
  const int64_t ax = normalize_axis(axis, ndim, op);
  AxisSplit s;
  for (int64_t i = 0; i < ndim; ++i) {
    if (i < ax) s.outer *= shape[i];
    if (i > ax) s.inner *= shape[i];
    if (i != ax || keepdim) s.out_shape.push_back(i == ax ? 1 : shape[i]);
  }
  s.n = shape[ax];
  return s;
}

// out[o, i] = scale * sum_j x[o, j, i]
template <typename T>
Tensor<T> sum_axis(const Tensor<T>& xc, const AxisSplit& s, T scale) {
  Tensor<T> out(s.out_shape);
  for (int64_t o = 0; o < s.outer; ++o) {
    T* dst = out.data() + o * s.inner;
    for (int64_t j = 0; j < s.n; ++j) {
      const T* src = xc.data() + (o * s.n + j) * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) dst[i] += src[i];
    }
    for (int64_t i = 0; i < s.inner; ++i) dst[i] *= scale;
  }
  return out;
}

// dx[o, j, i] = scale * g[o, i]
template <typename T>
Tensor<T> expand_axis(const Tensor<T>& g, const Shape& in_shape, const AxisSplit& s, T scale) {
  const Tensor<T> gc = g.contiguous();
  Tensor<T> dx(in_shape);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t j = 0; j < s.n; ++j) {
      T* dst = dx.data() + (o * s.n + j) * s.inner;
      const T* src = gc.data() + o * s.inner;
      for (int64_t i = 0; i < s.inner; ++i) dst[i] = scale * src[i];
    }
  return dx;
}

template <typename T>
Var<T> scaled_sum(const char* name, const Var<T>& x, T scale) {
  const Tensor<T> xc = x.value().contiguous();
  T total = 0;
  for (int64_t i = 0; i < xc.numel(); ++i) total += xc.data()[i];
  return make_op<T>(name, Tensor<T>::scalar(total * scale), {x},
                    [scale](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      in[0].add_grad(Tensor<T>(in[0].shape(), g.item() * scale));
                    });
}

template <typename T>
Var<T> scaled_sum_axis(const char* name, const Var<T>& x, int64_t axis, bool keepdim,
                       bool average) {
  const AxisSplit s = split_axis(x.shape(), axis, keepdim, name);
  const T scale = average ? (s.n == 0 ? std::numeric_limits<T>::quiet_NaN() : T(1) / T(s.n)) : T(1);
  Tensor<T> out = sum_axis(x.value().contiguous(), s, scale);
  return make_op<T>(name, std::move(out), {x},
                    [s, scale](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      in[0].add_grad(expand_axis(g, in[0].shape(), s, scale));
                    });
}

}  // namespace detail

// Sum of all elements, as a 0-d tensor.
template <typename T>
Var<T> sum(const Var<T>& x) {
  return detail::scaled_sum("sum", x, T(1));
}

template <typename T>
Var<T> sum(const Var<T>& x, int64_t axis, bool keepdim = false) {
  return detail::scaled_sum_axis("sum", x, axis, keepdim, /*average=*/false);
}

// Mean of all elements; NaN for an empty tensor, as in PyTorch.
template <typename T>
Var<T> mean(const Var<T>& x) {
  const T scale = x.numel() == 0 ? std::numeric_limits<T>::quiet_NaN() : T(1) / T(x.numel());
  return detail::scaled_sum("mean", x, scale);
}

template <typename T>
Var<T> mean(const Var<T>& x, int64_t axis, bool keepdim = false) {
  return detail::scaled_sum_axis("mean", x, axis, keepdim, /*average=*/true);
}

template <typename T>
Var<T> max(const Var<T>& x, int64_t axis, bool keepdim = false) {
  const detail::AxisSplit s = detail::split_axis(x.shape(), axis, keepdim, "max");
  check<ShapeError>(s.n > 0, "max: axis {} of shape {} is empty", axis, x.shape());
  const Tensor<T> xc = x.value().contiguous();
  Tensor<T> out(s.out_shape);
  Tensor<int64_t> argmax(s.out_shape);
  for (int64_t o = 0; o < s.outer; ++o)
    for (int64_t i = 0; i < s.inner; ++i) {
      int64_t best = 0;
      for (int64_t j = 1; j < s.n; ++j)
        if (xc.data()[(o * s.n + j) * s.inner + i] > xc.data()[(o * s.n + best) * s.inner + i])
          best = j;
      out.data()[o * s.inner + i] = xc.data()[(o * s.n + best) * s.inner + i];
      argmax.data()[o * s.inner + i] = best;
    }
  return make_op<T>("max", std::move(out), {x},
                    [s, argmax](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> gc = g.contiguous();
                      Tensor<T> dx(in[0].shape());
                      for (int64_t o = 0; o < s.outer; ++o)
                        for (int64_t i = 0; i < s.inner; ++i) {
                          const int64_t j = argmax.data()[o * s.inner + i];
                          dx.data()[(o * s.n + j) * s.inner + i] = gc.data()[o * s.inner + i];
                        }
                      in[0].add_grad(std::move(dx));
                    });
}

// Largest element, as a 0-d tensor.
template <typename T>
Var<T> max(const Var<T>& x) {
  check<ShapeError>(x.numel() > 0, "max: input of shape {} is empty", x.shape());
  const Tensor<T> xc = x.value().contiguous();
  const int64_t best = std::max_element(xc.data(), xc.data() + xc.numel()) - xc.data();
  return make_op<T>("max", Tensor<T>::scalar(xc.data()[best]), {x},
                    [best](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      Tensor<T> dx(in[0].shape());
                      dx.data()[best] = g.item();
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace minimoe
