// minimoe/nn/router.hpp: the token router of an MoE layer: gate -> softmax -> top-k.
//
//   Router<float> router(config, rng);
//   Routing<float> r = router(x);    // x [N, C]
//   // r.experts [N, K] chosen experts, r.weights [N, K] combine weights (differentiable),
//   // r.plan groups the (token, slot) pairs by expert, r.aux_loss() / r.z_loss() are scalars.
//
// The math (docs/routing.md has the derivations):
//   logits = x W_g^T (+ b)                         [N, E]
//   p = softmax(logits)                           [N, E]
//   experts = top-k of p (+ selection bias)       [N, K], best first, ties to the lower index
//   weights = p[experts], renormalised to sum to 1 when normalize_topk (Mixtral), or not
//             (Switch, GShard)
//   aux_loss = E * sum_e f_e * P_e   (Switch), f_e = pairs routed to e / (N * K) (no gradient),
//              P_e = mean_n p[n, e]; equals 1 when routing is uniform
//   z_loss = mean_n logsumexp(logits[n])^2   (ST-MoE), keeps logits small
// Training-only behaviour: multiplicative jitter of the router input by U(1 - j, 1 + j)
// (Switch), and the aux-loss-free balancing of DeepSeek-V3: a per-expert bias added to p for
// selection only (never to the weights), nudged after each step towards the mean load.
// In data-parallel training, sum_counts sums the counts behind f_e and the balancing over the
// ranks, so both see the global batch as one process would (distributed/data_parallel.hpp).
#pragma once

#include <algorithm>
#include <cmath>
#include <functional>
#include <numeric>
#include <vector>

#include "minimoe/kernels/routing.hpp"
#include "minimoe/nn/linear.hpp"
#include "minimoe/ops/gather.hpp"
#include "minimoe/ops/logsumexp.hpp"
#include "minimoe/ops/pointwise.hpp"
#include "minimoe/ops/reduce.hpp"
#include "minimoe/ops/softmax.hpp"

namespace minimoe {

struct RouterConfig {
  int64_t d_model = 0;
  int64_t n_experts = 4;
  int64_t top_k = 2;
  bool bias = false;             // a bias on the gate
  bool normalize_topk = true;    // renormalise the K weights (Mixtral); false = Switch/GShard
  double jitter = 0.0;           // multiplicative input noise in training; 0 = off
  double capacity_factor = 0.0;  // capacity = ceil(cf * N * K / E) pairs per expert; 0 = dropless
  bool aux_free_balancing = false;  // DeepSeek-V3 selection bias
  double balance_rate = 1e-3;       // bias step per forward, when aux_free_balancing

  void validate() const {
    check<ValueError>(d_model > 0, "router: d_model must be positive, got {}", d_model);
    check<ValueError>(n_experts > 0, "router: n_experts must be positive, got {}", n_experts);
    check<ValueError>(top_k > 0 && top_k <= n_experts,
                      "router: top_k must be in [1, n_experts = {}], got {}", n_experts, top_k);
    check<ValueError>(jitter >= 0.0 && jitter < 1.0, "router: jitter must be in [0, 1), got {}",
                      jitter);
    check<ValueError>(capacity_factor >= 0.0,
                      "router: capacity_factor must be >= 0 (0 = dropless), got {}",
                      capacity_factor);
    check<ValueError>(balance_rate >= 0.0, "router: balance_rate must be >= 0, got {}",
                      balance_rate);
  }
};

// The losses are built when asked for, from the forward's logits and probabilities: decoding
// never asks, and would otherwise pay for a few ops per layer and token.
template <typename T>
struct Routing {
  Tensor<int32_t> experts;  // [N, K]
  Var<T> weights;           // [N, K]
  RoutingPlan plan;
  Var<T> logits, probs;  // [N, E]
  Tensor<T> fraction;    // f_e [E] of the batch (over the data-parallel ranks, if any)

  Var<T> aux_loss() const {  // scalar
    const T E = static_cast<T>(fraction.numel());
    return E * sum(mean(probs, 0) * Var<T>(fraction));
  }
  Var<T> z_loss() const { return mean(square(logsumexp(logits))); }  // scalar
};

template <typename T>
struct Router {
  using Scalar = T;

  RouterConfig config;
  Linear<T> gate;            // [E, C]
  Tensor<T> selection_bias;  // [E], aux-loss-free balancing; a buffer, not a parameter
  bool training = true;
  Rng rng;  // jitter noise
  // When set: sums per-expert counts [E] followed by the pair count over the data-parallel
  // ranks, in place.
  std::function<void(std::vector<int64_t>&)> sum_counts;

