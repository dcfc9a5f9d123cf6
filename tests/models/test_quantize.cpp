#include <algorithm>
#include <cmath>
#include <functional>

#include <minimoe/generate/generate.hpp>
#include <minimoe/models/presets.hpp>
#include <minimoe/models/quantize.hpp>

#include "../preset_util.hpp"
#include "../test_util.hpp"

using namespace minimoe;

namespace {

Tensor<int32_t> random_ids(int64_t count, int64_t vocab, uint64_t seed) {
  Rng rng(seed);
  Tensor<int32_t> ids({1, count});
  for (int64_t t = 0; t < count; ++t)
    ids.data()[t] = static_cast<int32_t>(rng.below(static_cast<uint64_t>(vocab)));
  return ids;
}

Tensor<float> dequantised(const Int8Weight& w) {
  Tensor<float> t({w.out_features, w.in_features});
  for (int64_t o = 0; o < w.out_features; ++o)
    for (int64_t i = 0; i < w.in_features; ++i)
      t.data()[o * w.in_features + i] = w.scale[o] * float(w.q[o * w.in_features + i]);
  return t;
}

// fn(a, b) for the Linears quantize_int8 converts, at the same place in two models of one
// configuration.
void for_each_quantised(GPT<float>& a, GPT<float>& b,
                        const std::function<void(Linear<float>&, Linear<float>&)>& fn) {
  auto experts = [&](Expert<float>& x, Expert<float>& y) {
    fn(x.up, y.up);
    if (x.config.glu) fn(x.gate, y.gate);
    fn(x.down, y.down);
  };
  for (size_t l = 0; l < a.blocks.size(); ++l) {
    Block<float>& x = a.blocks[l];
    Block<float>& y = b.blocks[l];
    fn(x.attn.q_proj, y.attn.q_proj);
    fn(x.attn.k_proj, y.attn.k_proj);
    fn(x.attn.v_proj, y.attn.v_proj);
    fn(x.attn.o_proj, y.attn.o_proj);
    if (!x.is_moe) experts(x.mlp, y.mlp);
    for (size_t e = 0; x.is_moe && e < x.moe.experts.size(); ++e)
      experts(x.moe.experts[e], y.moe.experts[e]);
    for (size_t e = 0; x.is_moe && e < x.moe.shared_experts.size(); ++e)
      experts(x.moe.shared_experts[e], y.moe.shared_experts[e]);
  }
}

double max_abs_diff(const Tensor<float>& a, const Tensor<float>& b) {
  REQUIRE(a.shape() == b.shape());
  double worst = 0;
  for (int64_t i = 0; i < a.numel(); ++i)
    worst = std::max(worst, std::fabs(double(a.data()[i]) - double(b.data()[i])));
  return worst;
}

}  // namespace

TEST_CASE("a quantised GPT computes the model of its dequantised weights, for every preset") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
    GPT<float> model(c, 5), reference(c, 5);  // the same weights
    set_training(model, false);
    set_training(reference, false);
    quantize_int8(model);
    for_each_quantised(model, reference, [](Linear<float>& q, Linear<float>& f) {
      REQUIRE(q.int8);
      f.weight.value() = dequantised(*q.int8);
    });
    // The head apart: the reference keeps float embeddings, as the quantised model does.
    reference.config.tie_embeddings = false;
    reference.lm_head = Linear<float>();
    reference.lm_head.weight = Var<float>(dequantised(*model.quantized_head.int8));

    NoGradGuard no_grad;
    for (int64_t T : {3, 30}) {  // the row-dot path, then the dequantised tiles
      CAPTURE(T);
      const Tensor<int32_t> ids = random_ids(T, c.vocab_size, uint64_t(T));
      CHECK(max_abs_diff(model(ids).value(), reference(ids).value()) <= 1e-4);
    }
  }
}

