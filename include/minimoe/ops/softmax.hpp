// minimoe/ops/softmax.hpp: softmax and log_softmax over the last axis.
//
//   Var<float> p = softmax(logits);        // rows sum to 1
//   Var<float> lp = log_softmax(logits);   // log p, without overflow or log(0)
//
// Both subtract the row maximum first. A row whose entries are all -inf (everything masked)
// gives zeros from softmax and -inf from log_softmax instead of NaN, and no gradient.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

namespace detail {

// Writes softmax (or log_softmax) of each row of the contiguous [rows, C] input into out.
template <typename T>
void softmax_rows(const Tensor<T>& xc, Tensor<T>& out, bool log_space) {
  const int64_t C = xc.size(-1), rows = C == 0 ? 0 : xc.numel() / C;
  constexpr T kNegInf = -std::numeric_limits<T>::infinity();
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = xc.data() + r * C;
    T* y = out.data() + r * C;
    const T max = *std::max_element(x, x + C);
    if (max == kNegInf) {
      std::fill_n(y, C, log_space ? kNegInf : T(0));
      continue;
    }
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(x[c] - max);
    if (log_space) {
      // (x - max) - log(sum), not x - (max + log(sum)): the latter rounds log(sum) to the
      // precision of max, which costs a float about 1e-3 at logits of 1e4.
      const T log_sum = std::log(sum);
      for (int64_t c = 0; c < C; ++c) y[c] = (x[c] - max) - log_sum;
    } else {
      const T inv = T(1) / sum;
      for (int64_t c = 0; c < C; ++c) y[c] = std::exp(x[c] - max) * inv;
    }
  }
}

template <typename T>
void check_last_axis(const Var<T>& x, const char* op) {
  check<ShapeError>(x.dim() >= 1, "{}: input must be at least 1-d, got shape {}", op, x.shape());
}

}  // namespace detail

template <typename T>
Var<T> softmax(const Var<T>& x) {
  detail::check_last_axis(x, "softmax");
  Tensor<T> y(x.shape());
  detail::softmax_rows(x.value().contiguous(), y, /*log_space=*/false);
  return make_op<T>("softmax", y, {x}, [y](const std::vector<Var<T>>& in, const Tensor<T>& g) {
    // dx = y * (g - sum(g * y)) row by row
    const Tensor<T> gc = g.contiguous();
    const int64_t C = y.size(-1), rows = C == 0 ? 0 : y.numel() / C;
    Tensor<T> dx(y.shape());
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = y.data() + r * C;
      const T* gr = gc.data() + r * C;
      T dot = 0;
      for (int64_t c = 0; c < C; ++c) dot += gr[c] * yr[c];
      for (int64_t c = 0; c < C; ++c) dx.data()[r * C + c] = yr[c] * (gr[c] - dot);
    }
    in[0].add_grad(std::move(dx));
  });
}

template <typename T>
Var<T> log_softmax(const Var<T>& x) {
  detail::check_last_axis(x, "log_softmax");
  Tensor<T> y(x.shape());
  detail::softmax_rows(x.value().contiguous(), y, /*log_space=*/true);
  return make_op<T>("log_softmax", y, {x}, [y](const std::vector<Var<T>>& in, const Tensor<T>& g) {
    // dx = g - exp(y) * sum(g) row by row; fully masked rows get no gradient
    constexpr T kNegInf = -std::numeric_limits<T>::infinity();
    const Tensor<T> gc = g.contiguous();
    const int64_t C = y.size(-1), rows = C == 0 ? 0 : y.numel() / C;
    Tensor<T> dx(y.shape());
    for (int64_t r = 0; r < rows; ++r) {
      const T* yr = y.data() + r * C;
      const T* gr = gc.data() + r * C;
      if (std::all_of(yr, yr + C, [](T v) { return v == kNegInf; })) continue;
      T total = 0;
      for (int64_t c = 0; c < C; ++c) total += gr[c];
      for (int64_t c = 0; c < C; ++c) dx.data()[r * C + c] = gr[c] - std::exp(yr[c]) * total;
    }
    in[0].add_grad(std::move(dx));
  });
}

}  // namespace minimoe
