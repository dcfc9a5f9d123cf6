// minimoe/io/model_file.hpp: models on disk as safetensors files that describe themselves.
//
//   save_model(model, "tiny.safetensors");                  // weights + config
//   GPT<float> m = load_model<float>("tiny.safetensors");   // config read from the file
//
// Tensor names are the module tree's ("blocks.0.moe.experts.1.up.weight"; docs/formats.md),
// and the metadata holds {"format": "minimoe", "config": <GPTConfig as JSON>}, so PyTorch
// tools can rebuild the architecture from the file alone. Loading checks that the file holds
// exactly the tensors the config implies, with the right shapes; anything else is a
// FormatError naming the first difference.
#pragma once

#include <map>
#include <set>
#include <string>

#include "minimoe/io/safetensors.hpp"
#include "minimoe/models/gpt.hpp"
#include "minimoe/nn/module.hpp"

namespace minimoe {

template <typename Module>
void save_module(Module& module, const std::string& path,
                 const std::map<std::string, std::string>& metadata = {}) {
  save_safetensors(path, named_tensors(module), metadata);
}

// Copies every tensor of the module from `file`; the names and shapes must match exactly.
// Tensors whose names start with `ignored_prefix` (when not empty) are not the module's.
template <typename Module>
void load_module(Module& module, const SafetensorsFile& file,
                 const std::string& ignored_prefix = "") {
  using T = ScalarOf<Module>;
  std::set<std::string> expected;
  for (auto& [name, tensor] : named_tensors(module)) {
    expected.insert(name);
    check<FormatError>(file.contains(name), "model file: missing tensor '{}'", name);
    const SafetensorsEntry& e = file.entry(name);
    check<FormatError>(e.shape == tensor.shape(),
                       "model file: tensor '{}' has shape {}, the model expects {}", name, e.shape,
                       tensor.shape());
    tensor.copy_(file.tensor<T>(name));
  }
  for (const auto& [name, entry] : file.entries()) {
    if (!ignored_prefix.empty() && name.compare(0, ignored_prefix.size(), ignored_prefix) == 0)
      continue;
    check<FormatError>(expected.count(name) > 0, "model file: unexpected tensor '{}'", name);
  }
}

template <typename T>
void save_model(GPT<T>& model, const std::string& path,
                std::map<std::string, std::string> metadata = {}) {
  metadata["format"] = "minimoe";
  metadata["config"] = nlohmann::json(model.config).dump();
  save_module(model, path, metadata);
}

// The config stored in a model file.
inline GPTConfig read_model_config(const SafetensorsFile& file) {
  const auto& meta = file.metadata();
  auto it = meta.find("config");
  check<FormatError>(it != meta.end(), "model file: no 'config' in the metadata");
  try {
    return config_from_json_string(it->second);
  } catch (const ValueError& e) {
    throw FormatError(fmt::format("model file: bad config: {}", e.what()));
  }
}

// Reads model files and training checkpoints (train/checkpoint.hpp) alike: a checkpoint's
// optimizer state is skipped.
template <typename T>
GPT<T> load_model(const SafetensorsFile& file) {
  const GPTConfig config = read_model_config(file);
  // Every floating dtype takes 2 bytes or more: a config of more parameters than the file's
  // data can hold is refused before the model is allocated.
  uint64_t data_bytes = 0;
  for (const auto& [name, entry] : file.entries()) data_bytes += entry.end - entry.begin;
  check<FormatError>(static_cast<uint64_t>(config.num_parameters()) <= data_bytes / 2,
                     "model file: the config's {} parameters cannot fit in its {} data bytes",
                     config.num_parameters(), data_bytes);
  GPT<T> model(config, /*seed=*/0);
  const auto format = file.metadata().find("format");
  const bool checkpoint = format != file.metadata().end() && format->second == "minimoe-checkpoint";
  load_module(model, file, checkpoint ? "optimizer." : "");
  return model;
}

template <typename T>
GPT<T> load_model(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  try {
    return load_model<T>(file);
  } catch (const FormatError& e) {
    throw FormatError(fmt::format("{}: {}", path, e.what()));
  }
}

}  // namespace minimoe
