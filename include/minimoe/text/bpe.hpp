// minimoe/text/bpe.hpp: byte-level BPE, the tokenizer of GPT-2: the text is cut into
// pre-tokens (pretokenize.hpp), each pre-token's bytes become byte tokens, and ranked merges
// join adjacent tokens into longer ones.
//
//   BpeTrainOptions options;
//   options.vocab_size = 4096;
//   BpeTokenizer bpe = train_bpe(text, options);              // bpe_train.hpp
//   std::vector<int32_t> ids = bpe.encode("Hello world");      // any bytes round-trip
//   std::string back = bpe.decode(ids);
//   save_bpe(bpe, "tokenizer.json");                           // bpe_file.hpp
//   BpeTokenizer gpt2 = load_gpt2_tokenizer("data/gpt2");      // gpt2_vocab.hpp
//
// A BpeTokenizer is built from a BpeVocab, plain data that the trainer and the loaders fill
// in; the constructor checks that the data is consistent. Encoding a pre-token applies the
// lowest-ranked merge present, at each of its places from left to right, then the next
// lowest, until none applies: GPT-2's algorithm, so its vocabulary gives its ids exactly.
// Encodings of pre-tokens are cached, since a corpus repeats the same words endlessly.
#pragma once

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <mutex>
#include <queue>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/pretokenize.hpp"
#include "minimoe/text/special_tokens.hpp"

namespace minimoe {

struct BpeMerge {
  int32_t left, right;  // adjacent tokens...
  int32_t result;       // ...that this token replaces
};

// A vocabulary as data. Ids may come in any order (GPT-2's bytes are not ids 0-255), but the
// bytes, the merge results and the special tokens must cover [0, vocab size) with no gap.
struct BpeVocab {
  std::array<int32_t, 256> byte_ids{};  // the token of each byte value
  std::vector<BpeMerge> merges;         // by rank: merges[0] is applied first
  std::vector<SpecialTokens::Entry> special_tokens;

  // minimoe's own layout: byte b is token b, merge i makes token 256 + i, and the special
  // tokens follow the merges.
  static BpeVocab byte_ordered(const std::vector<std::pair<int32_t, int32_t>>& merges,
                               const std::vector<std::string>& special_tokens) {
    BpeVocab vocab;
    for (int32_t b = 0; b < 256; ++b) vocab.byte_ids[static_cast<size_t>(b)] = b;
    for (const auto& [left, right] : merges) {
      vocab.merges.push_back({left, right, 256 + static_cast<int32_t>(vocab.merges.size())});
    }
    int32_t id = 256 + static_cast<int32_t>(merges.size());
    for (const std::string& name : special_tokens) vocab.special_tokens.emplace_back(name, id++);
    return vocab;
  }

  bool is_byte_ordered() const {
    for (int32_t b = 0; b < 256; ++b) {
      if (byte_ids[static_cast<size_t>(b)] != b) return false;
    }
    int32_t id = 256;
    for (const BpeMerge& m : merges) {
      if (m.result != id++) return false;
    }
    for (const auto& entry : special_tokens) {
      if (entry.second != id++) return false;
    }
    return true;
  }
};

namespace detail {

inline uint64_t token_pair_key(int32_t left, int32_t right) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(left)) << 32) | static_cast<uint32_t>(right);
}

// Pre-token -> token ids, filled by encode() through a const tokenizer, hence the mutex: a
// tokenizer may be shared by threads. A copy starts empty (the cache is not state), and the
// cache is emptied when full so that text with endless distinct pre-tokens stays bounded.
class PretokenCache {
 public:
  static constexpr size_t kMaxEntries = 100000;

  PretokenCache() = default;
  PretokenCache(const PretokenCache&) {}
  PretokenCache& operator=(const PretokenCache&) {
    std::lock_guard<std::mutex> lock(mutex_);
    entries_.clear();
    return *this;
  }

