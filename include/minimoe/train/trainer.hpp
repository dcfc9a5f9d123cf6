// minimoe/train/trainer.hpp: the training loop of a GPT on a Dataset, one step at a time.
//
//   Trainer<float> trainer(model, data, options);       // or Trainer(checkpoint, data)
//   while (!trainer.done()) {
//     StepReport r = trainer.step();                    // loss, lr, load per layer, ...
//     if (r.step % 100 == 0) EvalReport e = trainer.evaluate();
//   }
//   trainer.save("run/checkpoint.safetensors", tokenizer);
//
// One step: grad_accum micro-batches of batch_size windows, each loss scaled by 1/grad_accum
// and backpropagated (gradients accumulate), then the global norm is clipped and AdamW steps
// with the scheduled rate. A step is skipped, not applied, when its loss or gradient norm is
// not finite, or its loss exceeds spike_factor x the running mean (a loss spike); the report
// says why, and more than max_bad_steps in a row throw TrainingError. Everything a step
// depends on (weights, moments, the data Rng, the model's random streams, the running mean) is
// in the checkpoint, so a resumed run takes exactly the steps the uninterrupted one would have
// with the same thread count.
//
// Data parallelism: given a ProcessGroup of R ranks (distributed/mpi.hpp), every rank draws the
// same global batch and trains on its R-th of it (batch_size must divide by R); the routers
// count experts over the global batch, the losses reported are the global batch's, and the
// gradients are averaged in buckets overlapped with the backward of the last micro-batch
// (distributed/gradient_reducer.hpp). Rank 0's weights are broadcast at the start; every rank
// then takes the same clipped AdamW step, so the replicas stay identical (checked with a
// checksum at every save). Evaluation splits the validation batches over the ranks. Only rank
// 0 writes checkpoints, and a checkpoint is the same file one process would write, so runs
// move freely between one process and many (docs/distributed.md).
//
// Expert parallelism: given also a group size G > 1, the R ranks form R / G groups of G that
// split every MoE layer's experts (distributed/expert_parallel.hpp): rank r holds experts
// [g E/G, (g + 1) E/G), g = r % G, and its AdamW state; routed rows travel to their experts'
// ranks and back. The replicated parameters are averaged over all R ranks as above, each
// expert's over the R / G ranks that hold it. The gradient norm adds every expert once, and
// checkpoints gather the experts on rank 0, so they are still the single-process file.
#pragma once

#include <chrono>
#include <cmath>
#include <cstdint>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

#include "minimoe/data/dataset.hpp"
#include "minimoe/distributed/data_parallel.hpp"
#include "minimoe/distributed/expert_parallel.hpp"
#include "minimoe/distributed/gradient_reducer.hpp"
#include "minimoe/optim/clip.hpp"
#include "minimoe/train/checkpoint.hpp"

