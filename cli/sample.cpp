// minimoe sample: stream a continuation of a prompt from a trained model.
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct SampleArgs {
  std::string ckpt, prompt, gpt2_dir = kDefaultGpt2Dir;
  int64_t tokens = 200;
  SamplingOptions sampling;
  uint64_t seed = 0;
  int threads = 0;
};

void run_sample(const SampleArgs& a) {
  set_threads(a.threads);
  a.sampling.validate();
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_model<float>(file);
  std::vector<int32_t> prompt = tokenizer.encode(a.prompt);
  if (prompt.empty()) prompt.push_back(tokenizer.eot_id());  // start of a document
  if (static_cast<int64_t>(prompt.size()) >= model.config.context_length)
    throw UsageError(fmt::format(
        "the prompt is {} tokens long; the model's context holds {} (prompt and continuation)",
        prompt.size(), model.config.context_length));
  GenerateOptions g;
  g.max_tokens = a.tokens;
  g.sampling = a.sampling;
  g.seed = a.seed;
  g.stop_id = tokenizer.eot_id();
  g.allowed_vocab = tokenizer.vocab_size();
  fmt::print("{}", a.prompt);
  std::fflush(stdout);
  const std::vector<int32_t> out = generate(model, prompt, g, [&](int32_t id) {
    fmt::print("{}", tokenizer.decode({id}));
    std::fflush(stdout);
    return true;
  });
  fmt::print("\n");
  if (static_cast<int64_t>(out.size() + prompt.size()) >= model.config.context_length &&
      static_cast<int64_t>(out.size()) < a.tokens)
    fmt::print(stderr, "(stopped: the context window of {} tokens is full)\n",
               model.config.context_length);
}

}  // namespace

void add_sample_command(CLI::App& app) {
  auto a = std::make_shared<SampleArgs>();
  CLI::App* cmd = app.add_subcommand("sample", "Continue a prompt with a trained model");
  cmd->add_option("--ckpt", a->ckpt, "model file or training checkpoint")->required();
  cmd->add_option("--prompt", a->prompt, "text to continue (default: a new document)");
  cmd->add_option("--tokens", a->tokens, "tokens to generate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", a->sampling.top_k, "keep the k likeliest tokens (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->sampling.top_p, "nucleus: keep the likeliest tokens holding p")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--gpt2-dir", a->gpt2_dir,
                  "GPT-2's encoder.json and vocab.bpe, for models trained with them")
      ->capture_default_str();
  cmd->callback([a] { run_sample(*a); });
}

}  // namespace minimoe::cli
