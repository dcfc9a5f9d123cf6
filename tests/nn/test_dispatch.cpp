#include <cmath>
#include <numeric>

#include <minimoe/nn/expert_dispatch.hpp>
#include <minimoe/ops/reduce.hpp>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "../test_util.hpp"

using namespace minimoe;

namespace {

struct Case {
  int64_t tokens, experts, top_k;
  bool glu, bias;
  Activation activation;
  int64_t capacity;  // 0 = dropless
  bool one_expert;   // every token's first choice is expert 0
};

// Grouped and loop dispatch on the same routing: the outputs and every gradient must agree.
void check_case(const Case& c) {
  CAPTURE(c.tokens);
  CAPTURE(c.experts);
  CAPTURE(c.top_k);
  CAPTURE(c.glu);
  CAPTURE(c.capacity);
  const int64_t C = 7, h = 5;
  Rng rng(uint64_t(c.tokens * 100 + c.experts * 10 + c.top_k));
  ExpertConfig config;
  config.d_model = C;
  config.hidden = h;
  config.glu = c.glu;
  config.bias = c.bias;
  config.activation = c.activation;
  std::vector<Expert<double>> experts;
  for (int64_t e = 0; e < c.experts; ++e) {
    experts.emplace_back(config, rng);
    for (auto& p : parameters(experts.back()))
      p.value() = Tensor<double>::randn(p.shape(), rng, 0.5);
  }
  Tensor<int32_t> choice({c.tokens, c.top_k});
  for (int64_t n = 0; n < c.tokens; ++n) {
    std::vector<int32_t> order(static_cast<size_t>(c.experts));
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = c.experts - 1; i > 0; --i) std::swap(order[i], order[rng.below(i + 1)]);
    if (c.one_expert) std::swap(order[0], *std::find(order.begin(), order.end(), 0));
    std::copy_n(order.begin(), c.top_k, choice.data() + n * c.top_k);
  }
  const RoutingPlan plan =
      make_routing_plan(choice.data(), c.tokens, c.top_k, c.experts, c.capacity);
  const Tensor<double> x = Tensor<double>::randn({c.tokens, C}, rng);
  const Tensor<double> w = Tensor<double>::uniform({c.tokens, c.top_k}, rng, 0.1, 1.0);
  const Tensor<double> probe = Tensor<double>::randn({c.tokens, C}, rng);

  auto run = [&](bool grouped) {
    for (auto& e : experts) zero_grad(e);
    Var<double> xv(x, true), wv(w, true);
    Var<double> y =
        grouped ? dispatch_grouped(xv, wv, plan, experts) : dispatch_loop(xv, wv, plan, experts);
    sum(y * Var<double>(probe)).backward();
    std::vector<Tensor<double>> out{y.value(), xv.grad(), wv.grad()};
    for (auto& e : experts)
      for (auto& p : parameters(e))
        out.push_back(p.has_grad() ? p.grad() : Tensor<double>(p.shape()));
    return out;
  };
  const auto grouped = run(true), loop = run(false);
  REQUIRE(grouped.size() == loop.size());
  for (size_t i = 0; i < grouped.size(); ++i) {
    CAPTURE(i);
    test::check_close(grouped[i], loop[i], 1e-10);
  }
}

}  // namespace

TEST_CASE("grouped dispatch equals the loop reference, forward and backward") {
  const std::vector<Case> cases = {
      {12, 4, 2, false, true, Activation::GELU, 0, false},
      {9, 3, 1, true, false, Activation::SiLU, 0, false},      // k = 1
      {8, 4, 4, true, true, Activation::GELUExact, 0, false},  // k = E
      {10, 4, 2, false, false, Activation::ReLU2, 0, true},    // expert 0 takes every token
      {16, 4, 2, true, true, Activation::GELU, 5, true},       // capacity: pairs dropped
      {3, 8, 2, false, true, Activation::ReLU, 0, false},      // most experts get nothing
      {1, 2, 1, false, true, Activation::GELU, 0, false},      // decoding a single token
  };
  for (const Case& c : cases) check_case(c);
}

