// minimoe inspect: what a safetensors file holds: config, tensors, parameter counts, and for
// a training checkpoint where the run is.
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

void run_inspect(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  const auto& meta = file.metadata();
  const auto format = meta.find("format");
  fmt::print("file: {}\nformat: {}\n", path, format != meta.end() ? format->second : "(none)");
  int64_t tensors = 0, values = 0;
  fmt::print("{:<52} {:>6} {}\n", "tensor", "dtype", "shape");
  for (const auto& [name, entry] : file.entries()) {
    fmt::print("{:<52} {:>6} {}\n", name, dtype_name(entry.dtype), entry.shape);
    int64_t n = 1;
    for (int64_t d : entry.shape) n *= d;
    values += n;
    ++tensors;
  }
  fmt::print("{} tensors, {} values\n", tensors, values);
  if (meta.count("config")) {
    const GPTConfig config = read_model_config(file);
    fmt::print("config: {}\n", nlohmann::json(config).dump());
    fmt::print("parameters: {} total, {} active per token\n", config.num_parameters(),
               config.num_active_parameters());
  }
  const auto tokenizer = meta.find("tokenizer");
  if (tokenizer != meta.end())
    fmt::print("tokenizer: {}\n",
               tokenizer->second.size() < 16 ? tokenizer->second : "minimoe BPE (embedded)");
  const auto train = meta.find("train");
  if (train != meta.end()) {
    const Checkpoint<float> c = load_checkpoint<float>(path);
    fmt::print("training: step {} of {}, {} tokens, {} skipped steps, {}\n", c.state.step,
               c.state.total_steps, c.state.tokens, c.state.skipped,
               format_duration(c.state.seconds));
    fmt::print("options: {}\n", nlohmann::json(c.options).dump());
  }
}

}  // namespace

void add_inspect_command(CLI::App& app) {
  auto path = std::make_shared<std::string>();
  CLI::App* cmd = app.add_subcommand("inspect", "Show what a model file or checkpoint holds");
  cmd->add_option("file", *path, "a .safetensors file")->required();
  cmd->callback([path] { run_inspect(*path); });
}

}  // namespace minimoe::cli
