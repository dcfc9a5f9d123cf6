// Fuzzes the loader of GPT-2's two vocabulary files. The input is encoder.json, a NUL byte,
// then vocab.bpe (no NUL: all of it is encoder.json). A tokenizer it accepts round-trips any
// bytes, the input's own included.
#include <cstdint>
#include <optional>
#include <string>

#include <minimoe/text/gpt2_vocab.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input = fuzz::bytes_of(data, size);
  const size_t nul = input.find('\0');
  const std::string encoder = input.substr(0, nul);
  const std::string merges = nul == std::string::npos ? "" : input.substr(nul + 1);
  std::optional<BpeTokenizer> bpe;
  if (!accepts([&] { bpe = gpt2_tokenizer_from_strings(encoder, merges, "gpt2"); })) return 0;
  require(bpe->decode(bpe->encode(input)) == input, "decode(encode(x)) == x");
  require(bpe->decode(bpe->encode_with_special(input)) == input, "with special tokens too");
  return 0;
}