  Router() = default;
  Router(const RouterConfig& config_, Rng& init_rng, uint64_t noise_seed = 0)
      : config(config_), rng(noise_seed) {
    config.validate();
    gate = Linear<T>(config.d_model, config.n_experts, config.bias, init_rng);
    if (config.aux_free_balancing) selection_bias = Tensor<T>({config.n_experts});
  }

  int64_t capacity(int64_t tokens) const {
    if (config.capacity_factor <= 0.0) return 0;
    const double c = std::ceil(config.capacity_factor * static_cast<double>(tokens * config.top_k) /
                               static_cast<double>(config.n_experts));
    return std::max<int64_t>(1, static_cast<int64_t>(c));
  }

  Routing<T> operator()(const Var<T>& x) {  // x [N, C]
    check<ShapeError>(x.dim() == 2 && x.size(1) == config.d_model,
                      "router: input of shape {} is not [N, {}]", x.shape(), config.d_model);
    const int64_t N = x.size(0), E = config.n_experts, K = config.top_k;
    Routing<T> r;
    r.logits = gate(training && config.jitter > 0 ? jittered(x) : x);
    r.probs = softmax(r.logits);
    r.experts = select_top_k(r.probs.value());
    r.plan = make_routing_plan(r.experts.data(), N, K, E, capacity(N));
    Var<T> weights = gather(r.probs, r.experts);  // [N, K]
    if (config.normalize_topk) weights = weights / sum(weights, -1, /*keepdim=*/true);
    r.weights = weights;

    std::vector<int64_t> counts = r.plan.requested;  // [E], then the pairs
    counts.push_back(N * K);
    if (sum_counts) sum_counts(counts);
    const int64_t pairs = counts.back();
    r.fraction = Tensor<T>::empty({E});  // a constant for the loss
    for (int64_t e = 0; e < E; ++e)
      r.fraction.data()[e] =
          static_cast<T>(counts[e]) / static_cast<T>(std::max<int64_t>(pairs, 1));

    if (training && config.aux_free_balancing) update_selection_bias(counts);
    return r;
  }

  // One token's routing without the graph (decoding): its experts [K] and combine weights [K]
  // from its probabilities [E], as operator() chooses and weighs them; order is scratch for E
  // indices.
  void route_row(const T* probs, int32_t* order, int32_t* experts, T* weights) const {
    const int64_t K = config.top_k;
    top_k_row(probs, order, experts);
    T total = 0;
    for (int64_t k = 0; k < K; ++k) total += weights[k] = probs[experts[k]];
    if (config.normalize_topk)
      for (int64_t k = 0; k < K; ++k) weights[k] /= total;
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("gate", gate);
    v.buffer("selection_bias", selection_bias);
    v.mode(training);
    v.rng("rng", rng);
  }

 private:
  Var<T> jittered(const Var<T>& x) {
    const double j = config.jitter;
    return x * Var<T>(Tensor<T>::uniform(x.shape(), rng, 1.0 - j, 1.0 + j));
  }

  // Top-k experts of each row of probs [N, E] (+ selection bias), best first.
  Tensor<int32_t> select_top_k(const Tensor<T>& probs) const {
    const int64_t N = probs.size(0), E = probs.size(1), K = config.top_k;
    const Tensor<T> p = probs.contiguous();
    Tensor<int32_t> out({N, K});
    std::vector<int32_t> order(static_cast<size_t>(E));
    for (int64_t n = 0; n < N; ++n) top_k_row(p.data() + n * E, order.data(), out.data() + n * K);
    return out;
  }

  // The K best experts of one row of probabilities [E] (+ selection bias), best first, ties to
  // the lower index; order is scratch for E indices.
  void top_k_row(const T* probs, int32_t* order, int32_t* out) const {
    const int64_t E = config.n_experts, K = config.top_k;
    const T* bias = selection_bias.defined() ? selection_bias.data() : nullptr;
    auto score = [&](int32_t e) { return probs[e] + (bias ? bias[e] : T(0)); };
    std::iota(order, order + E, 0);
    std::partial_sort(order, order + K, order + E, [&](int32_t a, int32_t b) {
      const T sa = score(a), sb = score(b);
      return sa > sb || (sa == sb && a < b);
    });
    std::copy_n(order, K, out);
  }

  // Raises the bias of under-loaded experts and lowers it for over-loaded ones.
  // counts: pairs per expert [E], then all pairs.
  void update_selection_bias(const std::vector<int64_t>& counts) {
    const int64_t E = config.n_experts;
    const double mean_load = static_cast<double>(counts.back()) / double(E);
    for (int64_t e = 0; e < E; ++e) {
      const double load = static_cast<double>(counts[e]);
      const double direction = load < mean_load ? 1.0 : (load > mean_load ? -1.0 : 0.0);
      selection_bias.data()[e] += static_cast<T>(config.balance_rate * direction);
    }
  }
};

}  // namespace minimoe
