// Fuzzes the GPTConfig JSON parser: what it accepts is valid, round-trips through JSON, and
// has a parameter count that neither overflows nor is absurd.
#include <cstdint>
#include <optional>

#include <minimoe/models/config.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<GPTConfig> config;
  if (!accepts([&] { config = config_from_json_string(fuzz::bytes_of(data, size)); })) return 0;
  const nlohmann::json j = *config;
  require(nlohmann::json(config_from_json_string(j.dump())) == j, "the config round-trips");
  const int64_t total = config->num_parameters(), active = config->num_active_parameters();
  require(0 < active && active <= total, "0 < active parameters <= parameters");
  return 0;
}
