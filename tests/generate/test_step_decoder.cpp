#include <doctest/doctest.h>

#include <minimoe/generate/generate.hpp>
#include <minimoe/models/presets.hpp>
#include <minimoe/models/quantize.hpp>

#include <cmath>

#include "../preset_util.hpp"

using namespace minimoe;

namespace {

GPTConfig small_preset(const std::string& name) { return test::shrunk_preset(name, 300, 24); }

std::vector<int32_t> token_ids(int64_t n, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  std::vector<int32_t> ids(static_cast<size_t>(n));
  for (int32_t& id : ids) id = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(vocab));
  return ids;
}

// Largest |StepDecoder - graph| over the logits of every position after a prompt of `prompt`
// tokens, up to the whole context: the prompt goes through the graph path (prefill) once, then
// each token through the decoder on one set of caches and through GPT::hidden + GPT::head on
// another (whose logits tests/generate/test_generate.cpp checks against a full recomputation).
// The caches must end up holding the same keys and values.
template <typename T>
double worst_step_error(GPT<T>& model, int64_t prompt, uint64_t seed) {
  const GPTConfig& c = model.config;
  set_training(model, false);
  NoGradGuard no_grad;
  const std::vector<int32_t> ids = token_ids(c.context_length, c.vocab_size, seed);
  std::vector<KVCache<T>> caches = model.make_caches(1), graph_caches = model.make_caches(1);
  Tensor<int32_t> head({1, prompt});
  std::copy_n(ids.begin(), prompt, head.data());
  next_token_logits(model, head, caches);
  next_token_logits(model, head, graph_caches);
  StepDecoder<T> step(model);
  double worst = 0;
  for (int64_t t = prompt; t < c.context_length; ++t) {
    const T* logits = step(ids[static_cast<size_t>(t)], caches);
    Tensor<int32_t> one({1, 1});
    one.data()[0] = ids[static_cast<size_t>(t)];
    const Tensor<T> expected = next_token_logits(model, one, graph_caches);
    for (int64_t v = 0; v < c.vocab_size; ++v)
      worst = std::max(worst, std::abs(double(logits[v]) - double(expected.data()[v])));
  }
  for (size_t l = 0; l < caches.size(); ++l) {
    CHECK(caches[l].length == c.context_length);
    for (int64_t i = 0; i < caches[l].keys.numel(); ++i) {
      worst = std::max(worst, std::abs(double(caches[l].keys.data()[i]) -
                                       double(graph_caches[l].keys.data()[i])));
      worst = std::max(worst, std::abs(double(caches[l].values.data()[i]) -
                                       double(graph_caches[l].values.data()[i])));
    }
  }
  return worst;
}

}  // namespace

TEST_CASE("the step decoder gives the logits of a full recomputation, for every preset") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    GPT<float> model(small_preset(name), 5);
    CHECK(worst_step_error(model, 5, 3) <= 1e-4);
    GPT<float> from_start(small_preset(name), 6);
    CHECK(worst_step_error(from_start, 1, 4) <= 1e-4);  // a one-token prompt
  }
}

TEST_CASE("the step decoder matches the graph in double precision to rounding") {
  GPTConfig c = small_preset("tinymoe");
  c.d_model = 64;
  c.n_heads = 4;
  c.n_kv_heads = 2;
  GPT<double> model(c, 8);
  CHECK(worst_step_error(model, 3, 9) <= 1e-11);
}

TEST_CASE("the step decoder covers every architecture option of the config") {
  struct Case {
    const char* what;
    void (*apply)(GPTConfig&);
  };
  const Case cases[] = {
      {"dense and MoE blocks, shared experts",
       [](GPTConfig& c) {
         c.moe_every = 2;
         c.dense_hidden = 96;
         c.n_shared_experts = 1;
       }},
      {"Switch weights, router bias, capacity factor",
       [](GPTConfig& c) {
         c.normalize_topk = false;
         c.router_bias = true;
         c.capacity_factor = 1.0;
         c.top_k = 1;
       }},
      {"every expert chosen, soft-capped attention",
       [](GPTConfig& c) {
         c.top_k = c.n_experts;
         c.attn_softcap = 5.0;
       }},
      {"ReLU^2 GLU experts, no biases",
       [](GPTConfig& c) {
         c.activation = Activation::ReLU2;
         c.glu = true;
         c.bias = false;
       }},
      {"untied head, RMSNorm, RoPE, exact GELU",
       [](GPTConfig& c) {
         c.tie_embeddings = false;
         c.norm = NormKind::RMSNorm;
         c.positions = PositionEncoding::RoPE;
         c.activation = Activation::GELUExact;
       }},
      {"a dense model",
       [](GPTConfig& c) {
         c.n_experts = 0;
         c.activation = Activation::ReLU;
       }},
  };
  for (const Case& test : cases) {
    CAPTURE(test.what);
    GPTConfig c = small_preset("tiny");
    test.apply(c);
    c.validate();
    GPT<float> model(c, 21);
    CHECK(worst_step_error(model, 4, 22) <= 1e-4);
  }
}

