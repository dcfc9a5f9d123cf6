#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;

TEST_CASE("backward through a shared subgraph visits it once") {
  Var<double> x(Tensor<double>({2}, {1.0, 2.0}), true);
  Var<double> y = x * x;  // used twice below
  Var<double> z = y + y;  // dz/dx = 4x
  z.backward(Tensor<double>::ones({2}));
  CHECK(x.grad().to_vector() == std::vector<double>{4.0, 8.0});
}

TEST_CASE("an output gradient handed on to several nodes is summed without being overwritten") {
  // add's backward gives its output gradient to both inputs; a and s adopt that one tensor, and
  // the gradients later summed into a must not reach s (or b) through it.
  Var<double> x(Tensor<double>({2}, {1.0, 2.0}), true);
  Var<double> a = x * 2.0, b = x * 3.0;
  Var<double> s = a + b;
  Var<double> t = s + a;  // dt/dx = 2 + 3 + 2
  t.backward(Tensor<double>({2}, {1.0, 10.0}));
  CHECK(x.grad().to_vector() == std::vector<double>{7.0, 70.0});
  Rng rng(3);
  test::check_gradients(
      [](const std::vector<Var<double>>& in) {
        Var<double> p = in[0] * in[1], q = in[0] + in[1];
        Var<double> r = p + q;
        return reshape(r + p, {6}) + reshape(q, {6});
      },
      {Tensor<double>::randn({2, 3}, rng), Tensor<double>::randn({2, 3}, rng)});
}

TEST_CASE("a leaf's gradient is summed in place, seen through every handle") {
  Var<double> x(Tensor<double>({2}, {1.0, 2.0}), true);
  (x * 2.0).backward(Tensor<double>::ones({2}));
  const Tensor<double> held = x.grad();
  (x * 3.0).backward(Tensor<double>::ones({2}));
  CHECK(held.to_vector() == std::vector<double>{5.0, 5.0});
  CHECK(x.grad().data() == held.data());
}

TEST_CASE("add_grad_rows sums rows into a table's gradient in order, and checks its input") {
  Var<float> table(Tensor<float>({3, 2}), true);
  table.add_grad_rows(Tensor<int32_t>({3}, {2, 0, 2}), Tensor<float>({3, 2}, {1, 2, 3, 4, 5, 6}));
  CHECK(table.grad().to_vector() == std::vector<float>{3, 4, 0, 0, 6, 8});
  table.add_grad(Tensor<float>({3, 2}, {1, 1, 1, 1, 1, 1}));  // then a dense gradient
  table.add_grad_rows(Tensor<int32_t>({1}, {1}), Tensor<float>({1, 2}, {10, 20}));
  CHECK(table.grad().to_vector() == std::vector<float>{4, 5, 11, 21, 7, 9});
  CHECK_THROWS_WITH_AS(
      table.add_grad_rows(Tensor<int32_t>({1}, {3}), Tensor<float>({1, 2}, {1, 1})),
      "add_grad_rows: row 3 out of range [0, 3) at position 0 (op leaf)", IndexError);
  CHECK_THROWS_WITH_AS(
      table.add_grad_rows(Tensor<int32_t>({2}, {0, 1}), Tensor<float>({2, 3})),
      "add_grad_rows: 2 rows of shape [2, 3] for a value of shape [3, 2] (op leaf)", ShapeError);
  Var<float> frozen(Tensor<float>({3, 2}));
  frozen.add_grad_rows(Tensor<int32_t>({1}, {0}), Tensor<float>({1, 2}, {1, 1}));
  CHECK_FALSE(frozen.has_grad());
}

TEST_CASE("leaf gradients accumulate until zero_grad") {
  Var<double> x(Tensor<double>::scalar(3.0), true);
  (x * x).backward();
  (x * x).backward();
  CHECK(x.grad().item() == 12.0);
  x.zero_grad();
  CHECK_FALSE(x.has_grad());
  (x * 2.0).backward();
  CHECK(x.grad().item() == 2.0);
}

TEST_CASE("graph is freed after backward unless retained") {
  Var<double> x(Tensor<double>::scalar(2.0), true);
  Var<double> y = x * x * x;
  y.backward(/*retain_graph=*/true);
  y.backward();
  CHECK(x.grad().item() == 24.0);
  CHECK_THROWS_WITH_AS(y.backward(),
                       "backward: the graph through mul was already freed; pass retain_graph=true "
                       "to the first backward",
                       ValueError);
}

TEST_CASE("no_grad, detach and requires_grad") {
  Var<float> x(Tensor<float>::ones({3}), true);
  {
    NoGradGuard guard;
    Var<float> y = x * x;
    CHECK_FALSE(y.requires_grad());
    CHECK(y.is_leaf());
  }
  Var<float> y = x * x;
  CHECK(y.requires_grad());
  CHECK_FALSE(y.is_leaf());
  CHECK(std::string(y.op()) == "mul");
  Var<float> d = y.detach();
  CHECK_FALSE(d.requires_grad());
  CHECK(d.value().shares_storage_with(y.value()));
  Var<float> c(Tensor<float>::ones({3}));
  CHECK_FALSE((c * c).requires_grad());
  CHECK_THROWS_WITH_AS(
      y.set_requires_grad(false),
      "set_requires_grad: only leaves can change requires_grad, not the output of mul", ValueError);
}

TEST_CASE("backward errors") {
  Var<float> x(Tensor<float>::ones({3}), true);
  Var<float> y = x * x;
  CHECK_THROWS_WITH_AS(y.backward(),
                       "backward: output of shape [3] is not a scalar; pass a seed gradient",
                       ShapeError);
  CHECK_THROWS_WITH_AS(y.backward(Tensor<float>::ones({2})),
                       "backward: seed of shape [2] for output of shape [3]", ShapeError);
  Var<float> c(Tensor<float>::scalar(1.0f));
  CHECK_THROWS_WITH_AS(c.backward(), "backward: output of leaf does not require grad", ValueError);
  CHECK_THROWS_WITH_AS(Var<float>().value(), "Var: use of an undefined Var", ValueError);
  CHECK_THROWS_WITH_AS(x.add_grad(Tensor<float>::ones({4})),
                       "add_grad: gradient of shape [4] for a value of shape [3] (op leaf)",
                       ShapeError);
}

TEST_CASE("a deep graph is built, differentiated and freed without recursion") {
  Var<double> x(Tensor<double>::scalar(1.0), true);
  Var<double> y = x;
  for (int i = 0; i < 200000; ++i) y = y + 0.0;
  y.backward();
  CHECK(x.grad().item() == 1.0);
  Var<double> z = x;
  for (int i = 0; i < 200000; ++i) z = z * 1.0;
  // z goes out of scope without backward: the Node destructor must not recurse 200000 deep.
}

TEST_CASE("gradcheck catches a wrong backward") {
  auto wrong = [](const std::vector<Var<double>>& in) {
    return unary_op(
        "wrong_square", in[0], [](double v) { return v * v; },
        [](double v, double) { return 3.0 * v; });
  };
  Rng rng(0);
  const GradcheckResult r = gradcheck(wrong, {Tensor<double>::randn({3}, rng)});
  CHECK_FALSE(r.ok);
  CHECK(r.message.rfind("gradcheck: d output[", 0) == 0);
  CHECK(r.max_abs_error > 0.1);
  auto right = [](const std::vector<Var<double>>& in) { return in[0] * in[0]; };
  test::check_gradients(right, {Tensor<double>::randn({3}, rng)});
}
