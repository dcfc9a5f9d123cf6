#include <minimoe/ops/gather.hpp>
#include <minimoe/ops/logsumexp.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

TEST_CASE_TEMPLATE("gather and index_add forward", T, float, double) {
  Var<T> probs(Tensor<T>({2, 3}, {0.1, 0.2, 0.7, 0.5, 0.3, 0.2}));
  Tensor<int32_t> top({2, 2}, {2, 1, 0, 1});
  CHECK(gather(probs, top).value().to_vector() == std::vector<T>{T(0.7), T(0.2), T(0.5), T(0.3)});
  Var<T> rows(Tensor<T>({3, 2}, {1, 2, 3, 4, 5, 6}));
  Tensor<int32_t> to({3}, {2, 0, 2});
  CHECK(index_add(rows, to, 4).value().to_vector() == std::vector<T>{3, 4, 0, 0, 6, 8, 0, 0});
  CHECK(index_add(Var<T>(Tensor<T>({0, 2})), Tensor<int32_t>({0}), 2).value().to_vector() ==
        std::vector<T>{0, 0, 0, 0});
}

TEST_CASE("gather, index_add and logsumexp gradcheck") {
  Rng rng(2);
  Tensor<int32_t> top({3, 2, 2}, {0, 3, 1, 1, 2, 0, 3, 2, 1, 0, 0, 3});
  test::check_gradients([&](const V& in) { return gather(in[0], top); },
                        {Tensor<double>::randn({3, 2, 4}, rng)});
  Tensor<int32_t> to({4}, {1, 1, 0, 3});
  test::check_gradients([&](const V& in) { return index_add(in[0], to, 5); },
                        {Tensor<double>::randn({4, 3}, rng)});
  test::check_gradients([](const V& in) { return logsumexp(in[0]); },
                        {Tensor<double>::randn({2, 3, 5}, rng)});
  test::check_gradients([](const V& in) { return logsumexp(in[0]); },
                        {Tensor<double>::randn({5, 3}, rng).transpose(0, 1)});
}

TEST_CASE("logsumexp is stable") {
  Var<float> x(Tensor<float>({2, 3}, {1e4f, 1e4f, -1e4f, -INFINITY, 0.0f, -INFINITY}));
  auto y = logsumexp(x).value();
  CHECK(y.at({0}) == doctest::Approx(1e4 + std::log(2.0)));
  CHECK(y.at({1}) == doctest::Approx(0.0));
  CHECK(std::isinf(logsumexp(Var<float>(Tensor<float>({1, 2}, -INFINITY))).value().at({0})));
}

TEST_CASE("gather and index_add errors") {
  Var<float> x(Tensor<float>({2, 3}));
  CHECK_THROWS_WITH_AS(gather(x, Tensor<int32_t>({2, 1}, {0, 3})),
                       "gather: index 3 out of range [0, 3) at position 1", IndexError);
  CHECK_THROWS_WITH_AS(gather(x, Tensor<int32_t>({3, 1})),
                       "gather: index of shape [3, 1] for input of shape [2, 3]", ShapeError);
  CHECK_THROWS_WITH_AS(index_add(x, Tensor<int32_t>({2}, {0, -1}), 4),
                       "index_add: index -1 out of range [0, 4) at position 1", IndexError);
  CHECK_THROWS_WITH_AS(index_add(x, Tensor<int32_t>({3}), 4),
                       "index_add: index of shape [3] for rows of shape [2, 3]", ShapeError);
  CHECK_THROWS_WITH_AS(logsumexp(Var<float>(Tensor<float>({2, 0}))),
                       "logsumexp: input of shape [2, 0] has no last axis to reduce", ShapeError);
}
