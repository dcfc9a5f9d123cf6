// minimoe/ops/loss.hpp: fused softmax cross-entropy over integer targets.
//
//   Var<float> loss = cross_entropy(logits, targets);   // logits [B, T, V], targets [B, T]
//
// The loss is the mean over positions whose target is not ignore_index of
// logsumexp(logits) - logits[target]. Forward keeps only each row's logsumexp; backward
// rebuilds softmax(logits) - onehot(target) from it, so no [rows, V] probability tensor is
// stored between the passes. With no valid target at all the loss is 0 with zero gradient
// (PyTorch returns NaN), so a fully padded batch does not poison training. The exponentials
// (rows x V of them each way: 100M a step for GPT-2's vocabulary) go through the
// row passes of kernels/softmax.hpp.
#pragma once

#include <algorithm>
#include <cmath>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/kernels/softmax.hpp"

namespace minimoe {

inline constexpr int32_t kIgnoreIndex = -100;

namespace detail {
// Targets that count (not ignore_index), each checked to be a class in [0, V).
inline int64_t count_valid_targets(const Tensor<int32_t>& targets, int64_t V, int32_t ignore_index,
                                   const char* op) {
  int64_t valid = 0;
  for (int64_t r = 0; r < targets.numel(); ++r) {
    const int32_t t = targets.data()[r];
    if (t == ignore_index) continue;
    check<IndexError>(t >= 0 && t < V, "{}: target {} out of range [0, {}) at position {}", op, t,
                      V, r);
    ++valid;
  }
  return valid;
}

}  // namespace detail

template <typename T>
Var<T> cross_entropy(const Var<T>& logits, const Tensor<int32_t>& targets,
                     int32_t ignore_index = kIgnoreIndex) {
  check<ShapeError>(
      logits.dim() >= 1 && targets.dim() == logits.dim() - 1 &&
          std::equal(targets.shape().begin(), targets.shape().end(), logits.shape().begin()),
      "cross_entropy: targets of shape {} for logits of shape {}", targets.shape(), logits.shape());
  const int64_t V = logits.size(-1);
  check<ShapeError>(V > 0, "cross_entropy: logits of shape {} have no classes", logits.shape());
  const Tensor<int32_t> tc = targets.contiguous();
  const int64_t rows = tc.numel();
  const int64_t valid = detail::count_valid_targets(tc, V, ignore_index, "cross_entropy");

  const Tensor<T> xc = logits.value().contiguous();
  // logsumexp of each row as max + log(sum(exp(x - max))), the two parts kept apart: their sum
  // would round log(sum) to the precision of max (about 1e-3 for float logits of 1e4).
  Tensor<T> row_max({rows}), log_sum({rows});
  double total = 0;
#pragma omp parallel for reduction(+ : total) schedule(static) if (detail::worth_parallel(double(rows) * double(V)))
  for (int64_t r = 0; r < rows; ++r) {
    const T* x = xc.data() + r * V;
    const T max = detail::row_max(x, V);
    const T sum = detail::exp_shifted<T>(x, nullptr, V, max);
    row_max.data()[r] = max;
    log_sum.data()[r] = std::log(sum);
    const int32_t t = tc.data()[r];
    if (t != ignore_index) total += static_cast<double>((max - x[t]) + log_sum.data()[r]);
  }
  const T scale = valid == 0 ? T(0) : T(1) / static_cast<T>(valid);
  // The mean taken in double: over many rows the sum can leave T's range while the mean does not.
  Tensor<T> loss = Tensor<T>::scalar(valid == 0 ? T(0) : static_cast<T>(total / double(valid)));

  return make_op<T>("cross_entropy", std::move(loss), {logits},
                    [xc, tc, row_max, log_sum, V, rows, scale, ignore_index](
                        const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const T s = g.item() * scale;
                      Tensor<T> dx(xc.shape());
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(rows) * double(V)))
                      for (int64_t r = 0; r < rows; ++r) {
                        const int32_t t = tc.data()[r];
                        if (t == ignore_index) continue;
                        const T* x = xc.data() + r * V;
                        T* d = dx.data() + r * V;
                        const T max = row_max.data()[r], ls = log_sum.data()[r];
                        detail::exp_shifted(x, d, V, max);
                        detail::scale_row(d, V, s * std::exp(-ls));
                        d[t] -= s;
                      }
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace minimoe
