#include <minimoe/io/model_file.hpp>
#include <minimoe/models/presets.hpp>

#include <cstdio>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

GPTConfig small(const std::string& name) {
  GPTConfig c = preset(name);
  c.vocab_size = 17;
  c.context_length = 8;
  c.n_layers = 2;
  c.d_model = 8;
  c.ffn_hidden = 8;
  return c;
}

}  // namespace

TEST_CASE("a saved model loads with its config and gives the same logits") {
  const std::string path = "test_model_file.safetensors";
  for (const std::string& name : preset_names()) {
    GPT<float> model(small(name), 3);
    save_model(model, path);
    GPT<float> loaded = load_model<float>(path);
    CHECK(nlohmann::json(loaded.config) == nlohmann::json(model.config));
    Tensor<int32_t> ids({1, 4}, {1, 5, 16, 0});
    CHECK(loaded(ids).value().to_vector() == model(ids).value().to_vector());
    const SafetensorsFile f = SafetensorsFile::open(path);
    CHECK(f.metadata().at("format") == "minimoe");
    CHECK(f.entry("wte.weight").shape == Shape{17, 8});
  }
  std::remove(path.c_str());
}

TEST_CASE("a model file from another config is rejected with the reason") {
  GPT<float> model(small("tiny"), 3);
  auto tensors = named_tensors(model);
  const std::string config = nlohmann::json(model.config).dump();
  auto load = [](const std::string& bytes) {
    return load_model<float>(SafetensorsFile::from_bytes(bytes));
  };
  // Missing tensor.
  auto missing = tensors;
  missing.pop_back();
  CHECK_THROWS_WITH_AS(load(safetensors_bytes(missing, {{"config", config}})),
                       "model file: missing tensor 'ln_f.bias'", FormatError);
  // Unexpected tensor.
  auto extra = tensors;
  extra.emplace_back("extra", Tensor<float>({1}));
  CHECK_THROWS_WITH_AS(load(safetensors_bytes(extra, {{"config", config}})),
                       "model file: unexpected tensor 'extra'", FormatError);
  // Config says another width.
  GPTConfig wider = model.config;
  wider.vocab_size = 18;
  CHECK_THROWS_WITH_AS(
      load(safetensors_bytes(tensors, {{"config", nlohmann::json(wider).dump()}})),
      "model file: tensor 'wte.weight' has shape [17, 8], the model expects [18, 8]", FormatError);
  CHECK_THROWS_WITH_AS(load(safetensors_bytes(tensors)), "model file: no 'config' in the metadata",
                       FormatError);
  CHECK_THROWS_WITH_AS(
      load(safetensors_bytes(tensors, {{"config", "{\"top_k\": 9}"}})),
      "model file: bad config: config: top_k (9) must be between 1 and n_experts (4)", FormatError);
  // A config far larger than the file is refused before the model is allocated (400 MB here).
  CHECK_THROWS_WITH_AS(
      load(safetensors_bytes(
          tensors, {{"config", "{\"vocab_size\": 100000000, \"d_model\": 1, \"n_heads\": 1}"}})),
      "model file: the config's 100024914 parameters cannot fit in its 8288 data bytes",
      FormatError);
}
