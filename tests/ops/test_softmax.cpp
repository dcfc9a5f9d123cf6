#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/ops/shape.hpp>
#include <minimoe/ops/softmax.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

using test::values;

// Softmax (or its log) of each last-axis row in long double, by the definition.
Tensor<double> softmax_reference(const Tensor<double>& x, bool log_space) {
  const Tensor<double> xc = x.contiguous();
  const int64_t C = xc.size(-1), rows = xc.numel() / C;
  Tensor<double> out(xc.shape());
  for (int64_t r = 0; r < rows; ++r) {
    long double total = 0;
    for (int64_t c = 0; c < C; ++c)
      total += std::exp(static_cast<long double>(xc.data()[r * C + c]));
    for (int64_t c = 0; c < C; ++c) {
      const long double v = xc.data()[r * C + c];
      out.data()[r * C + c] =
          static_cast<double>(log_space ? v - std::log(total) : std::exp(v) / total);
    }
  }
  return out;
}

// The first derivative along every entry is finite (no NaN leaks out of masked rows).
template <typename T>
bool all_finite(const Tensor<T>& t) {
  for (T v : t.to_vector())
    if (!std::isfinite(v)) return false;
  return true;
}

}  // namespace

TEST_CASE_TEMPLATE("softmax and log_softmax forward", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 1e-6 : 1e-14;
  Var<T> x(values<T>({2, 3}, {1, 2, 3, 3, 3, 3}));
  test::check_close(softmax(x).value(),
                    values<T>({2, 3}, {0.09003057317038043, 0.24472847105479764, 0.6652409557748218,
                                       1.0 / 3, 1.0 / 3, 1.0 / 3}),
                    tol);
  test::check_close(
      log_softmax(x).value(),
      values<T>({2, 3}, {-2.4076059644443806, -1.4076059644443804, -0.4076059644443804,
                         -1.0986122886681098, -1.0986122886681098, -1.0986122886681098}),
      tol * 4);
  // A 1-d input is one row; a non-contiguous input is normalised along its logical last axis.
  Var<T> v(values<T>({4}, {-1, 0.5, 0, 2}));
  test::check_close(softmax(v).value(),
                    values<T>({4}, {0.03535379340874887, 0.15844470951497974, 0.09610157419009721,
                                    0.7100999228861743}),
                    tol);
  test::check_close(log_softmax(v).value(),
                    values<T>({4}, {-3.342349582389822, -1.842349582389822, -2.342349582389822,
                                    -0.342349582389822}),
                    tol * 4);
  Var<T> xt(x.value().transpose(0, 1));  // [3, 2] rows {1, 3}, {2, 3}, {3, 3}
  test::check_close(softmax(xt).value(),
                    values<T>({3, 2}, {0.11920292202211755, 0.8807970779778824, 0.2689414213699951,
                                       0.7310585786300049, 0.5, 0.5}),
                    tol);
  // Shape is preserved for higher ranks.
  CHECK(softmax(Var<T>(Tensor<T>({2, 3, 4}))).shape() == Shape{2, 3, 4});
  CHECK(softmax(Var<T>(Tensor<T>({2, 3, 4}))).value().to_vector() == std::vector<T>(24, T(0.25)));
}

TEST_CASE("softmax and log_softmax match the reference on random rows") {
  Rng rng(41);
  const Tensor<double> x = Tensor<double>::randn({3, 4, 7}, rng, 3.0);
  test::check_close(softmax(Var<double>(x)).value(), softmax_reference(x, false), 1e-14);
  test::check_close(log_softmax(Var<double>(x)).value(), softmax_reference(x, true), 1e-13);
  const Tensor<double> xt = x.transpose(0, 2);
  test::check_close(softmax(Var<double>(xt)).value(), softmax_reference(xt, false), 1e-14);
  test::check_close(log_softmax(Var<double>(xt)).value(), softmax_reference(xt, true), 1e-13);
}

TEST_CASE_TEMPLATE("softmax is stable for large inputs", T, float, double) {
  Var<T> x(values<T>({2, 3}, {1e4, 1e4, -1e4, 1e4, 1e4 + 1, 1e4 + 2}));
  const auto p = softmax(x).value().to_vector();
  CHECK(p[0] == doctest::Approx(0.5));
  CHECK(p[1] == doctest::Approx(0.5));
  CHECK(p[2] == T(0));
  CHECK(p[3] == doctest::Approx(0.09003057317038043));
  CHECK(p[4] == doctest::Approx(0.24472847105479764));
  CHECK(p[5] == doctest::Approx(0.6652409557748218));
  const auto lp = log_softmax(x).value().to_vector();
  CHECK(lp[0] == doctest::Approx(-std::log(2.0)));
  CHECK(lp[1] == doctest::Approx(-std::log(2.0)));
  CHECK(lp[2] == doctest::Approx(-2e4 - std::log(2.0)));
  CHECK(lp[3] == doctest::Approx(-2.4076059644443806));
  CHECK(lp[5] == doctest::Approx(-0.4076059644443804));
  // Gradients are finite too.
  Var<T> leaf(x.value(), true);
  log_softmax(leaf).backward(values<T>({2, 3}, {1, 0, 0, 0, 0, 1}));
  CHECK(all_finite(leaf.grad()));
  leaf.zero_grad();
  softmax(leaf).backward(values<T>({2, 3}, {1, 0, 0, 0, 0, 1}));
  CHECK(all_finite(leaf.grad()));
}

