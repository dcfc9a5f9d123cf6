#include <doctest/doctest.h>

#include <minimoe/generate/generate.hpp>
#include <minimoe/models/presets.hpp>

#include "../preset_util.hpp"

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
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
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

TEST_CASE("packed sequences of different lengths get the logits of a full recomputation") {
  // Three sequences at different positions share each forward: prompts of 1, 6 and 11 tokens
  // together, then steps of one token each, with one sequence sitting out every third step.
  for (const std::string& name : preset_names()) {
    CAPTURE(name);
    const GPTConfig c = test::shrunk_preset(name);
    GPT<float> model(c, 5);
    set_training(model, false);
    NoGradGuard no_grad;
    Rng rng(4);
    const std::vector<int64_t> prompt{1, 6, 11};
    const int64_t total = 24;
    std::vector<Tensor<float>> full;
    std::vector<std::vector<int32_t>> tokens(prompt.size());
    for (auto& sequence : tokens) {
      for (int64_t t = 0; t < total; ++t)
        sequence.push_back(static_cast<int32_t>(rng.next_u64() % 512));
      Tensor<int32_t> ids({1, total});
      std::copy(sequence.begin(), sequence.end(), ids.data());
      full.push_back(model(ids).value().contiguous());  // [1, total, V]
    }
    std::vector<std::vector<KVCache<float>>> caches;
    for (size_t s = 0; s < prompt.size(); ++s) caches.push_back(model.make_caches(1));
    std::vector<int64_t> fed(prompt.size(), 0);
    double worst = 0;
    for (int step = 0;; ++step) {
      std::vector<int64_t> lengths;
      std::vector<std::vector<KVCache<float>>*> active;
      std::vector<int32_t> ids;
      std::vector<size_t> which;
      for (size_t s = 0; s < prompt.size(); ++s) {
        const int64_t n = fed[s] == 0 ? prompt[s] : 1;
        if (fed[s] + n > total || (step % 3 == 2 && s == 1 && fed[0] < total)) continue;
        lengths.push_back(n);
        active.push_back(&caches[s]);
        which.push_back(s);
        ids.insert(ids.end(), tokens[s].begin() + fed[s], tokens[s].begin() + fed[s] + n);
      }
      if (which.empty()) break;
      Tensor<int32_t> input({1, static_cast<int64_t>(ids.size())});
      std::copy(ids.begin(), ids.end(), input.data());
      const Tensor<float> logits =
          model.head(model.hidden_packed(input, lengths, active)).value().contiguous();
      int64_t row = 0;
      for (size_t a = 0; a < which.size(); ++a) {
        const size_t s = which[a];
        for (int64_t t = 0; t < lengths[a]; ++t, ++row) {
          const float* got = logits.data() + row * c.vocab_size;
          const float* expected = full[s].data() + (fed[s] + t) * c.vocab_size;
          for (int64_t v = 0; v < c.vocab_size; ++v)
            worst = std::max(worst, std::abs(double(got[v]) - double(expected[v])));
        }
        fed[s] += lengths[a];
      }
    }
    CHECK(fed == std::vector<int64_t>(prompt.size(), total));
    CHECK(worst <= 1e-4);
  }
}

TEST_CASE("batched generation gives each request what generating it alone gives") {
  for (const char* kind : {"tiny", "tinymoe"}) {
    CAPTURE(kind);
    GPT<float> model(config(kind), 11);
    std::vector<GenerateRequest> requests(5);
    requests[0].prompt = {1, 7, 3, 9};
    requests[0].options.max_tokens = 12;
    requests[0].options.sampling.temperature = 0;
    requests[1].prompt = {4};
    requests[1].options.max_tokens = 30;  // runs into the context (24)
    requests[1].options.seed = 5;
    requests[2].prompt = {2, 2, 8, 1, 5, 6, 7, 3, 3};
    requests[2].options.max_tokens = 9;
    requests[2].options.seed = 6;
    requests[2].options.sampling.top_k = 5;
    requests[2].options.processors.push_back(repetition_penalty(1.5));
    requests[3].prompt = {3, 1};
    requests[3].options.max_tokens = 0;
    requests[4].prompt = {9, 9, 9};
    requests[4].options.max_tokens = 20;
    requests[4].options.seed = 7;
    requests[4].options.stop_id = 0;
    requests[4].options.processors.push_back(logit_bias({{0, 3.0}}));  // ends early

    std::vector<std::vector<int32_t>> streamed(requests.size());
    const std::vector<Generation> batch =
        generate_batch(model, requests, [&](size_t s, int32_t id) {
          streamed[s].push_back(id);
          return true;
        });
    REQUIRE(batch.size() == requests.size());
    for (size_t s = 0; s < requests.size(); ++s) {
      CAPTURE(s);
      const Generation alone = generate(model, requests[s].prompt, requests[s].options);
      CHECK(batch[s].ids == alone.ids);
      CHECK(batch[s].reason == alone.reason);
      CHECK(streamed[s] == batch[s].ids);
    }
    CHECK(batch[0].reason == StopReason::MaxTokens);
    CHECK(batch[1].reason == StopReason::ContextFull);
    CHECK(batch[1].ids.size() == 24);  // positions 0..23 fed, a token sampled at each
    CHECK(batch[3].ids.empty());
    CHECK(batch[4].reason == StopReason::EndOfText);
  }
}

