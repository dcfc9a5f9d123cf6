#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// 0, 1, ..., 23 as a [2, 3, 4] tensor.
template <typename T>
Var<T> iota234(bool requires_grad = false) {
  return Var<T>(Tensor<T>::arange(24).view({2, 3, 4}), requires_grad);
}

template <typename T, typename F>
std::vector<T> expected_values(int64_t n, F f) {
  std::vector<T> v;
  for (int64_t i = 0; i < n; ++i) v.push_back(static_cast<T>(f(i)));
  return v;
}

}  // namespace

TEST_CASE_TEMPLATE("sum and mean forward", T, float, double) {
  Var<T> x = iota234<T>();
  Var<T> total = sum(x);
  CHECK(total.shape() == Shape{});
  CHECK(total.item() == T(276));
  CHECK(mean(x).shape() == Shape{});
  CHECK(mean(x).item() == T(11.5));

  // x[o, j, i] = 12 o + 4 j + i
  Var<T> s0 = sum(x, 0);
  CHECK(s0.shape() == Shape{3, 4});
  CHECK(s0.value().to_vector() == expected_values<T>(12, [](int64_t k) { return 2 * k + 12; }));
  Var<T> s1 = sum(x, 1);
  CHECK(s1.shape() == Shape{2, 4});
  CHECK(s1.value().to_vector() == std::vector<T>{12, 15, 18, 21, 48, 51, 54, 57});
  Var<T> s2 = sum(x, -1);
  CHECK(s2.shape() == Shape{2, 3});
  CHECK(s2.value().to_vector() == std::vector<T>{6, 22, 38, 54, 70, 86});
  CHECK(sum(x, 1, true).shape() == Shape{2, 1, 4});
  CHECK(sum(x, 1, true).value().to_vector() == s1.value().to_vector());
  CHECK(sum(x, -3, true).shape() == Shape{1, 3, 4});
  CHECK(sum(x, 2, true).shape() == Shape{2, 3, 1});

  CHECK(mean(x, 1).shape() == Shape{2, 4});
  CHECK(mean(x, 1).value().to_vector() == std::vector<T>{4, 5, 6, 7, 16, 17, 18, 19});
  CHECK(mean(x, 0, true).shape() == Shape{1, 3, 4});
  CHECK(mean(x, 0, true).value().to_vector() ==
        expected_values<T>(12, [](int64_t k) { return k + 6; }));
  CHECK(mean(x, -1).value().to_vector() == std::vector<T>{1.5, 5.5, 9.5, 13.5, 17.5, 21.5});

  // A 1-d input reduces to a 0-d tensor, or to [1] with keepdim.
  Var<T> v(Tensor<T>({3}, {1, 2, 6}));
  CHECK(sum(v, 0).shape() == Shape{});
  CHECK(sum(v, 0).item() == T(9));
  CHECK(mean(v, 0, true).shape() == Shape{1});
  CHECK(mean(v, 0, true).item() == T(3));

  // A non-contiguous input is reduced in logical order.
  Var<T> xt(x.value().transpose(0, 2));  // [4, 3, 2]: xt[i, j, o] = 12 o + 4 j + i
  CHECK(sum(xt, 2).value().to_vector() ==
        expected_values<T>(12, [](int64_t k) { return 2 * (4 * (k % 3) + k / 3) + 12; }));
  CHECK(sum(xt).item() == T(276));
}

TEST_CASE_TEMPLATE("max forward and its gradient goes to the first maximum", T, float, double) {
  Var<T> x(Tensor<T>({2, 3}, {1, 5, 3, 7, 2, 7}), true);
  Var<T> m1 = max(x, 1);
  CHECK(m1.shape() == Shape{2});
  CHECK(m1.value().to_vector() == std::vector<T>{5, 7});
  m1.backward(Tensor<T>({2}, {10, 20}));
  CHECK(x.grad().to_vector() == std::vector<T>{0, 10, 0, 20, 0, 0});

  x.zero_grad();
  Var<T> m0 = max(x, 0, true);
  CHECK(m0.shape() == Shape{1, 3});
  CHECK(m0.value().to_vector() == std::vector<T>{7, 5, 7});
  m0.backward(Tensor<T>({1, 3}, {1, 2, 3}));
  CHECK(x.grad().to_vector() == std::vector<T>{0, 2, 0, 1, 0, 3});

  x.zero_grad();
  Var<T> all = max(x);
  CHECK(all.shape() == Shape{});
  CHECK(all.item() == T(7));
  all.backward();
  CHECK(x.grad().to_vector() == std::vector<T>{0, 0, 0, 1, 0, 0});

  // All-negative rows (a zero initial value would be wrong) and -inf entries.
  Var<T> neg(Tensor<T>({2, 3}, {-3, -1, -2, -INFINITY, -INFINITY, -5}));
  CHECK(max(neg, -1).value().to_vector() == std::vector<T>{-1, -5});
  CHECK(max(neg).item() == T(-1));
  CHECK(max(Var<T>(Tensor<T>({1, 2}, -INFINITY)), 1).item() == -std::numeric_limits<T>::infinity());

  // Reduction over a middle axis of a non-contiguous input.
  Var<T> y = iota234<T>();
  Var<T> yt(y.value().transpose(0, 1));  // [3, 2, 4]: yt[j, o, i] = 12 o + 4 j + i
  CHECK(max(yt, 0).value().to_vector() ==
        expected_values<T>(8, [](int64_t k) { return 12 * (k / 4) + 8 + k % 4; }));
  CHECK(max(yt, 1).value().to_vector() ==
        expected_values<T>(12, [](int64_t k) { return 12 + 4 * (k / 4) + k % 4; }));
  CHECK(max(yt).item() == T(23));
}

