// minimoe/ops/linear_cross_entropy.hpp: an LM head and its cross-entropy as one op, without
// the [rows, V] logits.
//
//   Var<float> loss = linear_cross_entropy(h, w, targets);  // h [..., C], w [V, C], targets [...]
//   // the value and gradients of cross_entropy(matmul(h, w, false, true), targets)
//
// For the `minimoe` preset (2048 rows a step, GPT-2's 50257 tokens) the logits and their
// gradient are 412 MB each, written to memory and read back by the next pass. Here the rows go
// in chunks of a few MB instead: a chunk's logits are computed, reduced to its loss and turned
// in place into its rows of dlogits = (softmax - onehot) / valid, which are multiplied at once
// into dh = dlogits w and dw += dlogits^T h while the chunk is in cache. The gradient depends on
// nothing but the inputs, so it is computed during the forward and the backward only scales it
// by the incoming gradient. Without a gradient to record, only the loss is computed. Targets
// equal to ignore_index count for nothing; with none valid the loss is 0 (as cross_entropy).
#pragma once

#include <algorithm>
#include <cmath>
#include <type_traits>
#include <vector>

#include <Eigen/Core>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/kernels/softmax.hpp"
#include "minimoe/ops/loss.hpp"

namespace minimoe {

namespace detail {

// Rows per chunk. The products lose speed below ~512 rows (bench/lm_head.cpp); 512 rows of
// GPT-2's vocabulary are 103 MB of logits, against 824 MB for the logits and their gradient
// unfused.
inline constexpr int64_t kChunkRows = 512;

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;

// c [m, n] = a [m, k] op(b), b [n, k] when transpose_b else [k, n]; all contiguous.
template <typename T>
void chunk_product(bool transpose_b, int64_t m, int64_t n, int64_t k, const T* a, const T* b,
                   T* c) {
  if constexpr (std::is_same_v<T, float>) {
    gemm(false, transpose_b, m, n, k, a, b, c);
  } else {
    const Eigen::Map<const RowMajor<T>> A(a, m, k);
    Eigen::Map<RowMajor<T>> C(c, m, n);
    if (transpose_b)
      C.noalias() = A * Eigen::Map<const RowMajor<T>>(b, n, k).transpose();
    else
      C.noalias() = A * Eigen::Map<const RowMajor<T>>(b, k, n);
  }
}

// c [m, n] = a [m, k] b [k, n] with k the vocabulary. Split along K when that makes at least 8
// pieces (enough for the threads to share) whose partials stay small; the choice depends on
// the shape only, so the result is the same for any thread count.
template <typename T>
void chunk_dh(int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c) {
  if constexpr (std::is_same_v<T, float>) {
    const int64_t pieces = split_k_pieces(k);
    if (pieces >= 8 && double(pieces) * double(m) * double(n) * sizeof(T) <= 64e6) {
      gemm_split_k(m, n, k, a, k, b, c);
      return;
    }
  }
  chunk_product(false, m, n, k, a, b, c);
}

// c [m, n] = a^T b (c += a^T b when accumulate) for a [k, m], b [k, n].
template <typename T>
void chunk_weight_grad(int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
                       bool accumulate) {
  if constexpr (std::is_same_v<T, float>) {
    if (accumulate)
      gemm_at_b_add(m, n, k, a, b, c);
    else
      gemm(true, false, m, n, k, a, b, c);
  } else {
    const auto product =
        Eigen::Map<const RowMajor<T>>(a, k, m).transpose() * Eigen::Map<const RowMajor<T>>(b, k, n);
    if (accumulate)
      Eigen::Map<RowMajor<T>>(c, m, n).noalias() += product;
    else
      Eigen::Map<RowMajor<T>>(c, m, n).noalias() = product;
  }
}

}  // namespace detail

template <typename T>
Var<T> linear_cross_entropy(const Var<T>& h, const Var<T>& w, const Tensor<int32_t>& targets,
                            int32_t ignore_index = kIgnoreIndex, int64_t chunk_rows = 0) {
  check<ShapeError>(w.dim() == 2, "linear_cross_entropy: the weight must be [V, C], got {}",
                    w.shape());
  const int64_t V = w.size(0), C = w.size(1);
  check<ShapeError>(V > 0, "linear_cross_entropy: a weight of shape {} has no classes", w.shape());
  check<ShapeError>(h.dim() >= 1 && h.size(-1) == C,
                    "linear_cross_entropy: inputs of shape {} for a weight of shape {}", h.shape(),
                    w.shape());
  check<ShapeError>(
      targets.dim() == h.dim() - 1 &&
          std::equal(targets.shape().begin(), targets.shape().end(), h.shape().begin()),
      "linear_cross_entropy: targets of shape {} for inputs of shape {}", targets.shape(),
      h.shape());
  check<ValueError>(chunk_rows >= 0, "linear_cross_entropy: chunk_rows must be >= 0, got {}",
                    chunk_rows);
  const Tensor<int32_t> tc = targets.contiguous();
  const int64_t rows = tc.numel();
  const int64_t valid = detail::count_valid_targets(tc, V, ignore_index, "linear_cross_entropy");
  const Tensor<T> hc = h.value().contiguous();
  const Tensor<T> wc = w.value().contiguous();
  const bool want_dh = grad_enabled() && h.requires_grad();
  const bool want_dw = grad_enabled() && w.requires_grad();
  const bool record = want_dh || want_dw;
  const T scale = valid == 0 ? T(0) : T(1) / static_cast<T>(valid);
  const int64_t chunk = std::min(rows, chunk_rows > 0 ? chunk_rows : detail::kChunkRows);

  Tensor<T> dh = want_dh ? Tensor<T>::empty(hc.shape()) : Tensor<T>();  // every row written
  // The first chunk writes dw, the others add to it; without rows it stays zero.
  Tensor<T> dw = !want_dw   ? Tensor<T>()
                 : rows > 0 ? Tensor<T>::empty(wc.shape())
                            : Tensor<T>(wc.shape());
  Tensor<T> logits = Tensor<T>::empty({std::max<int64_t>(chunk, 1), V});
  // Each row's loss, summed in row order afterwards: the same for any thread count.
  std::vector<double> row_loss(static_cast<size_t>(rows), 0.0);
  for (int64_t r0 = 0; r0 < rows; r0 += chunk) {
    const int64_t n = std::min(chunk, rows - r0);
    const T* hr = hc.data() + r0 * C;
    detail::chunk_product(true, n, V, C, hr, wc.data(), logits.data());
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(n) * double(V)))
    for (int64_t i = 0; i < n; ++i) {
      T* x = logits.data() + i * V;
      const int32_t t = tc.data()[r0 + i];
      if (t == ignore_index) {
        if (record) std::fill_n(x, V, T(0));
        continue;
      }
      // logsumexp as max + log(sum(exp(x - max))), the parts kept apart (see cross_entropy).
      const T max = detail::row_max(x, V);
      const T target_logit = x[t];
      const T sum = detail::exp_shifted(x, record ? x : nullptr, V, max);
      row_loss[r0 + i] = double((max - target_logit) + std::log(sum));
      if (!record) continue;
      detail::scale_row(x, V, scale / sum);  // dlogits = softmax / valid - onehot / valid
      x[t] -= scale;
    }
    if (want_dh) detail::chunk_dh(n, C, V, logits.data(), wc.data(), dh.data() + r0 * C);
    if (want_dw) detail::chunk_weight_grad(V, C, n, logits.data(), hr, dw.data(), r0 > 0);
  }
  double total = 0;
  for (double l : row_loss) total += l;
  // The mean taken in double: over many rows the sum can leave T's range while the mean does not.
  Tensor<T> loss = Tensor<T>::scalar(valid == 0 ? T(0) : static_cast<T>(total / double(valid)));
  if (!record) return Var<T>(std::move(loss));

  return make_op<T>("linear_cross_entropy", std::move(loss), {h, w},
                    [dh, dw](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const T s = g.item();
                      for (int i = 0; i < 2; ++i) {
                        const Tensor<T>& d = i == 0 ? dh : dw;
                        if (!in[i].requires_grad() || !d.defined()) continue;
                        Tensor<T> scaled = Tensor<T>::empty(d.shape());
                        const T* src = d.data();
                        T* dst = scaled.data();
                        detail::parallel_for(d.numel(), [&](int64_t j) { dst[j] = src[j] * s; });
                        in[i].add_grad(std::move(scaled));
                      }
                    });
}

}  // namespace minimoe
