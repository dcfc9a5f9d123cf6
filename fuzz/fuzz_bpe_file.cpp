// Fuzzes the loader of minimoe's BPE tokenizer files (bpe_from_string); a tokenizer it accepts
// saves to the same vocabulary and round-trips any bytes, the input's own included.
#include <cstdint>
#include <optional>
#include <string>

#include <minimoe/text/bpe_file.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text = fuzz::bytes_of(data, size);
  std::optional<BpeTokenizer> bpe;
  if (!accepts([&] { bpe = bpe_from_string(text, "fuzz"); })) return 0;
  const BpeVocab& vocab = bpe->vocab();
  require(static_cast<size_t>(bpe->vocab_size()) ==
              256 + vocab.merges.size() + vocab.special_tokens.size(),
          "a file's ids are bytes, merges and special tokens");
  const BpeTokenizer again = bpe_from_string(bpe_to_string(*bpe), "saved");
  require(again.vocab_size() == bpe->vocab_size(), "a saved tokenizer loads the same");
  for (int32_t id = 0; id < bpe->vocab_size(); ++id) {
    require(again.token_bytes(id) == bpe->token_bytes(id), "a saved tokenizer has the same tokens");
  }
  require(bpe->decode(bpe->encode(text)) == text, "decode(encode(x)) == x");
  require(bpe->decode(bpe->encode_with_special(text)) == text, "with special tokens too");
  return 0;
}
