// minimoe/text/bpe_file.hpp: a trained BPE tokenizer on disk, as a small JSON file.
//
//   save_bpe(bpe, "tokenizer.json");                    // atomic: old file or new, never half
//   BpeTokenizer bpe = load_bpe("tokenizer.json");      // FormatError naming what is wrong
//
// The format, version 1 (docs/tokenizers.md), for minimoe's own layout of ids (byte b is
// token b, merge i makes token 256 + i, the special tokens follow in order):
//
//   {
//     "format": "minimoe-bpe",
//     "version": 1,
//     "special_tokens": ["<|endoftext|>"],
//     "merges": [
//       [32, 116],
//       [104, 101],
//       ...
//     ]
//   }
//
// The pre-tokeniser is GPT-2's (pretokenize.hpp). The loader trusts nothing: every key, type
// and id is checked, and a corrupt or truncated file throws FormatError starting with the path.
#pragma once

#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/error.hpp"
#include "minimoe/io/atomic_file.hpp"
#include "minimoe/text/bpe.hpp"

namespace minimoe {

inline constexpr const char* kBpeFormat = "minimoe-bpe";
inline constexpr int kBpeFormatVersion = 1;

// The file's text. ValueError for a tokenizer whose ids are not minimoe's layout (GPT-2's
// vocabulary, which is loaded from its own files).
inline std::string bpe_to_string(const BpeTokenizer& bpe) {
  const BpeVocab& vocab = bpe.vocab();
  check<ValueError>(vocab.is_byte_ordered(),
                    "save_bpe: only tokenizers with minimoe's byte-ordered ids can be saved");
  std::vector<std::string> names;
  for (const auto& entry : vocab.special_tokens) names.push_back(entry.first);
  // One merge per line: readable, and small diffs between two trainings.
  std::string out = fmt::format(
      "{{\n  \"format\": \"{}\",\n  \"version\": {},\n  "
      "\"special_tokens\": {},\n  \"merges\": [",
      kBpeFormat, kBpeFormatVersion, nlohmann::json(names).dump());
  for (size_t i = 0; i < vocab.merges.size(); ++i)
    out += fmt::format("{}[{}, {}]", i == 0 ? "\n    " : ",\n    ", vocab.merges[i].left,
                       vocab.merges[i].right);
  out += "\n  ]\n}\n";
  return out;
}

// As bpe_to_string, written atomically; IOError when the file cannot be written.
inline void save_bpe(const BpeTokenizer& bpe, const std::string& path) {
  const std::string text = bpe_to_string(bpe);
  write_file_atomically(path, [&](std::ostream& out) { out << text; });
}

namespace detail {

inline const nlohmann::json& bpe_field(const nlohmann::json& file, const char* key) {
  const auto it = file.find(key);
  check<FormatError>(it != file.end(), "bpe file: missing '{}'", key);
  return *it;
}

inline BpeVocab parse_bpe_file(const std::string& bytes) {
  nlohmann::json file;
  try {
    // The format nests 3 levels; refusing deeper JSON as it is parsed bounds the recursion of
    // the dump() that error messages call.
    file =
        nlohmann::json::parse(bytes, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          check<FormatError>(depth <= 16, "bpe file: JSON nested deeper than 16 levels");
          return true;
        });
  } catch (const nlohmann::json::parse_error& e) {
    throw FormatError(
        fmt::format("bpe file: not valid JSON (truncated or corrupt) at byte {}", e.byte));
  } catch (const nlohmann::json::out_of_range& e) {  // a number beyond double's range
    throw FormatError(fmt::format("bpe file: not valid JSON: {}", e.what()));
  }
  check<FormatError>(file.is_object(), "bpe file: not a JSON object");
  for (const auto& [key, value] : file.items()) {
    check<FormatError>(
        key == "format" || key == "version" || key == "special_tokens" || key == "merges",
        "bpe file: unknown key '{}'", key);
  }
  check<FormatError>(bpe_field(file, "format") == kBpeFormat, "bpe file: 'format' is not \"{}\"",
                     kBpeFormat);
  const nlohmann::json& version = bpe_field(file, "version");
  check<FormatError>(version == kBpeFormatVersion,
                     "bpe file: unsupported version {} (this build reads version {})",
                     version.dump(), kBpeFormatVersion);

  const nlohmann::json& specials = bpe_field(file, "special_tokens");
  check<FormatError>(specials.is_array(), "bpe file: 'special_tokens' is not an array");
  std::vector<std::string> names;
  for (const nlohmann::json& name : specials) {
    check<FormatError>(name.is_string(), "bpe file: special token {} is not a string",
                       names.size());
    names.push_back(name.get<std::string>());
  }

  const nlohmann::json& merges = bpe_field(file, "merges");
  check<FormatError>(merges.is_array(), "bpe file: 'merges' is not an array");
  std::vector<std::pair<int32_t, int32_t>> pairs;
  for (const nlohmann::json& merge : merges) {
    const auto is_id = [](const nlohmann::json& v) {
      return v.is_number_integer() && v.get<int64_t>() >= 0 && v.get<int64_t>() <= INT32_MAX;
    };
    check<FormatError>(merge.is_array() && merge.size() == 2 && is_id(merge[0]) && is_id(merge[1]),
                       "bpe file: merge {} is not a pair of token ids: {}", pairs.size(),
                       merge.dump());
    pairs.emplace_back(merge[0].get<int32_t>(), merge[1].get<int32_t>());
  }
  return BpeVocab::byte_ordered(pairs, names);
}

}  // namespace detail

// A tokenizer from the text of a file; FormatError, starting with `origin` (a path, or where
// the text was embedded), for anything wrong with it.
inline BpeTokenizer bpe_from_string(const std::string& bytes, const std::string& origin) {
  try {
    return BpeTokenizer(detail::parse_bpe_file(bytes));
  } catch (const FormatError& e) {
    throw FormatError(fmt::format("{}: {}", origin, e.what()));
  } catch (const ValueError& e) {  // an inconsistent vocabulary
    throw FormatError(fmt::format("{}: {}", origin, e.what()));
  }
}

// IOError when the file cannot be read; FormatError, starting with the path, for anything
// else wrong with it.
inline BpeTokenizer load_bpe(const std::string& path) {
  return bpe_from_string(read_file(path), path);
}

}  // namespace minimoe
