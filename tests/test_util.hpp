// Helpers shared by the test executables.
#pragma once

#include <doctest/doctest.h>

#include <fstream>
#include <string>
#include <vector>

#include <minimoe/autograd/gradcheck.hpp>
#include <minimoe/nn/module.hpp>
#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/tensor/random.hpp>

namespace minimoe::test {

// A tensor of type T from values written in double.
template <typename T>
Tensor<T> values(Shape shape, std::vector<double> v) {
  return Tensor<double>(std::move(shape), std::move(v)).template cast<T>();
}

// Writes `text` to `path` as it is (no newline translation).
inline void write_text(const std::string& path, const std::string& text) {
  std::ofstream(path, std::ios::binary | std::ios::trunc) << text;
}

// A weighted sum of y with fixed random weights: a scalar whose gradient reaches every element
// of y with a different factor.
inline Var<double> probe(const Var<double>& y, uint64_t seed = 99) {
  Rng rng(seed);
  return sum(y * Var<double>(Tensor<double>::randn(y.shape(), rng)));
}

// Gradchecks fn at `inputs` and reports the worst mismatch on failure.
inline void check_gradients(const GradcheckFn& fn, const std::vector<Tensor<double>>& inputs,
                            const GradcheckOptions& options = {}) {
  const GradcheckResult result = gradcheck(fn, inputs, options);
  CHECK_MESSAGE(result.ok, result.message);
}

// Elementwise |a - b| <= tol, with a message naming the first differing element.
template <typename T>
void check_close(const Tensor<T>& actual, const Tensor<T>& expected, double tol = 1e-6) {
  REQUIRE_MESSAGE(actual.shape() == expected.shape(),
                  fmt::format("shape {} != expected {}", actual.shape(), expected.shape()));
  const std::vector<T> a = actual.to_vector();
  const std::vector<T> e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i) {
    if (!(std::abs(static_cast<double>(a[i]) - static_cast<double>(e[i])) <= tol)) {
      FAIL_CHECK(fmt::format("element {}: {} != expected {} (tol {})", i, a[i], e[i], tol));
      return;
    }
  }
}

}  // namespace minimoe::test

namespace minimoe::test {

// Gradchecks every parameter of a double-precision module (and nothing else): backward of
// loss() against central differences of loss() with each parameter element moved in place.
// Checks at most `max_per_tensor` elements of each parameter, spread over the tensor; a
// parameter the backward pass never reached must have zero finite differences.
template <typename Module, typename LossFn>
void check_module_gradients(Module& module, LossFn loss, int64_t max_per_tensor = 12,
                            double eps = 1e-6, double tol = 1e-6) {
  for (auto& p : parameters(module)) p.zero_grad();
  loss().backward();
  for (auto& [name, p] : named_parameters(module)) {
    Tensor<double> value = p.value();
    // No gradient (e.g. an expert no token was routed to) must mean a zero derivative.
    const Tensor<double> grad = p.has_grad() ? p.grad() : Tensor<double>(p.shape());
    const int64_t n = value.numel();
    const int64_t step = std::max<int64_t>(1, n / max_per_tensor);
    for (int64_t i = 0; i < n; i += step) {
      const double saved = value.data()[i];
      double plus, minus;
      {
        NoGradGuard no_grad;
        value.data()[i] = saved + eps;
        plus = loss().item();
        value.data()[i] = saved - eps;
        minus = loss().item();
        value.data()[i] = saved;
      }
      const double numeric = (plus - minus) / (2 * eps);
      const double analytic = grad.data()[i];
      if (!(std::abs(numeric - analytic) <= tol + 1e-4 * std::abs(numeric))) {
        FAIL_CHECK(fmt::format("{}[{}]: backward {:.10g}, finite differences {:.10g}", name, i,
                               analytic, numeric));
        return;
      }
    }
  }
}

}  // namespace minimoe::test
