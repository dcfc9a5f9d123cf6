// minimoe tokenize: text on stdin -> token ids on stdout, or back with --decode.
#include <iostream>
#include <iterator>
#include <memory>
#include <sstream>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct TokenizeArgs {
  std::string tokenizer = "bytes";
  bool decode = false, special = false;
};

void run_tokenize(const TokenizeArgs& a) {
  const Tokenizer tokenizer = load_tokenizer(a.tokenizer);
  std::string input((std::istreambuf_iterator<char>(std::cin)), std::istreambuf_iterator<char>());
  if (!a.decode) {
    const std::vector<int32_t> ids =
        a.special ? tokenizer.encode_with_special(input) : tokenizer.encode(input);
    fmt::print("{}\n", fmt::join(ids, " "));
    return;
  }
  std::vector<int32_t> ids;
  std::istringstream in(input);
  std::string word;
  while (in >> word) {
    size_t used = 0;
    long long id = -1;
    try {
      id = std::stoll(word, &used);
    } catch (const std::exception&) {
      used = 0;
    }
    if (used != word.size() || id < 0 || id >= tokenizer.vocab_size())
      throw UsageError(
          fmt::format("--decode: '{}' is not a token id in [0, {})", word, tokenizer.vocab_size()));
    ids.push_back(static_cast<int32_t>(id));
  }
  const std::string text = tokenizer.decode(ids);
  std::fwrite(text.data(), 1, text.size(), stdout);
}

}  // namespace

void add_tokenize_command(CLI::App& app) {
  auto a = std::make_shared<TokenizeArgs>();
  CLI::App* cmd = app.add_subcommand("tokenize", "Text on stdin to token ids, or ids back to text");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "bytes, gpt2:DIR (encoder.json + vocab.bpe) or a BPE file")
      ->capture_default_str();
  cmd->add_flag("--decode", a->decode, "read ids separated by whitespace, print the text");
  cmd->add_flag("--special", a->special,
                "encode special-token strings (<|endoftext|>) as their ids");
  cmd->callback([a] { run_tokenize(*a); });
}

}  // namespace minimoe::cli
