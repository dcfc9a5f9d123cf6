// minimoe/nn/dropout.hpp: inverted dropout as a module with a train/eval flag.
//
// The module owns its Rng (seeded at construction), so two runs with the same seed drop the
// same activations, and checkpoints can save where the stream is.
#pragma once

#include "minimoe/nn/module.hpp"
#include "minimoe/ops/dropout.hpp"

namespace minimoe {

template <typename T>
struct Dropout {
  using Scalar = T;

  double p = 0.0;
  bool training = true;
  Rng rng;

  Dropout() = default;
  explicit Dropout(double p_, uint64_t seed = 0) : p(p_), rng(seed) {
    check<ValueError>(p >= 0.0 && p < 1.0, "Dropout: p must be in [0, 1), got {}", p);
  }

  Var<T> operator()(const Var<T>& x) {
    if (!training || p == 0.0) return x;
    return dropout(x, p, rng, training);
  }

  void visit(const ModuleVisitor<T>& v) {
    v.mode(training);
    v.rng("rng", rng);
  }
};

}  // namespace minimoe
