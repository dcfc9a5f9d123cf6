#include <cmath>
#include <memory>
#include <numeric>

#include <minimoe/nn/expert_dispatch.hpp>
#include <minimoe/nn/linear.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

void quantize(Linear<float>& l) {
  l.int8 = std::make_shared<const Int8Weight>(Int8Weight::quantize(l.weight.value()));
}

void quantize(Expert<float>& e) {
  quantize(e.up);
  if (e.config.glu) quantize(e.gate);
  quantize(e.down);
}

}  // namespace

TEST_CASE("Int8Weight::quantize: per-row scales and the round-trip bound") {
  Rng rng(1);
  const Tensor<float> w = Tensor<float>::randn({9, 13}, rng, 0.7);
  const Int8Weight q = Int8Weight::quantize(w);
  CHECK(q.out_features == 9);
  CHECK(q.in_features == 13);
  CHECK(q.bytes() == 9 * 13 + 9 * 4);
  for (int64_t o = 0; o < 9; ++o)
    for (int64_t i = 0; i < 13; ++i) {
      const double error =
          std::fabs(double(w.data()[o * 13 + i]) - double(q.q[o * 13 + i]) * double(q.scale[o]));
      CHECK(error <= double(q.scale[o]) / 2 * (1 + 1e-12));
    }
  CHECK_THROWS_WITH_AS(Int8Weight::quantize(Tensor<float>({4})),
                       "Int8Weight: a weight must be [out, in], got [4]", ShapeError);
}

TEST_CASE("a Linear with int8 weights: within the quantisation bound of the float product") {
  for (bool with_bias : {false, true}) {
    CAPTURE(with_bias);
    Rng rng(2);
    Linear<float> l(/*in=*/37, /*out=*/21, with_bias, rng, 0.3);
    if (with_bias) l.bias.value() = Tensor<float>::randn({21}, rng);
    const Tensor<float> x = Tensor<float>::randn({2, 3, 37}, rng);  // [B, T, in]
    NoGradGuard no_grad;
    const Tensor<float> expected = l(Var<float>(x)).value();
    quantize(l);
    const Tensor<float> y = l(Var<float>(x)).value();
    REQUIRE(y.shape() == Shape{2, 3, 21});
    // |sum_i x_i (w_i - q_i s)| <= s / 2 sum_i |x_i|, plus float rounding.
    double worst = 0;
    for (int64_t r = 0; r < 6; ++r)
      for (int64_t o = 0; o < 21; ++o) {
        double abs_x = 0;
        for (int64_t i = 0; i < 37; ++i) abs_x += std::fabs(double(x.data()[r * 37 + i]));
        const double bound = double(l.int8->scale[o]) / 2 * abs_x + 1e-5;
        const double diff = std::fabs(double(y.data()[r * 21 + o]) - expected.data()[r * 21 + o]);
        worst = std::max(worst, diff / bound);
      }
    CHECK(worst <= 1.0);
    CHECK(worst > 0.0);  // the int8 product did run: it differs from the float one
  }
}

TEST_CASE("int8 weights refuse to run with gradients enabled") {
  Rng rng(3);
  Linear<float> l(8, 4, true, rng);
  quantize(l);
  CHECK(grad_enabled());
  CHECK_THROWS_WITH_AS(l(Var<float>(Tensor<float>({2, 8}))),
                       doctest::Contains("Linear: int8 weights are for inference only"),
                       ValueError);
  NoGradGuard no_grad;
  CHECK_THROWS_WITH_AS(l(Var<float>(Tensor<float>({2, 7}))),
                       "Linear: input of shape [2, 7] for 8 input features", ShapeError);
}

TEST_CASE("dispatch_grouped with int8 experts: the loop over the same int8 experts") {
  for (bool glu : {false, true})
    for (bool bias : {false, true})
      for (int64_t tokens : {1, 3, 40}) {
        CAPTURE(glu);
        CAPTURE(bias);
        CAPTURE(tokens);
        const int64_t C = 24, h = 40, E = 4, K = 2;
        Rng rng(uint64_t(tokens * 4 + glu * 2 + bias));
        ExpertConfig config;
        config.d_model = C;
        config.hidden = h;
        config.glu = glu;
        config.bias = bias;
        config.activation = glu ? Activation::SiLU : Activation::GELU;
        std::vector<Expert<float>> experts;
        for (int64_t e = 0; e < E; ++e) {
          experts.emplace_back(config, rng);
          for (auto& p : parameters(experts.back()))
            p.value() = Tensor<float>::randn(p.shape(), rng, 0.3);
        }
        Tensor<int32_t> choice({tokens, K});
        for (int64_t n = 0; n < tokens; ++n) {
          choice.data()[n * K] = int32_t(n % 3);  // expert 3 receives nothing
          choice.data()[n * K + 1] = int32_t((n + 1) % 3);
        }
        const RoutingPlan plan = make_routing_plan(choice.data(), tokens, K, E, 0);
        const Var<float> x(Tensor<float>::randn({tokens, C}, rng));
        const Var<float> w(Tensor<float>::uniform({tokens, K}, rng, 0.1, 1.0));

        NoGradGuard no_grad;
        const Tensor<float> float_y = dispatch_grouped(x, w, plan, experts).value();
        for (Expert<float>& e : experts) quantize(e);
        const Tensor<float> grouped = dispatch_grouped(x, w, plan, experts).value();
        const Tensor<float> loop = dispatch_loop(x, w, plan, experts).value();
        test::check_close(grouped, loop, 2e-5);
        // And near the float experts: the quantisation error, a few percent of the output.
        double diff = 0, norm = 0;
        for (int64_t i = 0; i < grouped.numel(); ++i) {
          diff += std::pow(double(grouped.data()[i]) - double(float_y.data()[i]), 2);
          norm += std::pow(double(float_y.data()[i]), 2);
        }
        CHECK(std::sqrt(diff / norm) < 0.03);
        CHECK(diff > 0);
      }
}

TEST_CASE("dispatch_grouped with int8 experts: errors") {
  Rng rng(4);
  ExpertConfig config;
  config.d_model = 8;
  config.hidden = 16;
  std::vector<Expert<float>> experts{Expert<float>(config, rng), Expert<float>(config, rng)};
  const int32_t choice[2] = {0, 1};
  const RoutingPlan plan = make_routing_plan(choice, 2, 1, 2, 0);
  const Var<float> x(Tensor<float>::randn({2, 8}, rng));
  const Var<float> w(Tensor<float>({2, 1}, 1.0f));
  quantize(experts[0]);
  {
    NoGradGuard no_grad;
    CHECK_THROWS_WITH_AS(dispatch_grouped(x, w, plan, experts),
                         "dispatch_grouped: some experts have int8 weights and some do not",
                         ValueError);
    experts[1].up.int8 = experts[0].up.int8;  // half an expert is not enough either
    CHECK_THROWS_AS(dispatch_grouped(x, w, plan, experts), ValueError);
  }
  quantize(experts[1]);
  CHECK_THROWS_WITH_AS(dispatch_grouped(x, w, plan, experts),
                       doctest::Contains("dispatch_grouped: int8 expert weights are for inference"),
                       ValueError);
  NoGradGuard no_grad;
  CHECK(dispatch_grouped(x, w, plan, experts).shape() == Shape{2, 8});
}