TEST_CASE("grouped dispatch gradcheck and errors") {
  Rng rng(4);
  ExpertConfig config;
  config.d_model = 4;
  config.hidden = 3;
  config.glu = true;
  std::vector<Expert<double>> experts;
  for (int e = 0; e < 3; ++e) experts.emplace_back(config, rng, 0.5);
  const Tensor<int32_t> choice({5, 2}, {0, 2, 1, 0, 2, 1, 0, 1, 2, 0});
  const RoutingPlan plan = make_routing_plan(choice.data(), 5, 2, 3, /*capacity=*/3);
  CHECK(plan.dropped == 1);
  test::check_gradients(
      [&](const std::vector<Var<double>>& in) {
        return dispatch_grouped(in[0], in[1], plan, experts);
      },
      {Tensor<double>::randn({5, 4}, rng), Tensor<double>::uniform({5, 2}, rng, 0.2, 1.0)});

  Var<double> x(Tensor<double>({5, 3})), w(Tensor<double>({5, 2}));
  CHECK_THROWS_WITH_AS(dispatch_grouped(x, w, plan, experts),
                       "dispatch_grouped: tokens of shape [5, 3], expected [5, 4]", ShapeError);
  experts.pop_back();
  CHECK_THROWS_WITH_AS(dispatch_grouped(Var<double>(Tensor<double>({5, 4})), w, plan, experts),
                       "dispatch_grouped: 2 experts for a routing plan over 3", ValueError);
}

namespace {

// A float problem big enough for several K blocks, row and column tiles, with the SIMD
// kernels: grouped in float against the loop in double.
struct FloatCase {
  int64_t tokens, C, h, experts, top_k;
  bool glu, bias;
  Activation activation;
  int64_t capacity;
};

struct FloatProblem {
  std::vector<Expert<float>> experts;
  std::vector<Expert<double>> experts64;
  RoutingPlan plan;
  Tensor<float> x, w, probe;
};

FloatProblem make_float_problem(const FloatCase& c) {
  Rng rng(uint64_t(c.tokens * 7 + c.experts * 3 + c.h));
  ExpertConfig config;
  config.d_model = c.C;
  config.hidden = c.h;
  config.glu = c.glu;
  config.bias = c.bias;
  config.activation = c.activation;
  FloatProblem p;
  for (int64_t e = 0; e < c.experts; ++e) {
    p.experts.emplace_back(config, rng);
    p.experts64.emplace_back(config, rng);
    auto params = parameters(p.experts.back());
    auto params64 = parameters(p.experts64.back());
    for (size_t i = 0; i < params.size(); ++i) {
      const double std = params[i].dim() == 2 ? 1.0 / std::sqrt(double(params[i].size(1))) : 0.1;
      params[i].value() = Tensor<float>::randn(params[i].shape(), rng, std);
      params64[i].value() = params[i].value().cast<double>();
    }
  }
  // Skewed: expert 0 is every token's first choice, the rest uniform.
  Tensor<int32_t> choice({c.tokens, c.top_k});
  for (int64_t n = 0; n < c.tokens; ++n) {
    std::vector<int32_t> order(static_cast<size_t>(c.experts));
    std::iota(order.begin(), order.end(), 0);
    for (int64_t i = c.experts - 1; i > 1; --i) std::swap(order[i], order[1 + rng.below(i)]);
    std::copy_n(order.begin(), c.top_k, choice.data() + n * c.top_k);
  }
  p.plan = make_routing_plan(choice.data(), c.tokens, c.top_k, c.experts, c.capacity);
  p.x = Tensor<float>::randn({c.tokens, c.C}, rng);
  p.w = Tensor<float>::uniform({c.tokens, c.top_k}, rng, 0.1, 1.0);
  p.probe = Tensor<float>::randn({c.tokens, c.C}, rng);
  return p;
}

// Output, input and routing-weight gradients, then every parameter gradient.
template <typename T>
std::vector<Tensor<T>> run_dispatch(std::vector<Expert<T>>& experts, const FloatProblem& p,
                                    bool grouped, const DispatchOptions& options = {}) {
  for (auto& e : experts) zero_grad(e);
  Var<T> xv(p.x.cast<T>(), true), wv(p.w.cast<T>(), true);
  Var<T> y = grouped ? dispatch_grouped(xv, wv, p.plan, experts, options)
                     : dispatch_loop(xv, wv, p.plan, experts);
  sum(y * Var<T>(p.probe.cast<T>())).backward();
  std::vector<Tensor<T>> out{y.value(), xv.grad(), wv.grad()};
  for (auto& e : experts)
    for (auto& q : parameters(e)) out.push_back(q.has_grad() ? q.grad() : Tensor<T>(q.shape()));
  return out;
}

void check_float_case(const FloatCase& c) {
  CAPTURE(c.tokens);
  CAPTURE(c.experts);
  CAPTURE(c.top_k);
  CAPTURE(c.glu);
  CAPTURE(c.capacity);
  FloatProblem p = make_float_problem(c);
  const auto grouped = run_dispatch(p.experts, p, true);
  const auto loop = run_dispatch(p.experts64, p, false);
  REQUIRE(grouped.size() == loop.size());
  for (size_t i = 0; i < grouped.size(); ++i) {
    CAPTURE(i);
    const Tensor<double> g = grouped[i].cast<double>();
    double scale = 1e-3;
    for (int64_t j = 0; j < loop[i].numel(); ++j)
      scale = std::max(scale, std::abs(loop[i].data()[j]));
    test::check_close(g, loop[i], 1e-5 * scale * std::sqrt(double(std::max(c.C, c.h))));
  }

  // Inference (no graph) gives the training forward's output, bit for bit.
  {
    NoGradGuard no_grad;
    const Var<float> y = dispatch_grouped(Var<float>(p.x), Var<float>(p.w), p.plan, p.experts);
    test::check_close(y.value(), grouped[0], 0.0);
  }
}

}  // namespace

