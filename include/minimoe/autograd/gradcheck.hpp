// minimoe/autograd/gradcheck.hpp: checks backward closures against finite differences.
//
// gradcheck compares the full Jacobian of fn computed by backward (one pass per output
// element, seeded with a one-hot gradient) with central differences
// (f(x + eps) - f(x - eps)) / (2 eps) of every input element, in double precision.
//
//   auto result = gradcheck([](const std::vector<Var<double>>& in) { return tanh(in[0]); },
//                           {Tensor<double>::randn({3, 4}, rng)});
//   if (!result.ok) std::cerr << result.message;
//
// fn must be deterministic: an op that draws random numbers (dropout) must reseed inside fn.
// For piecewise functions (relu, max, top-k routing) choose inputs away from the kinks: a
// perturbation that crosses one makes the finite difference meaningless.
#pragma once

#include <cmath>
#include <functional>
#include <string>
#include <vector>

#include <fmt/format.h>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

struct GradcheckOptions {
  double eps = 1e-6;   // finite-difference step
  double atol = 1e-5;  // |analytic - numeric| <= atol + rtol * |numeric|
  double rtol = 1e-4;
  // Which inputs to differentiate; empty means all of them.
  std::vector<bool> wrt;
};

// Options that differentiate only the inputs marked true.
inline GradcheckOptions only_wrt(std::vector<bool> wrt) {
  GradcheckOptions options;
  options.wrt = std::move(wrt);
  return options;
}

struct GradcheckResult {
  bool ok = true;
  double max_abs_error = 0.0;
  std::string message;  // the worst mismatch, when !ok
};

using GradcheckFn = std::function<Var<double>(const std::vector<Var<double>>&)>;

inline GradcheckResult gradcheck(const GradcheckFn& fn, const std::vector<Tensor<double>>& inputs,
                                 const GradcheckOptions& options = {}) {
  const size_t n_inputs = inputs.size();
  auto differentiated = [&](size_t i) { return options.wrt.empty() || options.wrt.at(i); };

  // Fresh leaves each call, so no gradient or graph leaks between evaluations.
  auto make_leaves = [&](const std::vector<Tensor<double>>& values) {
    std::vector<Var<double>> leaves;
    for (size_t i = 0; i < n_inputs; ++i) leaves.emplace_back(values[i].clone(), differentiated(i));
    return leaves;
  };
  auto evaluate = [&](const std::vector<Tensor<double>>& values) {
    NoGradGuard no_grad;
    return fn(make_leaves(values)).value().contiguous();
  };

  const Tensor<double> output = evaluate(inputs);
  const int64_t m = output.numel();

  // analytic[i][r * n_i + j] = d output[r] / d input_i[j]
  std::vector<std::vector<double>> analytic(n_inputs);
  for (size_t i = 0; i < n_inputs; ++i)
    if (differentiated(i)) analytic[i].assign(static_cast<size_t>(m * inputs[i].numel()), 0.0);
  for (int64_t r = 0; r < m; ++r) {
    std::vector<Var<double>> leaves = make_leaves(inputs);
    Var<double> out = fn(leaves);
    if (!out.requires_grad()) break;  // output independent of the inputs: Jacobian is zero
    Tensor<double> seed(out.shape());
    seed.data()[r] = 1.0;
    out.backward(seed);
    for (size_t i = 0; i < n_inputs; ++i) {
      if (!differentiated(i) || !leaves[i].has_grad()) continue;
      const Tensor<double> g = leaves[i].grad().contiguous();
      const int64_t n = g.numel();
      for (int64_t j = 0; j < n; ++j) analytic[i][static_cast<size_t>(r * n + j)] = g.data()[j];
    }
  }

  GradcheckResult result;
  double worst_excess = 0.0;
  for (size_t i = 0; i < n_inputs; ++i) {
    if (!differentiated(i)) continue;
    const int64_t n = inputs[i].numel();
    for (int64_t j = 0; j < n; ++j) {
      std::vector<Tensor<double>> plus = inputs, minus = inputs;
      plus[i] = inputs[i].contiguous().clone();
      minus[i] = inputs[i].contiguous().clone();
      plus[i].data()[j] += options.eps;
      minus[i].data()[j] -= options.eps;
      const Tensor<double> f_plus = evaluate(plus);
      const Tensor<double> f_minus = evaluate(minus);
      for (int64_t r = 0; r < m; ++r) {
        const double numeric = (f_plus.data()[r] - f_minus.data()[r]) / (2.0 * options.eps);
        const double exact = analytic[i][static_cast<size_t>(r * n + j)];
        const double error = std::abs(exact - numeric);
        const double allowed = options.atol + options.rtol * std::abs(numeric);
        result.max_abs_error = std::max(result.max_abs_error, error);
        if (error <= allowed) continue;  // also false for NaN, which must fail
        const double excess = std::isnan(error) ? INFINITY : error - allowed;
        if (result.ok || excess > worst_excess) {
          worst_excess = excess;
          result.ok = false;
          result.message = fmt::format(
              "gradcheck: d output[{}] / d input{}[{}]: backward gives {:.8g}, finite "
              "differences give {:.8g} (error {:.3g} > allowed {:.3g})",
              r, i, j, exact, numeric, error, allowed);
        }
      }
    }
  }
  return result;
}

}  // namespace minimoe
