#include <minimoe/nn/moe_layer.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

RouterConfig router_config(int64_t d, int64_t E, int64_t K) {
  RouterConfig c;
  c.d_model = d;
  c.n_experts = E;
  c.top_k = K;
  return c;
}

ExpertConfig expert_config(int64_t d, int64_t h, bool glu = false) {
  ExpertConfig c;
  c.d_model = d;
  c.hidden = h;
  c.glu = glu;
  c.activation = glu ? Activation::SiLU : Activation::GELU;
  return c;
}

template <typename Module>
void randomize(Module& m, Rng& rng, double stddev = 0.5) {
  for (auto& p : parameters(m)) p.value() = Tensor<double>::randn(p.shape(), rng, stddev);
}

// The MoE output by its definition, token by token.
Tensor<double> moe_reference(MoELayer<Expert<double>>& moe, const Tensor<double>& x) {
  NoGradGuard no_grad;
  const int64_t N = x.size(0), C = x.size(1);
  Routing<double> r = moe.router(Var<double>(x));
  Tensor<double> out({N, C});
  for (int64_t n = 0; n < N; ++n) {
    Var<double> xn(x.slice(0, n, n + 1).contiguous());
    for (int64_t k = 0; k < moe.router.config.top_k; ++k) {
      if (r.plan.row_of[size_t(n * moe.router.config.top_k + k)] < 0) continue;  // dropped
      const int32_t e = r.experts.at({n, k});
      const Tensor<double> y = moe.experts[size_t(e)](xn).value();
      for (int64_t c = 0; c < C; ++c) out.at({n, c}) += r.weights.value().at({n, k}) * y.at({0, c});
    }
    for (auto& s : moe.shared_experts) {
      const Tensor<double> y = s(xn).value();
      for (int64_t c = 0; c < C; ++c) out.at({n, c}) += y.at({0, c});
    }
  }
  return out;
}

}  // namespace

TEST_CASE("router: top-k, weights, aux and z losses by hand") {
  Rng rng(0);
  Router<double> router(router_config(2, 3, 2), rng);
  // logits = x W^T with W = I-like rows: e0 = x0, e1 = x1, e2 = 0
  router.gate.weight.value().copy_(Tensor<double>({3, 2}, {1, 0, 0, 1, 0, 0}));
  Var<double> x(Tensor<double>({2, 2}, {2, 1, -1, 0}));
  Routing<double> r = router(x);
  CHECK(r.experts.to_vector() == std::vector<int32_t>{0, 1, 1, 2});  // ties go to lower index
  const double z0 = std::exp(2) + std::exp(1) + 1;
  CHECK(r.weights.value().at({0, 0}) == doctest::Approx(std::exp(2) / (std::exp(2) + std::exp(1))));
  CHECK(r.weights.value().at({1, 0}) == doctest::Approx(0.5));
  // f = (1, 2, 1) / 4; P = mean of probs over the two tokens
  const double z1 = std::exp(-1) + 2;
  const double P0 = (std::exp(2) / z0 + std::exp(-1) / z1) / 2,
               P1 = (std::exp(1) / z0 + 1 / z1) / 2, P2 = (1 / z0 + 1 / z1) / 2;
  CHECK(r.aux_loss().item() == doctest::Approx(3 * (0.25 * P0 + 0.5 * P1 + 0.25 * P2)));
  CHECK(r.z_loss().item() ==
        doctest::Approx((std::log(z0) * std::log(z0) + std::log(z1) * std::log(z1)) / 2));
  router.config.normalize_topk = false;
  CHECK(router(x).weights.value().at({1, 0}) == doctest::Approx(1 / z1));
}

TEST_CASE("router: uniform routing gives aux loss 1; gradcheck of weights and losses") {
  Rng rng(1);
  Router<double> router(router_config(4, 4, 2), rng);
  router.gate.weight.value().fill_(0.0);
  Var<double> x(Tensor<double>::randn({8, 4}, rng));
  // All-equal probabilities: every expert ties, so top-2 is experts 0 and 1 for every token.
  CHECK(router(x).aux_loss().item() == doctest::Approx(1.0));
  randomize(router, rng, 1.0);
  for (bool normalize : {true, false}) {
    router.config.normalize_topk = normalize;
    test::check_module_gradients(router, [&] {
      Routing<double> r = router(x);
      return test::probe(r.weights, 77) + 0.7 * r.aux_loss() + 0.3 * r.z_loss();
    });
    test::check_gradients([&](const std::vector<Var<double>>& in) { return router(in[0]).weights; },
                          {x.value()});
  }
}

