// minimoe/generate/generate.hpp: autoregressive decoding with a KV cache.
//
//   GenerateOptions o;  o.max_tokens = 200;  o.sampling.temperature = 0.8;  o.seed = 1;
//   Generation g = generate(model, prompt_ids, o, [&](int32_t id) {
//     std::cout << tokenizer.decode({id}) << std::flush;   // streamed as produced
//     return true;                                          // false stops early
//   });
//
// The prompt runs through the model once (prefill), filling every layer's KV cache, and only
// its last position goes through the LM head; then each new token costs one position, run
// without the autograd graph by StepDecoder (generate/step_decoder.hpp).
// Decoding stops after max_tokens, at the end-of-text token (stop_id, when >= 0; it is not part
// of the output), when the callback returns false, or when the context window is full: minimoe
// does not slide the window, since every cached key was computed for its position, so a prompt
// plus max_tokens longer than the context is cut at the context length (StopReason says which
// happened). An empty prompt or one longer than the context is a ValueError.
//
//   std::vector<Generation> out = generate_batch(model, {{prompt_a, o}, {prompt_b, o2}});
//
// decodes several sequences of different lengths together, and BatchDecoder lets sequences
// join and leave a running batch (continuous batching, as the server does).
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <vector>

#include "minimoe/generate/logits_processors.hpp"
#include "minimoe/generate/sampling.hpp"
#include "minimoe/generate/step_decoder.hpp"
#include "minimoe/models/gpt.hpp"

namespace minimoe {

struct GenerateOptions {
  int64_t max_tokens = 200;
  SamplingOptions sampling;
  std::vector<LogitsProcessor> processors;  // applied in order before sampling
  uint64_t seed = 0;
  int32_t stop_id = -1;       // e.g. the tokenizer's <|endoftext|>; -1 = none
  int64_t allowed_vocab = 0;  // sample ids below this only (the tokenizer's size); 0 = all
};

enum class StopReason { MaxTokens, EndOfText, ContextFull, Callback };

struct Generation {
  std::vector<int32_t> ids;  // the new tokens, without the prompt or the stop id
  StopReason reason = StopReason::MaxTokens;
};

// Checks a prompt against the model: not empty, within the context, ids in the vocabulary.
inline void check_prompt(const GPTConfig& config, const std::vector<int32_t>& prompt) {
  check<ValueError>(!prompt.empty(), "generate: the prompt is empty");
  check<ValueError>(static_cast<int64_t>(prompt.size()) <= config.context_length,
                    "generate: the prompt has {} tokens, more than the context length {}",
                    prompt.size(), config.context_length);
  for (int32_t id : prompt)
    check<IndexError>(id >= 0 && id < config.vocab_size,
                      "generate: prompt token {} outside the vocabulary [0, {})", id,
                      config.vocab_size);
}

// Runs ids [1, n] through the model after what `caches` hold, appending to them; returns the
// logits of the last position, [V].
template <typename T>
Tensor<T> next_token_logits(GPT<T>& model, const Tensor<int32_t>& ids,
                            std::vector<KVCache<T>>& caches) {
  const Var<T> hidden = model.hidden(ids, &caches);  // [1, n, C]
  const int64_t n = hidden.size(1);
  return model.head(slice(hidden, 1, n - 1, n)).value().contiguous().reshape({-1});
}

// One request of a batch: its prompt and its own settings (seed, sampling, stop id, ...).
struct GenerateRequest {
  std::vector<int32_t> prompt;
  GenerateOptions options;
};

namespace detail {

// The sampling side of one sequence: what it has so far, its random stream, when it ends.
class SequenceDecoder {
 public:
  SequenceDecoder(const GPTConfig& config, const GenerateRequest& r)
      : o_(r.options), history_(r.prompt), prompt_size_(r.prompt.size()), rng_(o_.seed) {
    o_.sampling.validate();
    check<ValueError>(o_.max_tokens >= 0, "generate: max_tokens must be >= 0, got {}",
                      o_.max_tokens);
    check_prompt(config, r.prompt);
    context_ = config.context_length;
    allowed_ =
        o_.allowed_vocab > 0 ? std::min(o_.allowed_vocab, config.vocab_size) : config.vocab_size;
    row_.resize(static_cast<size_t>(allowed_));
    done_ = o_.max_tokens == 0;
  }

  bool done() const { return done_; }
  const Generation& result() const { return g_; }
  int32_t last_token() const { return history_.back(); }

  // Samples the next token from this sequence's logits [V] and streams it; false once the
  // sequence has ended (then the token, if any, is not to be fed back).
  template <typename T>
  bool accept(const T* logits, const std::function<bool(int32_t)>& on_token) {
    std::copy(logits, logits + allowed_, row_.begin());
    for (const LogitsProcessor& process : o_.processors) process(row_, {history_, prompt_size_});
    const int32_t next = sample_token(row_.data(), allowed_, o_.sampling, rng_);
    if (next == o_.stop_id) return finish(StopReason::EndOfText);
    g_.ids.push_back(next);
    history_.push_back(next);
    if (on_token && !on_token(next)) return finish(StopReason::Callback);
    const bool more = static_cast<int64_t>(g_.ids.size()) < o_.max_tokens;
    if (!more) return finish(StopReason::MaxTokens);
    if (static_cast<int64_t>(history_.size()) > context_)
      return finish(StopReason::ContextFull);  // the next token would have no position
    return true;
  }

 private:
  bool finish(StopReason reason) {
    g_.reason = reason;
    done_ = true;
    return false;
  }

