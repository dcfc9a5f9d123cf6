// minimoe/distributed/expert_parallel.hpp: the routed experts of every MoE layer split over
// ranks; each routed row goes to the rank that owns its expert and its result comes back.
//
//   ExpertParallel<float> ep(model, world, /*group_size=*/2);   // R = D x G ranks, G = 2
//   GPTLoss<float> l = model.loss(ids, targets);    // collective over ep.experts_group()
//   l.total.backward();                             // likewise
//
// Layout: rank r is in expert-parallel group r / G (the G ranks r - r % G .. that together
// hold one copy of every expert) and holds shard g = r % G of each MoE layer: experts
// [g E/G, (g + 1) E/G). The D = R / G ranks of the same shard (its replica group) hold the
// same experts and average their gradients. The router, attention, embeddings and shared
// experts stay on every rank. 4 ranks with G = 2: ranks 0, 1 hold experts {0, 1} and {2, 3},
// and ranks 2, 3 likewise; ranks 0 and 2 average the gradients of experts 0 and 1.
//
// One MoE layer's routed experts, on each of the G ranks of a group:
//   1. the routing plan orders the rows by expert, so the rows for rank s are one run: an
//      all-to-all of the per-expert row counts, then one all-to-all-v of the packed rows;
//   2. the received rows, as a plan over the local experts (each row a token with one slot and
//      weight 1, expert by expert, source rank by source rank), run through dispatch_grouped:
//      the single-process grouped GEMMs, unchanged;
//   3. the results go back with the reverse all-to-all-v and are combined with the router's
//      weights on the rank that routed them, which never leave it.
// Three autograd ops (send, the local experts, return and combine) whose backwards mirror
// them: the gradients of the results go to the experts' ranks, those of the received rows come
// back. Every rank of a group builds the same graph, so the collectives of the backward run in
// the same order everywhere.
#pragma once

#include <algorithm>
#include <cstdint>
#include <memory>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <vector>

#include "minimoe/distributed/data_parallel.hpp"
#include "minimoe/distributed/process_group.hpp"
#include "minimoe/models/gpt.hpp"
#include "minimoe/optim/adamw.hpp"

namespace minimoe {

namespace detail {

// How one layer's rows travel in one forward: rows to and from each rank of the group.
struct ExpertExchange {
  ProcessGroup* group = nullptr;
  std::shared_ptr<const RoutingPlan> plan;    // this rank's routing
  std::vector<int64_t> send_rows, recv_rows;  // [G]
  int64_t* bytes_sent = nullptr;              // adds what this rank sends to the others, when set

  int64_t sent() const { return plan->rows(); }
  int64_t received() const {
    int64_t n = 0;
    for (int64_t rows : recv_rows) n += rows;
    return n;
  }
  // Rows leaving for the other ranks (the plan's outbound, or, reversed, the received).
  void count(bool outbound, int64_t row_bytes) const {
    if (bytes_sent == nullptr) return;
    const size_t me = static_cast<size_t>(group->rank());
    *bytes_sent += ((outbound ? sent() - send_rows[me] : received() - recv_rows[me]) * row_bytes);
  }

