// minimoe/text/bpe_train.hpp: learn byte-level BPE merges from text.
//
//   BpeTrainOptions options;
//   options.vocab_size = 4096;                          // 256 bytes + merges + special tokens
//   BpeTokenizer bpe = train_bpe(corpus, options);      // or train_bpe({doc1, doc2}, options)
//
// Each step merges the most frequent adjacent pair of tokens into a new token; ties go to the
// pair with the smaller ids (left, then right), so training is deterministic. Pairs never
// cross pre-token boundaries (pretokenize.hpp), nor special-token strings in the text, which
// only separate the text around them.
//
// The work is done on the distinct pre-tokens, each weighted by how often it occurs, and is
// incremental: a merge recounts only the pre-tokens that contain its pair (an index from pair
// to pre-tokens finds them), and a max-heap with lazy deletion finds the next best pair. Ten
// megabytes of English train to 4096 tokens in seconds (docs/tokenizers.md).
//
// When every pre-token has become a single token before vocab_size is reached, training
// stops early: vocab_size() of the result is then smaller than asked for.
#pragma once

#include <cstdint>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/bpe.hpp"
#include "minimoe/text/pretokenize.hpp"
#include "minimoe/text/special_tokens.hpp"

namespace minimoe {

struct BpeTrainOptions {
  int32_t vocab_size = 4096;                                 // 256 bytes + merges + special tokens
  std::vector<std::string> special_tokens{"<|endoftext|>"};  // ids after the merges
};

namespace detail {

class BpeTrainer {
 public:
  BpeTrainer(const std::vector<std::string_view>& texts, const SpecialTokens& separators) {
    std::unordered_map<std::string, int64_t> counts;
    const auto count_pretokens = [&](std::string_view text) {
      for (size_t begin = 0, end; begin < text.size(); begin = end) {
        end = pretoken_end(text, begin);
        ++counts[std::string(text.substr(begin, end - begin))];
      }
    };
    for (const std::string_view text : texts) {
      separators.split(text, count_pretokens, [](int32_t) {});
    }
    for (const auto& [bytes, count] : counts) {
      if (bytes.size() < 2) continue;  // a single byte has no pair to merge
      Word word{{}, count};
      for (const char c : bytes) word.tokens.push_back(static_cast<unsigned char>(c));
      words_.push_back(std::move(word));
    }
    for (size_t w = 0; w < words_.size(); ++w) {
      const Word& word = words_[w];
      for (size_t i = 0; i + 1 < word.tokens.size(); ++i) {
        const uint64_t pair = token_pair_key(word.tokens[i], word.tokens[i + 1]);
        pair_counts_[pair] += word.count;
        add_to_index(pair, static_cast<int32_t>(w));
      }
    }
    for (const auto& [pair, count] : pair_counts_) heap_.push({count, pair});
    last_visit_.assign(words_.size(), -1);
  }

  // Up to `n` merges, as (left, right) pairs; merge i makes token 256 + i.
  std::vector<std::pair<int32_t, int32_t>> train(int32_t n) {
    std::vector<std::pair<int32_t, int32_t>> merges;
    for (int32_t i = 0; i < n; ++i) {
      const uint64_t pair = pop_best_pair();
      if (pair == kNoPair) break;
      merges.emplace_back(static_cast<int32_t>(pair >> 32),
                          static_cast<int32_t>(pair & 0xFFFFFFFF));
      merge(pair, 256 + i);
    }
    return merges;
  }

 private:
  static constexpr uint64_t kNoPair = ~uint64_t{0};

  struct Word {
    std::vector<int32_t> tokens;
    int64_t count;  // occurrences of this pre-token in the text
  };

  struct Candidate {
    int64_t count;
    uint64_t pair;
    // Priority order of the max-heap: more frequent first, then the smaller ids.
    bool operator<(const Candidate& other) const {
      return count != other.count ? count < other.count : pair > other.pair;
    }
  };

  void add_to_index(uint64_t pair, int32_t word) {
    std::vector<int32_t>& words = index_[pair];
    if (words.empty() || words.back() != word) words.push_back(word);
  }

