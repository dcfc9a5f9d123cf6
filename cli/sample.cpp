// minimoe sample: stream a continuation of a prompt from a trained model.
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct SampleArgs {
  std::string ckpt, prompt, gpt2_dir = kDefaultGpt2Dir;
  int64_t tokens = 200;
  SamplingOptions sampling;
  double repetition_penalty = 1.0;
  std::vector<std::string> stop;
  uint64_t seed = 0;
  int threads = 0;
  bool int8 = false;
};

void run_sample(const SampleArgs& a) {
  set_threads(a.threads);
  a.sampling.validate();
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_inference_model(file, a.int8);
  const size_t prompt_tokens = std::max<size_t>(tokenizer.encode(a.prompt).size(), 1);
  if (static_cast<int64_t>(prompt_tokens) >= model.config.context_length)
    throw UsageError(fmt::format(
        "the prompt is {} tokens long; the model's context holds {} (prompt and continuation)",
        prompt_tokens, model.config.context_length));
  TextGenerateOptions o;
  o.generation.max_tokens = a.tokens;
  o.generation.sampling = a.sampling;
  o.generation.seed = a.seed;
  if (a.repetition_penalty != 1)
    o.generation.processors.push_back(repetition_penalty(a.repetition_penalty));
  o.stop = a.stop;
  fmt::print("{}", a.prompt);
  std::fflush(stdout);
  const TextGeneration g = generate_text(model, tokenizer, a.prompt, o, [](std::string_view piece) {
    fmt::print("{}", piece);
    std::fflush(stdout);
    return true;
  });
  fmt::print("\n");
  if (g.finish == "length" && static_cast<int64_t>(g.ids.size()) < a.tokens)
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
  cmd->add_option("--repetition-penalty", a->repetition_penalty,
                  "> 1 discourages repeating tokens of the prompt and the output")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--stop", a->stop, "end the text before this string (repeatable)");
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  add_int8_flag(cmd, a->int8);
  cmd->add_option("--gpt2-dir", a->gpt2_dir,
                  "GPT-2's encoder.json and vocab.bpe, for models trained with them")
      ->capture_default_str();
  cmd->callback([a] { run_sample(*a); });
}

}  // namespace minimoe::cli