TEST_CASE("a batched request's callback ends that sequence only") {
  GPT<float> model(config("tinymoe"), 3);
  GenerateOptions o;
  o.max_tokens = 8;
  const std::vector<Generation> out =
      generate_batch(model, {{{1, 2}, o}, {{3}, o}}, [](size_t s, int32_t) { return s != 0; });
  CHECK(out[0].ids.size() == 1);
  CHECK(out[0].reason == StopReason::Callback);
  CHECK(out[1].ids.size() == 8);
  CHECK(generate_batch(model, {}).empty());
  GenerateOptions bad = o;
  bad.max_tokens = -1;
  CHECK_THROWS_WITH_AS(generate_batch(model, {{{1}, o}, {{1}, bad}}),
                       doctest::Contains("max_tokens must be >= 0"), ValueError);
}

TEST_CASE("packed forwards check their runs") {
  GPT<float> model(config("tiny"), 3);
  NoGradGuard no_grad;
  std::vector<KVCache<float>> a = model.make_caches(1), b = model.make_caches(1);
  Tensor<int32_t> ids({1, 3});
  std::fill_n(ids.data(), 3, 1);
  CHECK_THROWS_WITH_AS(model.hidden_packed(ids, {1, 1}, {&a, &b}),
                       doctest::Contains("packed runs of 2 positions for 3 ids"), ShapeError);
  CHECK_THROWS_WITH_AS(model.hidden_packed(ids, {1, 3}, {&a, &b}),
                       doctest::Contains("more positions than the 3 ids"), ShapeError);
  CHECK_THROWS_WITH_AS(model.hidden_packed(ids, {3}, {&a, &b}),
                       doctest::Contains("1 packed run lengths for 2 sequences"), ValueError);
  std::vector<KVCache<float>> short_caches(1);
  CHECK_THROWS_WITH_AS(model.hidden_packed(ids, {3}, {&short_caches}),
                       doctest::Contains("has 1 KV caches for 2 layers"), ValueError);
  a.front().length = 23;
  CHECK_THROWS_WITH_AS(model.hidden_packed(ids, {3}, {&a}),
                       doctest::Contains("exceed the context length 24"), ValueError);
}

TEST_CASE("sequences that join a running batch get what they get alone") {
  GPT<float> model(config("tinymoe"), 8);
  GenerateOptions o;
  o.max_tokens = 10;
  o.seed = 1;
  const std::vector<std::vector<int32_t>> prompts{{1, 2, 3}, {4}, {5, 6}};
  std::vector<Generation> out(prompts.size());
  BatchDecoder<float> batch(model);
  std::vector<size_t> sizes;
  int first_tokens = 0;
  // The second sequence joins after the first one's 4th token, from inside its callback; the
  // third from outside, between steps.
  batch.add(
      {prompts[0], o},
      [&](int32_t) {
        if (++first_tokens == 4)
          batch.add({prompts[1], o}, nullptr, [&](const Generation& g) { out[1] = g; });
        return true;
      },
      [&](const Generation& g) { out[0] = g; });
  for (int step = 0; !batch.idle(); ++step) {
    if (step == 6) batch.add({prompts[2], o}, nullptr, [&](const Generation& g) { out[2] = g; });
    sizes.push_back(batch.size());
    batch.step();
  }
  for (size_t s = 0; s < prompts.size(); ++s) {
    CAPTURE(s);
    CHECK(out[s].ids == generate(model, prompts[s], o).ids);
  }
  CHECK(*std::max_element(sizes.begin(), sizes.end()) == 3);
}
