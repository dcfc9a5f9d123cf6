#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/loss.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/ops/shape.hpp>
#include <minimoe/ops/softmax.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// The unfused loss: -sum(log_softmax(logits) * onehot) / (number of valid targets), built from
// other ops, so both its value and its gradient are an independent reference.
template <typename T>
Var<T> cross_entropy_reference(const Var<T>& logits, const Tensor<int32_t>& targets,
                               int32_t ignore_index = kIgnoreIndex) {
  const int64_t C = logits.size(-1);
  const Tensor<int32_t> tc = targets.contiguous();
  Tensor<T> onehot(logits.shape());
  int64_t valid = 0;
  for (int64_t r = 0; r < tc.numel(); ++r) {
    if (tc.data()[r] == ignore_index) continue;
    onehot.data()[r * C + tc.data()[r]] = T(1);
    ++valid;
  }
  Var<T> picked = log_softmax(logits) * Var<T>(onehot);
  return -sum(picked) / T(std::max<int64_t>(valid, 1));
}

}  // namespace

TEST_CASE_TEMPLATE("cross_entropy forward by hand", T, float, double) {
  Var<T> logits(Tensor<T>({2, 3}, {1, 2, 3, 1, 1, 1}));
  // row 0: log(e + e^2 + e^3) - 3; row 1: log 3
  Var<T> loss = cross_entropy(logits, Tensor<int32_t>({2}, {2, 0}));
  CHECK(loss.shape() == Shape{});
  CHECK(loss.item() == doctest::Approx((0.4076059644443804 + 1.0986122886681098) / 2));
  // An ignored position does not count towards the mean.
  CHECK(cross_entropy(logits, Tensor<int32_t>({2}, {0, kIgnoreIndex})).item() ==
        doctest::Approx(2.4076059644443806));
  CHECK(cross_entropy(logits, Tensor<int32_t>({2}, {kIgnoreIndex, 1})).item() ==
        doctest::Approx(1.0986122886681098));
  // A custom ignore_index that is also a valid class.
  CHECK(cross_entropy(logits, Tensor<int32_t>({2}, {1, 2}), 2).item() ==
        doctest::Approx(1.4076059644443804));
  // 1-d logits with a 0-d target.
  CHECK(cross_entropy(Var<T>(Tensor<T>({3}, {1, 2, 3})), Tensor<int32_t>::scalar(1)).item() ==
        doctest::Approx(1.4076059644443804));
  // 3-d logits [B, T, V] with targets [B, T].
  Var<T> l3(Tensor<T>({2, 1, 3}, {1, 2, 3, 1, 1, 1}));
  CHECK(cross_entropy(l3, Tensor<int32_t>({2, 1}, {2, 0})).item() ==
        doctest::Approx((0.4076059644443804 + 1.0986122886681098) / 2));
}

TEST_CASE_TEMPLATE("cross_entropy backward by hand", T, float, double) {
  Var<T> logits(Tensor<T>({3, 2}, {0, 0, 5, 5, 1, 1}), true);
  cross_entropy(logits, Tensor<int32_t>({3}, {1, kIgnoreIndex, 0})).backward(Tensor<T>::scalar(4));
  // d/dlogits = seed / valid * (softmax - onehot) = 2 * ([.5, .5] - onehot)
  test::check_close(logits.grad(), Tensor<T>({3, 2}, {1, -1, 0, 0, -1, 1}), 1e-6);
}

TEST_CASE("cross_entropy matches the log_softmax reference") {
  Rng rng(51);
  const Tensor<double> x = Tensor<double>::randn({2, 4, 6}, rng, 2.0);
  const Tensor<int32_t> targets({2, 4}, {0, 5, kIgnoreIndex, 3, 2, 2, 1, kIgnoreIndex});
  Var<double> a(x.clone(), true);
  Var<double> b(x.clone(), true);
  Var<double> fused = cross_entropy(a, targets);
  Var<double> reference = cross_entropy_reference(b, targets);
  CHECK(fused.item() == doctest::Approx(reference.item()).epsilon(1e-12));
  fused.backward();
  reference.backward();
  test::check_close(a.grad(), b.grad(), 1e-12);

  // The same in float, against the double reference.
  Var<float> f(x.cast<float>(), true);
  Var<float> ff = cross_entropy(f, targets);
  CHECK(ff.item() == doctest::Approx(reference.item()).epsilon(1e-5));
  ff.backward();
  test::check_close(f.grad().cast<double>(), b.grad(), 1e-6);

  // A custom ignore_index.
  const Tensor<int32_t> t2({2, 4}, {0, 5, 3, 3, 2, 2, 1, 3});
  CHECK(cross_entropy(Var<double>(x), t2, 3).item() ==
        doctest::Approx(cross_entropy_reference(Var<double>(x), t2, 3).item()).epsilon(1e-12));
  // A non-contiguous logits tensor.
  const Tensor<double> xt = Tensor<double>::randn({4, 2, 6}, rng).transpose(0, 1);
  CHECK(cross_entropy(Var<double>(xt), targets).item() ==
        doctest::Approx(cross_entropy_reference(Var<double>(xt), targets).item()).epsilon(1e-12));
}

