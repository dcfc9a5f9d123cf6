// minimoe/train/checkpoint.hpp: everything a training run needs to continue, in one
// safetensors file.
//
//   save_checkpoint("run/checkpoint.safetensors", model, optimizer, state, options, tokenizer);
//   Checkpoint<float> c = load_checkpoint<float>("run/checkpoint.safetensors");
//   AdamW<float> opt(named_parameters(c.model), c.options.adamw);
//   restore_optimizer(opt, c);
//
// Tensors: the model's, under their module-tree names (so load_model and any safetensors
// reader see the weights), plus "optimizer.exp_avg.<name>" and "optimizer.exp_avg_sq.<name>"
// for AdamW's moments (PyTorch's names). Metadata: "format": "minimoe-checkpoint", "config"
// (GPTConfig), "tokenizer" (embed_tokenizer), "train" (TrainState and TrainOptions as JSON:
// the step, the data Rng, every random stream of the model, the loss statistics the spike
// guard uses). The file is written to a temporary and renamed: a kill at any moment leaves the
// previous checkpoint whole (docs/formats.md).
#pragma once

#include <cstdint>
#include <map>
#include <string>
#include <utility>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/io/model_file.hpp"
#include "minimoe/optim/adamw.hpp"
#include "minimoe/tensor/random.hpp"
#include "minimoe/train/options.hpp"