TEST_CASE("sum and mean backward by hand") {
  Var<double> x = iota234<double>(true);
  sum(x, 1).backward(Tensor<double>({2, 4}, {1, 2, 3, 4, 5, 6, 7, 8}));
  // dx[o, j, i] = g[o, i]
  CHECK(x.grad().to_vector() ==
        expected_values<double>(24, [](int64_t k) { return 4 * (k / 12) + k % 4 + 1; }));
  x.zero_grad();
  mean(x, -1, true).backward(Tensor<double>({2, 3, 1}, {4, 8, 12, 16, 20, 24}));
  CHECK(x.grad().to_vector() == expected_values<double>(24, [](int64_t k) { return k / 4 + 1; }));
  x.zero_grad();
  mean(x).backward(Tensor<double>::scalar(48));
  CHECK(x.grad().to_vector() == std::vector<double>(24, 2.0));
  x.zero_grad();
  sum(x).backward(Tensor<double>::scalar(3));
  CHECK(x.grad().to_vector() == std::vector<double>(24, 3.0));
}

TEST_CASE("reductions gradcheck") {
  Rng rng(21);
  const Tensor<double> x = Tensor<double>::randn({3, 4, 5}, rng);
  test::check_gradients([](const V& in) { return sum(in[0]); }, {x});
  test::check_gradients([](const V& in) { return mean(in[0]); }, {x});
  test::check_gradients([](const V& in) { return max(in[0]); }, {x});
  for (int64_t axis : {0, 1, 2, -1}) {
    for (bool keepdim : {false, true}) {
      CAPTURE(axis);
      CAPTURE(keepdim);
      test::check_gradients([=](const V& in) { return sum(in[0], axis, keepdim); }, {x});
      test::check_gradients([=](const V& in) { return mean(in[0], axis, keepdim); }, {x});
      // randn values are distinct, so a 1e-6 step never changes which element is the maximum.
      test::check_gradients([=](const V& in) { return max(in[0], axis, keepdim); }, {x});
    }
  }
  // Non-contiguous inputs: a transposed and a sliced view inside the graph.
  const Tensor<double> y = Tensor<double>::randn({5, 4, 3}, rng);
  auto t = [](const Var<double>& v) {
    Var<double> view = transpose(v, 0, 2);
    CHECK_FALSE(view.value().is_contiguous());
    return view;
  };
  test::check_gradients([&](const V& in) { return sum(t(in[0]), 1); }, {y});
  test::check_gradients([&](const V& in) { return mean(t(in[0]), 2, true); }, {y});
  test::check_gradients([&](const V& in) { return max(t(in[0]), 0); }, {y});
  test::check_gradients([&](const V& in) { return max(t(in[0])); }, {y});
  test::check_gradients([&](const V& in) { return sum(t(in[0])); }, {y});
  test::check_gradients([](const V& in) { return mean(slice(in[0], 1, 1, 3), 0); }, {y});
  // keepdim results broadcast back against the input (centring, normalising by the max).
  test::check_gradients([](const V& in) { return in[0] - mean(in[0], -1, true); }, {x});
  test::check_gradients([](const V& in) { return in[0] * sum(in[0], 0, true); }, {x});
  test::check_gradients([](const V& in) { return in[0] - max(in[0], 1, true); }, {x});
}

TEST_CASE("reductions of empty tensors") {
  Var<float> empty(Tensor<float>({2, 0}));
  CHECK(sum(empty).item() == 0.0f);
  CHECK(std::isnan(mean(empty).item()));
  CHECK(sum(empty, 1).value().to_vector() == std::vector<float>{0, 0});
  const auto m = mean(empty, 1).value().to_vector();
  REQUIRE(m.size() == 2);
  CHECK(std::isnan(m[0]));
  CHECK(std::isnan(m[1]));
  CHECK(sum(empty, 0).shape() == Shape{0});
  CHECK(max(Var<float>(Tensor<float>({0, 3})), 1).shape() == Shape{0});
}

TEST_CASE("reduction errors") {
  Var<float> x(Tensor<float>({2, 3, 4}));
  CHECK_THROWS_WITH_AS(sum(x, 3), "sum: axis 3 out of range for a 3-d tensor", IndexError);
  CHECK_THROWS_WITH_AS(sum(x, -4, true), "sum: axis -4 out of range for a 3-d tensor", IndexError);
  CHECK_THROWS_WITH_AS(mean(x, 5), "mean: axis 5 out of range for a 3-d tensor", IndexError);
  CHECK_THROWS_WITH_AS(max(x, -4), "max: axis -4 out of range for a 3-d tensor", IndexError);
  Var<float> scalar(Tensor<float>::scalar(1.0f));
  CHECK_THROWS_WITH_AS(sum(scalar, 0), "sum: axis 0 out of range for a 0-d tensor", IndexError);
  CHECK(sum(scalar).item() == 1.0f);
  CHECK(max(scalar).item() == 1.0f);
  CHECK_THROWS_WITH_AS(max(Var<float>(Tensor<float>({2, 0})), 1),
                       "max: axis 1 of shape [2, 0] is empty", ShapeError);
  CHECK_THROWS_WITH_AS(max(Var<float>(Tensor<float>({2, 0})), -1),
                       "max: axis -1 of shape [2, 0] is empty", ShapeError);
  CHECK_THROWS_WITH_AS(max(Var<float>(Tensor<float>({0, 3}))),
                       "max: input of shape [0, 3] is empty", ShapeError);
}
