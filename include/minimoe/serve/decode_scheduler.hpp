// minimoe/serve/decode_scheduler.hpp: one decoding thread that serves many callers at once.
//
//   DecodeScheduler<float> scheduler(model, {/*max_batch=*/8, /*threads=*/2});
//   std::future<Generation> g = scheduler.submit({prompt, options}, on_token, on_end);
//   g.get();   // blocks until the sequence ends; rethrows a bad request's error
//
// Callers on any thread submit requests; the scheduler's thread decodes them together in a
// BatchDecoder (continuous batching): a request joins the batch at the next step, up to
// max_batch sequences at a time, and later ones wait in arrival order. Decoding a token is
// bound by reading the weights, which a step reads once for the whole batch, so a batch of
// B costs far less than B steps of one. on_token and on_end run on the scheduler's thread and
// should be quick (the server only decodes text and hands it to the connection's thread);
// on_end is called after the future is ready. stop() ends every sequence at its next token
// and fails the requests still waiting.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <exception>
#include <functional>
#include <future>
#include <memory>
#include <mutex>
#include <thread>
#include <vector>

#ifdef _OPENMP
#include <omp.h>
#endif

#include "minimoe/generate/generate.hpp"

namespace minimoe {

// The scheduler is stopping: the request was not run.
struct ShutdownError : Error {
  using Error::Error;
};

template <typename T>
class DecodeScheduler {
 public:
  struct Options {
    size_t max_batch = 8;  // sequences decoded together; more wait their turn
    int threads = 0;       // OpenMP threads of the decoding thread; 0 = OpenMP's default
  };
  using TokenCallback = std::function<bool(int32_t)>;

  DecodeScheduler(GPT<T>& model, Options o) : options_(o), batch_(model) {
    check<ValueError>(options_.max_batch > 0, "decode scheduler: max_batch must be positive");
    thread_ = std::thread([this] { loop(); });
  }
  ~DecodeScheduler() {
    stop();
    thread_.join();
  }
  DecodeScheduler(const DecodeScheduler&) = delete;
  DecodeScheduler& operator=(const DecodeScheduler&) = delete;

  std::future<Generation> submit(GenerateRequest request, TokenCallback on_token = nullptr,
                                 std::function<void()> on_end = nullptr) {
    auto job = std::make_shared<Job>();
    job->request = std::move(request);
    job->on_token = std::move(on_token);
    job->on_end = std::move(on_end);
    std::future<Generation> result = job->promise.get_future();
    {
      std::lock_guard<std::mutex> lock(mutex_);
      if (stopping_) throw ShutdownError("the server is shutting down");
      queue_.push_back(std::move(job));
    }
    wake_.notify_one();
    return result;
  }

  void stop() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stopping_ = true;
    }
    wake_.notify_one();
  }

  // The most sequences one step has decoded together so far.
  size_t largest_batch() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return largest_batch_;
  }

 private:
  struct Job {
    GenerateRequest request;
    TokenCallback on_token;
    std::function<void()> on_end;
    std::promise<Generation> promise;
    bool ended = false;

    void end(const Generation* g, std::exception_ptr error) {
      ended = true;
      if (error)
        promise.set_exception(error);
      else
        promise.set_value(*g);
      if (on_end) on_end();
    }
  };

  void loop() {
#ifdef _OPENMP
    if (options_.threads > 0) omp_set_num_threads(options_.threads);  // per thread in OpenMP
#endif
    for (;;) {
      std::deque<std::shared_ptr<Job>> refused;
      {
        std::unique_lock<std::mutex> lock(mutex_);
        wake_.wait(lock, [&] { return stopping_ || !queue_.empty() || !running_.empty(); });
        if (stopping_) std::swap(refused, queue_);
        while (!queue_.empty() && running_.size() < options_.max_batch) {
          running_.push_back(queue_.front());
          queue_.pop_front();
          admit(*running_.back());
        }
        largest_batch_ = std::max(largest_batch_, batch_.size());
      }
      for (const auto& job : refused)
        job->end(nullptr, std::make_exception_ptr(ShutdownError("the server is shutting down")));
      try {
        batch_.step();
      } catch (...) {  // not a request's fault (those throw in admit): the batch fails
        batch_.clear();
        for (const auto& job : running_)
          if (!job->ended) job->end(nullptr, std::current_exception());
      }
      std::lock_guard<std::mutex> lock(mutex_);
      running_.erase(std::remove_if(running_.begin(), running_.end(),
                                    [](const std::shared_ptr<Job>& j) { return j->ended; }),
                     running_.end());
      if (stopping_ && running_.empty() && queue_.empty()) return;
    }
  }

  void admit(Job& job) {
    auto on_token = [this, &job](int32_t id) {
      return !stopping_ && (!job.on_token || job.on_token(id));
    };
    try {
      batch_.add(job.request, on_token, [&job](const Generation& g) { job.end(&g, nullptr); });
    } catch (...) {
      job.end(nullptr, std::current_exception());
    }
  }

  Options options_;
  BatchDecoder<T> batch_;  // touched by the scheduler's thread only
  mutable std::mutex mutex_;
  std::condition_variable wake_;
  std::deque<std::shared_ptr<Job>> queue_;
  std::vector<std::shared_ptr<Job>> running_;  // in batch_; the scheduler's thread only
  size_t largest_batch_ = 0;
  std::atomic<bool> stopping_{false};  // written under mutex_, read by every token
  std::thread thread_;
};

}  // namespace minimoe
