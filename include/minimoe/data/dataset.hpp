// minimoe/data/dataset.hpp: batches of next-token windows drawn from a weighted mix of domains.
//
// A domain is one token file (a story, speeches, code...) with a sampling weight. Each file is
// split once, deterministically: its last `val_fraction` of tokens is the validation split,
// everything before is the train split, so no train window ever sees a validation token. A
// tail split is the simplest split with that property; the price is that validation measures
// the end of each text (the last chapters, the latest speeches), not a sample of all of it.
//
//   Dataset data({{"story", "data/story.tokens", 2.0}, {"code", "data/code.tokens", 1.0}});
//   Rng rng(seed);
//   Batch b = data.sample_batch(Split::Train, /*batch=*/8, /*context=*/64, rng);
//   model.loss(b.ids, b.targets);                      // both [8, 64]
//   data.for_each_eval_batch(0, 8, 64, [&](const Batch& v) { ... });   // story's validation
//
// Each row of a training batch draws its domain with probability weight / sum of weights,
// then a window start uniformly among those whose context + 1 tokens fit in that domain's
// split; targets are the ids shifted by one token. The Dataset itself never changes after
// construction, so the whole state needed to resume training is the caller's Rng: save
// rng.snapshot() in the checkpoint and restore() it, and the batches continue as if training
// had never stopped. Sampling is const, so threads may sample concurrently with their own Rngs.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "minimoe/data/token_file.hpp"
#include "minimoe/error.hpp"
#include "minimoe/tensor/random.hpp"
#include "minimoe/tensor/tensor.hpp"

namespace minimoe {

enum class Split { Train, Validation };

// The share of every domain that training holds out for validation, unless told otherwise.
inline constexpr double kDefaultValFraction = 0.1;

// How many of a domain's n tokens its validation split takes: the last ones.
inline int64_t validation_split_tokens(int64_t n, double val_fraction) {
  return std::llround(static_cast<double>(n) * val_fraction);
}

inline const char* split_name(Split split) {
  return split == Split::Train ? "train" : "validation";
}

// One source of text: a name for reports, its token file, a relative sampling weight.
struct Domain {
  std::string name;
  std::string path;
  double weight = 1.0;
};

// B = rows, T = context.
struct Batch {
  Tensor<int32_t> ids;          // [B, T]
  Tensor<int32_t> targets;      // [B, T]: targets[b, t] = the token after ids[b, t]
  std::vector<int64_t> domain;  // [B]: the index of each row's domain, for per-domain losses
};

class Dataset {
 public:
  // Opens every domain's token file. ValueError for no domains, a repeated name, a weight
  // that is not positive and finite, files with different vocab sizes, an empty file or a
  // split with fewer than 2 tokens (one input and its target); val_fraction in (0, 1).
  explicit Dataset(const std::vector<Domain>& domains, double val_fraction = kDefaultValFraction) {
    check<ValueError>(!domains.empty(), "Dataset: no domains");
    check<ValueError>(val_fraction > 0 && val_fraction < 1,
                      "Dataset: val_fraction {} outside (0, 1)", val_fraction);
    double total_weight = 0;
    for (const Domain& d : domains) {
      check<ValueError>(std::isfinite(d.weight) && d.weight > 0,
                        "Dataset: domain '{}' has weight {}; weights must be positive and finite",
                        d.name, d.weight);
      for (const Source& other : sources_)
        check<ValueError>(other.domain.name != d.name, "Dataset: domain name '{}' appears twice",
                          d.name);
      Source source{d, TokenFile::open(d.path), 0, 0, 0};
      const int64_t n = source.tokens.size();
      check<ValueError>(n > 0, "Dataset: domain '{}' is empty ('{}' holds no tokens)", d.name,
                        d.path);
      if (!sources_.empty())
        check<ValueError>(source.tokens.vocab_size() == vocab_size(),
                          "Dataset: domain '{}' has vocab size {}, domain '{}' has {}; domains "
                          "must share one tokenizer",
                          d.name, source.tokens.vocab_size(), sources_[0].domain.name,
                          vocab_size());
      source.validation_tokens = validation_split_tokens(n, val_fraction);
      source.train_tokens = n - source.validation_tokens;
      check<ValueError>(source.train_tokens >= 2 && source.validation_tokens >= 2,
                        "Dataset: domain '{}' has {} tokens, split into {} train and {} "
                        "validation; each split needs at least 2",
                        d.name, n, source.train_tokens, source.validation_tokens);
      total_weight += d.weight;
      sources_.push_back(std::move(source));
    }
    for (Source& s : sources_) s.probability = s.domain.weight / total_weight;
  }

  int64_t num_domains() const { return static_cast<int64_t>(sources_.size()); }
  const Domain& domain(int64_t d) const { return source(d).domain; }
  int64_t vocab_size() const { return sources_[0].tokens.vocab_size(); }

  // The probability that a training row comes from domain d: its weight over the sum.
  double probability(int64_t d) const { return source(d).probability; }

