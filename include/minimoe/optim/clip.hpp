// minimoe/optim/clip.hpp: global-norm gradient clipping.
//
//   double norm = clip_grad_norm(parameters(model), /*max_norm=*/1.0);
//   if (!std::isfinite(norm)) { ... skip the step ... }
//
// The norm is taken over all gradients together (as torch.nn.utils.clip_grad_norm_), summed in
// double so that millions of small squares do not lose precision. When it exceeds max_norm,
// every gradient is scaled by max_norm / norm; a non-finite norm leaves the gradients as they
// are and is returned, so the caller can skip the step.
#pragma once

#include <cmath>
#include <vector>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

template <typename T>
double grad_norm(const std::vector<Var<T>>& params) {
  double sum = 0.0;
  for (const Var<T>& p : params) {
    if (!p.has_grad()) continue;
    const Tensor<T> g = p.grad().contiguous();
    const T* d = g.data();
    double s = 0.0;
    for (int64_t i = 0; i < g.numel(); ++i) s += double(d[i]) * double(d[i]);
    sum += s;
  }
  return std::sqrt(sum);
}

// Returns the norm before clipping. max_norm <= 0 only measures.
template <typename T>
double clip_grad_norm(const std::vector<Var<T>>& params, double max_norm) {
  const double norm = grad_norm(params);
  if (max_norm <= 0.0 || !std::isfinite(norm) || norm <= max_norm) return norm;
  const T scale = static_cast<T>(max_norm / norm);
  for (const Var<T>& p : params) {
    if (!p.has_grad()) continue;
    Tensor<T> g = p.grad();  // shares the gradient's storage
    g.array() *= scale;
  }
  return norm;
}

}  // namespace minimoe
