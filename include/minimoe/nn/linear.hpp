// minimoe/nn/linear.hpp: y = x W^T + b, with W stored [out, in] as in PyTorch.
//
//   Linear<float> proj(/*in=*/256, /*out=*/1024, /*bias=*/true, rng);
//   Var<float> y = proj(x);   // [B, T, 256] -> [B, T, 1024]
//
// The PyTorch layout keeps checkpoints readable by PyTorch tools without transposes; the
// product reads W through a transposed map, which costs nothing.
#pragma once

#include "minimoe/nn/init.hpp"
#include "minimoe/nn/module.hpp"
#include "minimoe/ops/elementwise.hpp"
#include "minimoe/ops/matmul.hpp"

namespace minimoe {

template <typename T>
struct Linear {
  using Scalar = T;

  Var<T> weight;  // [out, in]
  Var<T> bias;    // [out], or undefined for no bias

  Linear() = default;
  Linear(int64_t in_features, int64_t out_features, bool with_bias, Rng& rng,
         double init_std = 0.02) {
    check<ValueError>(in_features > 0 && out_features > 0,
                      "Linear: features must be positive, got in={} out={}", in_features,
                      out_features);
    weight = normal_parameter<T>({out_features, in_features}, rng, init_std);
    if (with_bias) bias = constant_parameter<T>({out_features}, T(0));
  }

  int64_t in_features() const { return weight.size(1); }
  int64_t out_features() const { return weight.size(0); }

  Var<T> operator()(const Var<T>& x) const {  // [..., in] -> [..., out]
    check<ShapeError>(x.dim() >= 1 && x.size(-1) == in_features(),
                      "Linear: input of shape {} for {} input features", x.shape(), in_features());
    Var<T> y = matmul(x, weight, /*transpose_a=*/false, /*transpose_b=*/true);
    return bias.defined() ? y + bias : y;
  }

  void visit(const ModuleVisitor<T>& v) {
    v.parameter("weight", weight);
    v.parameter("bias", bias);
  }
};

}  // namespace minimoe
