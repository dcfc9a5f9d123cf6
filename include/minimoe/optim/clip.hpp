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

#include <algorithm>
#include <cmath>
#include <vector>

#include <Eigen/Core>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/parallel.hpp"

namespace minimoe {

// The sum of the squares of all gradients (grad_norm squared).
template <typename T>
double grad_squared_norm(const std::vector<Var<T>>& params) {
  // Fixed blocks, each summed with Eigen's vectorised reduction and added in order: the same
  // bits for any thread count.
  constexpr int64_t kBlock = 16384;
  double sum = 0.0;
  std::vector<double> partial;
  for (const Var<T>& p : params) {
    if (!p.has_grad()) continue;
    const Tensor<T> g = p.grad().contiguous();
    const int64_t n = g.numel(), blocks = (n + kBlock - 1) / kBlock;
    partial.assign(static_cast<size_t>(blocks), 0.0);
#pragma omp parallel for schedule(static) if (blocks > 2)
    for (int64_t b = 0; b < blocks; ++b) {
      const int64_t begin = b * kBlock, len = std::min(kBlock, n - begin);
      partial[static_cast<size_t>(b)] =
          Eigen::Map<const Eigen::Array<T, Eigen::Dynamic, 1>>(g.data() + begin, len)
              .template cast<double>()
              .square()
              .sum();
    }
    for (double s : partial) sum += s;
  }
  return sum;
}

template <typename T>
double grad_norm(const std::vector<Var<T>>& params) {
  return std::sqrt(grad_squared_norm(params));
}

// Scales the gradients so that their global norm, measured as `norm` (over these parameters
// and possibly others elsewhere), becomes max_norm when it exceeds it. Returns norm.
template <typename T>
double clip_grad_to_norm(const std::vector<Var<T>>& params, double norm, double max_norm) {
  if (max_norm <= 0.0 || !std::isfinite(norm) || norm <= max_norm) return norm;
  const T scale = static_cast<T>(max_norm / norm);
  for (const Var<T>& p : params) {
    if (!p.has_grad()) continue;
    Tensor<T> g = p.grad();  // shares the gradient's storage
    T* d = g.data();
    detail::parallel_for(g.numel(), [&](int64_t i) { d[i] *= scale; });
  }
  return norm;
}

// Returns the norm before clipping. max_norm <= 0 only measures.
template <typename T>
double clip_grad_norm(const std::vector<Var<T>>& params, double max_norm) {
  return clip_grad_to_norm(params, grad_norm(params), max_norm);
}

}  // namespace minimoe
