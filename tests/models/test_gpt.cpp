#include <minimoe/models/gpt.hpp>
#include <minimoe/models/presets.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

GPTConfig micro(const std::string& base) {
  GPTConfig c = preset(base);
  c.vocab_size = 11;
  c.context_length = 6;
  c.n_layers = 2;
  c.d_model = 8;
  c.n_heads = 2;
  c.ffn_hidden = 6;
  if (c.n_kv_heads > 0) c.n_kv_heads = 1;
  if (c.n_experts > 0) c.z_loss_weight = 0.01;
  return c;
}

Tensor<int32_t> tokens(Shape shape, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  Tensor<int32_t> t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = int32_t(rng.below(uint64_t(vocab)));
  return t;
}

}  // namespace

TEST_CASE("the minimoe preset has 20.8M parameters, 17.7M active") {
  GPTConfig c = preset("minimoe");
  CHECK(c.num_parameters() == 20833024);
  CHECK(c.num_active_parameters() == 17678080);
  CHECK(fmt::format("{:.1f}M / {:.1f}M", c.num_parameters() / 1e6,
                    c.num_active_parameters() / 1e6) == "20.8M / 17.7M");
  GPT<float> model(c, 0);
  CHECK(num_parameters(model) == c.num_parameters());
  CHECK(model.num_active_parameters() == c.num_active_parameters());
}

TEST_CASE("closed-form parameter counts match the module tree for every option") {
  std::vector<GPTConfig> configs;
  for (const std::string& name : preset_names()) configs.push_back(micro(name));
  GPTConfig c = micro("tiny");
  c.moe_every = 2;
  c.dense_hidden = 10;
  c.n_shared_experts = 1;
  c.router_bias = true;
  configs.push_back(c);
  c.tie_embeddings = false;
  c.bias = false;
  c.glu = true;
  configs.push_back(c);
  for (const GPTConfig& cfg : configs) {
    GPT<float> model(cfg, 1);
    CHECK(num_parameters(model) == cfg.num_parameters());
    CHECK(model.num_active_parameters() == cfg.num_active_parameters());
  }
}

TEST_CASE("GPT loss gradcheck (double) for every preset's architecture") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    GPTConfig c = micro(name);
    GPT<double> model(c, 2);
    Rng rng(3);
    for (auto& p : parameters(model)) {  // larger weights than init: gradients well above noise
      const bool gain = p.dim() == 1 && p.value().at({0}) == 1.0;
      p.value() = Tensor<double>::randn(p.shape(), rng, gain ? 0.1 : 0.4, gain ? 1.0 : 0.0);
    }
    const Tensor<int32_t> ids = tokens({2, 5}, c.vocab_size, 4);
    Tensor<int32_t> targets = tokens({2, 5}, c.vocab_size, 5);
    targets.at({1, 4}) = -100;  // ignored
    test::check_module_gradients(
        model, [&] { return model.loss(ids, targets).total; }, 6);
  }
}

TEST_CASE("GPT forward: shapes, determinism, losses, caches") {
  GPTConfig c = micro("tinymoe");
  GPT<float> a(c, 7), b(c, 7);
  const Tensor<int32_t> ids = tokens({2, 6}, c.vocab_size, 8);
  const Tensor<float> la = a(ids).value();
  CHECK(la.shape() == Shape{2, 6, 11});
  CHECK(la.to_vector() == b(ids).value().to_vector());
  GPTLoss<float> l = a.loss(ids, ids);
  CHECK(l.cross_entropy.item() == doctest::Approx(std::log(11.0)).epsilon(0.05));
  CHECK(l.aux_loss.item() > 0.0f);
  CHECK(l.total.item() ==
        doctest::Approx(l.cross_entropy.item() + c.aux_loss_weight * l.aux_loss.item() +
                        c.z_loss_weight * l.z_loss.item()));
  GPT<float> dense(micro("dense"), 7);
  CHECK(dense.loss(ids, ids).aux_loss.item() == 0.0f);

  // Decoding with KV caches gives the logits of the full forward.
  for (const char* name : {"tiny", "tinymoe"}) {
    GPT<float> m(micro(name), 9);
    NoGradGuard no_grad;
    const Tensor<float> full = m(ids).value();
    auto caches = m.make_caches(2);
    const Tensor<float> prefix = m(ids.slice(1, 0, 3).contiguous(), &caches).value();
    test::check_close(prefix, full.slice(1, 0, 3).contiguous(), 1e-4);
    for (int64_t t = 3; t < 6; ++t) {
      const Tensor<float> step = m(ids.slice(1, t, t + 1).contiguous(), &caches).value();
      test::check_close(step, full.slice(1, t, t + 1).contiguous(), 1e-4);
    }
    CHECK_THROWS_WITH_AS(m(ids.slice(1, 0, 1).contiguous(), &caches),
                         "GPT: 7 positions exceed the context length 6", ValueError);
  }
}