  // Appends the ids of `piece` to `out`, computing them with encode(piece) on a miss.
  void append(std::string_view piece, std::vector<int32_t>& out,
              const std::function<std::vector<int32_t>(std::string_view)>& encode) {
    std::string key(piece);
    {
      std::lock_guard<std::mutex> lock(mutex_);
      const auto it = entries_.find(key);
      if (it != entries_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> ids = encode(piece);
    out.insert(out.end(), ids.begin(), ids.end());
    std::lock_guard<std::mutex> lock(mutex_);
    if (entries_.size() >= kMaxEntries) entries_.clear();
    entries_.emplace(std::move(key), std::move(ids));
  }

 private:
  std::mutex mutex_;
  std::unordered_map<std::string, std::vector<int32_t>> entries_;
};

}  // namespace detail

class BpeTokenizer {
 public:
  // ValueError when the vocabulary is inconsistent (see check_vocab).
  explicit BpeTokenizer(BpeVocab vocab)
      : vocab_(std::move(vocab)), specials_(vocab_.special_tokens) {
    check_vocab();
  }

  // The merged tokens' bytes together, at most. Each merge can double a token's length, so a
  // file of a few dozen merges could otherwise ask for terabytes; real vocabularies are far
  // below (GPT-2's 50000 merges make 321 KB).
  static constexpr size_t kMaxMergedBytes = size_t{1} << 26;

  int32_t vocab_size() const { return static_cast<int32_t>(token_bytes_.size()); }
  const BpeVocab& vocab() const { return vocab_; }
  const SpecialTokens& special_tokens() const { return specials_; }
  int32_t eot_id() const { return specials_.id("<|endoftext|>"); }

  // The bytes token `id` stands for; IndexError outside [0, vocab_size()).
  const std::string& token_bytes(int32_t id) const {
    check<IndexError>(id >= 0 && id < vocab_size(), "bpe: token id {} out of range [0, {})", id,
                      vocab_size());
    return token_bytes_[static_cast<size_t>(id)];
  }

  // Special-token strings in `text` are ordinary text here.
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    append_ordinary(text, ids);
    return ids;
  }

