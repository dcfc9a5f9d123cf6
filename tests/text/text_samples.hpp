// Text for the tokenizer tests: sample English-like prose, and random bytes.
#pragma once

#include <cstdint>
#include <random>
#include <string>

namespace minimoe::test {

// `words` words: common ones drawn with a skewed frequency as in real text, rarer ones made
// of syllables; with punctuation, numbers, contractions, accented letters, CJK and newlines.
inline std::string sample_text(int words, uint32_t seed) {
  static const char* const vocabulary[] = {
      "the",  "of",    "and",   "to",    "a",     "in",      "is",      "that",  "it",
      "was",  "for",   "on",    "with",  "he",    "as",      "I",       "his",   "they",
      "be",   "at",    "one",   "have",  "this",  "from",    "or",      "had",   "by",
      "word", "but",   "what",  "some",  "we",    "can",     "out",     "other", "were",
      "all",  "there", "when",  "up",    "use",   "your",    "how",     "said",  "an",
      "each", "she",   "which", "whale", "ship",  "captain", "harpoon", "sea",   "don't",
      "it's", "1851",  "42",    "3.14",  "naïve", "café",    "日本語",  "Ahab",  "Queequeg"};
  static const char* const syllables[] = {"ka", "ri",  "to",  "mon", "el", "sa", "dor", "in",
                                          "qu", "est", "ver", "al",  "un", "ge", "ro",  "ph"};
  constexpr int n = sizeof(vocabulary) / sizeof(vocabulary[0]);
  std::mt19937 rng(seed);
  std::uniform_real_distribution<double> uniform(0.0, 1.0);
  std::string text;
  for (int i = 0; i < words; ++i) {
    if (rng() % 4 == 0) {  // a rarer word, made of syllables
      for (uint32_t k = 0, length = 2 + rng() % 3; k < length; ++k) text += syllables[rng() % 16];
    } else {
      const double u = uniform(rng);
      text += vocabulary[static_cast<int>(n * u * u * u)];  // frequent words first
    }
    const uint32_t r = rng() % 16;
    text += r == 0 ? ", " : r == 1 ? ". " : r == 2 ? "\n" : r == 3 ? "  " : " ";
  }
  return text;
}

// `length` uniformly random bytes: NUL and invalid UTF-8 included.
inline std::string random_bytes(size_t length, std::mt19937& rng) {
  std::string bytes(length, '\0');
  for (char& b : bytes) b = static_cast<char>(rng());
  return bytes;
}

}  // namespace minimoe::test
