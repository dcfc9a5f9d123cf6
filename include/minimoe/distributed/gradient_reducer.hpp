// minimoe/distributed/gradient_reducer.hpp: averages the gradients of replicated parameters
// over a data-parallel group, in buckets, while the backward pass is still running.
//
//   GradientReducer<float> reducer(parameters(model), group);
//   reducer.arm();            // the next backward's gradients are averaged as they are ready
//   loss.backward();          // each full bucket starts a non-blocking all-reduce
//   reducer.finish();         // the rest, then wait: every rank holds the same averages
//
// Parameters go into buckets of about bucket_bytes in reverse order, since the backward pass
// reaches the last layers first. A grad-ready hook (autograd/var.hpp) marks a parameter done;
// when all of a bucket's parameters are done and every bucket before it has started, its
// gradients are copied into one flat buffer and its all-reduce starts, overlapping with the
// backward of the layers below. Buckets start in index order on every rank, so the ranks issue
// the same collectives in the same order whatever order their hooks fire in.
//
// Each bucket also carries one flag per parameter (1 where the rank has a gradient). The
// average divides by the group size, counting a missing gradient as zero (its true value on
// that shard); a parameter no rank has a gradient for keeps none, so AdamW leaves it alone as
// it would in a single process.
//
// Under expert parallelism an expert's gradient on its owner is already the sum over the G ranks
// whose tokens it saw; averaged over the D owners of the expert it must still be divided by all
// R = D G ranks: `mean_over` is that divisor when it is not the group's size.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include "minimoe/autograd/var.hpp"
#include "minimoe/distributed/process_group.hpp"

namespace minimoe {

template <typename T>
class GradientReducer {
 public:
  static constexpr int64_t kDefaultBucketBytes = int64_t(1) << 21;  // 2 MiB

  // mean_over: the gradients become the sum over the group / mean_over (0: the group's size).
  GradientReducer(std::vector<Var<T>> params, ProcessGroup& group,
                  int64_t bucket_bytes = kDefaultBucketBytes, int64_t mean_over = 0)
      : params_(std::move(params)),
        group_(group),
        mean_over_(mean_over > 0 ? mean_over : group.size()) {
    check<ValueError>(bucket_bytes > 0, "GradientReducer: bucket_bytes must be positive, got {}",
                      bucket_bytes);
    check<ValueError>(mean_over >= 0, "GradientReducer: mean_over must be >= 0, got {}", mean_over);
    bucket_of_.resize(params_.size());
    for (size_t i = params_.size(); i-- > 0;) {
      const int64_t bytes = params_[i].numel() * int64_t(sizeof(T));
      if (buckets_.empty() ||
          (buckets_.back().bytes > 0 && buckets_.back().bytes + bytes > bucket_bytes))
        buckets_.emplace_back();
      Bucket& b = buckets_.back();
      b.params.push_back(i);
      b.bytes += bytes;
      bucket_of_[i] = buckets_.size() - 1;
    }
    for (Bucket& b : buckets_) {
      int64_t values = 0;
      for (size_t i : b.params) values += params_[i].numel();
      b.flat.resize(static_cast<size_t>(values) + b.params.size());  // values, then flags
    }
    for (size_t i = 0; i < params_.size(); ++i)
      params_[i].set_grad_ready_hook([this, i] { on_grad_ready(i); });
  }

  ~GradientReducer() {
    for (Var<T>& p : params_) p.set_grad_ready_hook({});
  }
  GradientReducer(const GradientReducer&) = delete;
  GradientReducer& operator=(const GradientReducer&) = delete;

  int64_t num_buckets() const { return static_cast<int64_t>(buckets_.size()); }
  // What one rank sends into the all-reduces per step (gradients and flags).
  int64_t bytes_per_step() const {
    int64_t bytes = 0;
    for (const Bucket& b : buckets_) bytes += static_cast<int64_t>(b.flat.size() * sizeof(T));
    return bytes;
  }

  // Makes the next backward pass reduce gradients as they become final. Earlier passes (the
  // first micro-batches of a step that accumulates gradients) only accumulate.
  void arm() {
    check<ValueError>(!armed_, "GradientReducer: armed twice without finish()");
    armed_ = true;
  }

  // After the armed backward: starts the buckets still waiting (parameters the pass did not
  // reach), waits for all of them and writes each average into its parameter's gradient.
  void finish() {
    check<ValueError>(armed_, "GradientReducer: finish() without arm()");
    while (next_bucket_ < buckets_.size()) start(buckets_[next_bucket_++]);
    const T ranks = static_cast<T>(mean_over_);
    for (Bucket& b : buckets_) {
      group_.wait(b.request);
      const T* flat = b.flat.data();
      const T* flags = flat + (b.flat.size() - b.params.size());
      for (size_t j = 0; j < b.params.size(); ++j) {
        Var<T>& p = params_[b.params[j]];
        const int64_t n = p.numel();
        if (flags[j] > 0) {
          if (!p.has_grad()) p.add_grad(Tensor<T>(p.shape()));
          Tensor<T> g = p.grad();  // contiguous (add_grad makes it so); shares its storage
          T* out = g.data();
          for (int64_t k = 0; k < n; ++k) out[k] = flat[k] / ranks;
        }
        flat += n;
      }
      b.ready = 0;
    }
    next_bucket_ = 0;
    armed_ = false;
  }

 private:
  struct Bucket {
    std::vector<size_t> params;  // indices into params_
    int64_t bytes = 0;
    std::vector<T> flat;  // the gradients one after another, then one flag per parameter
    size_t ready = 0;     // parameters whose gradient is final in this pass
    ProcessGroup::Request request = 0;
  };

  void on_grad_ready(size_t param) {
    if (!armed_) return;
    ++buckets_[bucket_of_[param]].ready;
    while (next_bucket_ < buckets_.size() &&
           buckets_[next_bucket_].ready == buckets_[next_bucket_].params.size())
      start(buckets_[next_bucket_++]);
    // MPI moves a non-blocking collective's data only inside MPI calls: give it a turn.
    for (size_t b = 0; b < next_bucket_; ++b) group_.test(buckets_[b].request);
  }

  void start(Bucket& b) {
    T* out = b.flat.data();
    T* flags = out + (b.flat.size() - b.params.size());
    for (size_t j = 0; j < b.params.size(); ++j) {
      const Var<T>& p = params_[b.params[j]];
      const int64_t n = p.numel();
      if (p.has_grad()) {
        const Tensor<T> g = p.grad().contiguous();
        std::copy_n(g.data(), n, out);
      } else {
        std::fill_n(out, n, T(0));
      }
      flags[j] = p.has_grad() ? T(1) : T(0);
      out += n;
    }
    b.request = group_.start_all_reduce_sum(b.flat.data(), static_cast<int64_t>(b.flat.size()),
                                            "the all-reduce of the gradients");
  }

  std::vector<Var<T>> params_;
  ProcessGroup& group_;
  int64_t mean_over_;
  std::vector<Bucket> buckets_;
  std::vector<size_t> bucket_of_;  // [params]
  size_t next_bucket_ = 0;         // buckets before it have started
  bool armed_ = false;
};

}  // namespace minimoe