  // The most frequent pair, or kNoPair. Heap entries whose count is out of date are dropped:
  // every count change pushes a fresh entry.
  uint64_t pop_best_pair() {
    while (!heap_.empty()) {
      const Candidate top = heap_.top();
      heap_.pop();
      const auto it = pair_counts_.find(top.pair);
      if (it != pair_counts_.end() && it->second == top.count) return top.pair;
    }
    return kNoPair;
  }

  // Replaces `pair` by `token` in every word that holds it. Each such word's pairs are
  // uncounted before and counted again after, the differences summed over the words; only
  // the pairs whose count changed get a new heap entry.
  void merge(uint64_t pair, int32_t token) {
    const auto left = static_cast<int32_t>(pair >> 32);
    const auto right = static_cast<int32_t>(pair & 0xFFFFFFFF);
    std::unordered_map<uint64_t, int64_t> delta;
    const auto count_pairs = [&](const Word& word, int64_t sign) {
      for (size_t i = 0; i + 1 < word.tokens.size(); ++i) {
        delta[token_pair_key(word.tokens[i], word.tokens[i + 1])] += sign * word.count;
      }
    };
    const std::vector<int32_t> holders = std::move(index_[pair]);
    index_.erase(pair);
    for (const int32_t w : holders) {
      if (last_visit_[w] == token) continue;  // listed twice
      last_visit_[w] = token;
      Word& word = words_[w];
      count_pairs(word, -1);
      replace_pair(word.tokens, left, right, token);
      count_pairs(word, +1);
      for (size_t i = 0; i + 1 < word.tokens.size(); ++i) {
        if (word.tokens[i] == token || word.tokens[i + 1] == token) {
          add_to_index(token_pair_key(word.tokens[i], word.tokens[i + 1]), w);
        }
      }
    }
    for (const auto& [changed, difference] : delta) {
      if (difference == 0) continue;
      int64_t& count = pair_counts_[changed];
      count += difference;
      if (count > 0) {
        heap_.push({count, changed});
      } else {
        pair_counts_.erase(changed);
      }
    }
  }

  // Non-overlapping occurrences, from left to right, as encoding applies a merge.
  static void replace_pair(std::vector<int32_t>& tokens, int32_t left, int32_t right,
                           int32_t token) {
    size_t out = 0;
    for (size_t i = 0; i < tokens.size(); ++out) {
      if (i + 1 < tokens.size() && tokens[i] == left && tokens[i + 1] == right) {
        tokens[out] = token;
        i += 2;
      } else {
        tokens[out] = tokens[i++];
      }
    }
    tokens.resize(out);
  }

  std::vector<Word> words_;                                   // the distinct pre-tokens
  std::unordered_map<uint64_t, int64_t> pair_counts_;         // pair -> weighted occurrences
  std::unordered_map<uint64_t, std::vector<int32_t>> index_;  // pair -> words that may hold it
  std::priority_queue<Candidate> heap_;
  std::vector<int32_t> last_visit_;  // per word: the last merge that updated it
};

}  // namespace detail

inline BpeTokenizer train_bpe(const std::vector<std::string_view>& texts,
                              const BpeTrainOptions& options = {}) {
  const auto n_special = static_cast<int32_t>(options.special_tokens.size());
  check<ValueError>(options.vocab_size >= 256 + n_special,
                    "train_bpe: vocab_size {} is less than the 256 byte tokens plus {} special "
                    "tokens",
                    options.vocab_size, n_special);
  std::vector<SpecialTokens::Entry> separators;
  for (const std::string& name : options.special_tokens) separators.emplace_back(name, 0);
  detail::BpeTrainer trainer(texts, SpecialTokens(std::move(separators)));
  const auto merges = trainer.train(options.vocab_size - 256 - n_special);
  return BpeTokenizer(BpeVocab::byte_ordered(merges, options.special_tokens));
}

inline BpeTokenizer train_bpe(std::string_view text, const BpeTrainOptions& options = {}) {
  return train_bpe(std::vector<std::string_view>{text}, options);
}

}  // namespace minimoe
