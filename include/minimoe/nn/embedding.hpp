// minimoe/nn/embedding.hpp: a lookup table of learned vectors, one row per id.
//
//   Embedding<float> wte(/*num=*/50257, /*dim=*/256, rng);
//   Var<float> x = wte(ids);   // ids [B, T] -> [B, T, 256]
#pragma once

#include "minimoe/nn/init.hpp"
#include "minimoe/nn/module.hpp"
#include "minimoe/ops/embedding.hpp"

namespace minimoe {

template <typename T>
struct Embedding {
  using Scalar = T;

  Var<T> weight;  // [num, dim]

  Embedding() = default;
  Embedding(int64_t num, int64_t dim, Rng& rng, double init_std = 0.02) {
    check<ValueError>(num > 0 && dim > 0, "Embedding: sizes must be positive, got {} x {}", num,
                      dim);
    weight = normal_parameter<T>({num, dim}, rng, init_std);
  }

  int64_t num_embeddings() const { return weight.size(0); }
  int64_t embedding_dim() const { return weight.size(1); }

  Var<T> operator()(const Tensor<int32_t>& ids) const { return embedding(weight, ids); }

  void visit(const ModuleVisitor<T>& v) { v.parameter("weight", weight); }
};

}  // namespace minimoe
