// minimoe/text/byte_tokenizer.hpp: one token per byte, the simplest tokenizer there is.
//
//   ByteTokenizer bytes;                        // ids 0-255 are bytes, 256 is <|endoftext|>
//   std::vector<int32_t> ids = bytes.encode("hé");       // {104, 195, 169}
//   std::string text = bytes.decode(ids);                // "hé"
//   bytes.encode_with_special("a<|endoftext|>");         // {97, 256}
//
// Every byte sequence round-trips (invalid UTF-8 and NUL included), there is nothing to train
// and nothing to load, and the vocabulary is small: a good default for tiny models.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/special_tokens.hpp"

namespace minimoe {

class ByteTokenizer {
 public:
  // The special tokens take the ids 256, 257, ... in order.
  explicit ByteTokenizer(const std::vector<std::string>& special_tokens = {"<|endoftext|>"})
      : specials_(numbered(special_tokens)) {}

  int32_t vocab_size() const { return 256 + static_cast<int32_t>(specials_.entries().size()); }
  const SpecialTokens& special_tokens() const { return specials_; }
  int32_t eot_id() const { return specials_.id("<|endoftext|>"); }

  // Special-token strings in `text` are plain bytes here.
  std::vector<int32_t> encode(std::string_view text) const {
    std::vector<int32_t> ids;
    ids.reserve(text.size());
    append_bytes(text, ids);
    return ids;
  }

  // Like encode(), but a special token's string becomes its id.
  std::vector<int32_t> encode_with_special(std::string_view text) const {
    std::vector<int32_t> ids;
    specials_.split(
        text, [&](std::string_view piece) { append_bytes(piece, ids); },
        [&](int32_t id) { ids.push_back(id); });
    return ids;
  }

  // IndexError for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const {
    std::string text;
    text.reserve(ids.size());
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      check<IndexError>(id >= 0 && id < vocab_size(),
                        "decode: token id {} out of range [0, {}) at position {}", id, vocab_size(),
                        i);
      if (id < 256) {
        text.push_back(static_cast<char>(id));
      } else {
        text += specials_.entries()[static_cast<size_t>(id - 256)].first;
      }
    }
    return text;
  }

 private:
  static SpecialTokens numbered(const std::vector<std::string>& names) {
    std::vector<SpecialTokens::Entry> entries;
    for (const std::string& name : names) {
      entries.emplace_back(name, 256 + static_cast<int32_t>(entries.size()));
    }
    return SpecialTokens(std::move(entries));
  }

  static void append_bytes(std::string_view text, std::vector<int32_t>& ids) {
    for (const char c : text) ids.push_back(static_cast<unsigned char>(c));
  }

  SpecialTokens specials_;
};

}  // namespace minimoe
