#include <minimoe/ops/pointwise.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// Literal values (computed independently with Python's math module) as a Tensor<T>.
using test::values;

template <typename T>
double tolerance() {
  return std::is_same_v<T, float> ? 2e-6 : 1e-13;
}

// The gradient of sum(f(x)) with respect to x, i.e. f'(x) elementwise.
template <typename T, typename F>
Tensor<T> derivative(F f, const Tensor<T>& x) {
  Var<T> leaf(x.clone(), true);
  Var<T> y = f(leaf);
  y.backward(Tensor<T>(y.shape(), T(1)));
  return leaf.grad();
}

// A relative check for values that span several orders of magnitude.
template <typename T>
void check_relative(const Tensor<T>& actual, const Tensor<T>& expected, double rtol) {
  REQUIRE(actual.shape() == expected.shape());
  const auto a = actual.to_vector();
  const auto e = expected.to_vector();
  for (size_t i = 0; i < a.size(); ++i)
    CHECK_MESSAGE(std::abs(double(a[i]) - double(e[i])) <= rtol * (1 + std::abs(double(e[i]))),
                  fmt::format("element {}: {} != expected {}", i, a[i], e[i]));
}

}  // namespace

TEST_CASE_TEMPLATE("pointwise forward values", T, float, double) {
  const double tol = tolerance<T>();
  Var<T> x(values<T>({2, 3}, {-2, -0.5, 0, 0.5, 1, 3}));
  check_relative(exp(x).value(),
                 values<T>({2, 3}, {0.1353352832366127, 0.6065306597126334, 1.0, 1.6487212707001282,
                                    2.718281828459045, 20.085536923187668}),
                 tol);
  check_relative(tanh(x).value(),
                 values<T>({2, 3}, {-0.9640275800758169, -0.46211715726000974, 0.0,
                                    0.46211715726000974, 0.7615941559557649, 0.9950547536867305}),
                 tol);
  check_relative(sigmoid(x).value(),
                 values<T>({2, 3}, {0.11920292202211755, 0.3775406687981454, 0.5,
                                    0.6224593312018546, 0.7310585786300049, 0.9525741268224334}),
                 tol);
  check_relative(relu(x).value(), values<T>({2, 3}, {0, 0, 0, 0.5, 1, 3}), 0);
  check_relative(square(x).value(), values<T>({2, 3}, {4, 0.25, 0, 0.25, 1, 9}), 0);
  check_relative(silu(x).value(),
                 values<T>({2, 3}, {-0.2384058440442351, -0.1887703343990727, 0.0,
                                    0.3112296656009273, 0.7310585786300049, 2.8577223804673}),
                 tol);
  const Tensor<T> gelu_tanh =
      values<T>({2, 3}, {-0.04540230591222494, -0.15428599017485606, 0.0, 0.34571400982514394,
                         0.8411919906082768, 2.996362607918227});
  check_relative(gelu(x).value(), gelu_tanh, tol);  // the default is the tanh form
  check_relative(gelu(x, GeluApproximation::Tanh).value(), gelu_tanh, tol);
  check_relative(gelu(x, GeluApproximation::Exact).value(),
                 values<T>({2, 3}, {-0.04550026389635842, -0.15426876936299344, 0.0,
                                    0.34573123063700656, 0.8413447460685429, 2.99595030590511}),
                 tol);
  check_relative(pow(x, T(3)).value(), values<T>({2, 3}, {-8, -0.125, 0, 0.125, 1, 27}), tol);
  check_relative(pow(x, T(0)).value(), values<T>({2, 3}, {1, 1, 1, 1, 1, 1}), 0);
  // The exponent converts to the element type: int and double exponents for any T.
  check_relative(pow(x, 2).value(), values<T>({2, 3}, {4, 0.25, 0, 0.25, 1, 9}), tol);
  check_relative(pow(x, 1.0).value(), x.value(), 0);

  Var<T> p(values<T>({6}, {0.25, 1, 2, 4, 9, 100}));
  check_relative(log(p).value(),
                 values<T>({6}, {-1.3862943611198906, 0.0, 0.6931471805599453, 1.3862943611198906,
                                 2.1972245773362196, 4.605170185988092}),
                 tol);
  check_relative(sqrt(p).value(), values<T>({6}, {0.5, 1, 1.4142135623730951, 2, 3, 10}), tol);
  check_relative(pow(p, T(1.5)).value(),
                 values<T>({6}, {0.125, 1, 2.8284271247461903, 8, 27, 1000}), tol);
  check_relative(pow(p, T(-1)).value(), values<T>({6}, {4, 1, 0.5, 0.25, 1.0 / 9, 0.01}), tol);

  // Each op records its name; the output of a no-grad input is a leaf.
  Var<T> xg(x.value(), true);
  CHECK(std::string(gelu(xg).op()) == "gelu_tanh");
  CHECK(std::string(gelu(xg, GeluApproximation::Exact).op()) == "gelu");
  CHECK(std::string(silu(xg).op()) == "silu");
  CHECK(std::string(exp(x).op()) == "leaf");
  CHECK_FALSE(exp(x).requires_grad());
}

