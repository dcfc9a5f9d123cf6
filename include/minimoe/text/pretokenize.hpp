// minimoe/text/pretokenize.hpp: GPT-2's pre-tokeniser, which cuts text into the pieces that
// byte-level BPE then encodes one at a time (no merge ever crosses a piece boundary).
//
//   pretokenize("Hi  there, it's 42!\n")
//     // {"Hi", " ", " there", ",", " it", "'s", " 42", "!", "\n"}
//
//   for (size_t begin = 0, end; begin < text.size(); begin = end) {
//     end = pretoken_end(text, begin);   // text.substr(begin, end - begin) is one piece
//   }
//
// GPT-2 splits with the regular expression
//   's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
// and pretoken_end() is that expression written out as code, without a regex engine: at
// each position the alternatives are tried in order, the first that matches wins. In words:
// an English contraction suffix; else a run of letters, of digits, or of other symbols, each
// with at most one leading space (U+0020 only); else a run of whitespace, which leaves its
// last character to the next piece when a non-space follows, so that " world" keeps its space.
// The character classes are those of char_class.hpp (exact for ASCII, approximate beyond).
// A byte that is not valid UTF-8 is one character of class Other, so any bytes split.
#pragma once

#include <cstddef>
#include <string_view>
#include <vector>

#include "minimoe/text/char_class.hpp"
#include "minimoe/text/utf8.hpp"

namespace minimoe {

namespace detail {

struct ClassifiedChar {
  CharClass cls;
  size_t length;  // in bytes
};

inline ClassifiedChar classify_at(std::string_view text, size_t pos) {
  const auto byte = static_cast<unsigned char>(text[pos]);
  if (byte < 0x80) return {char_class(byte), 1};  // the common case, without decoding
  const CodePoint c = decode_utf8(text, pos);
  return {c.value == kInvalidCodePoint ? CharClass::Other : char_class(c.value), c.length};
}

// The end of the run of characters of class `cls` that starts at `pos`.
inline size_t class_run_end(std::string_view text, size_t pos, CharClass cls) {
  while (pos < text.size()) {
    const ClassifiedChar c = classify_at(text, pos);
    if (c.cls != cls) break;
    pos += c.length;
  }
  return pos;
}

// Bytes of the contraction suffix ('s 't 're 've 'm 'll 'd, case-sensitive) that text starts
// with, or 0.
inline size_t contraction_length(std::string_view text) {
  for (std::string_view suffix : {"'s", "'t", "'re", "'ve", "'m", "'ll", "'d"}) {
    if (text.substr(0, suffix.size()) == suffix) return suffix.size();
  }
  return 0;
}

}  // namespace detail

// The end of the pre-token that starts at text[begin]; begin < text.size().
inline size_t pretoken_end(std::string_view text, size_t begin) {
  if (text[begin] == '\'') {
    if (const size_t length = detail::contraction_length(text.substr(begin))) {
      return begin + length;
    }
  }
  const detail::ClassifiedChar first = detail::classify_at(text, begin);
  if (first.cls != CharClass::Space) return detail::class_run_end(text, begin, first.cls);
  // A space may lead a run of letters, digits or other symbols.
  if (text[begin] == ' ' && begin + 1 < text.size()) {
    const CharClass next = detail::classify_at(text, begin + 1).cls;
    if (next != CharClass::Space) return detail::class_run_end(text, begin + 1, next);
  }
  // A run of whitespace. \s+(?!\S) leaves the last character to the next piece when a
  // non-space follows; a single whitespace character before a non-space is matched by \s+.
  size_t last = begin;  // start of the run's last character
  size_t end = begin + first.length;
  while (end < text.size()) {
    const detail::ClassifiedChar c = detail::classify_at(text, end);
    if (c.cls != CharClass::Space) break;
    last = end;
    end += c.length;
  }
  return end == text.size() || last == begin ? end : last;
}

inline std::vector<std::string_view> pretokenize(std::string_view text) {
  std::vector<std::string_view> pieces;
  for (size_t begin = 0, end; begin < text.size(); begin = end) {
    end = pretoken_end(text, begin);
    pieces.push_back(text.substr(begin, end - begin));
  }
  return pieces;
}

}  // namespace minimoe