  // Rows in the plan's order -> the rows each rank receives ([R, C] -> [received, C]), or back.
  template <typename T>
  Tensor<T> exchange(const Tensor<T>& rows, bool outbound, const char* what) const {
    const int64_t C = rows.size(1);
    Tensor<T> out = Tensor<T>::empty({outbound ? received() : sent(), C});
    const Tensor<T> in = rows.contiguous();
    group->all_to_all_v(in.data(), (outbound ? send_rows : recv_rows).data(), out.data(),
                        (outbound ? recv_rows : send_rows).data(), C, what);
    count(outbound, C * int64_t(sizeof(T)));
    return out;
  }
};

// The rows a rank received as a routing plan over its E_local experts: received row i is token
// i with one slot; expert j's rows are those every rank sent for it, rank after rank.
// recv_counts[s E_local + j]: rows rank s sent for local expert j.
inline RoutingPlan received_rows_plan(const std::vector<int64_t>& recv_counts, int64_t ranks,
                                      int64_t local_experts) {
  RoutingPlan p;
  p.top_k = 1;
  p.experts = local_experts;
  p.requested.assign(static_cast<size_t>(local_experts), 0);
  for (int64_t s = 0; s < ranks; ++s)
    for (int64_t j = 0; j < local_experts; ++j)
      p.requested[j] += recv_counts[s * local_experts + j];
  p.offsets.assign(static_cast<size_t>(local_experts + 1), 0);
  for (int64_t j = 0; j < local_experts; ++j) {
    const int64_t end = p.offsets[j] + p.requested[j];
    check<ValueError>(end <= INT32_MAX, "expert parallel: {} rows exceed the plan's index", end);
    p.offsets[j + 1] = static_cast<int32_t>(end);
  }
  p.tokens = p.offsets[local_experts];
  p.token_of.resize(static_cast<size_t>(p.tokens));
  p.pair_of.resize(static_cast<size_t>(p.tokens));
  p.row_of.resize(static_cast<size_t>(p.tokens));
  std::vector<int32_t> next(p.offsets.begin(), p.offsets.end() - 1);
  int32_t i = 0;
  for (int64_t s = 0; s < ranks; ++s)
    for (int64_t j = 0; j < local_experts; ++j)
      for (int64_t q = 0; q < recv_counts[s * local_experts + j]; ++q, ++i) {
        const int32_t row = next[j]++;
        p.token_of[row] = i;
        p.pair_of[row] = i;
        p.row_of[i] = row;
      }
  return p;
}

// The plan's rows of tokens, sent to their experts' ranks: [N, C] -> [received, C].
// Backward: the gradients of the received rows come back, dx[n] = sum_k d(row(n, k)).
template <typename T>
Var<T> send_to_experts(const Var<T>& tokens, std::shared_ptr<const ExpertExchange> exchange) {
  const RoutingPlan& plan = *exchange->plan;
  const int64_t R = plan.rows(), C = tokens.size(1);
  const Tensor<T> x = tokens.value().contiguous();
  Tensor<T> packed = Tensor<T>::empty({R, C});  // [R, C] in the plan's (expert) order
#pragma omp parallel for schedule(static)
  for (int64_t r = 0; r < R; ++r)
    std::copy_n(x.data() + int64_t{plan.token_of[r]} * C, C, packed.data() + r * C);
  Tensor<T> received = exchange->exchange(packed, true, "the all-to-all of the routed rows");
  return make_op<T>("send_to_experts", std::move(received), {tokens},
                    [exchange](const std::vector<Var<T>>& in, const Tensor<T>& grad) {
                      const RoutingPlan& p = *exchange->plan;
                      const Tensor<T> back = exchange->exchange(
                          grad, false, "the all-to-all of the routed rows' gradients");
                      const int64_t N = p.tokens, K = p.top_k, C_ = grad.size(1);
                      Tensor<T> dx = Tensor<T>::empty({N, C_});
#pragma omp parallel for schedule(static)
                      for (int64_t n = 0; n < N; ++n) {
                        T* dst = dx.data() + n * C_;
                        std::fill_n(dst, C_, T(0));
                        for (int64_t k = 0; k < K; ++k) {
                          const int32_t r = p.row_of[n * K + k];
                          if (r >= 0) add_row(dst, back.data() + int64_t{r} * C_, C_);
                        }
                      }
                      in[0].add_grad(std::move(dx));
                    });
}

// The experts' results back to the ranks that routed the rows, combined there:
// [received, C] -> y[n] = sum_k w[n, k] O[row(n, k)], [N, C].
// Backward: dw[n, k] = <dy[n], O[row]>, dO[r] = w[pair(r)] dy[token(r)], sent to the experts.
template <typename T>
Var<T> return_from_experts(const Var<T>& computed, const Var<T>& weights,
                           std::shared_ptr<const ExpertExchange> exchange) {
  const RoutingPlan& plan = *exchange->plan;
  const int64_t N = plan.tokens, C = computed.size(1);
  Tensor<T> returned =
      exchange->exchange(computed.value(), false, "the all-to-all of the expert outputs");
  const Tensor<T> w = weights.value().contiguous();
  Tensor<T> y = Tensor<T>::empty({N, C});
#pragma omp parallel for schedule(static)
  for (int64_t n = 0; n < N; ++n) combine_rows(plan, n, w.data(), returned.data(), C, y.data());
  return make_op<T>("return_from_experts", std::move(y), {computed, weights},
                    [exchange, returned, w](const std::vector<Var<T>>& in, const Tensor<T>& grad) {
                      const RoutingPlan& p = *exchange->plan;
                      const Tensor<T> gy = grad.contiguous();
                      const int64_t R = p.rows(), N_ = p.tokens, K = p.top_k, C_ = gy.size(1);
                      const bool need_w = in[1].requires_grad();
                      Tensor<T> dO = Tensor<T>::empty({R, C_});
                      Tensor<T> dw = need_w ? Tensor<T>::empty({N_, K}) : Tensor<T>();
#pragma omp parallel
                      {
#pragma omp for schedule(static) nowait
                        for (int64_t r = 0; r < R; ++r) {
                          const T wr = w.data()[p.pair_of[r]];
                          const T* src = gy.data() + int64_t{p.token_of[r]} * C_;
                          T* dst = dO.data() + r * C_;
                          for (int64_t c = 0; c < C_; ++c) dst[c] = wr * src[c];
                        }
                        if (need_w) {
#pragma omp for schedule(static)
                          for (int64_t n = 0; n < N_; ++n)
                            combine_weight_grads(p, n, gy.data(), returned.data(), C_, dw.data());
                        }
                      }
                      Tensor<T> back =
                          exchange->exchange(dO, true, "the all-to-all of the outputs' gradients");
                      if (in[0].requires_grad()) in[0].add_grad(std::move(back));
                      if (need_w) in[1].add_grad(std::move(dw));
                    });
}

}  // namespace detail

// The routed experts of one MoE layer over the G ranks of `group`, this rank holding `local`:
// experts [rank E/G, (rank + 1) E/G) of the plan's E. The same values as dispatch_grouped over
// all experts in one process, to float rounding. Every rank of the group calls it, in the same
// order. bytes_sent, when given, adds up what this rank sends to the others (forward and
// backward).
template <typename T>
Var<T> dispatch_expert_parallel(const Var<T>& tokens, const Var<T>& weights,
                                const RoutingPlan& plan, const std::vector<Expert<T>>& local,
                                ProcessGroup& group, const DispatchOptions& options = {},
                                int64_t* bytes_sent = nullptr) {
  const int64_t G = group.size(), E = plan.experts, El = static_cast<int64_t>(local.size());
  check<ValueError>(El > 0 && El * G == E,
                    "expert parallel: {} experts on each of {} ranks for a routing plan over {}",
                    El, G, E);
  check<ShapeError>(tokens.dim() == 2 && tokens.size(0) == plan.tokens,
                    "expert parallel: tokens of shape {} for a plan over {} tokens", tokens.shape(),
                    plan.tokens);
  auto exchange = std::make_shared<detail::ExpertExchange>();
  exchange->group = &group;
  exchange->plan = std::make_shared<const RoutingPlan>(plan);  // the layer reuses its plan
  exchange->bytes_sent = bytes_sent;
  // Rank s owns experts [s El, (s + 1) El): the plan's loads in expert order are the counts
  // for each rank, one run after another.
  std::vector<int64_t> send_counts(static_cast<size_t>(E)), recv_counts(static_cast<size_t>(E));
  for (int64_t e = 0; e < E; ++e) send_counts[e] = plan.load(e);
  group.all_to_all(send_counts.data(), recv_counts.data(), El,
                   "the all-to-all of the expert counts");
  if (bytes_sent != nullptr) *bytes_sent += (G - 1) * El * int64_t(sizeof(int64_t));
  exchange->send_rows.assign(static_cast<size_t>(G), 0);
  exchange->recv_rows.assign(static_cast<size_t>(G), 0);
  for (int64_t s = 0; s < G; ++s)
    for (int64_t j = 0; j < El; ++j) {
      exchange->send_rows[s] += send_counts[s * El + j];
      exchange->recv_rows[s] += recv_counts[s * El + j];
    }

  const Var<T> received = detail::send_to_experts(tokens, exchange);  // [received, C]
  const RoutingPlan local_plan = detail::received_rows_plan(recv_counts, G, El);
  const Var<T> ones(Tensor<T>::ones({local_plan.tokens, 1}));
  const Var<T> computed = dispatch_grouped(received, ones, local_plan, local, options);
  return detail::return_from_experts(computed, weights, exchange);  // [N, C]
}

// Splits a model's experts over the ranks of `world` for its lifetime (see the top of the
// file): the constructor gives every rank rank 0's weights (all of them, as data parallelism
// does), then each rank keeps its shard and its MoE layers route through the group.
template <typename T>
class ExpertParallel {
 public:
  ExpertParallel(GPT<T>& model, ProcessGroup& world, int64_t group_size)
      : model_(model), world_(world), group_size_(group_size) {
    const int64_t R = world.size(), E = model.config.n_experts;
    check<ValueError>(group_size >= 1, "expert parallel: the group size must be positive, got {}",
                      group_size);
    check<ValueError>(R % group_size == 0,
                      "expert parallel: {} ranks do not form groups of {}: the number of ranks "
                      "must be a multiple of the expert-parallel size",
                      R, group_size);
    check<ValueError>(E > 0 && E % group_size == 0,
                      "expert parallel: {} experts per MoE layer do not split over {} ranks: the "
                      "experts must be a multiple of the expert-parallel size",
                      E, group_size);
    const int rank = world.rank();
    shard_ = rank % group_size;
    replica_ = rank / group_size;
    experts_group_ = world.split(static_cast<int>(replica_), rank);
    replica_group_ = world.split(static_cast<int>(shard_), rank);
    broadcast_module(model, world);
    const int64_t local = E / group_size;
    for (Block<T>& b : model.blocks) {
      if (!b.is_moe) continue;
      MoELayer<Expert<T>>& moe = b.moe;
      check<ValueError>(static_cast<int64_t>(moe.experts.size()) == E && moe.first_expert == 0,
                        "expert parallel: the model's experts are split already");
      const auto first = moe.experts.begin() + shard_ * local;
      moe.experts = std::vector<Expert<T>>(first, first + local);
      moe.first_expert = shard_ * local;
      moe.expert_parallel = [this](MoELayer<Expert<T>>& layer, const Var<T>& tokens) {
        return dispatch_expert_parallel(tokens, layer.last.weights, layer.last.plan, layer.experts,
                                        *experts_group_, layer.dispatch_options, &bytes_sent_);
      };
      for (Expert<T>& e : moe.experts)
        for (const Var<T>& p : parameters(e)) expert_nodes_.insert(p.node());
    }
  }
  ~ExpertParallel() {
    for (Block<T>& b : model_.blocks) b.moe.expert_parallel = nullptr;
  }
  ExpertParallel(const ExpertParallel&) = delete;
  ExpertParallel& operator=(const ExpertParallel&) = delete;

