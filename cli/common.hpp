// cli/common.hpp: what the minimoe subcommands share.
#pragma once

#include <cstdint>
#include <string>

#include <CLI/CLI.hpp>
#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <minimoe/minimoe.hpp>

namespace minimoe::cli {

// Bad input from the user (flags that contradict each other, a run directory in the way):
// printed with the message and exit code 2, like a parse error.
struct UsageError : Error {
  using Error::Error;
};

// Where GPT-2's encoder.json and vocab.bpe are looked for (scripts/fetch_gpt2_vocab.sh).
inline const char* const kDefaultGpt2Dir = "data/gpt2";

// What main returns when the command ran to its end: 0, unless the command set another code
// (train: 128 + N after it stopped on signal N and saved).
inline int& exit_status() {
  static int status = 0;
  return status;
}

// 0 keeps the OpenMP default (all cores).
inline void set_threads(int threads) {
  if (threads <= 0) return;
#ifdef _OPENMP
  omp_set_num_threads(threads);
#endif
  Eigen::setNbThreads(threads);
}

inline int current_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// The tokenizer a model file or checkpoint carries in its metadata.
inline Tokenizer tokenizer_of(const SafetensorsFile& file, const std::string& gpt2_dir) {
  const auto it = file.metadata().find("tokenizer");
  if (it == file.metadata().end())
    throw UsageError("the model file names no tokenizer: it was not written by minimoe train");
  return tokenizer_from_embedded(it->second, gpt2_dir);
}

// --int8 of the inference commands: int8 weight-only quantisation at load time
// (models/quantize.hpp; the file is not changed).
inline void add_int8_flag(CLI::App* cmd, bool& int8) {
  cmd->add_flag("--int8", int8,
                "quantise the attention, expert and LM-head weights to int8 at load: faster "
                "decoding for a small loss of quality (docs/inference.md)");
}

// The model of a model file or checkpoint, for inference: quantised to int8 when asked.
inline GPT<float> load_inference_model(const SafetensorsFile& file, bool int8) {
  GPT<float> model = load_model<float>(file);
  if (int8) quantize_int8(model);
  return model;
}

void add_train_command(CLI::App& app);
void add_sample_command(CLI::App& app);
void add_chat_command(CLI::App& app);
void add_serve_command(CLI::App& app);
void add_eval_command(CLI::App& app);
void add_tokenize_command(CLI::App& app);
void add_inspect_command(CLI::App& app);
void add_analyze_command(CLI::App& app);
void add_compare_command(CLI::App& app);

}  // namespace minimoe::cli
