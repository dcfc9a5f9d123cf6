// minimoe/nn/init.hpp: parameter construction and initialisation.
//
// GPT-2's scheme: weights N(0, 0.02), biases and norm offsets 0, norm gains 1; projections
// that write into the residual stream get a smaller std (0.02 / sqrt(2 * n_layers)) so the
// residual's variance does not grow with depth. All draws come from a caller's Rng, so a seed
// fixes the whole model.
#pragma once

#include "minimoe/autograd/var.hpp"

namespace minimoe {

// A trainable leaf.
template <typename T>
Var<T> make_parameter(Tensor<T> value) {
  return Var<T>(std::move(value), /*requires_grad=*/true);
}

template <typename T>
Var<T> normal_parameter(Shape shape, Rng& rng, double stddev) {
  return make_parameter(Tensor<T>::randn(std::move(shape), rng, stddev));
}

template <typename T>
Var<T> constant_parameter(Shape shape, T value) {
  return make_parameter(Tensor<T>::full(std::move(shape), value));
}

}  // namespace minimoe
