#include <doctest/doctest.h>

#include <minimoe/generate/generate.hpp>
#include <minimoe/models/presets.hpp>

using namespace minimoe;

namespace {

GPTConfig config(const std::string& kind) {
  GPTConfig c = kind == "tinymoe" ? preset("tinymoe") : preset("tiny");
  c.vocab_size = 50;
  c.context_length = 24;
  c.n_layers = 2;
  c.d_model = 32;
  c.ffn_hidden = 32;
  c.validate();
  return c;
}

// Greedy decoding by recomputing the whole sequence for every new token.
std::vector<int32_t> greedy_without_cache(GPT<float>& model, std::vector<int32_t> ids, int n) {
  NoGradGuard no_grad;
  std::vector<int32_t> out;
  const int64_t V = model.config.vocab_size;
  for (int i = 0; i < n; ++i) {
    Tensor<int32_t> input({1, static_cast<int64_t>(ids.size())});
    std::copy(ids.begin(), ids.end(), input.data());
    const Tensor<float> logits = model(input).value().contiguous();
    const float* last = logits.data() + (static_cast<int64_t>(ids.size()) - 1) * V;
    const int32_t next = static_cast<int32_t>(std::max_element(last, last + V) - last);
    out.push_back(next);
    ids.push_back(next);
  }
  return out;
}

}  // namespace

TEST_CASE("decoding with the KV cache picks the tokens a full recomputation picks") {
  for (const char* kind : {"tiny", "tinymoe"}) {
    CAPTURE(kind);
    GPT<float> model(config(kind), 11);
    GenerateOptions o;
    o.max_tokens = 12;
    o.sampling.temperature = 0;
    const std::vector<int32_t> prompt{1, 7, 3, 9};
    CHECK(generate(model, prompt, o).ids == greedy_without_cache(model, prompt, 12));
  }
}

TEST_CASE("generation streams each token, stops on request, at the stop id and at the context") {
  GPT<float> model(config("tiny"), 3);
  GenerateOptions o;
  o.max_tokens = 100;
  o.seed = 9;
  std::vector<int32_t> streamed;
  const Generation out = generate(model, {1, 2}, o, [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  CHECK(out.ids == streamed);
  CHECK(out.ids.size() == 24 - 2 + 1);  // the last token is produced from a full window
  CHECK(out.reason == StopReason::ContextFull);
  CHECK(generate(model, {1, 2}, o).ids == out.ids);  // same seed, same tokens

  int calls = 0;
  const Generation cut = generate(model, {1, 2}, o, [&](int32_t) { return ++calls < 3; });
  CHECK(cut.ids.size() == 3);
  CHECK(cut.reason == StopReason::Callback);
  o.stop_id = out.ids[4];
  const Generation stopped = generate(model, {1, 2}, o);
  CHECK(stopped.ids.size() <= 4);
  CHECK(stopped.reason == StopReason::EndOfText);
  o.stop_id = -1;
  o.max_tokens = 5;
  CHECK(generate(model, {1, 2}, o).reason == StopReason::MaxTokens);
  CHECK(generate(model, {1, 2}, o).ids.size() == 5);
}

TEST_CASE("incremental decoding gives the logits of a full recomputation, for every preset") {
  // Each preset's architecture (GQA, RoPE, QK-norm, GLU experts, untied head...) at a size
  // that keeps the test fast: fewer layers, a small vocabulary and context.
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    GPTConfig c = preset(name);
    c.vocab_size = 512;
    c.n_layers = 2;
    c.context_length = 40;
    c.validate();
    GPT<float> model(c, 5);
    set_training(model, false);
    NoGradGuard no_grad;
    Rng rng(3);
    const int64_t prompt = 7, total = 27;
    Tensor<int32_t> ids({1, total});
    for (int64_t t = 0; t < total; ++t)
      ids.data()[t] = static_cast<int32_t>(rng.next_u64() % static_cast<uint64_t>(c.vocab_size));
    const Tensor<float> full = model(ids).value().contiguous();  // [1, total, V]

    std::vector<KVCache<float>> caches = model.make_caches(1);
    double worst = 0;
    for (int64_t end = prompt; end <= total; ++end) {
      const int64_t begin = end == prompt ? 0 : end - 1;  // the prompt at once, then one by one
      const Tensor<int32_t> step = ids.slice(1, begin, end).contiguous();
      const Tensor<float> logits = next_token_logits(model, step, caches);
      const float* expected = full.data() + (end - 1) * c.vocab_size;
      for (int64_t v = 0; v < c.vocab_size; ++v)
        worst = std::max(worst, std::abs(double(logits.data()[v]) - double(expected[v])));
    }
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("logits processors run in order before sampling") {
  GPT<float> model(config("tiny"), 3);
  GenerateOptions o;
  o.max_tokens = 6;
  o.sampling.temperature = 0;
  std::vector<size_t> seen_lengths;
  // A scripted model: the processors force the tokens 5, 6, 7, ... whatever the logits.
  o.processors.push_back([&](std::vector<float>& logits, const TokenHistory& h) {
    seen_lengths.push_back(h.tokens.size());
    CHECK(h.output_begin == 2);
    std::fill(logits.begin(), logits.end(), -50.0f);
    logits[5 + (h.tokens.size() - h.output_begin)] = 0;
  });
  o.processors.push_back(logit_bias({{7, -100.0}}));  // then 7 is banned
  const Generation g = generate(model, {1, 2}, o);
  CHECK(g.ids.size() == 6);
  CHECK(g.ids[0] == 5);
  CHECK(g.ids[1] == 6);
  CHECK(g.ids[2] == 0);  // 7 fell below every other id, and ties go to the lowest
  CHECK(seen_lengths == std::vector<size_t>{2, 3, 4, 5, 6, 7});
}

TEST_CASE("bad prompts are refused") {
  GPT<float> model(config("tiny"), 3);
  GenerateOptions o;
  CHECK_THROWS_WITH_AS(generate(model, {}, o), doctest::Contains("empty"), ValueError);
  CHECK_THROWS_WITH_AS(generate(model, std::vector<int32_t>(25, 1), o),
                       doctest::Contains("more than the context length 24"), ValueError);
  CHECK_THROWS_WITH_AS(generate(model, {1, 50}, o), doctest::Contains("outside the vocabulary"),
                       IndexError);
  o.max_tokens = -1;
  CHECK_THROWS_WITH_AS(generate(model, {1}, o), doctest::Contains("max_tokens must be >= 0"),
                       ValueError);
}
