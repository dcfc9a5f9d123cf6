// minimoe/nn/norm.hpp: LayerNorm (GPT-2) and RMSNorm (LLaMA, Mixtral) over the last axis.
//
//   LayerNorm<float> ln(256);             // gain 1, bias 0
//   LayerNorm<float> ln_nb(256, false);   // no bias, as in nanoGPT's bias=False option
//   RMSNorm<float> rms(256);
#pragma once

#include "minimoe/nn/init.hpp"
#include "minimoe/nn/module.hpp"
#include "minimoe/ops/norm.hpp"

namespace minimoe {

template <typename T>
struct LayerNorm {
  using Scalar = T;

  Var<T> weight;  // [C]
  Var<T> bias;    // [C], or undefined
  double eps = 1e-5;

  LayerNorm() = default;
  explicit LayerNorm(int64_t dim, bool with_bias = true, double eps_ = 1e-5) : eps(eps_) {
    check<ValueError>(dim > 0, "LayerNorm: dim must be positive, got {}", dim);
    weight = constant_parameter<T>({dim}, T(1));
    if (with_bias) bias = constant_parameter<T>({dim}, T(0));
  }

  Var<T> operator()(const Var<T>& x) const { return layer_norm(x, weight, bias, eps); }

  void visit(const ModuleVisitor<T>& v) {
    v.parameter("weight", weight);
    v.parameter("bias", bias);
  }
};

template <typename T>
struct RMSNorm {
  using Scalar = T;

  Var<T> weight;  // [C]
  double eps = 1e-6;

  RMSNorm() = default;
  explicit RMSNorm(int64_t dim, double eps_ = 1e-6) : eps(eps_) {
    check<ValueError>(dim > 0, "RMSNorm: dim must be positive, got {}", dim);
    weight = constant_parameter<T>({dim}, T(1));
  }

  Var<T> operator()(const Var<T>& x) const { return rms_norm(x, weight, eps); }

  void visit(const ModuleVisitor<T>& v) { v.parameter("weight", weight); }
};

enum class NormKind { LayerNorm, RMSNorm };

// A LayerNorm or an RMSNorm chosen at run time (from a model config); names its parameters
// like the one it holds.
template <typename T>
struct Norm {
  using Scalar = T;

  NormKind kind = NormKind::LayerNorm;
  LayerNorm<T> ln;
  RMSNorm<T> rms;

  Norm() = default;
  Norm(NormKind kind_, int64_t dim, bool with_bias, double eps) : kind(kind_) {
    if (kind == NormKind::LayerNorm)
      ln = LayerNorm<T>(dim, with_bias, eps);
    else
      rms = RMSNorm<T>(dim, eps);
  }

  Var<T> operator()(const Var<T>& x) const { return kind == NormKind::LayerNorm ? ln(x) : rms(x); }

  void visit(const ModuleVisitor<T>& v) {
    if (kind == NormKind::LayerNorm)
      ln.visit(v);
    else
      rms.visit(v);
  }
};

}  // namespace minimoe
