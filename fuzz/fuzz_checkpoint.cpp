// Fuzzes the training-checkpoint loader on whole files: the weights, the optimizer moments,
// the training state (step, counters, the data and module random streams, the tokens seen
// per domain) and the options, then restores an optimizer from what it accepts.
#include <cstdint>
#include <optional>

#include <minimoe/train/checkpoint.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<SafetensorsFile> file;
  if (!accepts([&] { file = SafetensorsFile::from_bytes(fuzz::bytes_of(data, size)); })) return 0;
  std::optional<Checkpoint<float>> c;
  if (!accepts([&] { c = load_checkpoint<float>(*file); })) return 0;
  require(c->moments.size() == named_parameters(c->model).size(), "one moment pair per parameter");
  require(c->state.step >= 0 && c->state.tokens >= 0 && c->optimizer_steps >= 0,
          "counters are not negative");
  // Restored random streams draw (a stream stuck at zero would loop in normal()).
  c->state.data_rng.normal();
  for (auto& [name, rng] : named_rngs(c->model)) rng->normal();
  AdamW<float> optimizer(named_parameters(c->model), c->options.adamw);
  restore_optimizer(optimizer, *c);
  require(optimizer.steps() == c->optimizer_steps, "the optimizer resumes at the saved step");
  return 0;
}
