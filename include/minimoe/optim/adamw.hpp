// minimoe/optim/adamw.hpp: AdamW (Loshchilov & Hutter), the optimizer of every GPT recipe.
//
//   AdamW<float> opt(named_parameters(model), AdamWConfig{});
//   loss.backward();
//   opt.step(lr);        // lr from a schedule, per step
//   opt.zero_grad();
//
// Weight decay is decoupled (p -= lr * wd * p, not added to the gradient) and applies only
// to tensors with two or more dimensions (matrices and embeddings), never to biases and norm
// gains: nanoGPT's rule. A parameter without a gradient this step is left untouched.
#pragma once

#include <algorithm>
#include <cmath>
#include <string>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

struct AdamWConfig {
  double beta1 = 0.9;
  double beta2 = 0.95;
  double eps = 1e-8;
  double weight_decay = 0.1;

  void validate() const {
    check<ValueError>(beta1 >= 0 && beta1 < 1 && beta2 >= 0 && beta2 < 1,
                      "AdamW: betas must be in [0, 1), got {} and {}", beta1, beta2);
    check<ValueError>(eps > 0, "AdamW: eps must be positive, got {}", eps);
    check<ValueError>(weight_decay >= 0, "AdamW: weight_decay must be >= 0, got {}", weight_decay);
  }
};

template <typename T>
class AdamW {
 public:
  struct Slot {
    std::string name;
    Var<T> parameter;
    Tensor<T> m;  // first moment
    Tensor<T> v;  // second moment
    bool decay;
  };

  AdamW(const std::vector<std::pair<std::string, Var<T>>>& parameters, const AdamWConfig& config)
      : config_(config) {
    config_.validate();
    for (const auto& [name, p] : parameters)
      slots_.push_back({name, p, Tensor<T>(p.shape()), Tensor<T>(p.shape()), p.dim() >= 2});
  }

  void step(double lr) {
    ++steps_;
    const double correction1 = 1.0 - std::pow(config_.beta1, double(steps_));
    const double correction2 = 1.0 - std::pow(config_.beta2, double(steps_));
    const T b1 = T(config_.beta1), b2 = T(config_.beta2), eps = T(config_.eps);
    const T step_size = T(lr / correction1);
    const T inv_sqrt_c2 = T(1.0 / std::sqrt(correction2));
    for (Slot& s : slots_) {
      if (!s.parameter.has_grad()) continue;
      const Tensor<T> g = s.parameter.grad().contiguous();
      const T decay = s.decay ? T(1.0 - lr * config_.weight_decay) : T(1);
      // Eigen's arrays, because they vectorise the square root, which a plain loop does not
      // (std::sqrt may set errno); elements are independent, so any split gives the same bits.
      using Array = Eigen::Map<Eigen::Array<T, Eigen::Dynamic, 1>>;
      using ConstArray = Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>;
      const int64_t n = g.numel(), blocks = (n + kBlock - 1) / kBlock;
#pragma omp parallel for schedule(static) if (blocks > 2)
      for (int64_t b = 0; b < blocks; ++b) {
        const int64_t begin = b * kBlock, len = std::min(kBlock, n - begin);
        Array m(s.m.data() + begin, len), v(s.v.data() + begin, len);
        Array p(s.parameter.value().data() + begin, len);
        const ConstArray grad(g.data() + begin, len);
        m = b1 * m + (1 - b1) * grad;
        v = b2 * v + (1 - b2) * grad.square();
        p = p * decay - step_size * m / (v.sqrt() * inv_sqrt_c2 + eps);
      }
    }
  }

  void zero_grad() {
    for (Slot& s : slots_) s.parameter.zero_grad();
  }

  int64_t steps() const { return steps_; }
  const AdamWConfig& config() const { return config_; }
  // Moments and names, for checkpoints.
  std::vector<Slot>& slots() { return slots_; }
  void set_steps(int64_t steps) { steps_ = steps; }

 private:
  static constexpr int64_t kBlock = 16384;  // elements per task of the update

  AdamWConfig config_;
  std::vector<Slot> slots_;
  int64_t steps_ = 0;
};

}  // namespace minimoe