namespace minimoe {

inline constexpr const char* kCheckpointFormat = "minimoe-checkpoint";

// What changes as training runs, besides the weights and the optimizer.
struct TrainState {
  int64_t step = 0;         // optimizer steps taken (skipped ones included)
  int64_t total_steps = 0;  // the schedule's length; fixed once known
  int64_t tokens = 0;       // training tokens seen
  double seconds = 0;       // training time so far, across resumes
  int64_t skipped = 0;      // bad steps skipped
  double loss_mean = 0;     // running mean of the training loss (the spike guard's reference)
  int64_t loss_count = 0;   // steps in loss_mean
  Rng data_rng;             // draws the batches
  std::map<std::string, Rng::Snapshot> module_rngs;  // dropout, router noise
  std::map<std::string, int64_t> domain_tokens;      // per domain, to detect changed data
};

namespace detail {

inline nlohmann::json rng_to_json(const Rng::Snapshot& s) {
  return {{"words", s.words}, {"has_spare", s.has_spare}, {"spare", s.spare}};
}

// A JSON integer as T. nlohmann would also convert a float, with undefined behaviour when it
// is out of T's range.
template <typename T>
T json_integer(const nlohmann::json& value, const std::string& name) {
  check<FormatError>(value.is_number_integer(), "'{}' is not an integer: {}", name, value.dump());
  return value.get<T>();
}

inline Rng::Snapshot rng_from_json(const nlohmann::json& j) {
  Rng::Snapshot s{};
  const nlohmann::json& words = j.at("words");
  check<FormatError>(words.is_array() && words.size() == s.words.size(),
                     "random state: 'words' is not an array of {}", s.words.size());
  bool zero = true;
  for (size_t i = 0; i < s.words.size(); ++i) {
    s.words[i] = json_integer<uint64_t>(words[i], "words");
    zero = zero && s.words[i] == 0;
  }
  // xoshiro256** never leaves the zero state: every draw would be 0, normal() would never return.
  check<FormatError>(!zero, "random state: all words are zero");
  j.at("has_spare").get_to(s.has_spare);
  j.at("spare").get_to(s.spare);
  return s;
}

inline nlohmann::json state_to_json(const TrainState& s) {
  nlohmann::json rngs = nlohmann::json::object();
  for (const auto& [name, snapshot] : s.module_rngs) rngs[name] = rng_to_json(snapshot);
  return {{"step", s.step},
          {"total_steps", s.total_steps},
          {"tokens", s.tokens},
          {"seconds", s.seconds},
          {"skipped", s.skipped},
          {"loss_mean", s.loss_mean},
          {"loss_count", s.loss_count},
          {"data_rng", rng_to_json(s.data_rng.snapshot())},
          {"module_rngs", rngs},
          {"domain_tokens", s.domain_tokens}};
}

inline TrainState state_from_json(const nlohmann::json& j) {
  TrainState s;
  const auto count = [&](const char* key) { return json_integer<int64_t>(j.at(key), key); };
  s.step = count("step");
  s.total_steps = count("total_steps");
  s.tokens = count("tokens");
  j.at("seconds").get_to(s.seconds);
  s.skipped = count("skipped");
  j.at("loss_mean").get_to(s.loss_mean);
  s.loss_count = count("loss_count");
  s.data_rng.restore(rng_from_json(j.at("data_rng")));
  for (const auto& [name, value] : j.at("module_rngs").items())
    s.module_rngs[name] = rng_from_json(value);
  const nlohmann::json& domains = j.at("domain_tokens");
  check<FormatError>(domains.is_object(), "'domain_tokens' is not an object");
  for (const auto& item : domains.items())
    s.domain_tokens[item.key()] = json_integer<int64_t>(item.value(), item.key());
  check<FormatError>(
      s.step >= 0 && s.total_steps >= 0 && s.tokens >= 0 && s.skipped >= 0 && s.loss_count >= 0,
      "negative counters in the training state");
  return s;
}

inline std::string moment_name(const char* moment, const std::string& parameter) {
  return fmt::format("optimizer.{}.{}", moment, parameter);
}

}  // namespace detail

// `extra` metadata (e.g. where the data came from) is stored alongside.
template <typename T>
void save_checkpoint(const std::string& path, GPT<T>& model, AdamW<T>& optimizer, TrainState state,
                     const TrainOptions& options, const std::string& tokenizer,
                     std::map<std::string, std::string> extra = {}) {
  for (auto& [name, rng] : named_rngs(model)) state.module_rngs[name] = rng->snapshot();
  std::vector<std::pair<std::string, Tensor<T>>> tensors = named_tensors(model);
  for (auto& slot : optimizer.slots()) {
    tensors.emplace_back(detail::moment_name("exp_avg", slot.name), slot.m);
    tensors.emplace_back(detail::moment_name("exp_avg_sq", slot.name), slot.v);
  }
  nlohmann::json train{{"state", detail::state_to_json(state)},
                       {"options", options},
                       {"optimizer_steps", optimizer.steps()}};
  extra["format"] = kCheckpointFormat;
  extra["config"] = nlohmann::json(model.config).dump();
  extra["tokenizer"] = tokenizer;
  extra["train"] = train.dump();
  save_safetensors(path, tensors, extra);
}

template <typename T>
struct Checkpoint {
  GPT<T> model;
  TrainState state;
  TrainOptions options;
  std::string tokenizer;  // embedded (text/tokenizer.hpp)
  int64_t optimizer_steps = 0;
  std::map<std::string, std::pair<Tensor<T>, Tensor<T>>> moments;  // name -> (m, v)
};

// FormatError naming the problem for anything that is not a complete checkpoint written by
// save_checkpoint.
template <typename T>
Checkpoint<T> load_checkpoint(const SafetensorsFile& file) {
  const auto& meta = file.metadata();
  const auto format = meta.find("format");
  check<FormatError>(format != meta.end() && format->second == kCheckpointFormat,
                     "not a training checkpoint (metadata 'format' is not \"{}\")",
                     kCheckpointFormat);
  const auto train_text = meta.find("train");
  const auto tokenizer = meta.find("tokenizer");
  check<FormatError>(train_text != meta.end() && tokenizer != meta.end(),
                     "checkpoint without 'train' or 'tokenizer' metadata");
  Checkpoint<T> c;
  c.model = load_model<T>(file);
  c.tokenizer = tokenizer->second;
  try {
    // It nests 5 levels; refusing deeper JSON as it is parsed bounds the recursion of the
    // dump() that error messages call.
    const nlohmann::json train = nlohmann::json::parse(
        train_text->second, [](int depth, nlohmann::json::parse_event_t, nlohmann::json&) {
          check<FormatError>(depth <= 16, "JSON nested deeper than 16 levels");
          return true;
        });
    c.state = detail::state_from_json(train.at("state"));
    c.options = train.at("options").get<TrainOptions>();
    c.optimizer_steps =
        detail::json_integer<int64_t>(train.at("optimizer_steps"), "optimizer_steps");
    check<FormatError>(c.optimizer_steps >= 0, "negative optimizer steps");
  } catch (const nlohmann::json::exception& e) {
    throw FormatError(fmt::format("bad 'train' metadata: {}", e.what()));
  } catch (const FormatError& e) {
    throw FormatError(fmt::format("bad 'train' metadata: {}", e.what()));
  }
  for (const auto& [name, parameter] : named_parameters(c.model)) {
    const std::string m = detail::moment_name("exp_avg", name);
    const std::string v = detail::moment_name("exp_avg_sq", name);
    check<FormatError>(file.contains(m) && file.contains(v), "missing optimizer state of '{}'",
                       name);
    Tensor<T> mt = file.tensor<T>(m), vt = file.tensor<T>(v);
    check<FormatError>(mt.shape() == parameter.shape() && vt.shape() == parameter.shape(),
                       "optimizer state of '{}' has shape {}, the parameter {}", name, mt.shape(),
                       parameter.shape());
    c.moments.emplace(name, std::make_pair(std::move(mt), std::move(vt)));
  }
  for (auto& [name, rng] : named_rngs(c.model)) {
    const auto it = c.state.module_rngs.find(name);
    check<FormatError>(it != c.state.module_rngs.end(), "missing random state of '{}'", name);
    rng->restore(it->second);
  }
  return c;
}

// As above, the message starting with the path; IOError when the file cannot be read.
template <typename T>
Checkpoint<T> load_checkpoint(const std::string& path) {
  const SafetensorsFile file = SafetensorsFile::open(path);
  try {
    return load_checkpoint<T>(file);
  } catch (const FormatError& e) {
    throw FormatError(fmt::format("{}: {}", path, e.what()));
  }
}

// Copies the checkpoint's moments and step count into an AdamW built over c.model.
template <typename T>
void restore_optimizer(AdamW<T>& optimizer, const Checkpoint<T>& c) {
  for (auto& slot : optimizer.slots()) {
    const auto it = c.moments.find(slot.name);
    check<FormatError>(it != c.moments.end(), "checkpoint: no optimizer state for '{}'", slot.name);
    slot.m.copy_(it->second.first);
    slot.v.copy_(it->second.second);
  }
  optimizer.set_steps(c.optimizer_steps);
}

}  // namespace minimoe
