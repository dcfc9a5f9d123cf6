// minimoe/generate/logits_processors.hpp: rewriting the next-token logits before sampling.
//
//   GenerateOptions o;
//   o.processors.push_back(repetition_penalty(1.3));
//   o.processors.push_back(presence_frequency_penalty(0.5, 0.2));
//   o.processors.push_back(logit_bias({{eot, -100.0}}));   // never end the text
//
// A processor sees the logits of the next token and every token so far; generate() applies the
// processors in order, then temperature, top-k and top-p (sampling.hpp). Penalties follow
// their usual definitions so that settings carry over from other tools: the repetition penalty
// is CTRL's (Keskar et al. 2019; what Hugging Face's `repetition_penalty` does), over the
// prompt and the output; presence and frequency penalties are OpenAI's, over the output only.
#pragma once

#include <cmath>
#include <cstdint>
#include <functional>
#include <map>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include "minimoe/error.hpp"

namespace minimoe {

// The tokens so far: the prompt, then what was generated from output_begin on.
struct TokenHistory {
  const std::vector<int32_t>& tokens;
  size_t output_begin;
};

// logits has one entry per id the sampler may draw.
using LogitsProcessor = std::function<void(std::vector<float>& logits, const TokenHistory&)>;

// penalty > 1 makes every token already seen less likely: positive logits are divided by it,
// negative ones multiplied, so the order among unseen tokens is untouched.
inline LogitsProcessor repetition_penalty(double penalty) {
  check<ValueError>(penalty > 0 && std::isfinite(penalty),
                    "repetition penalty must be a positive number, got {}", penalty);
  return [penalty](std::vector<float>& logits, const TokenHistory& history) {
    std::unordered_set<int32_t> seen(history.tokens.begin(), history.tokens.end());
    for (int32_t id : seen) {
      if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
      float& l = logits[static_cast<size_t>(id)];
      l = l > 0 ? static_cast<float>(l / penalty) : static_cast<float>(l * penalty);
    }
  };
}

// logit -= presence * [count > 0] + frequency * count, counting the generated tokens.
inline LogitsProcessor presence_frequency_penalty(double presence, double frequency) {
  check<ValueError>(std::abs(presence) <= 2 && std::abs(frequency) <= 2,
                    "presence and frequency penalties must be in [-2, 2], got {} and {}", presence,
                    frequency);
  return [presence, frequency](std::vector<float>& logits, const TokenHistory& history) {
    std::unordered_map<int32_t, int64_t> counts;
    for (size_t i = history.output_begin; i < history.tokens.size(); ++i)
      ++counts[history.tokens[i]];
    for (const auto& [id, count] : counts) {
      if (id < 0 || static_cast<size_t>(id) >= logits.size()) continue;
      logits[static_cast<size_t>(id)] -=
          static_cast<float>(presence + frequency * static_cast<double>(count));
    }
  };
}

// Adds a fixed bias to some ids; -100 in practice bans a token, +100 forces it.
inline LogitsProcessor logit_bias(std::map<int32_t, double> bias) {
  for (const auto& [id, b] : bias) {
    check<ValueError>(id >= 0, "logit bias: token id {} is negative", id);
    check<ValueError>(std::abs(b) <= 100, "logit bias for token {} must be in [-100, 100], got {}",
                      id, b);
  }
  return [bias = std::move(bias)](std::vector<float>& logits, const TokenHistory&) {
    for (const auto& [id, b] : bias)
      if (static_cast<size_t>(id) < logits.size())
        logits[static_cast<size_t>(id)] += static_cast<float>(b);
  };
}

}  // namespace minimoe