TEST_CASE("dropout: training differs run to run, eval is deterministic") {
  GPTConfig c = micro("tiny");
  c.dropout = 0.2;
  GPT<float> m(c, 1);
  const Tensor<int32_t> ids = tokens({1, 6}, c.vocab_size, 2);
  CHECK(m(ids).value().to_vector() != m(ids).value().to_vector());
  set_training(m, false);
  CHECK(m(ids).value().to_vector() == m(ids).value().to_vector());
}

TEST_CASE("config validation and JSON") {
  GPTConfig c = preset("tinymoe");
  nlohmann::json j = c;
  CHECK(j["positions"] == "rope");
  CHECK(j["norm"] == "rmsnorm");
  CHECK(j["activation"] == "silu");
  const GPTConfig back = j.get<GPTConfig>();
  CHECK(nlohmann::json(back) == j);
  CHECK(config_from_json_string("{\"n_layers\": 2}").n_layers == 2);

  auto rejects = [](const std::string& json, const char* message) {
    CHECK_THROWS_WITH_AS(config_from_json_string(json), message, ValueError);
  };
  rejects("{\"top_k\": 5}", "config: top_k (5) must be between 1 and n_experts (4)");
  rejects("{\"d_model\": 100, \"n_heads\": 3}",
          "config: d_model (100) is not divisible by n_heads (3)");
  rejects("{\"n_kv_heads\": 3}", "config: n_heads (4) is not divisible by n_kv_heads (3)");
  rejects("{\"n_layers\": 0}", "config: n_layers must be positive, got 0");
  rejects("{\"layers\": 2}", "config: unknown key 'layers'");
  rejects("{\"n_layers\": \"2\"}", "config: 'n_layers' must be an integer, got \"2\"");
  rejects("{\"bias\": 1}", "config: 'bias' must be a boolean, got 1");
  rejects("{\"norm\": \"batchnorm\"}", "config: unknown value \"batchnorm\" for 'norm'");
  rejects("{\"activation\": \"tanh\"}",
          "unknown activation 'tanh' (expected gelu, gelu_exact, relu, silu or relu2)");
  rejects("[1]", "config: expected a JSON object, got array");
  // Sizes no CPU trains are refused before anything is allocated, and counts cannot overflow.
  rejects("{\"d_model\": 4000000000000, \"n_heads\": 1}",
          "config: d_model 4000000000000 exceeds the maximum 1073741824");
  rejects("{\"n_layers\": 1000000000, \"d_model\": 1024}",
          "config: 8.41e+15 parameters exceed the maximum 68719476736");
  rejects("{\"n_layers\": " + std::string(20, '[') + std::string(20, ']') + "}",
          "config: JSON nested deeper than 16 levels");
  rejects(
      "{\"rope_base\": 1e400}",
      "config: invalid JSON: [json.exception.out_of_range.406] number overflow parsing '1e400'");
  rejects("{",
          "config: invalid JSON: [json.exception.parse_error.101] parse error at line 1, "
          "column 2: syntax error while parsing object key - unexpected end of input; "
          "expected string literal");
  CHECK_THROWS_WITH_AS(preset("huge"),
                       "unknown preset 'huge' (expected one of: minimoe, tiny, dense, tinymoe)",
                       ValueError);
}

TEST_CASE("the fused head loss equals cross_entropy of the logits, tied and untied, in float") {
  for (const bool tied : {true, false}) {
    CAPTURE(tied);
    GPTConfig c = preset("tinymoe");
    c.vocab_size = 700;
    c.context_length = 16;
    c.n_layers = 1;
    c.tie_embeddings = tied;
    GPT<float> fused(c, 12), unfused(c, 12);
    const Tensor<int32_t> ids = tokens({3, 16}, c.vocab_size, 13);
    Tensor<int32_t> targets = tokens({3, 16}, c.vocab_size, 14);
    targets.at({2, 15}) = kIgnoreIndex;
    Var<float> a = fused.head_loss(fused.hidden(ids), targets, kIgnoreIndex);
    Var<float> b = cross_entropy(unfused(ids), targets);
    CHECK(a.item() == doctest::Approx(b.item()).epsilon(1e-6));
    a.backward();
    b.backward();
    const auto pa = named_parameters(fused), pb = named_parameters(unfused);
    REQUIRE(pa.size() == pb.size());
    for (size_t i = 0; i < pa.size(); ++i) {
      CAPTURE(pa[i].first);
      REQUIRE(pa[i].second.grad().defined() == pb[i].second.grad().defined());
      if (pa[i].second.grad().defined())
        test::check_close(pa[i].second.grad(), pb[i].second.grad(), 1e-6);
    }
  }
}
