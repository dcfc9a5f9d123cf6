// minimoe/distributed/data_parallel.hpp: what data-parallel training needs besides the
// gradient reducer: identical replicas, shards of a batch, global router statistics.
//
//   broadcast_module(model, group);                       // rank 0's weights everywhere
//   Batch mine = shard_batch(global, group.rank(), group.size());
//   GlobalRouterCounts global_counts(model, group);      // aux loss over the global batch
//   check_replicas(hash, group, "the weights");           // throws if a rank drifted
//
// Every rank draws the same global batch and keeps rows [r B / R, (r + 1) B / R): the ranks
// together see exactly the batch one process would, whatever R is.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

#include "minimoe/data/dataset.hpp"
#include "minimoe/distributed/process_group.hpp"
#include "minimoe/models/gpt.hpp"

namespace minimoe {

// Overwrites the module's parameters, buffers and random streams (dropout, router noise) with
// rank `root`'s: the replicas start identical whatever each rank initialised.
template <typename Module>
void broadcast_module(Module& module, ProcessGroup& group, int root = 0) {
  using T = ScalarOf<Module>;
  for (const auto& [name, tensor] : named_tensors(module)) {
    Tensor<T> t = tensor;  // shares the storage
    check<ValueError>(t.is_contiguous(), "broadcast_module: '{}' is not contiguous", name);
    group.broadcast(t.data(), t.numel() * int64_t(sizeof(T)), root, "the broadcast of the weights");
  }
  for (const auto& [name, rng] : named_rngs(module)) {
    Rng::Snapshot s = rng->snapshot();
    group.broadcast(&s, sizeof(s), root, "the broadcast of the random streams");
    rng->restore(s);
  }
}

// Rows [rank B / ranks, (rank + 1) B / ranks) of a batch of B rows.
inline Batch shard_batch(const Batch& b, int rank, int ranks) {
  const int64_t B = b.ids.size(0);
  check<ValueError>(ranks > 0 && B % ranks == 0,
                    "data parallel: a batch of {} sequences does not split evenly over {} ranks", B,
                    ranks);
  const int64_t rows = B / ranks, first = rows * rank;
  Batch out;
  out.ids = b.ids.slice(0, first, first + rows).contiguous();
  out.targets = b.targets.slice(0, first, first + rows).contiguous();
  out.domain.assign(b.domain.begin() + first, b.domain.begin() + first + rows);
  return out;
}

// FNV-1a over bytes, chained: a checksum of replicated state.
inline uint64_t hash_bytes(const void* data, size_t bytes,
                           uint64_t hash = 14695981039346656037ull) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < bytes; ++i) hash = (hash ^ p[i]) * 1099511628211ull;
  return hash;
}

// Throws DistributedError on every rank when `hash` differs from rank 0's on any rank.
inline void check_replicas(uint64_t hash, ProcessGroup& group, const std::string& what) {
  uint64_t root_hash = hash;
  group.broadcast(&root_hash, sizeof(root_hash), 0, "the check of the replicas");
  std::vector<int64_t> differs(static_cast<size_t>(group.size()), 0);
  differs[static_cast<size_t>(group.rank())] = root_hash != hash ? 1 : 0;
  group.all_reduce_sum(differs.data(), group.size(), "the check of the replicas");
  std::string ranks;
  for (int r = 0; r < group.size(); ++r)
    if (differs[static_cast<size_t>(r)]) ranks += (ranks.empty() ? "" : ", ") + std::to_string(r);
  check<DistributedError>(ranks.empty(),
                          "data parallel: {} of rank(s) {} differ from rank 0's: the replicas "
                          "diverged",
                          what, ranks);
}

// For its lifetime, the model's routers count experts over the whole group's batch: the f_e of
// the load-balancing loss and the aux-loss-free bias updates are those of the global batch.
// The load-balancing loss aux = E sum_e f_e P_e is linear in P_e = mean_n p[n, e], and each
// rank's P_e is the mean over an equal share of the tokens, so with the global f_e the mean of
// the ranks' aux losses is the global batch's, and so is the mean of their gradients.
template <typename T>
class GlobalRouterCounts {
 public:
  GlobalRouterCounts(GPT<T>& model, ProcessGroup& group) : model_(model) {
    for (Block<T>& b : model_.blocks)
      if (b.is_moe)
        b.moe.router.sum_counts = [&group](std::vector<int64_t>& counts) {
          group.all_reduce_sum(counts.data(), static_cast<int64_t>(counts.size()),
                               "the sum of the router's expert counts");
        };
  }
  ~GlobalRouterCounts() {
    for (Block<T>& b : model_.blocks) b.moe.router.sum_counts = nullptr;
  }
  GlobalRouterCounts(const GlobalRouterCounts&) = delete;
  GlobalRouterCounts& operator=(const GlobalRouterCounts&) = delete;

 private:
  GPT<T>& model_;
};

}  // namespace minimoe
