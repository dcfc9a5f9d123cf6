// minimoe/ops/dropout.hpp: inverted dropout driven by an explicit Rng.
//
//   Var<float> h = dropout(x, 0.1, rng);           // training: zero 10%, scale the rest by 1/0.9
//   Var<float> e = dropout(x, 0.1, rng, false);    // evaluation: x itself
//
// The mask comes from `rng`, so the same seed drops the same elements; backward applies the
// same mask to the gradient.
#pragma once

#include "minimoe/autograd/var.hpp"

namespace minimoe {

template <typename T>
Var<T> dropout(const Var<T>& x, double p, Rng& rng, bool training = true) {
  check<ValueError>(p >= 0.0 && p <= 1.0, "dropout: p must be in [0, 1], got {}", p);
  if (!training || p == 0.0) return x;
  const T keep_scale = p == 1.0 ? T(0) : static_cast<T>(1.0 / (1.0 - p));
  Tensor<T> mask(x.shape());  // 0 or 1/(1-p)
  for (int64_t i = 0; i < mask.numel(); ++i) mask.data()[i] = rng.uniform() < p ? T(0) : keep_scale;
  Tensor<T> out = x.value().clone();
  out.array() *= mask.array();
  return make_op<T>("dropout", std::move(out), {x},
                    [mask](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      Tensor<T> dx = g.contiguous().clone();
                      dx.array() *= mask.array();
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace minimoe
