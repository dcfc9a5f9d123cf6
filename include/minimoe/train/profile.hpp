// minimoe/train/profile.hpp: the profiler's regions as a table with arithmetic rates.
//
//   Profiler::instance().enable(true);
//   ... train steps ...
//   std::cout << profile_report(model.config, context, tokens_trained, Profiler::instance().times(),
//                               wall_seconds);
//
// Each region's share of the time and, where its work is known from the config, its rate in
// GFLOP/s: forward FLOPs per token (below) x tokens x 3 (the backward pass costs about twice
// the forward), over the region's forward + backward time.
//   attention  2C(C + 2 kv) + 2C^2 projections + 2 T C scores and mixing (causal: half of T^2)
//   router     2 C E
//   experts    2 x (the K routed experts' + shared experts' weights)
//   mlp        2 x the dense MLP's weights
//   lm_head    2 C V
#pragma once

#include <cstdio>
#include <fstream>
#include <map>
#include <string>

#include <fmt/format.h>

#include "minimoe/autograd/profiler.hpp"
#include "minimoe/models/config.hpp"

namespace minimoe {

// Forward FLOPs per token of each region, summed over layers, at context length T.
inline std::map<std::string, double> forward_flops_per_token(const GPTConfig& c, int64_t T) {
  const double C = double(c.d_model), kv = double(c.kv_heads() * c.head_dim());
  std::map<std::string, double> f;
  for (int64_t layer = 0; layer < c.n_layers; ++layer) {
    f["attention"] += 2 * C * (C + 2 * kv) + 2 * C * C + 2 * double(T) * C;
    if (c.is_moe_block(layer)) {
      f["router"] += 2 * C * double(c.n_experts);
      f["experts"] +=
          2.0 * double(c.top_k + c.n_shared_experts) * double(c.expert_config().num_parameters());
    } else {
      f["mlp"] += 2.0 * double(c.dense_config().num_parameters());
    }
  }
  f["lm_head"] = 2 * C * double(c.vocab_size);
  return f;
}

// Resident memory now and at its peak, in MiB, from /proc (0 where there is no /proc).
struct MemoryUse {
  double rss_mib = 0, peak_mib = 0;
};

inline MemoryUse memory_use() {
  MemoryUse m;
  std::ifstream status("/proc/self/status");
  std::string key;
  double kib = 0;
  while (status >> key) {
    if (key == "VmRSS:" && status >> kib) m.rss_mib = kib / 1024;
    if (key == "VmHWM:" && status >> kib) m.peak_mib = kib / 1024;
  }
  return m;
}

inline std::string profile_report(const GPTConfig& config, int64_t context, int64_t tokens,
                                  const std::map<std::string, RegionTime>& times,
                                  double wall_seconds) {
  const std::map<std::string, double> flops = forward_flops_per_token(config, context);
  double measured = 0;
  for (const auto& [name, t] : times) measured += t.total();
  std::string out = fmt::format("{:<11} {:>9} {:>9} {:>7} {:>9}\n", "region", "forward s",
                                "backward s", "share", "GFLOP/s");
  for (const auto& [name, t] : times) {
    const auto f = flops.find(name);
    const std::string rate =
        f != flops.end() && t.total() > 0
            ? fmt::format("{:.1f}", 3.0 * f->second * double(tokens) / t.total() / 1e9)
            : "-";
    out += fmt::format("{:<11} {:>9.2f} {:>9.2f} {:>6.1f}% {:>9}\n", name, t.forward, t.backward,
                       100 * t.total() / std::max(wall_seconds, 1e-9), rate);
  }
  double total_flops = 0;
  for (const auto& [name, f] : flops) total_flops += f;
  const MemoryUse m = memory_use();
  out += fmt::format(
      "{:<11} {:>19.2f} {:>6.1f}% {:>9.1f}   ({} tokens in {:.2f} s; unaccounted {:.1f}%)\n"
      "memory: {:.0f} MiB resident, peak {:.0f} MiB\n",
      "step total", wall_seconds, 100.0, 3.0 * total_flops * double(tokens) / wall_seconds / 1e9,
      tokens, wall_seconds, 100 * (wall_seconds - measured) / std::max(wall_seconds, 1e-9),
      m.rss_mib, m.peak_mib);
  return out;
}

}  // namespace minimoe
