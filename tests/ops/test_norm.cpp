#include <algorithm>

#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/norm.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

using test::values;

// LayerNorm / RMSNorm of each last-axis row by the definition, in long double. weight and
// bias may be undefined.
Tensor<double> norm_reference(const Tensor<double>& x, const Tensor<double>& weight,
                              const Tensor<double>& bias, double eps, bool centre) {
  const Tensor<double> xc = x.contiguous();
  const int64_t C = xc.size(-1), rows = xc.numel() / C;
  Tensor<double> out(xc.shape());
  for (int64_t r = 0; r < rows; ++r) {
    const double* in = xc.data() + r * C;
    long double mu = 0, ms = 0;
    if (centre) {
      for (int64_t c = 0; c < C; ++c) mu += in[c];
      mu /= C;
    }
    for (int64_t c = 0; c < C; ++c) ms += (in[c] - mu) * (in[c] - mu);
    ms /= C;
    for (int64_t c = 0; c < C; ++c) {
      long double y = (in[c] - mu) / std::sqrt(ms + eps);
      if (weight.defined()) y *= weight.data()[c];
      if (bias.defined()) y += bias.data()[c];
      out.data()[r * C + c] = static_cast<double>(y);
    }
  }
  return out;
}

}  // namespace

TEST_CASE_TEMPLATE("layer_norm and rms_norm forward by hand", T, float, double) {
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-14;
  Var<T> x(values<T>({2, 4}, {1, 2, 3, 4, 2, 2, 2, 2}));
  // row 0: mean 2.5, variance 1.25; row 1 is constant and normalises to 0 thanks to eps.
  test::check_close(layer_norm(x, {}, {}, 0.0).value().slice(0, 0, 1).contiguous(),
                    values<T>({1, 4}, {-1.3416407864998738, -0.4472135954999579, 0.4472135954999579,
                                       1.3416407864998738}),
                    tol);
  CHECK(layer_norm(x).value().slice(0, 1, 2).to_vector() == std::vector<T>(4, T(0)));
  const double s = 1.0 / std::sqrt(1.25 + 1e-5);  // default eps
  test::check_close(layer_norm(x).value(),
                    values<T>({2, 4}, {-1.5 * s, -0.5 * s, 0.5 * s, 1.5 * s, 0, 0, 0, 0}), tol);
  Var<T> w(values<T>({4}, {1, 2, 3, 4}));
  Var<T> b(values<T>({4}, {0.5, -0.5, 1, 0}));
  test::check_close(
      layer_norm(x, w, b).value(),
      values<T>({2, 4}, {-1.5 * s + 0.5, -1 * s - 0.5, 1.5 * s + 1, 6 * s, 0.5, -0.5, 1, 0}), tol);
  test::check_close(layer_norm(x, w).value(),
                    values<T>({2, 4}, {-1.5 * s, -1 * s, 1.5 * s, 6 * s, 0, 0, 0, 0}), tol);
  test::check_close(
      layer_norm(x, Var<T>(), b).value(),
      values<T>({2, 4}, {-1.5 * s + 0.5, -0.5 * s - 0.5, 0.5 * s + 1, 1.5 * s, 0.5, -0.5, 1, 0}),
      tol);

  // RMSNorm: [3, 4] has mean square 12.5; no centring, so a constant row normalises to 1.
  Var<T> r(values<T>({2, 2}, {3, 4, -2, -2}));
  test::check_close(rms_norm(r, {}, 0.0).value(),
                    values<T>({2, 2}, {0.848528137423857, 1.131370849898476, -1, -1}), tol);
  Var<T> rw(values<T>({2}, {2, -1}));
  test::check_close(rms_norm(r, rw, 0.0).value(),
                    values<T>({2, 2}, {1.697056274847714, -1.131370849898476, -2, 1}), tol);
  const double rs = 1.0 / std::sqrt(12.5 + 1e-6);  // default eps
  CHECK(rms_norm(r).value().at({0, 0}) == doctest::Approx(3 * rs));
  CHECK(rms_norm(Var<T>(Tensor<T>({1, 3}))).value().to_vector() == std::vector<T>(3, T(0)));
}

