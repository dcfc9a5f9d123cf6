// minimoe/ops/norm.hpp: fused LayerNorm and RMSNorm over the last axis.
//
//   Var<float> y = layer_norm(x, weight, bias);   // x [..., C], weight and bias [C]
//   Var<float> z = rms_norm(x, weight);           // Llama / Tiny MoE style, no centring
//
// weight and bias may be undefined Vars (no affine part). Forward caches the normalised input
// xhat and 1/std of each row; backward uses the closed form
//   dx = rstd * (dxhat - mean(dxhat) - xhat * mean(dxhat * xhat)),   dxhat = dy * weight
// (RMSNorm drops the mean(dxhat) term) instead of a graph of a dozen elementwise ops.
#pragma once

#include <cmath>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/parallel.hpp"
#include "minimoe/tensor/broadcast.hpp"

namespace minimoe {

namespace detail {

template <typename T>
void check_norm_params(const char* op, const Var<T>& x, const Var<T>& param, const char* what) {
  check<ShapeError>(x.dim() >= 1, "{}: input must be at least 1-d, got shape {}", op, x.shape());
  if (!param.defined()) return;
  check<ShapeError>(param.dim() == 1 && param.size(0) == x.size(-1),
                    "{}: {} of shape {} for input of shape {}", op, what, param.shape(), x.shape());
}

// xhat = (x - mean) * rstd of one row of C values (mean = 0 when not centre); returns rstd.
// out may be in.
template <typename T>
T normalize_row(const T* in, T* out, int64_t C, double eps, bool centre) {
  T mu = 0;
  if (centre) {
    for (int64_t c = 0; c < C; ++c) mu += in[c];
    mu /= static_cast<T>(C);
  }
  T var = 0;
  for (int64_t c = 0; c < C; ++c) var += (in[c] - mu) * (in[c] - mu);
  var /= static_cast<T>(C);
  const T s = T(1) / std::sqrt(var + static_cast<T>(eps));
  for (int64_t c = 0; c < C; ++c) out[c] = (in[c] - mu) * s;
  return s;
}

// Shared by both norms: y = xhat * w + b, where xhat = (x - mean) * rstd (mean = 0 for
// RMSNorm). Returns the op wired to x, weight, bias.
template <typename T>
Var<T> normalize_last_axis(const char* op, const Var<T>& x, const Var<T>& weight,
                           const Var<T>& bias, double eps, bool centre) {
  const Tensor<T> xc = x.value().contiguous();
  const int64_t C = x.size(-1), rows = C == 0 ? 0 : xc.numel() / C;
  // Every element of the three is written below.
  Tensor<T> xhat = Tensor<T>::empty(xc.shape()), y = Tensor<T>::empty(xc.shape());
  Tensor<T> rstd = Tensor<T>::empty({rows});
  const Tensor<T> wc = weight.defined() ? weight.value().contiguous() : Tensor<T>();
  const Tensor<T> bc = bias.defined() ? bias.value().contiguous() : Tensor<T>();
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(rows) * double(C)))
  for (int64_t r = 0; r < rows; ++r) {
    T* xh = xhat.data() + r * C;
    rstd.data()[r] = normalize_row(xc.data() + r * C, xh, C, eps, centre);
    T* yr = y.data() + r * C;
    for (int64_t c = 0; c < C; ++c) {
      T v = xh[c];
      if (wc.defined()) v *= wc.data()[c];
      if (bc.defined()) v += bc.data()[c];
      yr[c] = v;
    }
  }

  std::vector<Var<T>> inputs;  // reserved first: GCC 12 misreads a push onto a list-built one
  inputs.reserve(3);
  inputs.push_back(x);
  if (weight.defined()) inputs.push_back(weight);
  if (bias.defined()) inputs.push_back(bias);
  const bool has_weight = weight.defined(), has_bias = bias.defined();
  return make_op<T>(op, std::move(y), std::move(inputs),
                    [xhat, rstd, wc, C, rows, centre, has_weight, has_bias](
                        const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> gc = g.contiguous();
                      if (has_weight && in[1].requires_grad()) {
                        Tensor<T> dw({C});
                        column_sums(gc.data(), xhat.data(), rows, C, dw.data());
                        in[1].add_grad(std::move(dw));
                      }
                      const size_t bias_slot = has_weight ? 2 : 1;
                      if (has_bias && in[bias_slot].requires_grad())
                        in[bias_slot].add_grad(sum_to(gc, {C}));
                      if (!in[0].requires_grad()) return;
                      Tensor<T> dx = Tensor<T>::empty(xhat.shape());  // every row written
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(rows) * double(C)))
                      for (int64_t r = 0; r < rows; ++r) {
                        const T* gr = gc.data() + r * C;
                        const T* xh = xhat.data() + r * C;
                        T* d = dx.data() + r * C;
                        T mean_dxhat = 0, mean_dxhat_xhat = 0;
                        for (int64_t c = 0; c < C; ++c) {
                          const T dxhat = has_weight ? gr[c] * wc.data()[c] : gr[c];
                          d[c] = dxhat;
                          mean_dxhat += dxhat;
                          mean_dxhat_xhat += dxhat * xh[c];
                        }
                        mean_dxhat = centre ? mean_dxhat / static_cast<T>(C) : T(0);
                        mean_dxhat_xhat /= static_cast<T>(C);
                        const T s = rstd.data()[r];
                        for (int64_t c = 0; c < C; ++c)
                          d[c] = s * (d[c] - mean_dxhat - xh[c] * mean_dxhat_xhat);
                      }
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace detail

// (x - mean) / sqrt(var + eps) * weight + bias over the last axis (biased variance).
template <typename T>
Var<T> layer_norm(const Var<T>& x, const Var<T>& weight = {}, const Var<T>& bias = {},
                  double eps = 1e-5) {
  detail::check_norm_params("layer_norm", x, weight, "weight");
  detail::check_norm_params("layer_norm", x, bias, "bias");
  return detail::normalize_last_axis("layer_norm", x, weight, bias, eps, /*centre=*/true);
}

// x / sqrt(mean(x^2) + eps) * weight over the last axis.
template <typename T>
Var<T> rms_norm(const Var<T>& x, const Var<T>& weight = {}, double eps = 1e-6) {
  detail::check_norm_params("rms_norm", x, weight, "weight");
  return detail::normalize_last_axis("rms_norm", x, weight, Var<T>(), eps, /*centre=*/false);
}

}  // namespace minimoe
