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
    CHECK(generate(model, prompt, o) == greedy_without_cache(model, prompt, 12));
  }
}

TEST_CASE("generation streams each token, stops on request, at the stop id and at the context") {
  GPT<float> model(config("tiny"), 3);
  GenerateOptions o;
  o.max_tokens = 100;
  o.seed = 9;
  std::vector<int32_t> streamed;
  const std::vector<int32_t> out = generate(model, {1, 2}, o, [&](int32_t id) {
    streamed.push_back(id);
    return true;
  });
  CHECK(out == streamed);
  CHECK(out.size() == 24 - 2 + 1);           // the last token is produced from a full window
  CHECK(generate(model, {1, 2}, o) == out);  // same seed, same tokens

  int calls = 0;
  CHECK(generate(model, {1, 2}, o, [&](int32_t) { return ++calls < 3; }).size() == 3);
  o.stop_id = out[4];
  const std::vector<int32_t> stopped = generate(model, {1, 2}, o);
  CHECK(stopped.size() <= 4);
}

TEST_CASE("bad prompts are refused") {
  GPT<float> model(config("tiny"), 3);
  GenerateOptions o;
  CHECK_THROWS_WITH_AS(generate(model, {}, o), doctest::Contains("empty"), ValueError);
  CHECK_THROWS_WITH_AS(generate(model, std::vector<int32_t>(25, 1), o),
                       doctest::Contains("more than the context length 24"), ValueError);
  CHECK_THROWS_WITH_AS(generate(model, {1, 50}, o), doctest::Contains("outside the vocabulary"),
                       IndexError);
}