namespace minimoe {

struct TrainingError : Error {
  using Error::Error;
};

// The routing of one MoE layer during a step, summed over its micro-batches.
struct LayerLoad {
  int64_t layer = 0;
  std::vector<double> fraction;  // [E] share of the routed (token, slot) pairs per expert
  int64_t dropped = 0;           // pairs dropped for capacity
};

struct StepReport {
  int64_t step = 0;     // the step just taken, from 0
  double loss = 0;      // cross-entropy, mean over the micro-batches
  double aux_loss = 0;  // router losses summed over MoE layers, unweighted
  double z_loss = 0;
  double lr = 0;
  double grad_norm = 0;  // before clipping
  int64_t tokens = 0;
  double seconds = 0;
  bool skipped = false;
  std::string skip_reason;  // "non-finite loss", "non-finite gradient", "loss spike ..."
  std::vector<LayerLoad> load;
};

struct DomainEval {
  std::string name;
  double loss = 0;
  int64_t tokens = 0;
  double perplexity() const { return std::exp(loss); }
};

struct EvalReport {
  int64_t step = 0;
  double loss = 0;  // over all evaluated tokens of every domain
  std::vector<DomainEval> domains;
};

// Validation loss per domain, over at most max_batches batches of each domain's validation
// split, in evaluation mode (the model is left in it). With a group, rank r evaluates the
// batches i with i % R == r and the sums are added up: every rank gets the whole report. With
// expert parallelism over groups of G ranks, the G ranks of a group run every forward
// together: group r / G evaluates the batches i with i % (R / G) == r / G, each of its ranks
// runs the whole batch, and its first rank counts it.
template <typename T>
EvalReport evaluate_model(GPT<T>& model, const Dataset& data, int64_t batch, int64_t context,
                          int64_t max_batches, ProcessGroup* group = nullptr,
                          int64_t expert_parallel = 1) {
  NoGradGuard no_grad;
  set_training(model, false);
  EvalReport report;
  const int64_t groups = group != nullptr ? group->size() / expert_parallel : 1;
  const int64_t my_group = group != nullptr ? group->rank() / expert_parallel : 0;
  const bool counts = group == nullptr || group->rank() % expert_parallel == 0;
  double sum = 0;
  int64_t count = 0;
  for (int64_t d = 0; d < data.num_domains(); ++d) {
    DomainEval e;
    e.name = data.domain(d).name;
    double domain_sum = 0;
    int64_t index = 0;
    data.for_each_eval_batch(
        d, batch, context,
        [&](const Batch& b) {
          if (group != nullptr && index++ % groups != my_group) return;
          const Var<T> x = model.hidden(b.ids);  // every rank: expert parallelism is collective
          if (!counts) return;
          const int64_t n = b.targets.numel();
          domain_sum += double(model.head_loss(x, b.targets, kIgnoreIndex).item()) * double(n);
          e.tokens += n;
        },
        max_batches);
    if (group != nullptr) {
      double sums[2] = {domain_sum, double(e.tokens)};
      group->all_reduce_sum(sums, 2, "the sum of the validation losses");
      domain_sum = sums[0];
      e.tokens = static_cast<int64_t>(sums[1]);
    }
    e.loss = e.tokens > 0 ? domain_sum / double(e.tokens) : NAN;
    sum += domain_sum;
    count += e.tokens;
    report.domains.push_back(e);
  }
  report.loss = count > 0 ? sum / double(count) : NAN;
  return report;
}

template <typename T>
class Trainer {
 public:
  // group: the data-parallel ranks, or nullptr (or a group of one) for a single process.
  // expert_parallel: G, the ranks that split the experts (1: every rank holds all of them).
  Trainer(GPT<T>& model, const Dataset& data, const TrainOptions& options,
          ProcessGroup* group = nullptr, int64_t expert_parallel = 1)
      : model_(model),
        data_(data),
        options_(options),
        group_(group != nullptr && group->size() > 1 ? group : nullptr),
        experts_(split_experts(model, group_, expert_parallel)),
        optimizer_(named_parameters(model), options.adamw),
        params_(parameters(model)) {
    options_.validate();
    check<ValueError>(data.vocab_size() <= model.config.vocab_size,
                      "train: the data's vocabulary ({}) exceeds the model's ({})",
                      data.vocab_size(), model.config.vocab_size);
    check<ValueError>(context() <= model.config.context_length,
                      "train: context {} exceeds the model's context length {}", context(),
                      model.config.context_length);
    state_.data_rng = Rng(options_.seed);
    state_.total_steps = options_.time_minutes > 0 ? 0 : options_.steps;
    for (int64_t d = 0; d < data.num_domains(); ++d)
      state_.domain_tokens[data.domain(d).name] =
          data.tokens(d, Split::Train) + data.tokens(d, Split::Validation);
    if (group_ != nullptr) {
      check<ValueError>(options_.batch_size % group_->size() == 0,
                        "train: a batch of {} sequences does not split evenly over {} ranks; "
                        "pass a --batch-size divisible by the number of ranks",
                        options_.batch_size, group_->size());
      if (experts_) {  // which broadcast rank 0's weights already
        replicated_params_ = experts_->replicated_parameters();
        expert_params_ = experts_->expert_parameters();
        reducer_ = std::make_unique<GradientReducer<T>>(replicated_params_, *group_);
        // An expert's gradient sums the G ranks' shares already: the mean is over all R ranks.
        expert_reducer_ = std::make_unique<GradientReducer<T>>(
            expert_params_, experts_->replica_group(), GradientReducer<T>::kDefaultBucketBytes,
            group_->size());
      } else {
        broadcast_module(model_, *group_);
        reducer_ = std::make_unique<GradientReducer<T>>(params_, *group_);
      }
    }
  }

