// minimoe eval: validation loss and perplexity per domain.
#include <unistd.h>
#include <filesystem>
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct EvalArgs {
  std::string ckpt, data_dir = "data/corpus", gpt2_dir = kDefaultGpt2Dir;
  std::vector<std::string> corpus;
  int64_t batch_size = 16, batches = 0;
  int threads = 0;
  bool int8 = false;
};

void run_eval(const EvalArgs& a) {
  namespace fs = std::filesystem;
  set_threads(a.threads);
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_inference_model(file, a.int8);
  std::vector<CorpusFile> files;
  if (a.corpus.empty()) {
    files = find_corpus_files(a.data_dir);
  } else {
    for (const std::string& path : a.corpus) {
      check<IOError>(fs::is_regular_file(path), "corpus file '{}' does not exist", path);
      files.push_back({fs::path(path).stem().string(), path, 1.0});
    }
  }
  // The token files live only as long as the evaluation.
  const fs::path dir = fs::temp_directory_path() / fmt::format("minimoe-eval-{}", ::getpid());
  struct Cleanup {
    fs::path dir;
    ~Cleanup() {
      std::error_code ignored;
      fs::remove_all(dir, ignored);
    }
  } cleanup{dir};
  const Dataset data(tokenize_corpus(files, tokenizer, dir.string()));
  check<ValueError>(data.vocab_size() <= model.config.vocab_size,
                    "the tokenizer's vocabulary ({}) exceeds the model's ({})", data.vocab_size(),
                    model.config.vocab_size);
  const EvalReport e =
      evaluate_model(model, data, a.batch_size, model.config.context_length,
                     a.batches > 0 ? a.batches : std::numeric_limits<int64_t>::max());
  fmt::print("{:<12} {:>10} {:>10} {:>12}\n", "domain", "val loss", "ppl", "tokens");
  for (const DomainEval& d : e.domains)
    fmt::print("{:<12} {:>10.4f} {:>10.2f} {:>12}\n", d.name, d.loss, d.perplexity(), d.tokens);
  int64_t total = 0;
  for (const DomainEval& d : e.domains) total += d.tokens;
  fmt::print("{:<12} {:>10.4f} {:>10.2f} {:>12}\n", "all", e.loss, std::exp(e.loss), total);
}

}  // namespace

void add_eval_command(CLI::App& app) {
  auto a = std::make_shared<EvalArgs>();
  CLI::App* cmd = app.add_subcommand(
      "eval", "Validation loss and perplexity per domain (the last 10% of each file)");
  cmd->add_option("--ckpt", a->ckpt, "model file or training checkpoint")->required();
  cmd->add_option("--data", a->data_dir, "directory of .txt files, one domain each")
      ->capture_default_str();
  cmd->add_option("--corpus", a->corpus, "text files instead of --data (repeatable)");
  cmd->add_option("--batch-size", a->batch_size, "windows per batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--batches", a->batches,
                  "at most this many batches per domain (0 = the whole split)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  add_int8_flag(cmd, a->int8);
  cmd->add_option("--gpt2-dir", a->gpt2_dir, "GPT-2's vocabulary files")->capture_default_str();
  cmd->callback([a] { run_eval(*a); });
}

}  // namespace minimoe::cli
