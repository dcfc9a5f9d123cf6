// Helpers shared by the test executables.
#pragma once

#include <doctest/doctest.h>

#include <minimoe/autograd/gradcheck.hpp>

namespace minimoe::test {

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
