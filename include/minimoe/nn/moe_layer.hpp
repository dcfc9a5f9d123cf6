// minimoe/nn/moe_layer.hpp: a Mixture-of-Experts feed-forward layer.
//
//   MoELayer<Expert<float>> moe(router_config, expert_config, rng);
//   Var<float> y = moe(x);                  // [B, T, C] -> [B, T, C]
//   moe.last.aux_loss(), moe.last.z_loss()   // this forward's router losses
//
//   y[n] = sum_k weights[n, k] * expert_{experts[n, k]}(x[n])  +  sum_s shared_s(x[n])
//
// Only the chosen experts run on each token: the routing plan groups the (token, slot) pairs
// by expert, each expert runs once on its rows, and the weighted rows are added back into
// token order (nn/expert_dispatch.hpp; standard Experts take the grouped-GEMM path unless
// `dispatch` says otherwise). Dropped pairs (capacity) add nothing, so their tokens keep the
// residual only.
// Shared experts (DeepSeekMoE) see every token. Any module with the Expert interface works as
// ExpertT; the layer only needs operator() on [rows, C] and visit().
//
// Expert parallelism (distributed/expert_parallel.hpp) splits the routed experts over ranks:
// `experts` then holds only this rank's, experts [first_expert, first_expert + experts.size())
// of the router's, named by those indices, and `expert_parallel` runs the routed pairs on the
// ranks that own their experts. Without it the layer runs alone, as above.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include <type_traits>

#include "minimoe/nn/expert.hpp"
#include "minimoe/nn/expert_dispatch.hpp"
#include "minimoe/nn/router.hpp"
#include "minimoe/ops/shape.hpp"

namespace minimoe {

template <typename ExpertT>
struct MoELayer {
  using Scalar = typename ExpertT::Scalar;
  using T = Scalar;

  Router<T> router;
  std::vector<ExpertT> experts;
  std::vector<ExpertT> shared_experts;
  Routing<T> last;  // routing of the latest forward: losses and load statistics
  enum class Dispatch { Grouped, Loop } dispatch = Dispatch::Grouped;  // Loop: the reference
  DispatchOptions dispatch_options;  // of the grouped path: recompute instead of storing
  int64_t first_expert = 0;          // the router's index of experts[0]
  // When set: y of the routed experts for the layer's tokens [N, C] and its `last` routing.
  std::function<Var<T>(MoELayer& layer, const Var<T>& tokens)> expert_parallel;

  MoELayer() = default;
  MoELayer(const RouterConfig& router_config, const ExpertConfig& expert_config, Rng& rng,
           int64_t n_shared = 0, double down_std = 0.02, uint64_t noise_seed = 0)
      : router(router_config, rng, noise_seed) {
    check<ValueError>(expert_config.d_model == router_config.d_model,
                      "MoELayer: expert d_model {} differs from router d_model {}",
                      expert_config.d_model, router_config.d_model);
    check<ValueError>(n_shared >= 0, "MoELayer: negative number of shared experts {}", n_shared);
    for (int64_t e = 0; e < router_config.n_experts; ++e)
      experts.emplace_back(expert_config, rng, down_std);
    for (int64_t s = 0; s < n_shared; ++s)
      shared_experts.emplace_back(expert_config, rng, down_std);
  }

  Var<T> operator()(const Var<T>& x) {  // [..., C]
    const int64_t C = router.config.d_model;
    check<ShapeError>(x.dim() >= 1 && x.size(-1) == C, "MoELayer: input of shape {} for d_model {}",
                      x.shape(), C);
    const Var<T> tokens = reshape(x, {-1, C});  // [N, C]
    {
      ProfileRegion region("router");
      last = router(tokens);
    }
    Var<T> y;
    if (expert_parallel) {
      y = expert_parallel(*this, tokens);
    } else if constexpr (std::is_same_v<ExpertT, Expert<T>>) {
      y = dispatch == Dispatch::Grouped
              ? dispatch_grouped(tokens, last.weights, last.plan, experts, dispatch_options)
              : dispatch_loop(tokens, last.weights, last.plan, experts);
    } else {
      y = dispatch_loop(tokens, last.weights, last.plan, experts);
    }
    for (const ExpertT& s : shared_experts) y = y + s(tokens);
    return reshape(y, x.shape());
  }

  void visit(const ModuleVisitor<T>& v) {
    v.child("router", router);
    for (size_t e = 0; e < experts.size(); ++e)
      v.child("experts." + std::to_string(first_expert + int64_t(e)), experts[e]);
    for (size_t s = 0; s < shared_experts.size(); ++s)
      v.child("shared_experts." + std::to_string(s), shared_experts[s]);
  }
};

}  // namespace minimoe
