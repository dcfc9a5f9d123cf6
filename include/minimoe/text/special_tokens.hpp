// minimoe/text/special_tokens.hpp: control tokens such as <|endoftext|>, which have ids of their
// own after the ordinary vocabulary and are never produced by encoding ordinary text.
//
//   SpecialTokens specials({{"<|endoftext|>", 256}});
//   specials.id("<|endoftext|>");                          // 256
//   specials.split("a<|endoftext|>b",
//                  [&](std::string_view text) { ... },     // "a", then "b"
//                  [&](int32_t id) { ... });               // 256, in between
//
// Tokenizers encode text as plain text by default, so that a document that happens to
// contain the string "<|endoftext|>" cannot forge a document boundary; split() is for the
// text where the caller wants the special strings recognised (prompts, hand-built samples).
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/utf8.hpp"

namespace minimoe {

class SpecialTokens {
 public:
  using Entry = std::pair<std::string, int32_t>;  // name, id

  SpecialTokens() = default;
  // Names must be non-empty, valid UTF-8 and distinct; ValueError otherwise.
  explicit SpecialTokens(std::vector<Entry> entries) : entries_(std::move(entries)) {
    for (size_t i = 0; i < entries_.size(); ++i) {
      const std::string& name = entries_[i].first;
      check<ValueError>(!name.empty(), "special token {} is empty", i);
      check<ValueError>(is_valid_utf8(name), "special token {} is not valid UTF-8", i);
      for (size_t j = 0; j < i; ++j) {
        check<ValueError>(entries_[j].first != name, "special token '{}' appears twice", name);
      }
    }
  }

  const std::vector<Entry>& entries() const { return entries_; }

  // The id of the special token `name`; ValueError when there is none.
  int32_t id(std::string_view name) const {
    for (const Entry& e : entries_) {
      if (e.first == name) return e.second;
    }
    throw ValueError(fmt::format("no special token '{}'", name));
  }

  // Calls on_text(piece) for each stretch of ordinary text and on_special(id) for each special
  // token, in order. Where two names match at the same place, the longer wins.
  template <typename OnText, typename OnSpecial>
  void split(std::string_view text, OnText&& on_text, OnSpecial&& on_special) const {
    constexpr size_t none = std::string_view::npos;
    // Where each name occurs next. A name is searched again only once the text has been
    // consumed past its last match, so the split is one pass over the text per name.
    std::vector<size_t> next(entries_.size());
    for (size_t i = 0; i < entries_.size(); ++i) next[i] = text.find(entries_[i].first);
    size_t pos = 0;
    while (true) {
      size_t best = entries_.size();
      for (size_t i = 0; i < entries_.size(); ++i) {
        if (next[i] != none && next[i] < pos) next[i] = text.find(entries_[i].first, pos);
        if (next[i] == none) continue;
        if (best == entries_.size() || next[i] < next[best] ||
            (next[i] == next[best] && entries_[i].first.size() > entries_[best].first.size())) {
          best = i;
        }
      }
      if (best == entries_.size()) break;
      if (next[best] > pos) on_text(text.substr(pos, next[best] - pos));
      on_special(entries_[best].second);
      pos = next[best] + entries_[best].first.size();
    }
    if (pos < text.size()) on_text(text.substr(pos));
  }

 private:
  std::vector<Entry> entries_;
};

}  // namespace minimoe
