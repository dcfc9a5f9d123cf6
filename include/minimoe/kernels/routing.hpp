// minimoe/kernels/routing.hpp: the routing plan, computed once per MoE forward.
//
// The router picks K experts for each of N tokens. The plan groups those (token, slot) pairs
// by expert with a counting sort (histogram -> exclusive scan -> stable placement), so that
// each expert's rows are contiguous and every GEMM of the layer, forward and backward, reads
// its tokens through one index list:
//
//   expert e owns routed rows [offsets[e], offsets[e + 1])
//   routed row r is token token_of[r], pair pair_of[r] = token * K + slot
//   pair p went to routed row row_of[p], or -1 when it was dropped
//
// With a capacity (> 0), an expert takes at most `capacity` pairs; the rest are dropped and
// their tokens keep only the residual. Priority goes slot by slot (every token's first choice
// before any second choice, as in GShard), then by token order. Within an expert, rows stay in
// token order, which keeps gathers cache-friendly and results deterministic.
#pragma once

#include <cstdint>
#include <vector>

#include "minimoe/error.hpp"

namespace minimoe {

struct RoutingPlan {
  int64_t tokens = 0;
  int64_t top_k = 0;
  int64_t experts = 0;
  int64_t capacity = 0;            // 0 = unlimited (dropless)
  std::vector<int32_t> offsets;    // [E + 1]
  std::vector<int32_t> token_of;   // [R]
  std::vector<int32_t> pair_of;    // [R]
  std::vector<int32_t> row_of;     // [N * K]
  std::vector<int64_t> requested;  // [E] pairs that chose each expert, before dropping
  int64_t dropped = 0;             // pairs dropped for capacity

  int64_t rows() const { return static_cast<int64_t>(token_of.size()); }
  int64_t load(int64_t e) const { return offsets[e + 1] - offsets[e]; }
};

// expert_index: [N * K] chosen expert of each (token, slot), row-major.
inline RoutingPlan make_routing_plan(const int32_t* expert_index, int64_t tokens, int64_t top_k,
                                     int64_t experts, int64_t capacity = 0) {
  check<ValueError>(tokens >= 0 && top_k > 0 && experts > 0 && top_k <= experts && capacity >= 0,
                    "routing plan: bad sizes: tokens={} top_k={} experts={} capacity={}", tokens,
                    top_k, experts, capacity);
  RoutingPlan plan;
  plan.tokens = tokens;
  plan.top_k = top_k;
  plan.experts = experts;
  plan.capacity = capacity;
  const int64_t pairs = tokens * top_k;
  plan.requested.assign(experts, 0);
  for (int64_t p = 0; p < pairs; ++p) {
    const int32_t e = expert_index[p];
    check<IndexError>(e >= 0 && e < experts, "routing plan: expert {} out of range [0, {}) at {}",
                      e, experts, p);
    ++plan.requested[e];
  }

  // Which pairs are kept: all of them, or the first `capacity` per expert in priority order.
  std::vector<char> kept(static_cast<size_t>(pairs), 1);
  std::vector<int64_t> load(experts, 0);
  if (capacity > 0) {
    for (int64_t slot = 0; slot < top_k; ++slot)
      for (int64_t t = 0; t < tokens; ++t) {
        const int64_t p = t * top_k + slot;
        const int32_t e = expert_index[p];
        if (load[e] < capacity) {
          ++load[e];
        } else {
          kept[p] = 0;
          ++plan.dropped;
        }
      }
  } else {
    load = plan.requested;
  }

  plan.offsets.assign(experts + 1, 0);
  for (int64_t e = 0; e < experts; ++e)
    plan.offsets[e + 1] = plan.offsets[e] + static_cast<int32_t>(load[e]);
  const int64_t rows = plan.offsets[experts];
  plan.token_of.resize(rows);
  plan.pair_of.resize(rows);
  plan.row_of.assign(static_cast<size_t>(pairs), -1);
  std::vector<int32_t> next(plan.offsets.begin(), plan.offsets.end() - 1);
  for (int64_t p = 0; p < pairs; ++p) {  // stable: token order within each expert
    if (!kept[p]) continue;
    const int32_t r = next[expert_index[p]]++;
    plan.token_of[r] = static_cast<int32_t>(p / top_k);
    plan.pair_of[r] = static_cast<int32_t>(p);
    plan.row_of[p] = r;
  }
  return plan;
}

}  // namespace minimoe
