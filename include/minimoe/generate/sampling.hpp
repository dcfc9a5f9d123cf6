// minimoe/generate/sampling.hpp: picking the next token from a row of logits.
//
//   SamplingOptions o;  o.temperature = 0.8;  o.top_k = 40;  o.top_p = 0.95;
//   Rng rng(seed);
//   int32_t next = sample_token(logits, vocab, o, rng);
//
// The order is the usual one (Hugging Face's, nanoGPT's): scale by 1 / temperature, keep the
// top_k largest logits, then the smallest set of those whose probabilities sum to top_p, and
// draw from the renormalised rest. temperature 0 means greedy (the argmax; ties to the lower
// id). Ids at or past `allowed` (padding of the vocabulary beyond the tokenizer) are never
// drawn.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <numeric>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/tensor/random.hpp"

namespace minimoe {

struct SamplingOptions {
  double temperature = 0.8;  // 0 = greedy
  int64_t top_k = 0;         // 0 = all
  double top_p = 1.0;        // 1 = all

  void validate() const {
    check<ValueError>(temperature >= 0 && std::isfinite(temperature),
                      "sampling: temperature must be >= 0, got {}", temperature);
    check<ValueError>(top_k >= 0, "sampling: top_k must be >= 0, got {}", top_k);
    check<ValueError>(top_p > 0 && top_p <= 1, "sampling: top_p must be in (0, 1], got {}", top_p);
  }
};

template <typename T>
int32_t sample_token(const T* logits, int64_t allowed, const SamplingOptions& o, Rng& rng) {
  check<ValueError>(allowed > 0, "sampling: no token to choose from");
  if (o.temperature == 0) {
    int64_t best = 0;
    for (int64_t i = 1; i < allowed; ++i)
      if (logits[i] > logits[best]) best = i;
    return static_cast<int32_t>(best);
  }
  std::vector<int32_t> order(static_cast<size_t>(allowed));
  std::iota(order.begin(), order.end(), 0);
  auto larger = [&](int32_t a, int32_t b) {
    return logits[a] > logits[b] || (logits[a] == logits[b] && a < b);
  };
  size_t keep = order.size();
  if (o.top_k > 0 && static_cast<size_t>(o.top_k) < keep) {
    keep = static_cast<size_t>(o.top_k);
    std::partial_sort(order.begin(), order.begin() + keep, order.end(), larger);
  } else {
    std::sort(order.begin(), order.end(), larger);
  }
  const double max_logit = double(logits[order[0]]);
  std::vector<double> p(keep);
  double sum = 0;
  for (size_t i = 0; i < keep; ++i) {
    p[i] = std::exp((double(logits[order[i]]) - max_logit) / o.temperature);
    sum += p[i];
  }
  if (o.top_p < 1) {  // the nucleus: the fewest top tokens holding top_p of the mass
    double mass = 0;
    size_t nucleus = 0;
    while (nucleus < keep && mass < o.top_p * sum) mass += p[nucleus++];
    keep = std::max<size_t>(nucleus, 1);
    sum = mass > 0 ? mass : p[0];
  }
  double u = rng.uniform() * sum;
  for (size_t i = 0; i < keep; ++i) {
    u -= p[i];
    if (u < 0) return order[i];
  }
  return order[keep - 1];
}

}  // namespace minimoe