  // Continues a checkpoint's run; c.model must be the model passed here (c.model itself).
  Trainer(Checkpoint<T>& c, const Dataset& data, ProcessGroup* group = nullptr,
          int64_t expert_parallel = 1)
      : Trainer(c.model, data, c.options, group, expert_parallel) {
    check<ValueError>(c.state.domain_tokens == state_.domain_tokens,
                      "train: the data differs from the checkpoint's (tokens per domain: {} now, "
                      "{} then)",
                      describe(state_.domain_tokens), describe(c.state.domain_tokens));
    state_ = c.state;
    restore_optimizer(optimizer_, c);  // under expert parallelism, this rank's experts' only
    if (group_ != nullptr) check_all_replicas();
  }

  int64_t context() const {
    return options_.context > 0 ? options_.context : model_.config.context_length;
  }
  const TrainState& state() const { return state_; }
  const TrainOptions& options() const { return options_; }
  // The schedule's length: the requested steps, or with a time budget, known once
  // plan_for_time has been called (0 before).
  int64_t total_steps() const { return state_.total_steps; }
  bool done() const { return state_.total_steps > 0 && state_.step >= state_.total_steps; }
  int64_t tokens_per_step() const { return options_.batch_size * context() * options_.grad_accum; }
  // The data-parallel group, or nullptr when training in one process.
  ProcessGroup* group() const { return group_; }
  bool is_root() const { return group_ == nullptr || group_->is_root(); }
  // Bytes of gradients (and their flags) each rank all-reduces per step over all ranks; 0 in
  // one process. With expert parallelism, those of the replicated parameters only.
  int64_t gradient_bytes_per_step() const { return reducer_ ? reducer_->bytes_per_step() : 0; }
  // Bytes of this rank's experts' gradients all-reduced over the ranks holding them per step.
  int64_t expert_gradient_bytes_per_step() const {
    return expert_reducer_ ? expert_reducer_->bytes_per_step() : 0;
  }
  // The split of the experts, or nullptr when every rank holds all of them.
  ExpertParallel<T>* expert_parallel() const { return experts_.get(); }

  // After the last step of an expert-parallel run: rank 0's model gets every expert and runs
  // alone (a sample, save_model); the trainer takes no more steps. Every rank calls it.
  void gather_experts() {
    if (!experts_) return;
    experts_->gather_to_root();
    experts_gathered_ = true;
  }

  // With a time budget: fixes the number of steps from the speed of the steps so far, keeping
  // `reserve` of the remaining time for evaluations and checkpoints.
  void plan_for_time(double seconds_per_step, double reserve = 0.1) {
    const double left = options_.time_minutes * 60.0 - state_.seconds;
    const auto more = static_cast<int64_t>(std::max(0.0, left * (1.0 - reserve)) /
                                           std::max(seconds_per_step, 1e-9));
    state_.total_steps = std::max<int64_t>(state_.step + more, state_.step + 1);
    // The ranks timed themselves: all take rank 0's plan.
    if (group_ != nullptr)
      group_->broadcast(&state_.total_steps, sizeof(state_.total_steps), 0,
                        "the broadcast of the planned steps");
  }

