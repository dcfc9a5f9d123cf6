// A client program of minimoe, built by the package tests both against an installed copy
// (find_package) and against the source tree (add_subdirectory): it compiles, links and runs only
// if the target carries the include path, C++17 and the Eigen/fmt/OpenMP dependencies.
#include <cmath>
#include <cstdio>
#include <vector>

#include <fmt/format.h>
#include <fmt/ranges.h>
#include <minimoe/ops/elementwise.hpp>

int main() {
  using minimoe::Tensor;
  using minimoe::Var;

  Var<double> x(Tensor<double>({3}, {1.0, -2.0, 0.5}), /*requires_grad=*/true);
  Var<double> y = x * x + 3.0 * x;  // dy/dx = 2x + 3
  y.backward(Tensor<double>::ones({3}));

  const std::vector<double> grad = x.grad().to_vector();
  const std::vector<double> expected = {5.0, -1.0, 4.0};
  fmt::print("dy/dx = {}\n", grad);
  for (size_t i = 0; i < expected.size(); ++i) {
    if (std::abs(grad[i] - expected[i]) > 1e-12) {
      fmt::print(stderr, "expected dy/dx = {}\n", expected);
      return 1;
    }
  }
  return 0;
}
