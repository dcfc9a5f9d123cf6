// minimoe/data/prepare.hpp: from text files to the token files a Dataset reads.
//
//   std::vector<CorpusFile> files = find_corpus_files("data/corpus");   // story.txt, ...
//   BpeTokenizer bpe = train_bpe(training_text(files), options);       // optional
//   std::vector<Domain> domains = tokenize_corpus(files, tokenizer, "run/tokens");
//   Dataset data(domains);
//
// Each text file is one domain, named after the file (story.txt -> "story"). Token files are
// written atomically; the tokenizer sees each file whole, so ids are the same every time. Next
// to each token file, <name>.tokens.json records the source (path, size, modification time)
// and the tokenizer (a hash of embed_tokenizer): when both still match, the file is reused
// instead of tokenizing again (GPT-2's BPE takes about a minute for the default corpus).
#pragma once

#include <algorithm>
#include <filesystem>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/data/dataset.hpp"
#include "minimoe/data/token_file.hpp"
#include "minimoe/io/atomic_file.hpp"
#include "minimoe/text/tokenizer.hpp"

namespace minimoe {

struct CorpusFile {
  std::string name;  // the domain
  std::string path;
  double weight = 1.0;
};

// The .txt files of `dir`, sorted by name. IOError when dir is not a readable directory or
// holds none.
inline std::vector<CorpusFile> find_corpus_files(const std::string& dir) {
  namespace fs = std::filesystem;
  std::error_code error;
  check<IOError>(fs::is_directory(dir, error), "'{}' is not a directory{}", dir,
                 dir == "data/corpus" ? " (scripts/fetch_data.sh fetches the default corpus)" : "");
  std::vector<CorpusFile> files;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, error))
    if (entry.is_regular_file() && entry.path().extension() == ".txt")
      files.push_back({entry.path().stem().string(), entry.path().string(), 1.0});
  check<IOError>(!error, "cannot list '{}': {}", dir, error.message());
  check<IOError>(!files.empty(), "'{}' holds no .txt files", dir);
  std::sort(files.begin(), files.end(),
            [](const CorpusFile& a, const CorpusFile& b) { return a.name < b.name; });
  return files;
}

// The training part of every file (all but the last val_fraction of its bytes), for training a
// tokenizer without looking at validation text.
inline std::vector<std::string> training_text(const std::vector<CorpusFile>& files,
                                              double val_fraction = kDefaultValFraction) {
  std::vector<std::string> texts;
  for (const CorpusFile& f : files) {
    std::string text = read_file(f.path);
    text.resize(text.size() - static_cast<size_t>(double(text.size()) * val_fraction));
    texts.push_back(std::move(text));
  }
  return texts;
}

namespace detail {

// FNV-1a: a hash that is the same on every machine and every run.
inline uint64_t fnv1a(const std::string& bytes) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (unsigned char c : bytes) h = (h ^ c) * 0x100000001b3ULL;
  return h;
}

inline nlohmann::json token_file_source(const std::string& source, uint64_t tokenizer_hash) {
  namespace fs = std::filesystem;
  const auto mtime = fs::last_write_time(source).time_since_epoch().count();
  return {{"source", fs::absolute(source).string()},
          {"bytes", fs::file_size(source)},
          {"mtime", static_cast<int64_t>(mtime)},
          {"tokenizer", fmt::format("{:016x}", tokenizer_hash)}};
}

}  // namespace detail

// Tokenizes every file into token_dir/<name>.tokens, or reuses the token file made from the
// same source by the same tokenizer, and returns the domains over them.
inline std::vector<Domain> tokenize_corpus(const std::vector<CorpusFile>& files,
                                           const Tokenizer& tokenizer,
                                           const std::string& token_dir) {
  std::filesystem::create_directories(token_dir);
  const uint64_t tokenizer_hash = detail::fnv1a(embed_tokenizer(tokenizer));
  std::vector<Domain> domains;
  for (const CorpusFile& f : files) {
    const std::string path = token_dir + "/" + f.name + ".tokens";
    const nlohmann::json source = detail::token_file_source(f.path, tokenizer_hash);
    const nlohmann::json recorded = nlohmann::json::parse(
        std::filesystem::exists(path + ".json") ? read_file(path + ".json") : "null", nullptr,
        /*allow_exceptions=*/false);
    if (recorded != source || !std::filesystem::exists(path)) {
      const std::string text = read_file(f.path);
      check<ValueError>(!text.empty(), "corpus file '{}' is empty", f.path);
      write_token_file(path, tokenizer.encode(text), tokenizer.vocab_size());
      write_file_atomically(path + ".json", [&](std::ostream& out) { out << source.dump(); });
    }
    domains.push_back({f.name, path, f.weight});
  }
  return domains;
}

}  // namespace minimoe