TEST_CASE("router: jitter only in training, aux-free bias moves selection, errors") {
  Rng rng(2);
  RouterConfig c = router_config(4, 4, 1);
  c.jitter = 0.5;
  c.normalize_topk = false;  // with K = 1 the renormalised weight is always 1
  Router<float> router(c, rng, /*noise_seed=*/3);
  Var<float> x(Tensor<float>::randn({16, 4}, rng));
  set_training(router, false);
  const auto eval1 = router(x).weights.value().to_vector();
  CHECK(router(x).weights.value().to_vector() == eval1);
  set_training(router, true);
  CHECK(router(x).weights.value().to_vector() != router(x).weights.value().to_vector());

  RouterConfig b = router_config(4, 4, 1);
  b.aux_free_balancing = true;
  b.balance_rate = 0.05;
  Router<float> balanced(b, rng);
  balanced.gate.weight.value().fill_(0.0);
  balanced.gate.weight.value().at({0, 0}) = 5.0f;  // expert 0 wins most tokens
  Var<float> xs(Tensor<float>::uniform({32, 4}, rng, 0.5, 1.0));
  int64_t first = balanced(xs).plan.load(0);
  // Expert 0 was over-loaded, the others under-loaded: one step of 0.05 each way.
  CHECK(balanced.selection_bias.to_vector() == std::vector<float>{-0.05f, 0.05f, 0.05f, 0.05f});
  for (int i = 0; i < 40; ++i) balanced(xs);
  CHECK(balanced(xs).plan.load(0) < first);
  // The bias changes the choice, never the weights: they are still the unbiased probabilities.
  CHECK(named_tensors(balanced).size() == 2);  // gate.weight + selection_bias buffer

  CHECK_THROWS_WITH_AS(Router<float>(router_config(4, 2, 3), rng),
                       "router: top_k must be in [1, n_experts = 2], got 3", ValueError);
  CHECK_THROWS_WITH_AS(router(Var<float>(Tensor<float>({3, 5}))),
                       "router: input of shape [3, 5] is not [N, 4]", ShapeError);
}

TEST_CASE(
    "MoE layer matches the per-token definition: dropless, capacity, shared, top-1 and top-E") {
  Rng rng(4);
  struct Case {
    int64_t E, K;
    double capacity;
    int64_t shared;
    bool glu;
  };
  for (Case cs : {Case{4, 2, 0.0, 0, false}, Case{4, 2, 0.5, 0, false}, Case{3, 1, 0.0, 1, true},
                  Case{3, 3, 0.0, 0, false}, Case{4, 2, 0.6, 1, true}}) {
    RouterConfig rc = router_config(3, cs.E, cs.K);
    rc.capacity_factor = cs.capacity;
    MoELayer<Expert<double>> moe(rc, expert_config(3, 4, cs.glu), rng, cs.shared);
    randomize(moe, rng);
    const Tensor<double> x = Tensor<double>::randn({10, 3}, rng);
    const Tensor<double> y = moe(Var<double>(x)).value();
    test::check_close(y, moe_reference(moe, x), 1e-12);
    if (cs.capacity > 0) CHECK(moe.last.plan.dropped > 0);
    test::check_module_gradients(moe, [&] {
      Var<double> out = moe(Var<double>(x));
      return test::probe(out, 77) + 0.5 * moe.last.aux_loss() + 0.1 * moe.last.z_loss();
    });
    test::check_gradients([&](const std::vector<Var<double>>& in) { return moe(in[0]); }, {x});
  }
}

TEST_CASE("MoE layer keeps the input's shape and counts its parameters") {
  Rng rng(5);
  MoELayer<Expert<float>> moe(router_config(8, 4, 2), expert_config(8, 16), rng, 1);
  Var<float> x(Tensor<float>::randn({2, 5, 8}, rng));
  CHECK(moe(x).shape() == Shape{2, 5, 8});
  CHECK(moe.last.plan.rows() == 20);
  const int64_t expert = expert_config(8, 16).num_parameters();
  CHECK(num_parameters(moe) == 8 * 4 + 5 * expert);
  auto names = named_parameters(moe);
  CHECK(names.front().first == "router.gate.weight");
  CHECK(names[1].first == "experts.0.up.weight");
  CHECK(names.back().first == "shared_experts.0.down.bias");
  CHECK_THROWS_WITH_AS(moe(Var<float>(Tensor<float>({2, 7}))),
                       "MoELayer: input of shape [2, 7] for d_model 8", ShapeError);
}