TEST_CASE("cross_entropy gradcheck") {
  Rng rng(52);
  const Tensor<int32_t> targets({2, 3}, {4, 0, kIgnoreIndex, 2, 2, 1});
  test::check_gradients([&](const V& in) { return cross_entropy(in[0], targets); },
                        {Tensor<double>::randn({2, 3, 5}, rng)});
  // A custom ignore_index that is also a class.
  test::check_gradients(
      [](const V& in) {
        return cross_entropy(in[0], Tensor<int32_t>({2, 3}, {4, 0, 2, 2, 3, 1}), 2);
      },
      {Tensor<double>::randn({2, 3, 5}, rng)});
  test::check_gradients(
      [](const V& in) {
        return cross_entropy(in[0], Tensor<int32_t>({4}, {1, 1, 0, 2}));
      },
      {Tensor<double>::randn({4, 3}, rng)});
  // Non-contiguous logits: [3, 2, 5] transposed to [2, 3, 5] inside the graph.
  test::check_gradients(
      [&](const V& in) {
        Var<double> view = transpose(in[0], 0, 1);
        CHECK_FALSE(view.value().is_contiguous());
        return cross_entropy(view, targets);
      },
      {Tensor<double>::randn({3, 2, 5}, rng)});
  // Logits from a broadcast bias, as after a Linear layer.
  test::check_gradients([&](const V& in) { return cross_entropy(in[0] + in[1], targets); },
                        {Tensor<double>::randn({2, 3, 5}, rng), Tensor<double>::randn({5}, rng)});
}

TEST_CASE_TEMPLATE("cross_entropy with every target ignored is zero with zero gradient", T, float,
                   double) {
  Var<T> logits(Tensor<T>({2, 3}, {1, 2, 3, 4, 5, 6}), true);
  Var<T> loss = cross_entropy(logits, Tensor<int32_t>({2}, kIgnoreIndex));
  CHECK(loss.item() == T(0));
  loss.backward();
  CHECK(logits.grad().to_vector() == std::vector<T>(6, T(0)));
  // No positions at all.
  CHECK(cross_entropy(Var<T>(Tensor<T>({0, 3})), Tensor<int32_t>({0})).item() == T(0));
}

TEST_CASE_TEMPLATE("cross_entropy is stable for large logits", T, float, double) {
  Var<T> logits(Tensor<T>({2, 2}, {1e4, 0, 1e4, 0}), true);
  Var<T> loss = cross_entropy(logits, Tensor<int32_t>({2}, {0, 1}));
  CHECK(loss.item() == doctest::Approx(5e3));
  loss.backward();
  // Within an ulp or so: the exponentials are Eigen's vectorised exp.
  test::check_close(logits.grad(), Tensor<T>({2, 2}, {0, 0, 0.5, -0.5}), 1e-7);
  // Equal large logits: log 2 to full precision, not rounded to the precision of 1e4.
  Var<T> tied(Tensor<T>({2, 3}, {1e4, 1e4, -1e4, 1e4, 1e4 + 1, 1e4 + 2}), true);
  Var<T> l1 = cross_entropy(tied, Tensor<int32_t>({2}, {0, 2}));
  CHECK(l1.item() == doctest::Approx((std::log(2.0) + 0.4076059644443804) / 2).epsilon(1e-6));
  l1.backward();
  test::check_close(tied.grad(),
                    Tensor<double>({2, 3}, {-0.25, 0.25, 0, 0.09003057317038043 / 2,
                                            0.24472847105479764 / 2, (0.6652409557748218 - 1) / 2})
                        .cast<T>(),
                    5e-7);
  // Masked (-inf) classes that are not the target are harmless.
  const T inf = std::numeric_limits<T>::infinity();
  Var<T> masked(Tensor<T>({1, 3}, {-inf, 0, 0}), true);
  Var<T> l2 = cross_entropy(masked, Tensor<int32_t>({1}, {1}));
  CHECK(l2.item() == doctest::Approx(std::log(2.0)));
  l2.backward();
  test::check_close(masked.grad(), Tensor<T>({1, 3}, {0, -0.5, 0.5}), 1e-7);
}

