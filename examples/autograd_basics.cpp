// The README's autograd example: a tiny graph, its gradients, and a gradcheck of them.
#include <cstdio>

#include <minimoe/minimoe.hpp>
using namespace minimoe;

int main() {
  Rng rng(0);
  Var<double> w(Tensor<double>::randn({3, 2}, rng), /*requires_grad=*/true);
  Var<double> b(Tensor<double>({2}, {0.1, -0.2}), true);
  Var<double> x(Tensor<double>({4, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));

  Var<double> y = gelu(matmul(x, w) + b);  // [4, 2], b broadcast over the rows
  Var<double> loss = mean(y * y);
  loss.backward();  // w.grad() [3, 2], b.grad() [2]

  auto check = gradcheck(
      [&](const std::vector<Var<double>>& in) {
        return mean(square(gelu(matmul(x, in[0]) + in[1])));
      },
      {w.value(), b.value()});  // check.ok, check.message
  std::printf("loss %.6f  dloss/db = [%.6f, %.6f]  gradcheck %s\n", loss.item(), b.grad().at({0}),
              b.grad().at({1}), check.ok ? "ok" : check.message.c_str());
  return check.ok ? 0 : 1;
}