TEST_CASE("the step decoder follows the aux-loss-free selection bias") {
  GPTConfig c = small_preset("tiny");
  c.aux_free_balancing = true;
  GPT<float> model(c, 2);
  for (Block<float>& b : model.blocks) {  // a bias strong enough to change the choice
    Tensor<float>& bias = b.moe.router.selection_bias;
    for (int64_t e = 0; e < bias.numel(); ++e) bias.data()[e] = 0.3f * float(e % 2);
  }
  CHECK(worst_step_error(model, 4, 5) <= 1e-4);
}

TEST_CASE("the step decoder reads int8 weights as the quantised graph does") {
  for (const char* name : {"tiny", "tinymoe"}) {
    CAPTURE(name);
    GPT<float> model(small_preset(name), 13);
    quantize_int8(model);
    CHECK(worst_step_error(model, 4, 14) <= 1e-4);
  }
}

TEST_CASE("the step decoder gives the same logits whatever the number of threads") {
  // More threads than key/value heads (tinymoe has 2) leave some without attention work; a
  // vocabulary of 4096 splits the head in uneven slices.
  for (const char* name : {"tiny", "tinymoe"}) {
    CAPTURE(name);
    GPTConfig c = small_preset(name);
    c.vocab_size = 4096 + 3;
    c.n_shared_experts = 1;
    GPT<float> model(c, 17);
    set_training(model, false);
    NoGradGuard no_grad;
    const std::vector<int32_t> ids = token_ids(c.context_length, c.vocab_size, 5);
    std::vector<std::vector<float>> runs;
    for (int threads : {1, 2, 3, 5}) {
      CAPTURE(threads);
      StepDecoder<float> step(model, threads);
      std::vector<KVCache<float>> caches = model.make_caches(1);
      std::vector<float> all;
      for (int32_t id : ids) {
        const float* logits = step(id, caches);
        all.insert(all.end(), logits, logits + c.vocab_size);
      }
      runs.push_back(all);
    }
    for (size_t r = 1; r < runs.size(); ++r) {
      double worst = 0;
      for (size_t i = 0; i < runs[0].size(); ++i)
        worst = std::max(worst, std::abs(double(runs[r][i]) - double(runs[0][i])));
      CHECK(worst <= 1e-4);
    }
  }
}

TEST_CASE("generation with one sequence takes the step decoder and gives the batched tokens") {
  GPT<float> model(small_preset("tinymoe"), 31);
  GenerateOptions o;
  o.max_tokens = 15;
  o.seed = 4;
  o.sampling.temperature = 0.9;
  const std::vector<int32_t> prompt{3, 1, 4, 1, 5};
  const Generation alone = generate(model, prompt, o);
  // With a second sequence in the batch every step goes through the packed graph forward.
  const std::vector<Generation> both = generate_batch(model, {{prompt, o}, {{2, 7}, o}});
  CHECK(alone.ids.size() == 15);
  CHECK(alone.ids == both[0].ids);
}

TEST_CASE("the step decoder refuses bad tokens, caches and full contexts") {
  GPT<float> model(small_preset("tiny"), 1);
  NoGradGuard no_grad;
  StepDecoder<float> step(model);
  std::vector<KVCache<float>> caches = model.make_caches(1);
  CHECK_THROWS_AS(step(-1, caches), IndexError);
  CHECK_THROWS_AS(step(int32_t(model.config.vocab_size), caches), IndexError);
  std::vector<KVCache<float>> too_few(caches.begin(), caches.begin() + 1);
  CHECK_THROWS_AS(step(1, too_few), ValueError);
  std::vector<KVCache<float>> batch_of_two = model.make_caches(2);
  CHECK_THROWS_AS(step(1, batch_of_two), ValueError);
  for (int64_t t = 0; t < model.config.context_length; ++t) step(1, caches);
  CHECK_THROWS_WITH_AS(step(1, caches), doctest::Contains("fills the context"), ValueError);
  caches.front().reset();  // the layers' caches out of step
  CHECK_THROWS_WITH_AS(step(1, caches), doctest::Contains("same length"), ValueError);

  model.blocks.front().moe.expert_parallel = [](MoELayer<Expert<float>>&, const Var<float>& x) {
    return x;
  };
  CHECK_FALSE(StepDecoder<float>::supports(model));
  CHECK_THROWS_WITH_AS(StepDecoder<float>{model}, doctest::Contains("expert parallelism"),
                       ValueError);
}
