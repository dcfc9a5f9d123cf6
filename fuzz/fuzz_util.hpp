// What the fuzz targets share: the rule for what counts as a finding, and small valid inputs
// (a text to train a tokenizer on, a vocabulary in GPT-2's formats) for seeds and fixtures.
//
// A minimoe::Error is the library's documented answer to bad input; anything else that leaves
// a call (std::bad_alloc, std::out_of_range, a JSON library exception), a sanitizer report or
// a broken invariant is a finding.
#pragma once

#include <array>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <utility>

#include <nlohmann/json.hpp>

#include <minimoe/error.hpp>
#include <minimoe/text/gpt2_vocab.hpp>

namespace minimoe::fuzz {

// True when fn() returned, false when it refused the input with a minimoe::Error.
template <typename Fn>
bool accepts(Fn&& fn) {
  try {
    fn();
    return true;
  } catch (const Error&) {
    return false;
  }
}

// An invariant the library promises: a violation aborts, which libFuzzer reports.
inline void require(bool ok, const char* what) {
  if (!ok) {
    std::fprintf(stderr, "fuzz: invariant violated: %s\n", what);
    std::abort();
  }
}

inline std::string bytes_of(const uint8_t* data, size_t size) {
  return std::string(reinterpret_cast<const char*>(data), size);
}

// Prose, code, numbers, whitespace runs and non-ASCII text, for training small tokenizers.
inline std::string training_text() {
  std::string text;
  for (int i = 0; i < 8; ++i) {
    text +=
        "Call me Ishmael. Some years ago - never mind how long precisely - having little or no "
        "money in my purse, I thought I would sail about a little and see the watery part of "
        "the world. It's 1851, and the ship's captain doesn't say.\n"
        "int main() {\n    for (int i = 0; i < 42; ++i) x += 3.14 * i;\n    return 0;\n}\n"
        "Caf\xc3\xa9 na\xc3\xafve \xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e   \t\n\n"
        "<|endoftext|>";
  }
  return text;
}

// encoder.json and vocab.bpe of a miniature vocabulary in GPT-2's formats: the 256 bytes in
// GPT-2's order (printable characters first, so ids are not bytes), a few merges, and
// <|endoftext|>.
inline std::pair<std::string, std::string> tiny_gpt2_files() {
  const std::array<char32_t, 256> chars = gpt2_byte_chars();
  const auto spelling = [&](unsigned char b) {
    std::string s;
    append_utf8(chars[b], s);
    return s;
  };
  nlohmann::ordered_json encoder = nlohmann::ordered_json::object();
  for (const bool printable : {true, false}) {
    for (int b = 0; b < 256; ++b) {
      if ((chars[static_cast<size_t>(b)] == static_cast<char32_t>(b)) == printable) {
        const size_t id = encoder.size();
        encoder[spelling(static_cast<unsigned char>(b))] = id;
      }
    }
  }
  const std::string space = spelling(' ');
  const char* const merges[][2] = {{"h", "e"}, {"t", "he"}, {"", "t"}, {"", "the"},
                                   {"i", "n"}, {"", "in"},  {"e", "r"}};
  std::string vocab_bpe = "#version: 0.2\n";
  for (const auto& [left, right] : merges) {
    // An empty left part stands for the space character, Ġ.
    const std::string l = *left ? left : space, r = right;
    vocab_bpe += l + " " + r + "\n";
    if (!encoder.contains(l + r)) encoder[l + r] = encoder.size();
  }
  encoder["<|endoftext|>"] = encoder.size();
  return {encoder.dump(), vocab_bpe};
}

}  // namespace minimoe::fuzz
