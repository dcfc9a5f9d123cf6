// minimoe/ops/logsumexp.hpp: log(sum(exp(x))) over the last axis, computed stably.
//
//   Var<float> lse = logsumexp(router_logits);   // [N, E] -> [N]
//
// The router z-loss (ST-MoE) is mean(logsumexp(logits)^2); the gradient of logsumexp is the
// softmax of its input, which backward recomputes from the cached result.
#pragma once

#include <cmath>
#include <limits>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

template <typename T>
Var<T> logsumexp(const Var<T>& x) {
  check<ShapeError>(x.dim() >= 1 && x.size(-1) > 0,
                    "logsumexp: input of shape {} has no last axis to reduce", x.shape());
  const Tensor<T> xc = x.value().contiguous();
  const int64_t C = xc.size(-1), rows = xc.numel() / C;
  Shape out_shape(xc.shape().begin(), xc.shape().end() - 1);
  Tensor<T> out(out_shape);
  for (int64_t r = 0; r < rows; ++r) {
    const T* row = xc.data() + r * C;
    const T max = *std::max_element(row, row + C);
    if (std::isinf(max) && max < 0) {  // every entry -inf: the sum of exps is 0
      out.data()[r] = max;
      continue;
    }
    T sum = 0;
    for (int64_t c = 0; c < C; ++c) sum += std::exp(row[c] - max);
    out.data()[r] = max + std::log(sum);
  }
  return make_op<T>(
      "logsumexp", out, {x}, [xc, out, C, rows](const std::vector<Var<T>>& in, const Tensor<T>& g) {
        const Tensor<T> gc = g.contiguous();
        Tensor<T> dx(xc.shape());
        for (int64_t r = 0; r < rows; ++r)
          for (int64_t c = 0; c < C; ++c)
            dx.data()[r * C + c] = gc.data()[r] * std::exp(xc.data()[r * C + c] - out.data()[r]);
        in[0].add_grad(std::move(dx));
      });
}

}  // namespace minimoe
