// minimoe/analysis/routing_analysis.hpp: which experts each kind of text is routed to.
//
//   RoutingAnalysis a = analyze_routing(model, {{"story", story_ids}, {"code", code_ids}});
//   a.share(d, l, e)          // share of domain d's routed (token, slot) pairs that layer l's
//                             // MoE layer sent to expert e (sums to 1 over e)
//   a.mean_share(d, e)        // the same averaged over the MoE layers
//   a.dead_experts(0.1)       // (layer, expert) receiving < 0.1 x a uniform share of all text
//   a.specialization(l)       // Jensen-Shannon divergence between the domains' routing
//                             // distributions at layer l, in bits: 0 = every domain is routed
//                             // alike, log2(domains) = disjoint experts per domain
//
// The model runs in evaluation mode (no router noise) over consecutive windows of each
// domain's tokens; docs/routing.md explains the measures.
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "minimoe/models/gpt.hpp"

namespace minimoe {

struct RoutingAnalysis {
  std::vector<std::string> domains;
  std::vector<int64_t> layers;  // block index of each MoE layer
  int64_t experts = 0;
  std::vector<int64_t> tokens;                           // [domains]
  std::vector<std::vector<std::vector<double>>> counts;  // [domains][layers][experts]

  double share(size_t d, size_t l, size_t e) const {
    double total = 0;
    for (double c : counts[d][l]) total += c;
    return total > 0 ? counts[d][l][e] / total : 0.0;
  }

  double mean_share(size_t d, size_t e) const {
    double sum = 0;
    for (size_t l = 0; l < layers.size(); ++l) sum += share(d, l, e);
    return layers.empty() ? 0.0 : sum / double(layers.size());
  }

  // Experts that all domains together route less than `fraction` of a uniform share to.
  std::vector<std::pair<int64_t, int64_t>> dead_experts(double fraction = 0.1) const {
    std::vector<std::pair<int64_t, int64_t>> dead;
    for (size_t l = 0; l < layers.size(); ++l) {
      double total = 0;
      std::vector<double> per_expert(static_cast<size_t>(experts), 0.0);
      for (size_t d = 0; d < domains.size(); ++d)
        for (int64_t e = 0; e < experts; ++e) {
          per_expert[e] += counts[d][l][e];
          total += counts[d][l][e];
        }
      for (int64_t e = 0; e < experts; ++e)
        if (total > 0 && per_expert[e] / total < fraction / double(experts))
          dead.emplace_back(layers[l], e);
    }
    return dead;
  }

  // Generalised Jensen-Shannon divergence (equal weights): H(mean of P_d) - mean of H(P_d).
  double specialization(size_t l) const {
    auto entropy = [](const std::vector<double>& p) {
      double h = 0;
      for (double v : p)
        if (v > 0) h -= v * std::log2(v);
      return h;
    };
    std::vector<double> mixture(static_cast<size_t>(experts), 0.0);
    double mean_entropy = 0;
    for (size_t d = 0; d < domains.size(); ++d) {
      std::vector<double> p(static_cast<size_t>(experts));
      for (int64_t e = 0; e < experts; ++e) {
        p[e] = share(d, l, e);
        mixture[e] += p[e] / double(domains.size());
      }
      mean_entropy += entropy(p) / double(domains.size());
    }
    return std::max(0.0, entropy(mixture) - mean_entropy);
  }
};

// Runs the model over up to max_tokens of each domain's ids, in windows of the context length.
template <typename T>
RoutingAnalysis analyze_routing(
    GPT<T>& model, const std::vector<std::pair<std::string, std::vector<int32_t>>>& text,
    int64_t max_tokens = 16384, int64_t batch = 8) {
  RoutingAnalysis a;
  for (size_t b = 0; b < model.blocks.size(); ++b)
    if (model.blocks[b].is_moe) a.layers.push_back(static_cast<int64_t>(b));
  check<ValueError>(!a.layers.empty(), "analyze: the model has no MoE layer");
  a.experts = model.config.n_experts;
  const int64_t context = model.config.context_length;

  NoGradGuard no_grad;
  set_training(model, false);
  for (const auto& [name, ids] : text) {
    a.domains.push_back(name);
    a.counts.emplace_back(a.layers.size(), std::vector<double>(static_cast<size_t>(a.experts)));
    auto& counts = a.counts.back();
    const int64_t usable = std::min<int64_t>(static_cast<int64_t>(ids.size()), max_tokens);
    const int64_t windows = usable / context;
    check<ValueError>(windows > 0,
                      "analyze: domain '{}' has {} tokens, fewer than one context ({})", name,
                      ids.size(), context);
    for (int64_t first = 0; first < windows; first += batch) {
      const int64_t rows = std::min(batch, windows - first);
      Tensor<int32_t> input({rows, context});
      std::copy_n(ids.begin() + first * context, rows * context, input.data());
      model(input);
      for (size_t l = 0; l < a.layers.size(); ++l) {
        const RoutingPlan& plan = model.blocks[a.layers[l]].moe.last.plan;
        for (int64_t e = 0; e < a.experts; ++e) counts[l][e] += double(plan.requested[e]);
      }
    }
    a.tokens.push_back(windows * context);
  }
  return a;
}

}  // namespace minimoe
