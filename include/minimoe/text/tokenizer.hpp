// minimoe/text/tokenizer.hpp: any of minimoe's tokenizers behind one type, chosen at run time.
//
//   Tokenizer tokenizer = load_tokenizer("gpt2:data/gpt2");   // or "bytes", or "bpe.json"
//   std::vector<int32_t> ids = tokenizer.encode(text);
//   ids.push_back(tokenizer.eot_id());                         // a document boundary
//   std::string back = tokenizer.decode(ids);
//   GPTConfig config;  config.vocab_size = tokenizer.vocab_size();
//
// A spec names the tokenizer the way a command line would:
//   bytes        ByteTokenizer: one token per byte, then <|endoftext|> (vocab 257)
//   gpt2:DIR     GPT-2's tokenizer from DIR/encoder.json and DIR/vocab.bpe (vocab 50257)
//   PATH         a BPE tokenizer saved by save_bpe
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/bpe.hpp"
#include "minimoe/text/bpe_file.hpp"
#include "minimoe/text/byte_tokenizer.hpp"
#include "minimoe/text/gpt2_vocab.hpp"

namespace minimoe {

class Tokenizer {
 public:
  explicit Tokenizer(ByteTokenizer bytes) : impl_(std::move(bytes)) {}
  explicit Tokenizer(BpeTokenizer bpe) : impl_(std::move(bpe)) {}

  // Special-token strings in `text` are ordinary text.
  std::vector<int32_t> encode(std::string_view text) const {
    return std::visit([&](const auto& t) { return t.encode(text); }, impl_);
  }
  // A special token's string becomes its id.
  std::vector<int32_t> encode_with_special(std::string_view text) const {
    return std::visit([&](const auto& t) { return t.encode_with_special(text); }, impl_);
  }
  // IndexError for an id outside [0, vocab_size()).
  std::string decode(const std::vector<int32_t>& ids) const {
    return std::visit([&](const auto& t) { return t.decode(ids); }, impl_);
  }
  int32_t vocab_size() const {
    return std::visit([](const auto& t) { return t.vocab_size(); }, impl_);
  }
  // The id of <|endoftext|>; ValueError when the tokenizer has none.
  int32_t eot_id() const {
    return std::visit([](const auto& t) { return t.eot_id(); }, impl_);
  }
  const SpecialTokens& special_tokens() const {
    return std::visit([](const auto& t) -> const SpecialTokens& { return t.special_tokens(); },
                      impl_);
  }
  bool is_bytes() const { return std::holds_alternative<ByteTokenizer>(impl_); }
  // The BPE tokenizer (minimoe's own or GPT-2's), or nullptr for bytes.
  const BpeTokenizer* bpe() const { return std::get_if<BpeTokenizer>(&impl_); }

 private:
  std::variant<ByteTokenizer, BpeTokenizer> impl_;
};

// See the specs above. IOError or FormatError when the files cannot be read or are corrupt.
inline Tokenizer load_tokenizer(const std::string& spec) {
  if (spec == "bytes") return Tokenizer(ByteTokenizer());
  const std::string gpt2_prefix = "gpt2:";
  if (spec.compare(0, gpt2_prefix.size(), gpt2_prefix) == 0) {
    const std::string dir = spec.substr(gpt2_prefix.size());
    check<ValueError>(!dir.empty(), "load_tokenizer: '{}' names no directory (gpt2:DIR)", spec);
    return Tokenizer(load_gpt2_tokenizer(dir));
  }
  return Tokenizer(load_bpe(spec));
}

// A tokenizer as a string that model files carry in their metadata, so that a checkpoint
// describes how to read its ids: "bytes", "gpt2" (GPT-2's vocabulary, too big to embed: its
// files are looked up when loading), or the text of minimoe's BPE file.
inline std::string embed_tokenizer(const Tokenizer& tokenizer) {
  if (tokenizer.is_bytes()) return "bytes";
  if (!tokenizer.bpe()->vocab().is_byte_ordered()) return "gpt2";
  return bpe_to_string(*tokenizer.bpe());
}

// The inverse of embed_tokenizer; "gpt2" loads GPT-2's files from gpt2_dir.
inline Tokenizer tokenizer_from_embedded(const std::string& embedded, const std::string& gpt2_dir) {
  if (embedded == "bytes") return Tokenizer(ByteTokenizer());
  if (embedded == "gpt2") return load_tokenizer("gpt2:" + gpt2_dir);
  return Tokenizer(bpe_from_string(embedded, "embedded tokenizer"));
}

}  // namespace minimoe
