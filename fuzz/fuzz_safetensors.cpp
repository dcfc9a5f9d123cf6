// Fuzzes the safetensors reader and, on what it accepts, the model-file layer above it: the
// config in the metadata and load_model.
#include <cstdint>
#include <optional>
#include <string>

#include <minimoe/io/model_file.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::accepts;
using fuzz::require;

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::optional<SafetensorsFile> file;
  if (!accepts([&] { file = SafetensorsFile::from_bytes(fuzz::bytes_of(data, size)); })) return 0;
  for (const auto& [name, entry] : file->entries()) {
    // Each tensor converts to a floating or an integer type, and refuses the other.
    const bool as_float = accepts([&, &name = name, &entry = entry] {
      require(file->tensor<float>(name).shape() == entry.shape, "tensor<float> keeps the shape");
    });
    const bool as_int = accepts([&, &name = name] { file->tensor<int64_t>(name); });
    require(as_float != as_int, "a tensor converts to exactly one kind of type");
  }
  if (!accepts([&] { read_model_config(*file); })) return 0;
  accepts([&] {
    GPT<float> model = load_model<float>(*file);
    require(model.config.num_parameters() == num_parameters(model), "the config's parameters");
  });
  return 0;
}