TEST_CASE("grouped dispatch in float (SIMD kernels) equals the double loop reference") {
  const std::vector<FloatCase> cases = {
      {300, 40, 300, 4, 2, false, true, Activation::GELU, 0},   // two K blocks in down
      {257, 33, 70, 5, 2, true, true, Activation::SiLU, 0},     // GLU, odd sizes
      {64, 16, 24, 8, 8, true, false, Activation::GELU, 0},     // k = E
      {500, 24, 48, 6, 1, false, false, Activation::ReLU2, 0},  // k = 1
      {200, 20, 40, 4, 2, true, true, Activation::SiLU, 60},    // capacity drops
      {3, 64, 520, 16, 2, false, true, Activation::GELU, 0},    // decoding: most experts empty
  };
  for (const FloatCase& c : cases) check_float_case(c);
}

TEST_CASE("recomputing the activation in backward gives the stored one's gradients") {
  const std::vector<FloatCase> cases = {
      {300, 40, 300, 4, 2, false, true, Activation::GELU, 0},
      {257, 33, 70, 5, 2, true, true, Activation::SiLU, 0},        // GLU
      {200, 20, 40, 4, 2, true, false, Activation::GELU, 60},      // GLU, drops
      {3, 64, 520, 16, 2, false, true, Activation::GELUExact, 0},  // decoding shapes
  };
  DispatchOptions recompute;
  recompute.recompute_activation = true;
  for (const FloatCase& c : cases) {
    CAPTURE(c.tokens);
    FloatProblem p = make_float_problem(c);
    const auto stored = run_dispatch(p.experts, p, true);
    const auto again = run_dispatch(p.experts, p, true, recompute);
    REQUIRE(stored.size() == again.size());
    for (size_t i = 0; i < stored.size(); ++i) {
      CAPTURE(i);
      double scale = 1e-3;  // the row functions may round a chunk's ends differently
      for (int64_t j = 0; j < stored[i].numel(); ++j)
        scale = std::max(scale, double(std::abs(stored[i].data()[j])));
      test::check_close(again[i], stored[i], 1e-6 * scale);
    }
  }
}

#ifdef _OPENMP
TEST_CASE("grouped dispatch gives the same bits for any thread count") {
  const FloatCase c{333, 40, 96, 6, 2, true, true, Activation::SiLU, 0};
  FloatProblem p = make_float_problem(c);
  const int saved = omp_get_max_threads();
  omp_set_num_threads(1);
  const auto one = run_dispatch(p.experts, p, true);
  omp_set_num_threads(3);
  const auto three = run_dispatch(p.experts, p, true);
  omp_set_num_threads(saved);
  REQUIRE(one.size() == three.size());
  for (size_t i = 0; i < one.size(); ++i) {
    CAPTURE(i);
    test::check_close(one[i], three[i], 0.0);
  }
}
#endif
