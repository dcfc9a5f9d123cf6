// minimoe/generate/generate.hpp: autoregressive decoding with a KV cache.
//
//   GenerateOptions o;  o.max_tokens = 200;  o.sampling.temperature = 0.8;  o.seed = 1;
//   std::vector<int32_t> out = generate(model, prompt_ids, o, [&](int32_t id) {
//     std::cout << tokenizer.decode({id}) << std::flush;   // streamed as produced
//     return true;                                          // false stops early
//   });
//
// The prompt runs through the model once (prefill), filling every layer's KV cache; then each
// new token costs one position. Decoding stops after max_tokens, at the end-of-text token
// (stop_id, when >= 0), when the callback returns false, or when the context window is full:
// minimoe does not slide the window, so a prompt plus max_tokens longer than the context is
// cut at the context length. An empty prompt or one longer than the context is a ValueError.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "minimoe/generate/sampling.hpp"
#include "minimoe/models/gpt.hpp"

namespace minimoe {

struct GenerateOptions {
  int64_t max_tokens = 200;
  SamplingOptions sampling;
  uint64_t seed = 0;
  int32_t stop_id = -1;       // e.g. the tokenizer's <|endoftext|>; -1 = none
  int64_t allowed_vocab = 0;  // sample ids below this only (the tokenizer's size); 0 = all
};

template <typename T>
std::vector<int32_t> generate(GPT<T>& model, const std::vector<int32_t>& prompt,
                              const GenerateOptions& o,
                              const std::function<bool(int32_t)>& on_token = nullptr) {
  o.sampling.validate();
  const int64_t context = model.config.context_length, V = model.config.vocab_size;
  check<ValueError>(!prompt.empty(), "generate: the prompt is empty");
  check<ValueError>(static_cast<int64_t>(prompt.size()) <= context,
                    "generate: the prompt has {} tokens, more than the context length {}",
                    prompt.size(), context);
  for (int32_t id : prompt)
    check<IndexError>(id >= 0 && id < V, "generate: prompt token {} outside the vocabulary [0, {})",
                      id, V);
  const int64_t allowed = o.allowed_vocab > 0 ? std::min(o.allowed_vocab, V) : V;

  NoGradGuard no_grad;
  set_training(model, false);
  std::vector<KVCache<T>> caches = model.make_caches(1);
  Rng rng(o.seed);
  std::vector<int32_t> out;
  Tensor<int32_t> ids({1, static_cast<int64_t>(prompt.size())});
  std::copy(prompt.begin(), prompt.end(), ids.data());
  int64_t length = static_cast<int64_t>(prompt.size());
  while (static_cast<int64_t>(out.size()) < o.max_tokens) {
    const Tensor<T> logits = model(ids, &caches).value().contiguous();  // [1, n, V]
    const T* last = logits.data() + (logits.size(1) - 1) * V;
    const int32_t next = sample_token(last, allowed, o.sampling, rng);
    if (next == o.stop_id) break;
    out.push_back(next);
    if (on_token && !on_token(next)) break;
    if (++length > context) break;  // the window is full
    ids = Tensor<int32_t>({1, 1});
    ids.data()[0] = next;
  }
  return out;
}

}  // namespace minimoe