  int64_t tokens(int64_t d, Split split) const {
    const Source& s = source(d);
    return split == Split::Train ? s.train_tokens : s.validation_tokens;
  }

  // A table of the domains, their sampling probabilities and split sizes, for logs.
  std::string summary() const {
    std::string table = fmt::format("{:<12} {:>11} {:>12} {:>12}\n", "domain", "probability",
                                    "train", "validation");
    for (int64_t d = 0; d < num_domains(); ++d)
      table += fmt::format("{:<12} {:>11.3f} {:>12} {:>12}\n", domain(d).name, probability(d),
                           tokens(d, Split::Train), tokens(d, Split::Validation));
    return table;
  }

  // `batch` rows of `context` tokens, each from a domain drawn by weight and a uniformly
  // random window of its split. Per row, rng draws the domain, then the window start.
  Batch sample_batch(Split split, int64_t batch, int64_t context, Rng& rng) const {
    check<ValueError>(batch > 0, "sample_batch: batch {} is not positive", batch);
    for (int64_t d = 0; d < num_domains(); ++d) check_fits("sample_batch", d, split, context);
    Batch out = empty_batch(batch, context);
    for (int64_t b = 0; b < batch; ++b) {
      const int64_t d = draw_domain(rng);
      // Starts in [0, n - context - 1] leave room for context ids and the last target.
      const int64_t start =
          static_cast<int64_t>(rng.below(static_cast<uint64_t>(tokens(d, split) - context)));
      fill_row(out, b, d, split_begin(d, split) + start, context);
    }
    return out;
  }

  // Calls fn(batch) on consecutive windows of domain d's validation split, in order: window k
  // holds ids [k * context, (k + 1) * context) and the targets one token later, so every token
  // after the first is predicted exactly once, up to a tail shorter than a window, which is
  // skipped. Windows are grouped `batch` at a time (the last batch may have fewer rows), at
  // most `max_batches` batches. Returns the number of batches.
  template <typename Fn>
  int64_t for_each_eval_batch(int64_t d, int64_t batch, int64_t context, Fn&& fn,
                              int64_t max_batches = std::numeric_limits<int64_t>::max()) const {
    check<ValueError>(batch > 0, "for_each_eval_batch: batch {} is not positive", batch);
    check<ValueError>(max_batches > 0, "for_each_eval_batch: max_batches {} is not positive",
                      max_batches);
    check_fits("for_each_eval_batch", d, Split::Validation, context);
    const int64_t windows = (tokens(d, Split::Validation) - 1) / context;
    const int64_t begin = split_begin(d, Split::Validation);
    int64_t batches = 0;
    for (int64_t first = 0; first < windows && batches < max_batches; first += batch) {
      const int64_t rows = std::min(batch, windows - first);
      Batch out = empty_batch(rows, context);
      for (int64_t b = 0; b < rows; ++b)
        fill_row(out, b, d, begin + (first + b) * context, context);
      fn(out);
      ++batches;
    }
    return batches;
  }

 private:
  struct Source {
    Domain domain;
    TokenFile tokens;
    int64_t train_tokens;
    int64_t validation_tokens;
    double probability;
  };

  const Source& source(int64_t d) const {
    check<IndexError>(d >= 0 && d < num_domains(), "Dataset: domain {} out of range [0, {})", d,
                      num_domains());
    return sources_[d];
  }

  int64_t split_begin(int64_t d, Split split) const {
    return split == Split::Train ? 0 : source(d).train_tokens;
  }

  void check_fits(const char* op, int64_t d, Split split, int64_t context) const {
    check<ValueError>(context > 0, "{}: context {} is not positive", op, context);
    check<ValueError>(context < tokens(d, split),
                      "{}: context {} needs {} tokens, but the {} split of domain '{}' has {}", op,
                      context, context + 1, split_name(split), domain(d).name, tokens(d, split));
  }

  int64_t draw_domain(Rng& rng) const {
    double u = rng.uniform();
    for (int64_t d = 0; d + 1 < num_domains(); ++d) {
      u -= sources_[d].probability;
      if (u < 0) return d;
    }
    return num_domains() - 1;  // also takes what rounding leaves of u
  }

  static Batch empty_batch(int64_t rows, int64_t context) {
    return {Tensor<int32_t>({rows, context}), Tensor<int32_t>({rows, context}),
            std::vector<int64_t>(static_cast<size_t>(rows))};
  }

  // Row b of out: ids from tokens [start, start + context) of domain d, targets one later.
  void fill_row(Batch& out, int64_t b, int64_t d, int64_t start, int64_t context) const {
    const TokenFile& tokens = sources_[d].tokens;
    tokens.copy(start, context, out.ids.data() + b * context);
    tokens.copy(start + 1, context, out.targets.data() + b * context);
    out.domain[b] = d;
  }

  std::vector<Source> sources_;
};

}  // namespace minimoe