  int64_t group_size() const { return group_size_; }                // G
  int64_t replicas() const { return world_.size() / group_size_; }  // D
  int64_t shard() const { return shard_; }                          // which experts: g = rank % G
  int64_t replica() const { return replica_; }  // which expert-parallel group: rank / G
  // The G ranks that hold one copy of every expert: the all-to-alls.
  ProcessGroup& experts_group() { return *experts_group_; }
  // The D ranks that hold this rank's experts: their gradients are averaged.
  ProcessGroup& replica_group() { return *replica_group_; }
  // Bytes this rank has sent to other ranks in the all-to-alls of the experts so far.
  int64_t bytes_sent() const { return bytes_sent_; }

  bool is_expert(const Var<T>& p) const { return expert_nodes_.count(p.node()) > 0; }
  // This rank's experts' parameters, and all the others (replicated on every rank).
  std::vector<Var<T>> expert_parameters() { return select(true); }
  std::vector<Var<T>> replicated_parameters() { return select(false); }

  // On rank 0: calls fn(model, optimizer) with every expert in the model and AdamW state for all
  // of them (the others' gathered), as one process would hold them; then drops them again.
  // Every rank calls it; only the first G ranks (expert-parallel group 0) take part.
  template <typename Fn>
  void with_whole_model(AdamW<T>& optimizer, Fn&& fn) {
    if (replica_ != 0) return;
    const std::unordered_map<const Node<T>*, Moments> gathered = gather(&optimizer);
    if (world_.rank() != 0) return;
    std::unordered_map<const Node<T>*, const typename AdamW<T>::Slot*> local;
    for (const auto& slot : optimizer.slots()) local.emplace(slot.parameter.node(), &slot);
    AdamW<T> whole(named_parameters(model_), optimizer.config());
    for (auto& slot : whole.slots()) {
      const auto mine = local.find(slot.parameter.node());
      if (mine != local.end()) {
        slot.m.copy_(mine->second->m);
        slot.v.copy_(mine->second->v);
      } else {
        const Moments& theirs = gathered.at(slot.parameter.node());
        slot.m = theirs.first;
        slot.v = theirs.second;
      }
    }
    whole.set_steps(optimizer.steps());
    try {
      fn(model_, whole);
    } catch (...) {
      drop_gathered();
      throw;
    }
    drop_gathered();
  }

