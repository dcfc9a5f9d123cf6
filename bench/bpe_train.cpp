// Times byte-level BPE training (text/bpe_train.hpp), then encoding with the result.
//
//   bpe_train [FILE] [VOCAB]     e.g.  build/release/bench/bpe_train data/corpus/speech.txt
//
// FILE defaults to 10 MB of generated English-like text (Zipf-distributed words made of
// syllables, sentences, paragraphs), VOCAB to 4096. Before timing encoding, the benchmark
// checks that the whole text round-trips through encode and decode.
#include <chrono>
#include <cmath>
#include <cstdio>
#include <random>
#include <string>
#include <vector>

#include <minimoe/io/atomic_file.hpp>
#include <minimoe/text/bpe_train.hpp>

using namespace minimoe;

namespace {

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

// About `bytes` of prose over a lexicon of 20000 made-up words, the i-th most common with
// frequency ~ 1/i as in natural language.
std::string generated_text(size_t bytes) {
  static const char* const syllables[] = {
      "the", "an", "er", "in", "on", "at",   "es",   "re",   "ti",  "or",  "st",   "ar", "ng", "al",
      "ed",  "it", "is", "ou", "le", "se",   "ve",   "co",   "de",  "ra",  "ro",   "li", "ri", "ma",
      "pe",  "wh", "ly", "ch", "ow", "ness", "ment", "tion", "ing", "ous", "able", "ful"};
  constexpr int kLexicon = 20000;
  std::mt19937 rng(1);
  std::vector<std::string> lexicon;
  for (int i = 0; i < kLexicon; ++i) {
    std::string word;
    for (int s = 0, n = 1 + static_cast<int>(std::log2(2.0 + i) / 4) + static_cast<int>(rng() % 2);
         s < n; ++s) {
      word += syllables[rng() % (sizeof(syllables) / sizeof(syllables[0]))];
    }
    lexicon.push_back(word);
  }
  std::vector<double> weights;
  for (int i = 0; i < kLexicon; ++i) weights.push_back(1.0 / (i + 1));
  std::discrete_distribution<int> zipf(weights.begin(), weights.end());

  std::string text;
  while (text.size() < bytes) {
    const int sentence_words = 5 + static_cast<int>(rng() % 20);
    for (int w = 0; w < sentence_words; ++w) {
      std::string word = lexicon[static_cast<size_t>(zipf(rng))];
      if (w == 0) word[0] = static_cast<char>(word[0] - 'a' + 'A');
      text += word;
      if (w + 1 < sentence_words) text += rng() % 12 == 0 ? ", " : " ";
    }
    text += rng() % 5 == 0 ? ".\n\n" : ". ";
    if (rng() % 40 == 0) text += std::to_string(rng() % 2000) + " ";
  }
  return text;
}

}  // namespace

int main(int argc, char** argv) {
  const std::string text = argc > 1 ? read_file(argv[1]) : generated_text(10'000'000);
  BpeTrainOptions options;
  options.vocab_size = argc > 2 ? std::stoi(argv[2]) : 4096;
  std::printf("text: %s, %.1f MB\n", argc > 1 ? argv[1] : "generated", text.size() / 1e6);

  auto start = std::chrono::steady_clock::now();
  size_t pieces = 0;
  for (size_t begin = 0; begin < text.size(); begin = pretoken_end(text, begin)) ++pieces;
  std::printf("pre-tokenize:     %7.2f s  (%zu pre-tokens)\n", seconds_since(start), pieces);

  start = std::chrono::steady_clock::now();
  const BpeTokenizer bpe = train_bpe(text, options);
  const double train_seconds = seconds_since(start);
  std::printf("train to %5d:    %7.2f s  (%zu merges)\n", bpe.vocab_size(), train_seconds,
              bpe.vocab().merges.size());

  start = std::chrono::steady_clock::now();
  const std::vector<int32_t> ids = bpe.encode(text);
  const double encode_seconds = seconds_since(start);
  if (bpe.decode(ids) != text) {
    std::fprintf(stderr, "FAILED: the text does not round-trip through encode and decode\n");
    return 1;
  }
  std::printf("encode:           %7.2f s  (%.1f MB/s, %.2f bytes per token)\n", encode_seconds,
              text.size() / 1e6 / encode_seconds, double(text.size()) / ids.size());
  return 0;
}