TEST_CASE_TEMPLATE("pointwise derivatives by hand", T, float, double) {
  const double tol = tolerance<T>() * 4;
  const Tensor<T> x = values<T>({6}, {-2, -0.5, 0, 0.5, 1, 3});
  check_relative(derivative<T>([](const Var<T>& v) { return exp(v); }, x),
                 values<T>({6}, {0.1353352832366127, 0.6065306597126334, 1.0, 1.6487212707001282,
                                 2.718281828459045, 20.085536923187668}),
                 tol);
  check_relative(derivative<T>([](const Var<T>& v) { return tanh(v); }, x),
                 values<T>({6}, {0.07065082485316443, 0.7864477329659274, 1.0, 0.7864477329659274,
                                 0.41997434161402614, 0.009866037165440211}),
                 tol);
  check_relative(derivative<T>([](const Var<T>& v) { return sigmoid(v); }, x),
                 values<T>({6}, {0.1049935854035065, 0.2350037122015945, 0.25, 0.2350037122015945,
                                 0.19661193324148185, 0.045176659730912}),
                 tol);
  check_relative(derivative<T>([](const Var<T>& v) { return silu(v); }, x),
                 values<T>({6}, {-0.09078424878489547, 0.2600388126973482, 0.5, 0.7399611873026519,
                                 0.9276705118714869, 1.0881041060151693}),
                 tol);
  check_relative(
      derivative<T>([](const Var<T>& v) { return gelu(v, GeluApproximation::Exact); }, x),
      values<T>({6}, {-0.08523180107819692, 0.13250487534383712, 0.5, 0.8674951246561629,
                      1.0833154705876864, 1.011945647204184}),
      tol);
  // Python central differences (h = 1e-5) of the tanh form: accurate to about 1e-10.
  check_relative(derivative<T>([](const Var<T>& v) { return gelu(v); }, x),
                 values<T>({6}, {-0.08609925662532435, 0.1326300964749061, 0.5, 0.8673699035205428,
                                 1.0829640838372345, 1.0115841666324954}),
                 std::max(tol, 1e-9));
  check_relative(derivative<T>([](const Var<T>& v) { return square(v); }, x),
                 values<T>({6}, {-4, -1, 0, 1, 2, 6}), 0);
  check_relative(derivative<T>([](const Var<T>& v) { return pow(v, T(3)); }, x),
                 values<T>({6}, {12, 0.75, 0, 0.75, 3, 27}), tol);
  // relu' is 0 at 0, as in PyTorch.
  check_relative(derivative<T>([](const Var<T>& v) { return relu(v); }, x),
                 values<T>({6}, {0, 0, 0, 1, 1, 1}), 0);

  const Tensor<T> p = values<T>({4}, {0.25, 1, 4, 100});
  check_relative(derivative<T>([](const Var<T>& v) { return log(v); }, p),
                 values<T>({4}, {4, 1, 0.25, 0.01}), tol);
  check_relative(derivative<T>([](const Var<T>& v) { return sqrt(v); }, p),
                 values<T>({4}, {1, 0.5, 0.25, 0.05}), tol);
  check_relative(derivative<T>([](const Var<T>& v) { return pow(v, T(-2)); }, p),
                 values<T>({4}, {-128, -2, -2.0 / 64, -2e-6}), tol);

  // x^p at x = 0: the constant x^0 has derivative 0 and x^1 has derivative 1.
  const Tensor<T> zero({1}, T(0));
  CHECK(derivative<T>([](const Var<T>& v) { return pow(v, T(0)); }, zero).item() == T(0));
  CHECK(derivative<T>([](const Var<T>& v) { return pow(v, T(1)); }, zero).item() == T(1));
  CHECK(derivative<T>([](const Var<T>& v) { return pow(v, T(2)); }, zero).item() == T(0));
}

