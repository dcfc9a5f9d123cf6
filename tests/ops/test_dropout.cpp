#include <minimoe/ops/dropout.hpp>
#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

TEST_CASE_TEMPLATE("dropout zeroes or rescales every element, deterministically per seed", T, float,
                   double) {
  Rng data(1);
  Var<T> x(Tensor<T>::uniform({8, 16}, data, 1.0, 2.0));  // no zeros of its own
  const auto xs = x.value().to_vector();
  Rng r1(7), r2(7), r3(8);
  const auto a = dropout(x, 0.25, r1).value().to_vector();
  const auto b = dropout(x, 0.25, r2).value().to_vector();
  const auto c = dropout(x, 0.25, r3).value().to_vector();
  CHECK(a == b);  // same seed, same mask
  CHECK(a != c);  // another seed, another mask
  // The generator advanced: a second call on r1 draws a new mask.
  CHECK(dropout(x, 0.25, r1).value().to_vector() != a);
  int64_t dropped = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    if (a[i] == T(0)) {
      ++dropped;
    } else {
      CHECK(a[i] == doctest::Approx(xs[i] / 0.75));
    }
  }
  CHECK(dropped > 0);
  CHECK(dropped < int64_t(a.size()));
  // The input is left untouched.
  CHECK(x.value().to_vector() == xs);
}

TEST_CASE_TEMPLATE("dropout in evaluation mode and with p = 0 is the identity", T, float, double) {
  Var<T> x(Tensor<T>({2, 3}, {1, 2, 3, 4, 5, 6}), true);
  Rng rng(3);
  Var<T> eval = dropout(x, 0.5, rng, /*training=*/false);
  CHECK(eval.node() == x.node());
  Var<T> p0 = dropout(x, 0.0, rng);
  CHECK(p0.node() == x.node());
  // Neither consumed random numbers.
  Rng fresh(3);
  CHECK(rng.next_u64() == fresh.next_u64());
  // Even p = 1 does nothing in evaluation mode; a bad p is still rejected.
  CHECK(dropout(x, 1.0, rng, false).value().to_vector() == std::vector<T>{1, 2, 3, 4, 5, 6});
  CHECK_THROWS_AS(dropout(x, 2.0, rng, false), ValueError);
}

TEST_CASE("dropout drops about a fraction p of a large tensor and keeps the mean") {
  Var<float> x(Tensor<float>({500, 400}, 1.0f));
  for (double p : {0.1, 0.5, 0.9}) {
    CAPTURE(p);
    Rng rng(static_cast<uint64_t>(p * 100));
    const auto y = dropout(x, p, rng).value().to_vector();
    int64_t dropped = 0;
    double total = 0;
    for (float v : y) {
      dropped += v == 0.0f;
      total += v;
    }
    const double n = static_cast<double>(y.size());
    // The standard deviation of the fraction is sqrt(p (1 - p) / n) <= 0.0012: allow 5 of them.
    CHECK(std::abs(dropped / n - p) < 0.006);
    // Inverted dropout keeps the expected value: kept elements are scaled by 1 / (1 - p).
    CHECK(std::abs(total / n - 1.0) < 0.006 / (1 - p));
  }
}

TEST_CASE_TEMPLATE("dropout backward applies the forward mask", T, float, double) {
  Rng data(2);
  Var<T> x(Tensor<T>::uniform({6, 7}, data, 0.5, 1.5), true);
  Rng rng(9);
  const double p = 0.4;
  Var<T> y = dropout(x, p, rng);
  const Tensor<T> seed = Tensor<T>::uniform({6, 7}, data, 1.0, 2.0);
  y.backward(seed);
  const auto yv = y.value().to_vector();
  const auto g = x.grad().to_vector();
  const auto sv = seed.to_vector();
  int64_t kept = 0;
  for (size_t i = 0; i < yv.size(); ++i) {
    if (yv[i] == T(0)) {
      CHECK(g[i] == T(0));
    } else {
      ++kept;
      CHECK(g[i] == doctest::Approx(sv[i] / (1 - p)));
    }
  }
  CHECK(kept > 0);
  CHECK(kept < int64_t(yv.size()));
}

TEST_CASE_TEMPLATE("dropout with p = 1 gives zeros and zero gradient", T, float, double) {
  Var<T> x(Tensor<T>({3, 4}, T(2)), true);
  Rng rng(4);
  Var<T> y = dropout(x, 1.0, rng);
  CHECK(y.value().to_vector() == std::vector<T>(12, T(0)));
  y.backward(Tensor<T>({3, 4}, T(1)));
  CHECK(x.grad().to_vector() == std::vector<T>(12, T(0)));
}

TEST_CASE("dropout gradcheck with a reseeded generator") {
  Rng data(5);
  const Tensor<double> x = Tensor<double>::randn({4, 5}, data);
  test::check_gradients(
      [](const V& in) {
        Rng rng(11);  // the same mask on every evaluation
        return dropout(in[0], 0.3, rng);
      },
      {x});
  // A non-contiguous input, and broadcasting after the dropout.
  test::check_gradients(
      [](const V& in) {
        Rng rng(12);
        Var<double> view = transpose(in[0], 0, 1);
        CHECK_FALSE(view.value().is_contiguous());
        return dropout(view, 0.5, rng) * in[1];
      },
      {x, Tensor<double>::randn({4}, data)});
}

TEST_CASE("dropout with a non-contiguous input masks in logical order") {
  Var<double> x(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  Rng r1(21), r2(21);
  const auto direct = dropout(Var<double>(x.value().transpose(0, 1).contiguous()), 0.5, r1);
  const auto viewed = dropout(Var<double>(x.value().transpose(0, 1)), 0.5, r2);
  CHECK(direct.value().to_vector() == viewed.value().to_vector());
}

TEST_CASE("dropout rejects p outside [0, 1]") {
  Var<float> x(Tensor<float>({2}));
  Rng rng(0);
  CHECK_THROWS_WITH_AS(dropout(x, -0.1, rng), "dropout: p must be in [0, 1], got -0.1", ValueError);
  CHECK_THROWS_WITH_AS(dropout(x, 1.5, rng), "dropout: p must be in [0, 1], got 1.5", ValueError);
  CHECK_THROWS_WITH_AS(dropout(x, std::nan(""), rng), "dropout: p must be in [0, 1], got nan",
                       ValueError);
  CHECK_THROWS_WITH_AS(dropout(x, 2.0, rng, false), "dropout: p must be in [0, 1], got 2",
                       ValueError);
}