// A +inf or NaN entry (an overflowed or poisoned logit) makes its whole row NaN, never a
// plausible distribution, so the loss turns NaN and the trainer skips the step; other rows are
// untouched.
TEST_CASE_TEMPLATE("softmax of a row holding +inf or NaN is NaN, the other rows are exact", T,
                   float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  constexpr T nan = std::numeric_limits<T>::quiet_NaN();
  // +inf; NaN first (std::max_element returns it); NaN after the maximum; finite extremes.
  Var<T> x(values<T>({4, 3}, {0, inf, 1, nan, 0, 1, 0, 1, nan, 1e4, -1e4, 0}), true);
  const auto p = softmax(x).value().to_vector();
  const auto lp = log_softmax(x).value().to_vector();
  for (int i = 0; i < 9; ++i) {
    CHECK(std::isnan(p[i]));
    CHECK(std::isnan(lp[i]));
  }
  CHECK(std::vector<T>(p.begin() + 9, p.end()) == std::vector<T>{1, 0, 0});
  CHECK(std::vector<T>(lp.begin() + 9, lp.end()) == std::vector<T>{0, -2e4, -1e4});
  softmax(x).backward(values<T>({4, 3}, std::vector<double>(12, 1.0)));
  CHECK(all_finite(x.grad().slice(0, 3, 4)));
}

TEST_CASE_TEMPLATE("softmax with -inf masking and fully masked rows", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  Var<T> x(Tensor<T>({3, 3}, {0, -inf, 0, -inf, -inf, -inf, -inf, 5, -inf}), true);
  Var<T> p = softmax(x);
  CHECK(p.value().to_vector() == std::vector<T>{0.5, 0, 0.5, 0, 0, 0, 0, 1, 0});
  Var<T> lp = log_softmax(x);
  const auto l = lp.value().to_vector();
  CHECK(l[0] == doctest::Approx(-std::log(2.0)));
  CHECK(l[1] == -inf);
  CHECK(l[2] == doctest::Approx(-std::log(2.0)));
  CHECK(l[3] == -inf);  // fully masked: -inf, not NaN
  CHECK(l[4] == -inf);
  CHECK(l[5] == -inf);
  CHECK(l[6] == -inf);
  CHECK(l[7] == T(0));
  CHECK(l[8] == -inf);

  // softmax gradient: nothing flows into masked entries or fully masked rows.
  p.backward(Tensor<T>({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  // row 0: y = [.5, 0, .5], dot = 2, dx = y * (g - 2)
  CHECK(x.grad().to_vector() == std::vector<T>{-0.5, 0, 0.5, 0, 0, 0, 0, 0, 0});
  x.zero_grad();
  // log_softmax gradient: g - softmax * sum(g) per row; a fully masked row gets none.
  lp.backward(Tensor<T>({3, 3}, {1, 0, 0, 1, 1, 1, 0, 1, 0}));
  CHECK(x.grad().to_vector() == std::vector<T>{0.5, 0, -0.5, 0, 0, 0, 0, 0, 0});
}

TEST_CASE("softmax and log_softmax gradcheck") {
  Rng rng(42);
  const Tensor<double> x = Tensor<double>::randn({3, 5}, rng);
  const Tensor<double> x3 = Tensor<double>::randn({2, 3, 4}, rng);
  test::check_gradients([](const V& in) { return softmax(in[0]); }, {x});
  test::check_gradients([](const V& in) { return log_softmax(in[0]); }, {x});
  test::check_gradients([](const V& in) { return softmax(in[0]); }, {x3});
  test::check_gradients([](const V& in) { return log_softmax(in[0]); }, {x3});
  test::check_gradients([](const V& in) { return softmax(in[0]); },
                        {Tensor<double>::randn({4}, rng)});
  // Non-contiguous inputs: the normalised axis is strided.
  auto t = [](const Var<double>& v) {
    Var<double> view = transpose(v, 0, -1);
    CHECK_FALSE(view.value().is_contiguous());
    return view;
  };
  test::check_gradients([&](const V& in) { return softmax(t(in[0])); }, {x3});
  test::check_gradients([&](const V& in) { return log_softmax(t(in[0])); }, {x3});
  test::check_gradients([](const V& in) { return log_softmax(slice(in[0], 1, 1, 4)); }, {x});
  // Scaled scores plus a broadcast additive mask: causal [T, T] against [B, T, T] scores.
  constexpr double inf = std::numeric_limits<double>::infinity();
  Var<double> causal(Tensor<double>({3, 3}, {0, -inf, -inf, 0, 0, -inf, 0, 0, 0}));
  test::check_gradients([&](const V& in) { return softmax(in[0] * in[1] + causal); },
                        {Tensor<double>::randn({2, 3, 3}, rng), Tensor<double>::scalar(0.7)});
  // A fully masked row inside the batch: zeros and zero gradient, never NaN.
  Var<double> mask(Tensor<double>({3, 1}, {0, -inf, 0}));
  test::check_gradients([&](const V& in) { return softmax(in[0] + mask); }, {x3.slice(0, 0, 1)});
  // Softmax feeding a weighted sum, as an attention output.
  test::check_gradients([](const V& in) { return sum(softmax(in[0]) * in[1], -1); },
                        {x3, Tensor<double>::randn({4}, rng)});
}

TEST_CASE("softmax errors") {
  Var<float> scalar(Tensor<float>::scalar(1.0f));
  CHECK_THROWS_WITH_AS(softmax(scalar), "softmax: input must be at least 1-d, got shape []",
                       ShapeError);
  CHECK_THROWS_WITH_AS(log_softmax(scalar), "log_softmax: input must be at least 1-d, got shape []",
                       ShapeError);
  // An empty last axis is fine: nothing to normalise.
  CHECK(softmax(Var<float>(Tensor<float>({2, 0}))).shape() == Shape{2, 0});
  CHECK(log_softmax(Var<float>(Tensor<float>({0, 3}))).shape() == Shape{0, 3});
}