// The quantisation error of a randomly initialised model (weights of std 0.02), per position
// relative to the logits' spread: the median position deviates by less than 3% (measured about
// 1%). Where int8 flips a routing choice (two experts' router logits within the error) the
// position's logits move more (one position of 24 by 34% for `tiny`): at most 1 in 8 may
// exceed 5%.
TEST_CASE("int8 logits stay close to float32 ones, for every preset") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
    GPT<float> model(c, 7);
    set_training(model, false);
    NoGradGuard no_grad;
    const int64_t T = 24, V = c.vocab_size;
    const Tensor<int32_t> ids = random_ids(T, V, 11);
    const Tensor<float> expected = model(ids).value().contiguous();
    quantize_int8(model);
    const Tensor<float> logits = model(ids).value().contiguous();
    std::vector<double> deviation;  // per position
    for (int64_t t = 0; t < T; ++t) {
      const float* e = expected.data() + t * V;
      const float* q = logits.data() + t * V;
      double mean = 0, spread = 0, error = 0;
      for (int64_t v = 0; v < V; ++v) mean += e[v] / double(V);
      for (int64_t v = 0; v < V; ++v) {
        spread += std::pow(double(e[v]) - mean, 2);
        error += std::pow(double(q[v]) - double(e[v]), 2);
      }
      deviation.push_back(std::sqrt(error / spread));
    }
    std::sort(deviation.begin(), deviation.end());
    const double median = deviation[T / 2];
    const auto far =
        std::count_if(deviation.begin(), deviation.end(), [](double d) { return d > 0.05; });
    MESSAGE(name << ": median deviation " << median << ", largest " << deviation.back());
    CHECK(median < 0.03);
    CHECK(median > 0);  // the int8 weights were used
    CHECK(far <= T / 8);
  }
}

TEST_CASE("KV-cache decoding with int8 weights gives the logits of an int8 full recomputation") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
    GPT<float> model(c, 5);
    set_training(model, false);
    quantize_int8(model);
    NoGradGuard no_grad;
    const int64_t prompt = 7, total = 27;
    const Tensor<int32_t> ids = random_ids(total, c.vocab_size, 3);
    const Tensor<float> full = model(ids).value().contiguous();  // [1, total, V]
    std::vector<KVCache<float>> caches = model.make_caches(1);
    double worst = 0;
    for (int64_t end = prompt; end <= total; ++end) {
      const int64_t begin = end == prompt ? 0 : end - 1;  // the prompt at once, then one by one
      const Tensor<float> logits =
          next_token_logits(model, ids.slice(1, begin, end).contiguous(), caches);
      const float* expected = full.data() + (end - 1) * c.vocab_size;
      for (int64_t v = 0; v < c.vocab_size; ++v)
        worst = std::max(worst, std::fabs(double(logits.data()[v]) - double(expected[v])));
    }
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("quantize_int8 converts each matrix once and leaves the parameters alone") {
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
    GPT<float> model(c, 5);
    const auto names_before = named_parameters(model);
    const Int8Report first = quantize_int8(model);

    int64_t matrices = 1, elements = c.vocab_size * c.d_model, rows = c.vocab_size;  // the head
    GPT<float> twin(c, 5);
    for_each_quantised(model, twin, [&](Linear<float>& q, Linear<float>&) {
      matrices += 1;
      elements += q.weight.numel();
      rows += q.out_features();
    });
    CHECK(first.matrices == matrices);
    CHECK(first.float_bytes == 4 * elements);
    CHECK(first.int8_bytes == elements + 4 * rows);

    const Int8Weight* head = model.quantized_head.int8.get();
    const Int8Weight* q_proj = model.blocks[0].attn.q_proj.int8.get();
    const Int8Report second = quantize_int8(model);  // a no-op
    CHECK(second.matrices == 0);
    CHECK(second.int8_bytes == 0);
    CHECK(model.quantized_head.int8.get() == head);
    CHECK(model.blocks[0].attn.q_proj.int8.get() == q_proj);

    // Parameters, saving and counting see the float weights only.
    const auto names_after = named_parameters(model);
    REQUIRE(names_after.size() == names_before.size());
    for (size_t i = 0; i < names_after.size(); ++i)
      CHECK(names_after[i].first == names_before[i].first);
    for (const Block<float>& b : model.blocks) CHECK((!b.is_moe || !b.moe.router.gate.int8));
  }
}

TEST_CASE("a quantised GPT refuses to run with gradients enabled") {
  GPT<float> model(test::shrunk_preset("tiny"), 5);
  quantize_int8(model);
  const Tensor<int32_t> ids = random_ids(5, 512, 1);
  CHECK_THROWS_WITH_AS(model.loss(ids, ids), doctest::Contains("for inference only"), ValueError);
  NoGradGuard no_grad;
  CHECK(model(ids).shape() == Shape{1, 5, 512});
}
