// minimoe/nn/linear.hpp: y = x W^T + b, with W stored [out, in] as in PyTorch.
//
//   Linear<float> proj(/*in=*/256, /*out=*/1024, /*bias=*/true, rng);
//   Var<float> y = proj(x);   // [B, T, 256] -> [B, T, 1024]
//
// The PyTorch layout keeps checkpoints readable by PyTorch tools without transposes; the
// product reads W through a transposed map, which costs nothing.
//
// For inference a float Linear can carry an int8 copy of its weight (models/quantize.hpp sets
// it): then the product streams int8 rows with per-output-channel scales instead of W
// (kernels/int8_gemm.hpp), and gradients are refused, as nothing can flow through it.
#pragma once

#include <memory>
#include <vector>

#include "minimoe/kernels/int8_gemm.hpp"
#include "minimoe/nn/init.hpp"
#include "minimoe/nn/module.hpp"
#include "minimoe/ops/elementwise.hpp"
#include "minimoe/ops/matmul.hpp"

namespace minimoe {

// A weight [out, in] as int8 rows and one scale per row: W[o, i] ~= scale[o] q[o, i], with
// |W - q scale| <= scale / 2 (symmetric, per output channel; see kernels/int8_gemm.hpp).
struct Int8Weight {
  int64_t out_features = 0, in_features = 0;
  std::vector<int8_t> q;     // [out, in]
  std::vector<float> scale;  // [out]

  static Int8Weight quantize(const Tensor<float>& weight) {
    check<ShapeError>(weight.dim() == 2, "Int8Weight: a weight must be [out, in], got {}",
                      weight.shape());
    Int8Weight w;
    w.out_features = weight.size(0);
    w.in_features = weight.size(1);
    w.q.resize(static_cast<size_t>(weight.numel()));
    w.scale.resize(static_cast<size_t>(w.out_features));
    const Tensor<float> dense = weight.contiguous();
    quantize_rows_int8(dense.data(), w.out_features, w.in_features, w.q.data(), w.scale.data());
    return w;
  }

  // Bytes one product reads: the int8 rows and their scales.
  int64_t bytes() const {
    return int64_t(q.size()) + int64_t(scale.size()) * int64_t(sizeof(float));
  }
};

// x [..., in] -> x W^T + bias [..., out] with W in int8; inference only (no graph is recorded,
// so it refuses to run while gradients are enabled rather than silently train nothing).
inline Var<float> linear_int8(const Var<float>& x, const Int8Weight& w, const Var<float>& bias) {
  check<ValueError>(!grad_enabled(),
                    "Linear: int8 weights are for inference only; run the model under a "
                    "NoGradGuard (gradients cannot flow through quantised weights)");
  check<ShapeError>(x.dim() >= 1 && x.size(-1) == w.in_features,
                    "Linear: input of shape {} for {} input features", x.shape(), w.in_features);
  const Tensor<float> xc = x.value().contiguous();
  const Tensor<float> b = bias.defined() ? bias.value().contiguous() : Tensor<float>();
  Shape shape = x.shape();
  shape.back() = w.out_features;
  Tensor<float> y = Tensor<float>::empty(shape);
  int8_matmul(xc.numel() / w.in_features, w.out_features, w.in_features, xc.data(), w.q.data(),
              w.scale.data(), bias.defined() ? b.data() : nullptr, y.data());
  return Var<float>(std::move(y));
}

template <typename T>
struct Linear {
  using Scalar = T;

  Var<T> weight;  // [out, in]
  Var<T> bias;    // [out], or undefined for no bias
  // Inference: an int8 copy of weight that the product uses instead (float Linears only; the
  // copy is not a parameter and is not saved).
  std::shared_ptr<const Int8Weight> int8;

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
    if constexpr (std::is_same_v<T, float>)
      if (int8) return linear_int8(x, *int8, bias);
    Var<T> y = matmul(x, weight, /*transpose_a=*/false, /*transpose_b=*/true);
    return bias.defined() ? y + bias : y;
  }

  void visit(const ModuleVisitor<T>& v) {
    v.parameter("weight", weight);
    v.parameter("bias", bias);
  }
};

}  // namespace minimoe
