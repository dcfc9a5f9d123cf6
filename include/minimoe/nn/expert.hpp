// minimoe/nn/expert.hpp: the feed-forward network used as an MoE expert or a dense MLP.
//
//   MLP (GPT-2):   down(act(up(x)))                   act = GELU (tanh approximation)
//   GLU (LLaMA):   down(act(gate(x)) * up(x))         SwiGLU: act = SiLU, GeGLU: GELU,
//                                                     ReLU^2-GLU: act = relu(.)^2
//   ExpertConfig c;                                   // a GPT-2 MLP expert by default
//   c.d_model = 256;
//   c.hidden = 512;
//   Expert<float> e(c, rng);
//   Var<float> y = e(x);                              // [N, 256] -> [N, 256]
//
// Weights are [out, in] like every Linear; names: up, gate (GLU only), down.
#pragma once

#include <string>

#include "minimoe/kernels/activation.hpp"
#include "minimoe/nn/linear.hpp"
#include "minimoe/ops/pointwise.hpp"

namespace minimoe {

template <typename T>
Var<T> activate(const Var<T>& x, Activation a) {
  switch (a) {
    case Activation::GELU:
      return gelu(x, GeluApproximation::Tanh);
    case Activation::GELUExact:
      return gelu(x, GeluApproximation::Exact);
    case Activation::ReLU:
      return relu(x);
    case Activation::SiLU:
      return silu(x);
    case Activation::ReLU2:
      return square(relu(x));
  }
  return x;
}

struct ExpertConfig {
  int64_t d_model = 0;
  int64_t hidden = 0;
  Activation activation = Activation::GELU;
  bool glu = false;  // gated: act(gate(x)) * up(x)
  bool bias = true;  // biases on up, gate and down

  void validate() const {
    check<ValueError>(d_model > 0 && hidden > 0,
                      "expert: d_model and hidden must be positive, got {} and {}", d_model,
                      hidden);
  }
  // Parameters of one expert, in closed form.
  int64_t num_parameters() const {
    const int64_t projections = glu ? 3 : 2;
    return projections * d_model * hidden + (bias ? (glu ? 2 : 1) * hidden + d_model : 0);
  }
};

template <typename T>
struct Expert {
  using Scalar = T;

  ExpertConfig config;
  Linear<T> up;    // [hidden, C]
  Linear<T> gate;  // [hidden, C], GLU only
  Linear<T> down;  // [C, hidden]

  Expert() = default;
  // down_std: init std of the projection into the residual stream (GPT-2 scales it by depth).
  Expert(const ExpertConfig& config_, Rng& rng, double down_std = 0.02) : config(config_) {
    config.validate();
    up = Linear<T>(config.d_model, config.hidden, config.bias, rng);
    if (config.glu) gate = Linear<T>(config.d_model, config.hidden, config.bias, rng);
    down = Linear<T>(config.hidden, config.d_model, config.bias, rng, down_std);
  }

  Var<T> operator()(const Var<T>& x) const {
    const Var<T> h = config.glu ? activate(gate(x), config.activation) * up(x)
                                : activate(up(x), config.activation);
    return down(h);
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("up", up);
    if (config.glu) v.child("gate", gate);
    v.child("down", down);
  }
};

}  // namespace minimoe