// A non-finite logit makes the loss non-finite, never a finite wrong value, so the trainer's
// guard skips the step. 19 classes: the bad value sits in a full packet of Eigen's vectorised
// exp or in the scalar tail, for every packet width.
TEST_CASE_TEMPLATE("cross_entropy of extreme and non-finite logits", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  constexpr T nan = std::numeric_limits<T>::quiet_NaN();
  constexpr int64_t V = 19;
  auto loss_with = [&](int64_t column, T value, int32_t target) {
    Tensor<T> logits({1, V});
    for (int64_t c = 0; c < V; ++c) logits.data()[c] = T(0.1) * T(c);
    logits.data()[column] = value;
    return cross_entropy(Var<T>(logits), Tensor<int32_t>({1}, {target})).item();
  };
  for (int64_t column : {0, 5, 17}) {
    CAPTURE(column);
    CHECK(std::isnan(loss_with(column, nan, 1)));
    CHECK_FALSE(std::isfinite(loss_with(column, inf, 1)));
    CHECK(loss_with(column, -inf, int32_t(column)) == inf);  // the target can never be picked
  }
  // Finite extremes: 1e4 against -1e4 everywhere else is a loss of exactly 2e4.
  Tensor<T> extreme({2, V});
  for (int64_t i = 0; i < 2 * V; ++i) extreme.data()[i] = T(-1e4);
  extreme.data()[0] = T(1e4);
  extreme.data()[V + 3] = T(1e4);
  Var<T> logits(extreme, true);
  Var<T> loss = cross_entropy(logits, Tensor<int32_t>({2}, {1, 3}));
  CHECK(loss.item() == T(1e4));  // (2e4 + 0) / 2
  loss.backward();
  std::vector<T> expected(2 * V, T(0));
  expected[0] = T(0.5);
  expected[1] = T(-0.5);
  // Row 1 predicts its target: no gradient.
  test::check_close(logits.grad(), Tensor<T>({2, V}, expected), 1e-7);
  // Rows of loss 1e38 each: the mean is in range though the sum of four is not (in float).
  Tensor<T> huge({4, 2}, T(0));
  for (int64_t r = 0; r < 4; ++r) huge.data()[2 * r] = T(1e38);
  CHECK(cross_entropy(Var<T>(huge), Tensor<int32_t>({4}, 1)).item() == T(1e38));
  // One bad row makes the batch mean NaN.
  extreme.data()[V + 7] = nan;
  CHECK(std::isnan(cross_entropy(Var<T>(extreme), Tensor<int32_t>({2}, {1, 3})).item()));
}

TEST_CASE("cross_entropy errors") {
  Var<float> logits(Tensor<float>({2, 3, 5}));
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor<int32_t>({2, 4})),
                       "cross_entropy: targets of shape [2, 4] for logits of shape [2, 3, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor<int32_t>({2, 3, 5})),
                       "cross_entropy: targets of shape [2, 3, 5] for logits of shape [2, 3, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(logits, Tensor<int32_t>({6})),
                       "cross_entropy: targets of shape [6] for logits of shape [2, 3, 5]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(
      cross_entropy(Var<float>(Tensor<float>::scalar(1)), Tensor<int32_t>::scalar(0)),
      "cross_entropy: targets of shape [] for logits of shape []", ShapeError);
  CHECK_THROWS_WITH_AS(cross_entropy(Var<float>(Tensor<float>({2, 0})), Tensor<int32_t>({2})),
                       "cross_entropy: logits of shape [2, 0] have no classes", ShapeError);
  Var<float> l2(Tensor<float>({3, 5}));
  CHECK_THROWS_WITH_AS(cross_entropy(l2, Tensor<int32_t>({3}, {0, 4, 5})),
                       "cross_entropy: target 5 out of range [0, 5) at position 2", IndexError);
  CHECK_THROWS_WITH_AS(cross_entropy(l2, Tensor<int32_t>({3}, {-1, 0, 0})),
                       "cross_entropy: target -1 out of range [0, 5) at position 0", IndexError);
  // -100 is only special when it is the ignore_index.
  CHECK_THROWS_WITH_AS(cross_entropy(l2, Tensor<int32_t>({3}, {0, kIgnoreIndex, 0}), 4),
                       "cross_entropy: target -100 out of range [0, 5) at position 1", IndexError);
  CHECK_NOTHROW(cross_entropy(l2, Tensor<int32_t>({3}, {0, kIgnoreIndex, 4})));
}
