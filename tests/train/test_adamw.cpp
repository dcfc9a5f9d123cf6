#include <doctest/doctest.h>

#include <cmath>

#include <minimoe/optim/adamw.hpp>
#include <minimoe/optim/clip.hpp>

using namespace minimoe;

namespace {

// AdamW step by step in double, as Loshchilov & Hutter write it (decoupled decay).
struct ReferenceAdamW {
  std::vector<double> p, m, v;
  int steps = 0;
  void step(const std::vector<double>& g, double lr, const AdamWConfig& c, bool decay) {
    ++steps;
    for (size_t i = 0; i < p.size(); ++i) {
      m[i] = c.beta1 * m[i] + (1 - c.beta1) * g[i];
      v[i] = c.beta2 * v[i] + (1 - c.beta2) * g[i] * g[i];
      const double m_hat = m[i] / (1 - std::pow(c.beta1, steps));
      const double v_hat = v[i] / (1 - std::pow(c.beta2, steps));
      if (decay) p[i] -= lr * c.weight_decay * p[i];
      p[i] -= lr * m_hat / (std::sqrt(v_hat) + c.eps);
    }
  }
};

std::vector<double> values_of(const Tensor<float>& t) {
  const Tensor<float> c = t.contiguous();
  return std::vector<double>(c.data(), c.data() + c.numel());
}

}  // namespace

TEST_CASE("AdamW matches the textbook update, decaying matrices and not vectors") {
  // 201 x 173 elements span several of the update's blocks and end inside one.
  Rng rng(5);
  Var<float> matrix(Tensor<float>::randn({201, 173}, rng), true);
  Var<float> bias(Tensor<float>::randn({173}, rng), true);
  Var<float> frozen(Tensor<float>::randn({4}, rng), true);  // never gets a gradient
  const std::vector<double> frozen_before = values_of(frozen.value());
  AdamWConfig config;
  config.weight_decay = 0.3;
  AdamW<float> opt({{"matrix", matrix}, {"bias", bias}, {"frozen", frozen}}, config);
  ReferenceAdamW ref_matrix{values_of(matrix.value()), {}, {}};
  ReferenceAdamW ref_bias{values_of(bias.value()), {}, {}};
  ref_matrix.m.assign(ref_matrix.p.size(), 0);
  ref_matrix.v = ref_matrix.m;
  ref_bias.m.assign(ref_bias.p.size(), 0);
  ref_bias.v = ref_bias.m;

  for (int step = 0; step < 4; ++step) {
    const double lr = 1e-2 * (step + 1);
    const Tensor<float> g_matrix = Tensor<float>::randn({201, 173}, rng);
    const Tensor<float> g_bias = Tensor<float>::randn({173}, rng);
    matrix.add_grad(g_matrix);
    bias.add_grad(g_bias);
    opt.step(lr);
    opt.zero_grad();
    ref_matrix.step(values_of(g_matrix), lr, config, true);
    ref_bias.step(values_of(g_bias), lr, config, false);
  }
  CHECK(opt.steps() == 4);
  double worst = 0;
  const std::vector<double> got_matrix = values_of(matrix.value());
  for (size_t i = 0; i < got_matrix.size(); ++i)
    worst = std::max(worst, std::abs(got_matrix[i] - ref_matrix.p[i]));
  const std::vector<double> got_bias = values_of(bias.value());
  for (size_t i = 0; i < got_bias.size(); ++i)
    worst = std::max(worst, std::abs(got_bias[i] - ref_bias.p[i]));
  CHECK(worst < 1e-5);
  CHECK(values_of(frozen.value()) == frozen_before);
}

TEST_CASE("AdamW refuses bad settings") {
  Var<float> p(Tensor<float>({2}), true);
  AdamWConfig c;
  c.beta1 = 1.0;
  CHECK_THROWS_WITH_AS(AdamW<float>({{"p", p}}, c), doctest::Contains("betas"), ValueError);
  c = {};
  c.eps = 0;
  CHECK_THROWS_WITH_AS(AdamW<float>({{"p", p}}, c), doctest::Contains("eps"), ValueError);
  c = {};
  c.weight_decay = -1;
  CHECK_THROWS_WITH_AS(AdamW<float>({{"p", p}}, c), doctest::Contains("weight_decay"), ValueError);
}

TEST_CASE("the gradient norm of many blocks is the norm summed in double") {
  Rng rng(2);
  Var<float> big(Tensor<float>({100003}), true);
  const Tensor<float> g = Tensor<float>::randn({100003}, rng);
  big.add_grad(g);
  double expected = 0;
  for (int64_t i = 0; i < g.numel(); ++i) expected += double(g.data()[i]) * g.data()[i];
  CHECK(grad_norm(std::vector<Var<float>>{big}) ==
        doctest::Approx(std::sqrt(expected)).epsilon(1e-12));
}
