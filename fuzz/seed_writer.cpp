// Writes valid inputs of every fuzz target into OUT/<target>/: model files and a checkpoint of
// small models of each architecture, configs, tokenizer files. Generated rather than committed,
// so they follow the formats as the library writes them.
//
//   minimoe_fuzz_seeds OUT
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <minimoe/models/presets.hpp>
#include <minimoe/text/bpe_file.hpp>
#include <minimoe/text/bpe_train.hpp>
#include <minimoe/train/checkpoint.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;

namespace {

// Models of a few hundred parameters: small files, each option of the architecture present.
std::vector<GPTConfig> small_configs() {
  std::vector<GPTConfig> configs;
  for (const std::string& name : preset_names()) {
    GPTConfig c = preset(name);
    c.vocab_size = 7;
    c.context_length = 4;
    c.n_layers = 2;
    c.d_model = 4;
    c.n_heads = 2;
    c.n_kv_heads = c.n_kv_heads > 0 ? 1 : 0;
    c.ffn_hidden = 4;
    c.dense_hidden = 0;
    if (c.n_experts > 0) {
      c.n_experts = 3;
      c.top_k = 2;
    }
    configs.push_back(c);
  }
  GPTConfig shared = configs[1];
  shared.moe_every = 2;
  shared.n_shared_experts = 1;
  shared.router_bias = true;
  shared.aux_free_balancing = true;
  shared.capacity_factor = 1.25;
  shared.attn_softcap = 30;
  shared.dense_hidden = 6;
  configs.push_back(shared);
  for (const GPTConfig& c : configs) c.validate();
  return configs;
}

void write_text(const std::filesystem::path& path, const std::string& text) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out << text;
  check<IOError>(static_cast<bool>(out), "cannot write '{}'", path.string());
}

void write_safetensors_seeds(const std::filesystem::path& dir) {
  int i = 0;
  for (const GPTConfig& c : small_configs()) {
    GPT<float> model(c, 1);
    save_model(model, (dir / ("model" + std::to_string(i++) + ".safetensors")).string());
  }
  // Every dtype, an empty tensor and metadata that is no model's.
  write_text(dir / "dtypes.safetensors",
             safetensors_bytes<double>({{"f64", Tensor<double>({2, 2}, {1, -2, 0.5, 1e300})},
                                        {"empty", Tensor<double>({0, 3})}},
                                       {{"format", "pt"}}));
  write_text(dir / "ints.safetensors",
             safetensors_bytes<int64_t>({{"i64", Tensor<int64_t>({3}, {-1, 0, INT64_MAX})}}));
  write_text(dir / "bytes.safetensors",
             safetensors_bytes<uint8_t>({{"u8", Tensor<uint8_t>({4}, {0, 1, 127, 255})}}));
}

void write_checkpoint_seeds(const std::filesystem::path& dir) {
  GPTConfig noisy = small_configs()[1];
  noisy.n_layers = 1;
  noisy.dropout = 0.1;  // random streams of the modules in the training state
  noisy.router_jitter = 0.05;
  GPTConfig minimal;  // a dense model of 12 parameters: a small file, fast to mutate
  minimal.vocab_size = 2;
  minimal.context_length = 1;
  minimal.n_layers = 1;
  minimal.d_model = 1;
  minimal.n_heads = 1;
  minimal.ffn_hidden = 1;
  minimal.n_experts = 0;
  minimal.bias = false;
  minimal.norm = NormKind::RMSNorm;
  int i = 0;
  for (const GPTConfig& c : {noisy, minimal}) {
    GPT<float> model(c, 2);
    TrainOptions options;
    AdamW<float> optimizer(named_parameters(model), options.adamw);
    TrainState state;
    state.step = 3;
    state.total_steps = 1000;
    state.tokens = 4096;
    state.seconds = 1.5;
    state.loss_mean = 2.25;
    state.loss_count = 3;
    state.domain_tokens = {{"code", 100}, {"story", 200}};
    save_checkpoint((dir / ("checkpoint" + std::to_string(i++) + ".safetensors")).string(), model,
                    optimizer, state, options, "bytes");
  }
}

void write_config_seeds(const std::filesystem::path& dir) {
  for (const std::string& name : preset_names())
    write_text(dir / (name + ".json"), nlohmann::json(preset(name)).dump(2));
  int i = 0;
  for (const GPTConfig& c : small_configs())
    write_text(dir / ("small" + std::to_string(i++) + ".json"), nlohmann::json(c).dump());
}

void write_tokenizer_seeds(const std::filesystem::path& bpe_dir,
                           const std::filesystem::path& gpt2_dir,
                           const std::filesystem::path& text_dir) {
  const std::string text = fuzz::training_text();
  BpeTrainOptions options;
  options.vocab_size = 300;
  options.special_tokens = {"<|endoftext|>", "<|pad|>"};
  write_text(bpe_dir / "trained.json", bpe_to_string(train_bpe(text, options)));
  options.vocab_size = 256;
  options.special_tokens = {};
  write_text(bpe_dir / "bytes_only.json", bpe_to_string(train_bpe(text, options)));

  const auto [encoder, merges] = fuzz::tiny_gpt2_files();
  write_text(gpt2_dir / "tiny", encoder + std::string(1, '\0') + merges);

  write_text(text_dir / "training_text", text);
}

}  // namespace

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s OUT\n", argv[0]);
    return 2;
  }
  const std::filesystem::path out = argv[1];
  const auto dir = [&](const char* target) {
    std::filesystem::create_directories(out / target);
    return out / target;
  };
  try {
    write_safetensors_seeds(dir("fuzz_safetensors"));
    write_checkpoint_seeds(dir("fuzz_checkpoint"));
    write_config_seeds(dir("fuzz_config"));
    write_tokenizer_seeds(dir("fuzz_bpe_file"), dir("fuzz_gpt2_vocab"), dir("fuzz_bpe_roundtrip"));
  } catch (const std::exception& e) {
    std::fprintf(stderr, "minimoe_fuzz_seeds: %s\n", e.what());
    return 1;
  }
  return 0;
}