  StepReport step() {
    check_not_gathered();
    const ScopedMatmulPrecision precision(options_.precision);
    const auto start = std::chrono::steady_clock::now();
    StepReport r;
    r.step = state_.step;
    r.lr = schedule()(state_.step);
    set_training(model_, true);
    const int64_t accum = options_.grad_accum;
    bool finite = true;
    std::unique_ptr<GlobalRouterCounts<T>> global_counts;
    if (group_ != nullptr) global_counts = std::make_unique<GlobalRouterCounts<T>>(model_, *group_);
    for (int64_t micro = 0; micro < accum; ++micro) {
      Batch b;
      {
        ProfileRegion region("data");
        b = data_.sample_batch(Split::Train, options_.batch_size, context(), state_.data_rng);
        if (group_ != nullptr) b = shard_batch(b, group_->rank(), group_->size());
      }
      GPTLoss<T> l = model_.loss(b.ids, b.targets);
      // The global batch's losses: the mean of the ranks' (each holds an equal share). A loss
      // that is not finite on one rank is not finite in the sum, so all ranks agree to skip.
      double losses[4] = {l.cross_entropy.item(), l.aux_loss.item(), l.z_loss.item(),
                          l.total.item()};
      if (group_ != nullptr) {
        group_->all_reduce_sum(losses, 4, "the sum of the losses");
        for (double& v : losses) v /= double(group_->size());
      }
      r.loss += losses[0] / double(accum);
      r.aux_loss += losses[1] / double(accum);
      r.z_loss += losses[2] / double(accum);
      add_load(r.load);
      if (!std::isfinite(losses[3])) {
        finite = false;
        continue;  // the batch is drawn anyway: the data order does not depend on bad steps
      }
      // The last micro-batch's backward averages the accumulated gradients as they are ready;
      // a step already known to be skipped needs no average.
      const bool reduce = reducer_ && finite && micro == accum - 1;
      if (reduce) {
        reducer_->arm();
        if (expert_reducer_) expert_reducer_->arm();
      }
      (l.total * T(1.0 / double(accum))).backward();
      if (reduce) {
        reducer_->finish();
        if (expert_reducer_) expert_reducer_->finish();
      }
    }
    if (group_ != nullptr) sum_load(r.load);
    for (LayerLoad& load : r.load) {
      double total = 0;
      for (double f : load.fraction) total += f;
      for (double& f : load.fraction) f = total > 0 ? f / total : 0;
    }
    ProfileRegion region("optimizer");
    r.grad_norm = finite ? clip_gradients() : NAN;
    if (!finite || !std::isfinite(r.loss)) {
      r.skip_reason = "non-finite loss";
    } else if (!std::isfinite(r.grad_norm)) {
      r.skip_reason = "non-finite gradient";
    } else if (options_.spike_factor > 0 && state_.loss_count >= kSpikeWarmup &&
               r.loss > options_.spike_factor * state_.loss_mean) {
      r.skip_reason = fmt::format("loss spike ({:.4g} > {} x running mean {:.4g})", r.loss,
                                  options_.spike_factor, state_.loss_mean);
    }
    r.skipped = !r.skip_reason.empty();
    if (r.skipped) {
      ++state_.skipped;
      if (++bad_in_a_row_ > options_.max_bad_steps)
        throw TrainingError(
            fmt::format("train: {} bad steps in a row (the last: {}); lower the learning rate or "
                        "check the data",
                        bad_in_a_row_, r.skip_reason));
    } else {
      bad_in_a_row_ = 0;
      optimizer_.step(r.lr);
      // A running mean over about the last 100 steps: slow enough that a spike stands out.
      const double rate = 1.0 / double(std::min<int64_t>(state_.loss_count + 1, 100));
      state_.loss_mean += rate * (r.loss - state_.loss_mean);
      ++state_.loss_count;
    }
    optimizer_.zero_grad();
    r.tokens = tokens_per_step();
    state_.tokens += r.tokens;
    ++state_.step;
    r.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    state_.seconds += r.seconds;
    return r;
  }