  // For the end of a run: rank 0's model gets every expert and runs alone (sampling, saving);
  // no rank's model routes through the group any more. Every rank calls it.
  void gather_to_root() {
    if (replica_ == 0) gather(nullptr);
    for (Block<T>& b : model_.blocks) b.moe.expert_parallel = nullptr;
  }

 private:
  using Moments = std::pair<Tensor<T>, Tensor<T>>;  // AdamW's m and v

  std::vector<Var<T>> select(bool experts) {
    std::vector<Var<T>> out;
    for (Var<T>& p : parameters(model_))
      if (is_expert(p) == experts) out.push_back(p);
    return out;
  }

  // Collective over the first G ranks: rank 0 appends the other shards' experts to each MoE
  // layer, in order, and gets their moments when an optimizer is given.
  std::unordered_map<const Node<T>*, Moments> gather(AdamW<T>* optimizer) {
    std::unordered_map<const Node<T>*, const typename AdamW<T>::Slot*> slots;
    if (optimizer != nullptr)
      for (const auto& slot : optimizer->slots()) slots.emplace(slot.parameter.node(), &slot);
    std::vector<T> payload;  // per MoE layer, per expert, per parameter: value, m, v
    auto append = [&](const Tensor<T>& t) {
      const Tensor<T> c = t.contiguous();
      payload.insert(payload.end(), c.data(), c.data() + c.numel());
    };
    for (Block<T>& b : model_.blocks) {
      if (!b.is_moe) continue;
      for (Expert<T>& e : b.moe.experts)
        for (const Var<T>& p : parameters(e)) {
          append(p.value());
          if (optimizer == nullptr) continue;
          const auto slot = slots.find(p.node());
          check<ValueError>(slot != slots.end(), "expert parallel: an expert without AdamW state");
          append(slot->second->m);
          append(slot->second->v);
        }
    }
    ProcessGroup& group = *experts_group_;
    const int64_t n = static_cast<int64_t>(payload.size()), G = group.size();
    const bool root = group.rank() == 0;
    std::vector<int64_t> send_rows(static_cast<size_t>(G), 0), recv_rows(static_cast<size_t>(G), 0);
    if (root)
      std::fill(recv_rows.begin() + 1, recv_rows.end(), n);
    else
      send_rows[0] = n;
    std::vector<T> received(root ? static_cast<size_t>(n * (G - 1)) : 0);
    group.all_to_all_v(payload.data(), send_rows.data(), received.data(), recv_rows.data(), 1,
                       "the gather of the experts");
    std::unordered_map<const Node<T>*, Moments> moments;
    if (!root) return moments;
    const T* in = received.data();
    const int64_t local = model_.config.n_experts / group_size_;
    auto take = [&](const Shape& shape) {
      Tensor<T> t = Tensor<T>::empty(shape);
      std::copy_n(in, t.numel(), t.data());
      in += t.numel();
      return t;
    };
    for (int64_t s = 1; s < G; ++s)
      for (Block<T>& b : model_.blocks) {
        if (!b.is_moe) continue;
        std::vector<Expert<T>>& experts = b.moe.experts;
        for (int64_t j = 0; j < local; ++j) {
          Expert<T> e = experts.front();  // the structure; every parameter is replaced
          e.visit(ModuleVisitor<T>().on_parameter([&](const std::string&, Var<T>& p) {
            p = Var<T>(take(p.shape()), /*requires_grad=*/true);
            if (optimizer == nullptr) return;
            Tensor<T> m = take(p.shape());
            moments.emplace(p.node(), Moments{std::move(m), take(p.shape())});
          }));
          experts.push_back(std::move(e));
        }
      }
    return moments;
  }

  // Rank 0's model back to its own shard.
  void drop_gathered() {
    const int64_t local = model_.config.n_experts / group_size_;
    for (Block<T>& b : model_.blocks)
      if (b.is_moe) b.moe.experts.erase(b.moe.experts.begin() + local, b.moe.experts.end());
  }

  GPT<T>& model_;
  ProcessGroup& world_;
  int64_t group_size_;
  int64_t shard_ = 0, replica_ = 0;
  std::unique_ptr<ProcessGroup> experts_group_, replica_group_;
  std::unordered_set<const Node<T>*> expert_nodes_;
  int64_t bytes_sent_ = 0;
};

}  // namespace minimoe
