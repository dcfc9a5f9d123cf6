#include <minimoe/ops/elementwise.hpp>

#include "../test_util.hpp"

using namespace minimoe;

TEST_CASE_TEMPLATE("binary ops forward with broadcasting", T, float, double) {
  Var<T> a(Tensor<T>({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<T> row(Tensor<T>({3}, {1, 2, 4}));
  Var<T> col(Tensor<T>({2, 1}, {2, 4}));
  CHECK((a + row).value().to_vector() == std::vector<T>{2, 4, 7, 5, 7, 10});
  CHECK((a - col).value().to_vector() == std::vector<T>{-1, 0, 1, 0, 1, 2});
  CHECK((a * row).value().to_vector() == std::vector<T>{1, 4, 12, 4, 10, 24});
  CHECK((a / col).value().to_vector() == std::vector<T>{0.5, 1, 1.5, 1, 1.25, 1.5});
  CHECK((-a).value().to_vector() == std::vector<T>{-1, -2, -3, -4, -5, -6});
  CHECK((2 * a - 1).value().to_vector() == std::vector<T>{1, 3, 5, 7, 9, 11});
  CHECK((1 / col).value().to_vector() == std::vector<T>{0.5, 0.25});
}

TEST_CASE("binary ops gradcheck: same shape, scalar, row, column, views") {
  Rng rng(1);
  auto A = Tensor<double>::randn({3, 4}, rng);
  auto B = Tensor<double>::randn({3, 4}, rng);
  auto row = Tensor<double>::randn({4}, rng);
  auto col = Tensor<double>::uniform({3, 1}, rng, 0.5, 2.0);
  auto s = Tensor<double>::uniform({}, rng, 0.5, 2.0);
  using V = std::vector<Var<double>>;
  for (auto* rhs : {&B, &row, &col, &s}) {
    test::check_gradients([](const V& in) { return in[0] + in[1]; }, {A, *rhs});
    test::check_gradients([](const V& in) { return in[0] - in[1]; }, {A, *rhs});
    test::check_gradients([](const V& in) { return in[0] * in[1]; }, {A, *rhs});
    test::check_gradients([](const V& in) { return in[1] * in[0]; }, {A, *rhs});
  }
  test::check_gradients([](const V& in) { return in[0] / in[1]; }, {A, col});
  test::check_gradients([](const V& in) { return in[1] / in[0]; }, {col, A});
  test::check_gradients([](const V& in) { return -in[0]; }, {A});
  // A transposed (non-contiguous) operand.
  auto At = Tensor<double>::randn({4, 3}, rng);
  test::check_gradients(
      [](const V& in) { return Var<double>(in[0].value().transpose(0, 1)) * in[1]; }, {At, B},
      only_wrt({false, true}));
}

TEST_CASE("binary ops reject shapes that do not broadcast") {
  Var<float> a(Tensor<float>({2, 3}));
  Var<float> b(Tensor<float>({2}));
  CHECK_THROWS_WITH_AS(a + b, "add: shapes [2, 3] and [2] do not broadcast", ShapeError);
  CHECK_THROWS_WITH_AS(a * b, "mul: shapes [2, 3] and [2] do not broadcast", ShapeError);
}
