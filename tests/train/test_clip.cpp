#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>

#include <minimoe/optim/clip.hpp>

using namespace minimoe;

namespace {

Var<double> leaf_with_grad(std::vector<double> grad) {
  Var<double> v(Tensor<double>({static_cast<int64_t>(grad.size())}), true);
  Tensor<double> g({static_cast<int64_t>(grad.size())});
  std::copy(grad.begin(), grad.end(), g.data());
  v.add_grad(g);
  return v;
}

}  // namespace

TEST_CASE("the global norm covers every gradient, and clipping scales them all alike") {
  std::vector<Var<double>> params{leaf_with_grad({3, 0}), leaf_with_grad({0, 4}),
                                  Var<double>(Tensor<double>({2}), true)};  // no grad: skipped
  CHECK(grad_norm(params) == doctest::Approx(5.0));
  CHECK(clip_grad_norm(params, 1.0) == doctest::Approx(5.0));  // the norm before clipping
  CHECK(params[0].grad().data()[0] == doctest::Approx(0.6));
  CHECK(params[1].grad().data()[1] == doctest::Approx(0.8));
  CHECK(grad_norm(params) == doctest::Approx(1.0));
}

TEST_CASE("clipping a gradient large enough for the threads scales every element") {
  Var<float> p(Tensor<float>({300, 700}), true);
  p.add_grad(Tensor<float>({300, 700}, 2.0f));  // norm 2 sqrt(210000)
  const double norm = clip_grad_norm(std::vector<Var<float>>{p}, 1.0);
  CHECK(norm == doctest::Approx(2.0 * std::sqrt(210000.0)));
  const float want = static_cast<float>(2.0 / norm);
  const std::vector<float> g = p.grad().to_vector();
  CHECK(std::all_of(g.begin(), g.end(), [&](float v) { return v == want; }));
}

TEST_CASE("a norm under the limit, a limit of 0 and a non-finite norm leave gradients alone") {
  std::vector<Var<double>> params{leaf_with_grad({0.3, 0.4})};
  CHECK(clip_grad_norm(params, 1.0) == doctest::Approx(0.5));
  CHECK(params[0].grad().data()[0] == doctest::Approx(0.3));
  CHECK(clip_grad_norm(params, 0.0) == doctest::Approx(0.5));
  CHECK(params[0].grad().data()[0] == doctest::Approx(0.3));

  std::vector<Var<double>> bad{leaf_with_grad({NAN, 1.0})};
  CHECK(std::isnan(clip_grad_norm(bad, 1.0)));
  CHECK(bad[0].grad().data()[1] == 1.0);
}