  // Like encode(), but a special token's string becomes its id.
  std::vector<int32_t> encode_with_special(std::string_view text) const {
    std::vector<int32_t> ids;
    specials_.split(
        text, [&](std::string_view piece) { append_ordinary(piece, ids); },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  // IndexError for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string text;
    for (size_t i = 0; i < ids.size(); ++i) {
      check<IndexError>(ids[i] >= 0 && ids[i] < vocab_size(),
                        "decode: token id {} out of range [0, {}) at position {}", ids[i],
                        vocab_size(), i);
      text += token_bytes_[static_cast<size_t>(ids[i])];
    }
    return text;
  }

 private:
  void append_ordinary(std::string_view text, std::vector<int32_t>& ids) const {
    for (size_t begin = 0, end; begin < text.size(); begin = end) {
      end = pretoken_end(text, begin);
      const std::string_view piece = text.substr(begin, end - begin);
      if (piece.size() == 1) {
        ids.push_back(vocab_.byte_ids[static_cast<unsigned char>(piece[0])]);
      } else {
        cache_.append(piece, ids, [this](std::string_view p) { return encode_pretoken(p); });
      }
    }
  }

  std::vector<int32_t> encode_pretoken(std::string_view piece) const {
    std::vector<int32_t> ids;
    for (const char c : piece) ids.push_back(vocab_.byte_ids[static_cast<unsigned char>(c)]);
    apply_merges(ids);
    return ids;
  }

  // GPT-2 rescans the whole pre-token for its lowest-ranked pair after every merge, which is
  // quadratic in its length (a long run of spaces or dashes). Here the tokens form a linked
  // list over their first positions and a heap holds (rank, position) of the pairs: popping
  // every entry of the lowest rank gives that merge's places from left to right, stale
  // entries are recognised by the tokens no longer matching, and merging only creates pairs
  // with the new token, whose ranks differ from the merge's own. Same result, O(n log n).
  void apply_merges(std::vector<int32_t>& ids) const {
    const auto n = static_cast<int32_t>(ids.size());
    constexpr int32_t kRemoved = -1;
    std::vector<int32_t> next(ids.size()), prev(ids.size());
    for (int32_t i = 0; i < n; ++i) {
      next[i] = i + 1;
      prev[i] = i - 1;
    }
    using Candidate = std::pair<int32_t, int32_t>;  // rank, position of the pair's left token
    std::priority_queue<Candidate, std::vector<Candidate>, std::greater<>> heap;
    const auto push = [&](int32_t pos) {
      if (pos < 0 || next[pos] >= n) return;
      const auto it = ranks_.find(detail::token_pair_key(ids[pos], ids[next[pos]]));
      if (it != ranks_.end()) heap.emplace(it->second, pos);
    };
    for (int32_t i = 0; i + 1 < n; ++i) push(i);
    std::vector<int32_t> places;
    while (!heap.empty()) {
      const int32_t rank = heap.top().first;
      places.clear();
      for (; !heap.empty() && heap.top().first == rank; heap.pop()) {
        places.push_back(heap.top().second);
      }
      const BpeMerge& merge = vocab_.merges[static_cast<size_t>(rank)];
      for (const int32_t left : places) {
        const int32_t right = next[left];
        if (ids[left] != merge.left || right >= n || ids[right] != merge.right) continue;
        ids[left] = merge.result;
        ids[right] = kRemoved;
        next[left] = next[right];
        if (next[right] < n) prev[next[right]] = left;
        push(prev[left]);
        push(left);
      }
    }
    ids.erase(std::remove(ids.begin(), ids.end(), kRemoved), ids.end());
  }

  // Every byte has its own token; a merge joins tokens that a byte or an earlier merge made,
  // is the only merge of its pair, and makes a token that is new or has the same bytes (GPT-2
  // reaches some tokens by two merges); special tokens take unused ids; and the ids cover
  // [0, vocab size) with no gap. Fills token_bytes_ and ranks_.
  void check_vocab() {
    const size_t upper = 256 + vocab_.merges.size() + vocab_.special_tokens.size();
    std::vector<bool> defined(upper);
    token_bytes_.assign(upper, "");
    const auto in_range = [&](int32_t id) { return id >= 0 && static_cast<size_t>(id) < upper; };
    for (int32_t b = 0; b < 256; ++b) {
      const int32_t id = vocab_.byte_ids[static_cast<size_t>(b)];
      check<ValueError>(in_range(id), "bpe: byte {} has token id {}, outside [0, {})", b, id,
                        upper);
      check<ValueError>(!defined[id], "bpe: byte {} has token id {}, which another byte has", b,
                        id);
      defined[id] = true;
      token_bytes_[id] = std::string(1, static_cast<char>(b));
    }
    size_t merged_bytes = 0;
    for (size_t i = 0; i < vocab_.merges.size(); ++i) {
      const BpeMerge& m = vocab_.merges[i];
      for (const int32_t part : {m.left, m.right}) {
        check<ValueError>(in_range(part) && defined[part],
                          "bpe: merge {} uses token {}, which no byte or earlier merge makes", i,
                          part);
      }
      check<ValueError>(in_range(m.result), "bpe: merge {} makes token id {}, outside [0, {})", i,
                        m.result, upper);
      merged_bytes += token_bytes_[m.left].size() + token_bytes_[m.right].size();
      check<ValueError>(merged_bytes <= kMaxMergedBytes,
                        "bpe: merge {} makes the merged tokens longer than {} bytes in total", i,
                        kMaxMergedBytes);
      std::string bytes = token_bytes_[m.left] + token_bytes_[m.right];
      check<ValueError>(!defined[m.result] || token_bytes_[m.result] == bytes,
                        "bpe: merge {} makes token {}, which already stands for other bytes", i,
                        m.result);
      const auto [it, inserted] =
          ranks_.emplace(detail::token_pair_key(m.left, m.right), static_cast<int32_t>(i));
      check<ValueError>(inserted, "bpe: merge {} repeats the pair of merge {}", i, it->second);
      defined[m.result] = true;
      token_bytes_[m.result] = std::move(bytes);
    }
    for (const auto& [name, id] : vocab_.special_tokens) {
      check<ValueError>(
          in_range(id) && !defined[id],
          "bpe: special token '{}' has token id {}, which is taken or outside [0, {})", name, id,
          upper);
      defined[id] = true;
      token_bytes_[id] = name;
    }
    // The vocabulary ends at the last id in use and has no gap before it.
    size_t size = upper;
    while (size > 0 && !defined[size - 1]) --size;
    const size_t gap = static_cast<size_t>(
        std::find(defined.begin(), defined.begin() + static_cast<ptrdiff_t>(size), false) -
        defined.begin());
    check<ValueError>(gap == size, "bpe: token id {} is missing: ids must cover [0, {})", gap,
                      size);
    token_bytes_.resize(size);
  }

  BpeVocab vocab_;
  SpecialTokens specials_;
  std::vector<std::string> token_bytes_;         // id -> the bytes it stands for
  std::unordered_map<uint64_t, int32_t> ranks_;  // token_pair_key(left, right) -> merge rank
  mutable detail::PretokenCache cache_;
};

}  // namespace minimoe