TEST_CASE_TEMPLATE("layer_norm and rms_norm of extreme and non-finite rows", T, float, double) {
  constexpr T inf = std::numeric_limits<T>::infinity();
  constexpr T nan = std::numeric_limits<T>::quiet_NaN();
  const double tol = std::is_same_v<T, float> ? 2e-6 : 1e-12;  // eps moves +-1 by 5e-14
  // +-1e4: exact statistics. A large offset with a small spread normalises like the spread
  // alone: the variance is taken around the mean, not as E[x^2] - E[x]^2.
  Var<T> x(values<T>({2, 4}, {1e4, -1e4, 1e4, -1e4, 1e4, 1e4 + 1, 1e4 + 2, 1e4 + 3}));
  const Tensor<T> spread = layer_norm(Var<T>(values<T>({1, 4}, {0, 1, 2, 3}))).value();
  test::check_close(layer_norm(x).value().slice(0, 0, 1).contiguous(),
                    values<T>({1, 4}, {1, -1, 1, -1}), tol);
  test::check_close(layer_norm(x).value().slice(0, 1, 2).contiguous(), spread, tol);
  test::check_close(rms_norm(x).value().slice(0, 0, 1).contiguous(),
                    values<T>({1, 4}, {1, -1, 1, -1}), tol);
  // A row holding inf or NaN has NaN in its output (layer_norm: the whole row), so the loss
  // turns NaN; the other rows are untouched.
  Var<T> bad(values<T>({3, 4}, {inf, 1, 2, 3, 0, nan, 2, 3, 0, 1, 2, 3}));
  for (bool centre : {true, false}) {
    CAPTURE(centre);
    const Tensor<T> y = centre ? layer_norm(bad).value() : rms_norm(bad).value();
    const Tensor<T> clean = centre ? layer_norm(Var<T>(values<T>({1, 4}, {0, 1, 2, 3}))).value()
                                   : rms_norm(Var<T>(values<T>({1, 4}, {0, 1, 2, 3}))).value();
    for (int64_t r = 0; r < 2; ++r) {
      const auto row = y.slice(0, r, r + 1).to_vector();
      CHECK(std::any_of(row.begin(), row.end(), [](T v) { return std::isnan(v); }));
      if (centre) CHECK(std::all_of(row.begin(), row.end(), [](T v) { return std::isnan(v); }));
    }
    CHECK(y.slice(0, 2, 3).to_vector() == clean.to_vector());
  }
}

TEST_CASE("layer_norm and rms_norm match the reference on random rows") {
  Rng rng(61);
  const Tensor<double> x = Tensor<double>::randn({3, 4, 6}, rng, 2.0, 1.5);
  const Tensor<double> w = Tensor<double>::randn({6}, rng);
  const Tensor<double> b = Tensor<double>::randn({6}, rng);
  const Tensor<double> none;
  for (const Tensor<double>& input : {x, x.transpose(0, 1)}) {
    test::check_close(layer_norm(Var<double>(input), Var<double>(w), Var<double>(b)).value(),
                      norm_reference(input, w, b, 1e-5, true), 1e-13);
    test::check_close(layer_norm(Var<double>(input), {}, {}, 0.1).value(),
                      norm_reference(input, none, none, 0.1, true), 1e-13);
    test::check_close(rms_norm(Var<double>(input), Var<double>(w)).value(),
                      norm_reference(input, w, none, 1e-6, false), 1e-13);
    test::check_close(rms_norm(Var<double>(input), {}, 0.5).value(),
                      norm_reference(input, none, none, 0.5, false), 1e-13);
  }
  // Weight and bias that are views at an offset into a larger storage.
  const Tensor<double> params = Tensor<double>::randn({14}, rng);
  const Tensor<double> wv = params.slice(0, 1, 7), bv = params.slice(0, 8, 14);
  REQUIRE(wv.offset() == 1);
  test::check_close(layer_norm(Var<double>(x), Var<double>(wv), Var<double>(bv)).value(),
                    norm_reference(x, wv.clone(), bv.clone(), 1e-5, true), 1e-13);
  test::check_close(rms_norm(Var<double>(x), Var<double>(bv)).value(),
                    norm_reference(x, bv.clone(), none, 1e-6, false), 1e-13);
}

