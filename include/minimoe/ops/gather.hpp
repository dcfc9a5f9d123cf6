// minimoe/ops/gather.hpp: the two indexing ops that token routing is made of.
//
//   gather(probs, topk)          probs [N, E], topk [N, K] -> [N, K], out[n, k] = probs[n, topk[n, k]]
//   index_add(rows, index, N)    rows [R, C], index [R]    -> [N, C], out[index[r]] += rows[r]
//
// gather picks each token's routing weights out of the router's probabilities; index_add
// combines expert outputs back into token order (several rows may land on the same token).
// Each is the other's backward.
#pragma once

#include "minimoe/autograd/var.hpp"

namespace minimoe {

namespace detail {

inline void check_index(int32_t i, int64_t extent, const char* op, int64_t position) {
  check<IndexError>(i >= 0 && i < extent, "{}: index {} out of range [0, {}) at position {}", op, i,
                    extent, position);
}

// out[index[r], :] += rows[r, :] for contiguous [R, C] rows into a zeroed [N, C].
template <typename T>
Tensor<T> scatter_add_rows(const Tensor<T>& rows, const Tensor<int32_t>& index, int64_t n) {
  const int64_t R = rows.size(0), C = rows.size(1);
  Tensor<T> out({n, C});
  for (int64_t r = 0; r < R; ++r) {
    const T* src = rows.data() + r * C;
    T* dst = out.data() + int64_t{index.data()[r]} * C;
    for (int64_t c = 0; c < C; ++c) dst[c] += src[c];
  }
  return out;
}

}  // namespace detail

// out[..., k] = x[..., index[..., k]] along the last axis; x [..., E], index [..., K].
template <typename T>
Var<T> gather(const Var<T>& x, const Tensor<int32_t>& index) {
  check<ShapeError>(x.dim() >= 1 && index.dim() == x.dim() &&
                        std::equal(x.shape().begin(), x.shape().end() - 1, index.shape().begin()),
                    "gather: index of shape {} for input of shape {}", index.shape(), x.shape());
  const int64_t E = x.size(-1), K = index.size(-1), rows = x.numel() / std::max<int64_t>(E, 1);
  const Tensor<T> xc = x.value().contiguous();
  const Tensor<int32_t> ic = index.contiguous();
  Tensor<T> out(ic.shape());
  for (int64_t r = 0; r < rows; ++r)
    for (int64_t k = 0; k < K; ++k) {
      const int32_t e = ic.data()[r * K + k];
      detail::check_index(e, E, "gather", r * K + k);
      out.data()[r * K + k] = xc.data()[r * E + e];
    }
  return make_op<T>("gather", std::move(out), {x},
                    [ic, E, K, rows](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> gc = g.contiguous();
                      Tensor<T> dx(in[0].shape());
                      for (int64_t r = 0; r < rows; ++r)
                        for (int64_t k = 0; k < K; ++k)
                          dx.data()[r * E + ic.data()[r * K + k]] += gc.data()[r * K + k];
                      in[0].add_grad(std::move(dx));
                    });
}

// out = zeros [n, C]; out[index[r]] += rows[r] for every row r of rows [R, C].
template <typename T>
Var<T> index_add(const Var<T>& rows, const Tensor<int32_t>& index, int64_t n) {
  check<ShapeError>(rows.dim() == 2 && index.dim() == 1 && index.size(0) == rows.size(0),
                    "index_add: index of shape {} for rows of shape {}", index.shape(),
                    rows.shape());
  check<ValueError>(n >= 0, "index_add: negative output size {}", n);
  const Tensor<int32_t> ic = index.contiguous();
  for (int64_t r = 0; r < ic.numel(); ++r) detail::check_index(ic.data()[r], n, "index_add", r);
  Tensor<T> out = detail::scatter_add_rows(rows.value().contiguous(), ic, n);
  return make_op<T>("index_add", std::move(out), {rows},
                    [ic](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> gc = g.contiguous();
                      const int64_t R = in[0].size(0), C = in[0].size(1);
                      Tensor<T> dr({R, C});
                      for (int64_t r = 0; r < R; ++r)
                        std::copy_n(gc.data() + int64_t{ic.data()[r]} * C, C, dr.data() + r * C);
                      in[0].add_grad(std::move(dr));
                    });
}

}  // namespace minimoe
