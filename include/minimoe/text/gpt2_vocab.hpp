// minimoe/text/gpt2_vocab.hpp: GPT-2's tokenizer, from the two files OpenAI published.
//
//   BpeTokenizer gpt2 = load_gpt2_tokenizer("data/gpt2");   // encoder.json + vocab.bpe
//   gpt2.encode("Hello world");                              // {15496, 995}, as GPT-2
//   gpt2.eot_id();                                           // 50256
//   gpt2_tokenizer_from_strings(encoder_json, merges, "gpt2");  // the files' texts in memory
//
// scripts/fetch_gpt2_vocab.sh downloads the files. encoder.json maps each token to its id;
// vocab.bpe lists the merges by rank, "left right" on each line after a "#version" line.
// Both spell a token's bytes in printable characters: GPT-2's bytes_to_unicode() keeps each
// byte that is a printable Latin-1 character as that character, and moves the other 68
// (control characters, space, DEL, no-break space, soft hyphen) to U+0100 and up, in byte
// order. Tokens of encoder.json that are neither a byte nor made by a merge (<|endoftext|>)
// are special tokens. Any inconsistency throws FormatError naming the file.
#pragma once

#include <algorithm>
#include <array>
#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/error.hpp"
#include "minimoe/io/atomic_file.hpp"
#include "minimoe/text/bpe.hpp"
#include "minimoe/text/utf8.hpp"

