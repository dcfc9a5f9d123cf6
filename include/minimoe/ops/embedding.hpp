// minimoe/ops/embedding.hpp: row lookup in an embedding table.
//
//   Var<float> x = embedding(wte, ids);   // wte [V, C], ids [B, T] -> [B, T, C]
//
// Backward scatter-adds each position's gradient into the row it read, so a token seen twice
// in a batch gets both contributions.
#pragma once

#include <algorithm>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

template <typename T>
Var<T> embedding(const Var<T>& weight, const Tensor<int32_t>& ids) {
  check<ShapeError>(weight.dim() == 2, "embedding: weight must be 2-d [vocab, dim], got shape {}",
                    weight.shape());
  const int64_t V = weight.size(0), C = weight.size(1);
  const Tensor<int32_t> ic = ids.contiguous();
  const int64_t n = ic.numel();
  for (int64_t i = 0; i < n; ++i)
    check<IndexError>(ic.data()[i] >= 0 && ic.data()[i] < V,
                      "embedding: id {} out of range [0, {}) at position {}", ic.data()[i], V, i);
  Shape shape = ic.shape();
  shape.push_back(C);
  const Tensor<T> wc = weight.value().contiguous();
  Tensor<T> out = Tensor<T>::empty(shape);  // every row copied below
  for (int64_t i = 0; i < n; ++i)
    std::copy_n(wc.data() + int64_t{ic.data()[i]} * C, C, out.data() + i * C);
  return make_op<T>("embedding", std::move(out), {weight},
                    [ic, n, C](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      // Straight into the table's gradient: with a tied LM head it already
                      // holds the head's dense gradient, and a dense one here would cost two
                      // passes over [V, C] for n rows.
                      in[0].add_grad_rows(ic, g.reshape({n, C}));
                    });
}

}  // namespace minimoe