  // Validation loss per domain over at most eval_batches batches each.
  EvalReport evaluate() {
    check_not_gathered();
    const ScopedMatmulPrecision precision(options_.precision);
    EvalReport report =
        evaluate_model(model_, data_, options_.batch_size, context(), options_.eval_batches, group_,
                       experts_ ? experts_->group_size() : 1);
    report.step = state_.step;
    set_training(model_, true);
    return report;
  }

  // Every rank calls it; in a group, the replicas are compared first and rank 0 writes (with
  // expert parallelism, after gathering every expert and its AdamW state).
  void save(const std::string& path, const std::string& tokenizer,
            const std::map<std::string, std::string>& extra = {}) {
    check_not_gathered();
    if (group_ != nullptr) check_all_replicas();
    if (experts_) {
      experts_->with_whole_model(optimizer_, [&](GPT<T>& whole, AdamW<T>& optimizer) {
        save_checkpoint(path, whole, optimizer, state_, options_, tokenizer, extra);
      });
    } else if (is_root()) {
      save_checkpoint(path, model_, optimizer_, state_, options_, tokenizer, extra);
    }
  }

  // A checksum of what must be equal on every rank: weights, buffers, AdamW's moments and
  // update count, the data order, the model's random streams and the step. With expert
  // parallelism, the experts' weights and moments are left out: see expert_hash.
  uint64_t replica_hash() {
    uint64_t h = hash_bytes(&state_.step, sizeof(state_.step));
    auto add_tensor = [&](const Tensor<T>& t) {
      const Tensor<T> c = t.contiguous();
      h = hash_bytes(c.data(), size_t(c.numel()) * sizeof(T), h);
    };
    std::unordered_set<const T*> experts;  // the experts' weights, by their storage
    for (const Var<T>& p : expert_params_) experts.insert(p.value().data());
    for (const auto& [name, t] : named_tensors(model_))
      if (experts.count(t.data()) == 0) add_tensor(t);
    for (const auto& slot : optimizer_.slots()) {
      if (experts_ && experts_->is_expert(slot.parameter)) continue;
      add_tensor(slot.m);
      add_tensor(slot.v);
    }
    const int64_t updates = optimizer_.steps();
    h = hash_bytes(&updates, sizeof(updates), h);
    const Rng::Snapshot data_order = state_.data_rng.snapshot();
    h = hash_bytes(data_order.words.data(), sizeof(data_order.words), h);
    for (const auto& [name, rng] : named_rngs(model_)) {
      const Rng::Snapshot s = rng->snapshot();
      h = hash_bytes(s.words.data(), sizeof(s.words), h);
    }
    return h;
  }

  // A checksum of this rank's experts' weights and moments: equal on the ranks holding them.
  uint64_t expert_hash() {
    uint64_t h = 14695981039346656037ull;
    for (const auto& slot : optimizer_.slots()) {
      if (!experts_ || !experts_->is_expert(slot.parameter)) continue;
      for (const Tensor<T>& t : {slot.parameter.value(), slot.m, slot.v}) {
        const Tensor<T> c = t.contiguous();
        h = hash_bytes(c.data(), size_t(c.numel()) * sizeof(T), h);
      }
    }
    return h;
  }

  LRSchedule schedule() const {
    // Before a time budget has fixed the length, the warmup runs against a provisional one.
    return options_.schedule_for(state_.total_steps > 0 ? state_.total_steps : kProvisionalSteps);
  }

 private:
  static constexpr int64_t kSpikeWarmup = 50;  // steps before spikes are judged
  static constexpr int64_t kProvisionalSteps = 1000000;