TEST_CASE("layer_norm and rms_norm gradcheck") {
  Rng rng(62);
  const Tensor<double> x = Tensor<double>::randn({2, 3, 5}, rng, 1.0, 0.5);
  const Tensor<double> w = Tensor<double>::randn({5}, rng);
  const Tensor<double> b = Tensor<double>::randn({5}, rng);
  test::check_gradients([](const V& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b});
  test::check_gradients([](const V& in) { return layer_norm(in[0], in[1]); }, {x, w});
  test::check_gradients([](const V& in) { return layer_norm(in[0], Var<double>(), in[1]); },
                        {x, b});
  test::check_gradients([](const V& in) { return layer_norm(in[0]); }, {x});
  test::check_gradients([](const V& in) { return layer_norm(in[0], {}, {}, 0.3); }, {x});
  test::check_gradients([](const V& in) { return rms_norm(in[0], in[1]); }, {x, w});
  test::check_gradients([](const V& in) { return rms_norm(in[0]); }, {x});
  test::check_gradients([](const V& in) { return rms_norm(in[0], {}, 0.3); }, {x});
  // Only the parameters, or only the input.
  test::check_gradients([](const V& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b},
                        only_wrt({false, true, true}));
  test::check_gradients([](const V& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b},
                        only_wrt({true, false, false}));
  test::check_gradients([](const V& in) { return layer_norm(in[0], in[1], in[2]); }, {x, w, b},
                        only_wrt({false, false, true}));
  test::check_gradients([](const V& in) { return rms_norm(in[0], in[1]); }, {x, w},
                        only_wrt({false, true}));
  // Non-contiguous inputs: the normalised axis is strided.
  auto t = [](const Var<double>& v) {
    Var<double> view = transpose(v, 0, -1);
    CHECK_FALSE(view.value().is_contiguous());
    return view;
  };
  const Tensor<double> xt = Tensor<double>::randn({5, 3, 2}, rng);
  test::check_gradients([&](const V& in) { return layer_norm(t(in[0]), in[1], in[2]); },
                        {xt, w, b});
  test::check_gradients([&](const V& in) { return rms_norm(t(in[0]), in[1]); }, {xt, w});
  test::check_gradients([&](const V& in) { return layer_norm(in[0], slice(in[1], 0, 1, 6)); },
                        {x, Tensor<double>::randn({7}, rng)});
  // Normalised output feeding a broadcast product (the residual stream of a block).
  test::check_gradients([](const V& in) { return rms_norm(in[0], in[1]) * in[2] + in[0]; },
                        {x, w, Tensor<double>::randn({3, 1}, rng)});
}

TEST_CASE("norm errors") {
  Var<float> x(Tensor<float>({2, 4}));
  CHECK_THROWS_WITH_AS(layer_norm(x, Var<float>(Tensor<float>({3}))),
                       "layer_norm: weight of shape [3] for input of shape [2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(
      layer_norm(x, Var<float>(Tensor<float>({4})), Var<float>(Tensor<float>({2, 4}))),
      "layer_norm: bias of shape [2, 4] for input of shape [2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(x, Var<float>(), Var<float>(Tensor<float>({5}))),
                       "layer_norm: bias of shape [5] for input of shape [2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(rms_norm(x, Var<float>(Tensor<float>({1, 4}))),
                       "rms_norm: weight of shape [1, 4] for input of shape [2, 4]", ShapeError);
  CHECK_THROWS_WITH_AS(layer_norm(Var<float>(Tensor<float>::scalar(1))),
                       "layer_norm: input must be at least 1-d, got shape []", ShapeError);
  CHECK_THROWS_WITH_AS(rms_norm(Var<float>(Tensor<float>::scalar(1))),
                       "rms_norm: input must be at least 1-d, got shape []", ShapeError);
}