TEST_CASE("pointwise gradcheck") {
  Rng rng(11);
  // Away from relu's kink at 0: |x| >= 0.2.
  Tensor<double> x = Tensor<double>::uniform({3, 4}, rng, 0.2, 2.0);
  for (int64_t i = 0; i < x.numel(); i += 2) x.data()[i] = -x.data()[i];
  const Tensor<double> positive = Tensor<double>::uniform({3, 4}, rng, 0.3, 3.0);

  test::check_gradients([](const V& in) { return exp(in[0]); }, {x});
  test::check_gradients([](const V& in) { return tanh(in[0]); }, {x});
  test::check_gradients([](const V& in) { return sigmoid(in[0]); }, {x});
  test::check_gradients([](const V& in) { return relu(in[0]); }, {x});
  test::check_gradients([](const V& in) { return silu(in[0]); }, {x});
  test::check_gradients([](const V& in) { return gelu(in[0]); }, {x});
  test::check_gradients([](const V& in) { return gelu(in[0], GeluApproximation::Exact); }, {x});
  test::check_gradients([](const V& in) { return square(in[0]); }, {x});
  test::check_gradients([](const V& in) { return pow(in[0], 3.0); }, {x});
  test::check_gradients([](const V& in) { return pow(in[0], 0.0); }, {x});
  test::check_gradients([](const V& in) { return log(in[0]); }, {positive});
  test::check_gradients([](const V& in) { return sqrt(in[0]); }, {positive});
  test::check_gradients([](const V& in) { return pow(in[0], 1.7); }, {positive});
  test::check_gradients([](const V& in) { return pow(in[0], -0.5); }, {positive});
}

TEST_CASE("pointwise gradcheck on non-contiguous inputs and with broadcasting") {
  Rng rng(12);
  const Tensor<double> x = Tensor<double>::randn({4, 3}, rng);
  const Tensor<double> positive = Tensor<double>::uniform({4, 3}, rng, 0.3, 3.0);
  const Tensor<double> row = Tensor<double>::randn({4}, rng);
  // transpose makes a [3, 4] view that is not contiguous: unary_op must read it in logical order.
  auto t = [](const Var<double>& v) {
    Var<double> view = transpose(v, 0, 1);
    CHECK_FALSE(view.value().is_contiguous());
    return view;
  };
  test::check_gradients([&](const V& in) { return exp(t(in[0])) * in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return tanh(t(in[0])) + in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return sigmoid(t(in[0])) * in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return silu(t(in[0])) * in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return gelu(t(in[0])) * in[1]; }, {x, row});
  test::check_gradients(
      [&](const V& in) { return gelu(t(in[0]), GeluApproximation::Exact) * in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return square(t(in[0])) * in[1]; }, {x, row});
  test::check_gradients([&](const V& in) { return log(t(in[0])) * in[1]; }, {positive, row});
  test::check_gradients([&](const V& in) { return sqrt(t(in[0])) * in[1]; }, {positive, row});
  test::check_gradients([&](const V& in) { return pow(t(in[0]), 2.5) * in[1]; }, {positive, row});
  // A strided slice: every other column of a [3, 8] tensor.
  const Tensor<double> wide = Tensor<double>::randn({3, 8}, rng);
  test::check_gradients(
      [](const V& in) {
        Var<double> odd = slice(reshape(in[0], {3, 4, 2}), 2, 1, 2);  // [3, 4, 1], strided
        CHECK_FALSE(odd.value().is_contiguous());
        return reshape(silu(odd), {3, 4}) * tanh(slice(in[0], 1, 2, 6));
      },
      {wide});

  // Direct check that a strided view is read in logical order.
  Var<double> m(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  CHECK(square(transpose(m, 0, 1)).value().to_vector() == std::vector<double>{1, 16, 4, 25, 9, 36});
}

TEST_CASE("pointwise ops are stable at extreme inputs") {
  Var<float> x(Tensor<float>({4}, {-200.0f, -100.0f, 100.0f, 200.0f}), true);
  auto finite = [](const Tensor<float>& t) {
    for (float v : t.to_vector())
      if (!std::isfinite(v)) return false;
    return true;
  };
  for (auto f :
       {+[](const Var<float>& v) { return sigmoid(v); },
        +[](const Var<float>& v) { return silu(v); }, +[](const Var<float>& v) { return tanh(v); },
        +[](const Var<float>& v) { return gelu(v); },
        +[](const Var<float>& v) { return gelu(v, GeluApproximation::Exact); }}) {
    x.zero_grad();
    Var<float> y = f(x);
    CHECK(finite(y.value()));
    y.backward(Tensor<float>({4}, 1.0f));
    CHECK(finite(x.grad()));
  }
  CHECK(sigmoid(x).value().to_vector() == std::vector<float>{0, 0, 1, 1});
  CHECK(tanh(x).value().to_vector() == std::vector<float>{-1, -1, 1, 1});
  const auto s = silu(x).value().to_vector();
  CHECK(s[0] == doctest::Approx(0.0));
  CHECK(s[3] == doctest::Approx(200.0));
  const auto g = gelu(x).value().to_vector();
  CHECK(g[1] == doctest::Approx(0.0));
  CHECK(g[2] == doctest::Approx(100.0));
  CHECK(exp(Var<float>(Tensor<float>({1}, -1000.0f))).value().item() == 0.0f);
}