  static std::string describe(const std::map<std::string, int64_t>& m) {
    std::string out;
    for (const auto& [name, n] : m) out += fmt::format("{}{}={}", out.empty() ? "" : " ", name, n);
    return out;
  }

  static std::unique_ptr<ExpertParallel<T>> split_experts(GPT<T>& model, ProcessGroup* group,
                                                          int64_t size) {
    check<ValueError>(size >= 1, "train: the expert-parallel size must be at least 1, got {}",
                      size);
    if (size == 1) return nullptr;
    check<ValueError>(group != nullptr,
                      "expert parallel: 1 rank does not form groups of {}: start a multiple of {} "
                      "ranks with mpirun",
                      size, size);
    return std::make_unique<ExpertParallel<T>>(model, *group, size);
  }

  void check_not_gathered() const {
    check<ValueError>(!experts_gathered_,
                      "train: the experts were gathered on rank 0; the run cannot go on");
  }

  void check_all_replicas() {
    check_replicas(replica_hash(), *group_, "the weights and training state");
    if (experts_ && experts_->replica_group().size() > 1)
      check_replicas(expert_hash(), experts_->replica_group(), "the experts' weights and moments");
  }

  // Clips to the global norm. With expert parallelism each expert's gradient lives on its
  // ranks only: the first G ranks (one copy of every expert) add theirs up over all ranks.
  double clip_gradients() {
    if (!experts_) return clip_grad_norm(params_, options_.grad_clip);
    double experts = experts_->replica() == 0 ? grad_squared_norm(expert_params_) : 0.0;
    group_->all_reduce_sum(&experts, 1, "the sum of the experts' gradient norms");
    const double norm = std::sqrt(grad_squared_norm(replicated_params_) + experts);
    return clip_grad_to_norm(params_, norm, options_.grad_clip);
  }

  // The load statistics of the global batch: the ranks' counts added up.
  void sum_load(std::vector<LayerLoad>& loads) const {
    std::vector<double> flat;
    for (const LayerLoad& l : loads) {
      flat.insert(flat.end(), l.fraction.begin(), l.fraction.end());
      flat.push_back(double(l.dropped));
    }
    group_->all_reduce_sum(flat.data(), static_cast<int64_t>(flat.size()),
                           "the sum of the expert loads");
    size_t i = 0;
    for (LayerLoad& l : loads) {
      for (double& f : l.fraction) f = flat[i++];
      l.dropped = static_cast<int64_t>(flat[i++]);
    }
  }

  void add_load(std::vector<LayerLoad>& loads) const {
    size_t i = 0;
    for (size_t layer = 0; layer < model_.blocks.size(); ++layer) {
      const Block<T>& b = model_.blocks[layer];
      if (!b.is_moe) continue;
      const RoutingPlan& plan = b.moe.last.plan;
      if (loads.size() <= i) {
        loads.push_back({static_cast<int64_t>(layer), std::vector<double>(plan.experts, 0.0), 0});
      }
      for (int64_t e = 0; e < plan.experts; ++e) loads[i].fraction[e] += double(plan.requested[e]);
      loads[i].dropped += plan.dropped;
      ++i;
    }
  }

  GPT<T>& model_;
  const Dataset& data_;
  TrainOptions options_;
  ProcessGroup* group_;
  // Before the optimizer: it drops the other ranks' experts from the model.
  std::unique_ptr<ExpertParallel<T>> experts_;
  AdamW<T> optimizer_;
  std::vector<Var<T>> params_;
  std::vector<Var<T>> replicated_params_, expert_params_;  // expert parallelism only
  std::unique_ptr<GradientReducer<T>> reducer_;            // in a group only
  std::unique_ptr<GradientReducer<T>> expert_reducer_;     // with expert parallelism
  bool experts_gathered_ = false;
  TrainState state_;
  int64_t bad_in_a_row_ = 0;
};

}  // namespace minimoe
