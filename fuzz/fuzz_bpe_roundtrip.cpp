// Fuzzes encoding and decoding of arbitrary bytes (invalid UTF-8, NUL, special-token strings)
// with the byte tokenizer, a BPE tokenizer trained at start-up and a miniature vocabulary in
// GPT-2's layout. For each: decode(encode(x)) == x, with and without special tokens; BPE ids
// equal those of GPT-2's plain encoding loop; decoding arbitrary ids refuses bad ones.
#include <cstdint>
#include <cstring>
#include <map>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include <minimoe/text/bpe_train.hpp>
#include <minimoe/text/tokenizer.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

namespace {

const Tokenizer& trained_bpe() {
  static const Tokenizer tokenizer = [] {
    BpeTrainOptions options;
    options.vocab_size = 400;
    options.special_tokens = {"<|endoftext|>", "<|\xc3\xbcn\xc3\xaf|>", "<|end"};
    // Through its file format, as a tokenizer reaches a training run.
    return tokenizer_from_embedded(
        embed_tokenizer(Tokenizer(train_bpe(fuzz::training_text(), options))), "");
  }();
  return tokenizer;
}

const Tokenizer& tiny_gpt2() {
  static const Tokenizer tokenizer = [] {
    const auto [encoder, merges] = fuzz::tiny_gpt2_files();
    return Tokenizer(gpt2_tokenizer_from_strings(encoder, merges, "tiny"));
  }();
  return tokenizer;
}

// GPT-2's encoding loop, written plainly: per pre-token, merge the lowest-ranked pair
// everywhere from left to right until none is left.
std::vector<int32_t> reference_encode(const BpeTokenizer& bpe, std::string_view text) {
  const std::vector<BpeMerge>& merges = bpe.vocab().merges;
  std::map<std::pair<int32_t, int32_t>, size_t> rank;
  for (size_t i = 0; i < merges.size(); ++i)
    rank.emplace(std::pair(merges[i].left, merges[i].right), i);
  std::vector<int32_t> ids;
  for (const std::string_view piece : pretokenize(text)) {
    std::vector<int32_t> word;
    for (const char c : piece) word.push_back(bpe.vocab().byte_ids[static_cast<unsigned char>(c)]);
    while (true) {
      size_t best = merges.size();
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        const auto it = rank.find({word[i], word[i + 1]});
        if (it != rank.end() && it->second < best) best = it->second;
      }
      if (best == merges.size()) break;
      std::vector<int32_t> merged;
      for (size_t i = 0; i < word.size(); ++i) {
        const bool match = i + 1 < word.size() && word[i] == merges[best].left &&
                           word[i + 1] == merges[best].right;
        merged.push_back(match ? merges[best].result : word[i]);
        i += match;
      }
      word = std::move(merged);
    }
    ids.insert(ids.end(), word.begin(), word.end());
  }
  return ids;
}

void check_tokenizer(const Tokenizer& tokenizer, const std::string& text) {
  const std::vector<int32_t> ids = tokenizer.encode(text);
  for (const int32_t id : ids) require(id >= 0 && id < tokenizer.vocab_size(), "ids in range");
  require(tokenizer.decode(ids) == text, "decode(encode(x)) == x");
  require(tokenizer.decode(tokenizer.encode_with_special(text)) == text,
          "decode(encode_with_special(x)) == x");
  // The plain loop is quadratic in a pre-token's length, and bytes that are not text make long
  // pre-tokens: it checks the shorter inputs, which keeps the target fast.
  const BpeTokenizer* bpe = tokenizer.bpe();
  if (bpe && text.size() <= 512) {
    require(ids == reference_encode(*bpe, text), "the same ids as GPT-2's loop");
  }
  // The input read as ids: in range they decode, out of range they are refused.
  std::vector<int32_t> raw(text.size() / 4);
  if (!raw.empty()) std::memcpy(raw.data(), text.data(), raw.size() * 4);
  accepts([&] { tokenizer.decode(raw); });
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = fuzz::bytes_of(data, size);
  std::string joined;
  for (const std::string_view piece : pretokenize(text)) {
    require(!piece.empty(), "pre-tokens are not empty");
    joined += piece;
  }
  require(joined == text, "pre-tokens cover the text");
  check_tokenizer(Tokenizer(ByteTokenizer()), text);
  check_tokenizer(trained_bpe(), text);
  check_tokenizer(tiny_gpt2(), text);
  return 0;
}
