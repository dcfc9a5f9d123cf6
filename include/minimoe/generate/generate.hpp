// minimoe/generate/generate.hpp: autoregressive decoding with a KV cache.
//
//   GenerateOptions o;  o.max_tokens = 200;  o.sampling.temperature = 0.8;  o.seed = 1;
//   Generation g = generate(model, prompt_ids, o, [&](int32_t id) {
//     std::cout << tokenizer.decode({id}) << std::flush;   // streamed as produced
//     return true;                                          // false stops early
//   });
//
// The prompt runs through the model once (prefill), filling every layer's KV cache, and only
// its last position goes through the LM head; then each new token costs one position.
// Decoding stops after max_tokens, at the end-of-text token (stop_id, when >= 0; it is not part
// of the output), when the callback returns false, or when the context window is full: minimoe
// does not slide the window, since every cached key was computed for its position, so a prompt
// plus max_tokens longer than the context is cut at the context length (StopReason says which
// happened). An empty prompt or one longer than the context is a ValueError.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "minimoe/generate/logits_processors.hpp"
#include "minimoe/generate/sampling.hpp"
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

template <typename T>
Generation generate(GPT<T>& model, const std::vector<int32_t>& prompt, const GenerateOptions& o,
                    const std::function<bool(int32_t)>& on_token = nullptr) {
  o.sampling.validate();
  check<ValueError>(o.max_tokens >= 0, "generate: max_tokens must be >= 0, got {}", o.max_tokens);
  check_prompt(model.config, prompt);
  const int64_t context = model.config.context_length, V = model.config.vocab_size;
  const int64_t allowed = o.allowed_vocab > 0 ? std::min(o.allowed_vocab, V) : V;

  NoGradGuard no_grad;
  set_training(model, false);
  std::vector<KVCache<T>> caches = model.make_caches(1);
  Rng rng(o.seed);
  Generation g;
  std::vector<int32_t> history = prompt;
  std::vector<float> row(static_cast<size_t>(allowed));
  Tensor<int32_t> ids({1, static_cast<int64_t>(prompt.size())});
  std::copy(prompt.begin(), prompt.end(), ids.data());
  while (static_cast<int64_t>(g.ids.size()) < o.max_tokens) {
    const Tensor<T> logits = next_token_logits(model, ids, caches);
    std::copy(logits.data(), logits.data() + allowed, row.begin());
    for (const LogitsProcessor& process : o.processors) process(row, {history, prompt.size()});
    const int32_t next = sample_token(row.data(), allowed, o.sampling, rng);
    if (next == o.stop_id) {
      g.reason = StopReason::EndOfText;
      return g;
    }
    g.ids.push_back(next);
    history.push_back(next);
    if (on_token && !on_token(next)) {
      g.reason = StopReason::Callback;
      return g;
    }
    if (static_cast<int64_t>(history.size()) > context &&
        static_cast<int64_t>(g.ids.size()) < o.max_tokens) {
      g.reason = StopReason::ContextFull;  // the next token would have no position
      return g;
    }
    ids = Tensor<int32_t>({1, 1});
    ids.data()[0] = next;
  }
  g.reason = StopReason::MaxTokens;
  return g;
}

}  // namespace minimoe
