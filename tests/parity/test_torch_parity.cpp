// Parity with PyTorch: tools/torch_reference.py rebuilds the GPT from a minimoe model file
// and computes logits, losses and every parameter gradient in float32; minimoe must agree to
// a relative error of 1e-4 (per tensor, in the max norm).
//
// MINIMOE_PYTHON (an interpreter with torch) and MINIMOE_TORCH_REFERENCE (the script) come
// from tests/CMakeLists.txt, which only builds this test when such an interpreter exists.
#include <cstdlib>
#include <filesystem>
#include <random>

#include <minimoe/minimoe.hpp>

#include "../test_util.hpp"

using namespace minimoe;
namespace fs = std::filesystem;

namespace {

GPTConfig reduced(const std::string& name) {
  GPTConfig c = preset(name);
  c.vocab_size = 97;
  c.context_length = 16;
  c.n_layers = 2;
  c.d_model = 32;
  c.ffn_hidden = 48;
  if (c.n_experts == 0) c.ffn_hidden = 96;  // dense: same active FLOPs as top-2 of 48
  return c;
}

// Every architecture option at once that the presets leave off.
GPTConfig variants() {
  GPTConfig c = reduced("minimoe");
  c.n_layers = 3;
  c.moe_every = 2;  // dense, MoE, dense
  c.dense_hidden = 40;
  c.n_shared_experts = 1;
  c.router_bias = true;
  c.normalize_topk = false;
  c.capacity_factor = 1.0;  // some pairs are dropped
  c.tie_embeddings = false;
  c.attn_softcap = 5.0;
  c.activation = Activation::GELUExact;
  c.glu = true;
  c.z_loss_weight = 0.01;
  c.validate();
  return c;
}

// max |a - b| / max(max |b|, floor): the error relative to the tensor's scale. The floor is
// for gradients that are zero in exact arithmetic (the key bias's: softmax ignores a shift
// that is the same for every key), where both sides hold only rounding noise.
double relative_error(const Tensor<float>& actual, const Tensor<float>& expected,
                      double floor = 1e-3) {
  REQUIRE(actual.shape() == expected.shape());
  const std::vector<float> a = actual.to_vector(), e = expected.to_vector();
  double diff = 0, scale = 0;
  for (size_t i = 0; i < a.size(); ++i) {
    diff = std::max(diff, std::abs(double(a[i]) - double(e[i])));
    scale = std::max(scale, std::abs(double(e[i])));
  }
  return diff / std::max(scale, floor);
}

void check_parity(const std::string& label, const GPTConfig& config) {
  CAPTURE(label);
  GPT<float> model(config, 5);
  Rng rng(6);
  // Weights larger than the init so that gradients and routing decisions are far from ties.
  for (auto& [name, p] : named_parameters(model)) {
    const bool gain = name.find("norm") != std::string::npos || name.find("ln") == 0 ||
                      name.find(".ln") != std::string::npos;
    p.value() = Tensor<float>::randn(p.shape(), rng, gain ? 0.1 : 0.3, gain ? 1.0 : 0.0);
  }
  Tensor<int32_t> ids({3, config.context_length}), targets(ids.shape());
  for (int64_t i = 0; i < ids.numel(); ++i) {
    ids.data()[i] = int32_t(rng.below(uint64_t(config.vocab_size)));
    targets.data()[i] = int32_t(rng.below(uint64_t(config.vocab_size)));
  }
  targets.at({2, 3}) = kIgnoreIndex;

  const fs::path dir = fs::temp_directory_path() /
                       fmt::format("minimoe_parity_{}_{}", label, std::random_device{}());
  fs::create_directories(dir);
  const fs::path model_path = dir / "model.safetensors", batch_path = dir / "batch.safetensors",
                 out_path = dir / "reference.safetensors";
  save_model(model, model_path.string());
  save_safetensors<int32_t>(batch_path.string(), {{"ids", ids}, {"targets", targets}});
  const std::string command =
      fmt::format("\"{}\" \"{}\" \"{}\" \"{}\" \"{}\"", MINIMOE_PYTHON, MINIMOE_TORCH_REFERENCE,
                  model_path.string(), batch_path.string(), out_path.string());
  REQUIRE_MESSAGE(std::system(command.c_str()) == 0, command);
  const SafetensorsFile reference = SafetensorsFile::open(out_path.string());

  GPTLoss<float> loss = model.loss(ids, targets);
  loss.total.backward();
  // The loss, not the logits, is what backward saw; recompute the logits for comparison.
  const Tensor<float> logits = [&] {
    NoGradGuard no_grad;
    return model(ids).value();
  }();

  constexpr double kTolerance = 1e-4;
  const std::vector<std::pair<std::string, Tensor<float>>> outputs = {
      {"logits", logits},
      {"loss", loss.total.value()},
      {"cross_entropy", loss.cross_entropy.value()},
      {"aux_loss", loss.aux_loss.value()},
      {"z_loss", loss.z_loss.value()}};
  double worst = 0;
  for (const auto& [name, value] : outputs) {
    CAPTURE(name);
    const double error = relative_error(value, reference.tensor<float>(name));
    CHECK(error <= kTolerance);
    worst = std::max(worst, error);
  }
  int64_t compared = 0;
  for (auto& [name, p] : named_parameters(model)) {
    CAPTURE(name);
    const Tensor<float> grad = p.has_grad() ? p.grad() : Tensor<float>(p.shape());
    const double error = relative_error(grad, reference.tensor<float>("grad." + name));
    CHECK(error <= kTolerance);
    worst = std::max(worst, error);
    ++compared;
  }
  CHECK(compared == static_cast<int64_t>(parameters(model).size()));
  MESSAGE(fmt::format("{}: {} outputs and {} gradients, worst relative error {:.2e}", label,
                      outputs.size(), compared, worst));
  fs::remove_all(dir);
}

}  // namespace

TEST_CASE("PyTorch parity: the minimoe preset at reduced vocabulary and width") {
  check_parity("minimoe", reduced("minimoe"));
}

TEST_CASE("PyTorch parity: the Tiny-MoE-like preset (RMSNorm, RoPE, GQA, QK-norm, SwiGLU)") {
  check_parity("tinymoe", reduced("tinymoe"));
}

TEST_CASE("PyTorch parity: the dense preset") { check_parity("dense", reduced("dense")); }

TEST_CASE("PyTorch parity: interleaved dense blocks, shared expert, capacity, softcap") {
  check_parity("variants", variants());
}