namespace minimoe {

// The character GPT-2's files spell each byte with.
inline std::array<char32_t, 256> gpt2_byte_chars() {
  std::array<char32_t, 256> chars{};
  char32_t moved = 0x100;
  for (char32_t b = 0; b < 256; ++b) {
    const bool printable = (b >= '!' && b <= '~') || (b >= 0xA1 && b <= 0xAC) || b >= 0xAE;
    chars[b] = printable ? b : moved++;
  }
  return chars;
}

namespace detail {

// The bytes a token spelled in GPT-2's characters stands for.
inline std::string gpt2_token_bytes(const std::string& token, const std::string& path) {
  static const std::unordered_map<char32_t, char> byte_of = [] {
    std::unordered_map<char32_t, char> map;
    const std::array<char32_t, 256> chars = gpt2_byte_chars();
    for (size_t b = 0; b < 256; ++b) map[chars[b]] = static_cast<char>(b);
    return map;
  }();
  std::string bytes;
  for (size_t pos = 0; pos < token.size();) {
    const CodePoint c = decode_utf8(token, pos);
    const auto it = byte_of.find(c.value);
    check<FormatError>(it != byte_of.end(),
                       "{}: token '{}' has a character that stands for no byte", path, token);
    bytes.push_back(it->second);
    pos += c.length;
  }
  return bytes;
}

// encoder.json (its text, and its path for messages): token spelling -> id.
inline std::unordered_map<std::string, int32_t> read_gpt2_encoder(const std::string& text,
                                                                  const std::string& path) {
  nlohmann::json encoder;
  try {
    // The file is flat; refusing deep nesting as it is parsed bounds the recursion of the dump()
    // that error messages call.
    encoder =
        nlohmann::json::parse(text, [&](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          check<FormatError>(depth <= 16, "{}: JSON nested deeper than 16 levels", path);
          return true;
        });
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(
        fmt::format("{}: not valid JSON (truncated or corrupt) at byte {}", path, e.byte));
  } catch (const nlohmann::json::out_of_range& e) {  // a number beyond double's range
    throw FormatError(fmt::format("{}: not valid JSON: {}", path, e.what()));
  }
  check<FormatError>(encoder.is_object(), "{}: not a JSON object of token ids", path);
  std::unordered_map<std::string, int32_t> ids;
  std::unordered_set<int32_t> seen;
  for (const auto& [token, id] : encoder.items()) {
    check<FormatError>(
        id.is_number_integer() && id.get<int64_t>() >= 0 && id.get<int64_t>() <= INT32_MAX,
        "{}: token '{}' has id {}, not a token id", path, token, id.dump());
    check<FormatError>(seen.insert(id.get<int32_t>()).second,
                       "{}: token '{}' has id {}, like another token", path, token, id.dump());
    ids.emplace(token, id.get<int32_t>());
  }
  return ids;
}

// vocab.bpe (its text, and its path for messages): the merges by rank, as token ids.
inline std::vector<BpeMerge> read_gpt2_merges(const std::string& text, const std::string& path,
                                              const std::unordered_map<std::string, int32_t>& ids) {
  const auto id_of = [&](const std::string& token, size_t line) {
    const auto it = ids.find(token);
    check<FormatError>(it != ids.end(), "{}: line {}: token '{}' is not in encoder.json", path,
                       line, token);
    return it->second;
  };
  std::vector<BpeMerge> merges;
  size_t line_number = 0;
  for (size_t begin = 0; begin < text.size();) {
    const size_t end = std::min(text.find('\n', begin), text.size());
    const std::string_view line(text.data() + begin, end - begin);
    begin = end + 1;
    ++line_number;
    if (line.empty() || (line_number == 1 && line.substr(0, 8) == "#version")) continue;
    const size_t space = line.find(' ');
    check<FormatError>(space != 0 && space != std::string_view::npos && space + 1 < line.size() &&
                           line.find(' ', space + 1) == line.npos,
                       "{}: line {}: expected two tokens separated by a space", path, line_number);
    const std::string left(line.substr(0, space)), right(line.substr(space + 1));
    merges.push_back(
        {id_of(left, line_number), id_of(right, line_number), id_of(left + right, line_number)});
  }
  return merges;
}

}  // namespace detail

// The tokenizer from the texts of encoder.json and vocab.bpe; FormatError when they are not
// GPT-2's formats or do not agree with each other, its message starting with
// `dir`/encoder.json, `dir`/vocab.bpe or `dir` (the directory, or where the texts came from).
inline BpeTokenizer gpt2_tokenizer_from_strings(const std::string& encoder_json,
                                                const std::string& merges, const std::string& dir) {
  const std::string encoder_path = dir + "/encoder.json";
  const std::unordered_map<std::string, int32_t> ids =
      detail::read_gpt2_encoder(encoder_json, encoder_path);
  BpeVocab vocab;
  vocab.merges = detail::read_gpt2_merges(merges, dir + "/vocab.bpe", ids);

  std::unordered_set<int32_t> used;
  const std::array<char32_t, 256> chars = gpt2_byte_chars();
  for (size_t b = 0; b < 256; ++b) {
    std::string spelling;
    append_utf8(chars[b], spelling);
    const auto it = ids.find(spelling);
    check<FormatError>(it != ids.end(), "{}: no token for byte {}", encoder_path, b);
    vocab.byte_ids[b] = it->second;
    used.insert(it->second);
  }
  for (const BpeMerge& m : vocab.merges) used.insert(m.result);
  for (const auto& [token, id] : ids) {
    if (used.count(id) == 0) {
      vocab.special_tokens.emplace_back(detail::gpt2_token_bytes(token, encoder_path), id);
    }
  }
  std::sort(vocab.special_tokens.begin(), vocab.special_tokens.end(),
            [](const auto& a, const auto& b) { return a.second < b.second; });
  try {
    return BpeTokenizer(std::move(vocab));
  } catch (const ValueError& e) {
    throw FormatError(fmt::format("{}: GPT-2 vocabulary: {}", dir, e.what()));
  }
}

// Reads dir/encoder.json and dir/vocab.bpe; IOError when one cannot be read, FormatError as
// gpt2_tokenizer_from_strings.
inline BpeTokenizer load_gpt2_tokenizer(const std::string& dir) {
  const std::string encoder_json = read_file(dir + "/encoder.json");
  return gpt2_tokenizer_from_strings(encoder_json, read_file(dir + "/vocab.bpe"), dir);
}

}  // namespace minimoe