  GenerateOptions o_;
  std::vector<int32_t> history_;
  size_t prompt_size_;
  Rng rng_;
  int64_t context_ = 0, allowed_ = 0;
  std::vector<float> row_;
  Generation g_;
  bool done_ = false;
};

}  // namespace detail

// Continuous batching: sequences join and leave while the others decode. Each step() is one
// forward through GPT::hidden_packed: the prompts of the sequences added since the last step
// (prefill) and the latest token of every running one, so the weights are read once per step
// for the whole batch; a step of a single token (one sequence decoding alone) goes through
// StepDecoder instead, which skips the graph. A sequence's tokens go to its on_token as they are sampled (false ends
// it), and its result to on_done when it ends. Every sequence gets the tokens generate()
// gives it alone (the packed forward computes each row as the unbatched one does, to float
// rounding).
//
//   BatchDecoder<float> batch(model);
//   batch.add({prompt, o}, on_token, on_done);   // any time, also from on_token or on_done
//   while (!batch.idle()) batch.step();
template <typename T>
class BatchDecoder {
 public:
  using TokenCallback = std::function<bool(int32_t)>;
  using DoneCallback = std::function<void(const Generation&)>;

  explicit BatchDecoder(GPT<T>& model) : model_(model) {
    if (StepDecoder<T>::supports(model)) single_.emplace(model);
  }

  // Checks the request (a bad one throws here, not at a step) and queues it for the next step.
  void add(const GenerateRequest& r, TokenCallback on_token = nullptr,
           DoneCallback on_done = nullptr) {
    Sequence s{detail::SequenceDecoder(model_.config, r),
               r.prompt,
               {},
               std::move(on_token),
               std::move(on_done)};
    if (s.decoder.done()) {  // max_tokens 0: nothing to compute
      if (s.on_done) s.on_done(s.decoder.result());
      return;
    }
    s.caches = model_.make_caches(1);
    sequences_.push_back(std::move(s));
  }

  bool idle() const { return sequences_.empty(); }
  size_t size() const { return sequences_.size(); }  // sequences running or queued
  void clear() { sequences_.clear(); }               // drops every sequence, calling nothing

  // One forward for every sequence, then one token each; the ended ones leave the batch.
  void step() {
    if (sequences_.empty()) return;
    NoGradGuard no_grad;
    set_training(model_, false);
    std::vector<int64_t> lengths;
    std::vector<std::vector<KVCache<T>>*> caches;
    std::vector<int32_t> ids, last_rows;
    for (Sequence& s : sequences_) {
      lengths.push_back(static_cast<int64_t>(s.pending.size()));
      caches.push_back(&s.caches);
      ids.insert(ids.end(), s.pending.begin(), s.pending.end());
      last_rows.push_back(static_cast<int32_t>(ids.size() - 1));
    }
    Tensor<T> logits;
    const T* rows_logits = nullptr;  // [sequences, V]
    if (ids.size() == 1 && single_) {
      rows_logits = (*single_)(ids.front(), *caches.front());
    } else {
      Tensor<int32_t> input({1, static_cast<int64_t>(ids.size())});
      std::copy(ids.begin(), ids.end(), input.data());
      Tensor<int32_t> rows({static_cast<int64_t>(last_rows.size())});
      std::copy(last_rows.begin(), last_rows.end(), rows.data());
      const Var<T> hidden = model_.hidden_packed(input, lengths, caches);
      logits = model_.head(index_select(hidden, 1, rows)).value().contiguous();
      rows_logits = logits.data();
    }

    // Callbacks may add sequences: those join the next step, after the ones here.
    std::vector<Sequence> stepped = std::move(sequences_);
    sequences_.clear();
    std::vector<Sequence> running;
    const int64_t V = model_.config.vocab_size;
    for (size_t i = 0; i < stepped.size(); ++i) {
      Sequence& s = stepped[i];
      if (s.decoder.accept(rows_logits + static_cast<int64_t>(i) * V, s.on_token)) {
        s.pending = {s.decoder.last_token()};
        running.push_back(std::move(s));
      } else if (s.on_done) {
        s.on_done(s.decoder.result());
      }
    }
    for (Sequence& s : sequences_) running.push_back(std::move(s));
    sequences_ = std::move(running);
  }

 private:
  struct Sequence {
    detail::SequenceDecoder decoder;
    std::vector<int32_t> pending;    // fed at the next step: the prompt, then the latest token
    std::vector<KVCache<T>> caches;  // one per block
    TokenCallback on_token;
    DoneCallback on_done;
  };

  GPT<T>& model_;
  std::optional<StepDecoder<T>> single_;  // a lone sequence's token (StepDecoder::supports)
  std::vector<Sequence> sequences_;
};

// Decodes a fixed set of requests together (BatchDecoder); results in request order.
// on_token(sequence, id) streams; false ends that sequence.
template <typename T>
std::vector<Generation> generate_batch(
    GPT<T>& model, const std::vector<GenerateRequest>& requests,
    const std::function<bool(size_t sequence, int32_t id)>& on_token = nullptr) {
  BatchDecoder<T> batch(model);
  std::vector<Generation> out(requests.size());
  for (size_t s = 0; s < requests.size(); ++s) {
    auto stream = [&on_token, s](int32_t id) { return !on_token || on_token(s, id); };
    batch.add(requests[s], stream, [&out, s](const Generation& g) { out[s] = g; });
  }
  while (!batch.idle()) batch.step();
  return out;
}

template <typename T>
Generation generate(GPT<T>& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                    const std::function<bool(int32_t)>& on_token = nullptr) {
  const auto stream = [&](size_t, int32_t id) { return !on_token || on_token(id); };
  return generate_batch(model, {{prompt, o}}, stream).front();
}

}  // namespace minimoe
