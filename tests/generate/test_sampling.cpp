#include <doctest/doctest.h>

#include <vector>

#include <minimoe/generate/sampling.hpp>

using namespace minimoe;

namespace {

std::vector<int> histogram(const std::vector<float>& logits, const SamplingOptions& o, int draws,
                           int64_t allowed = 0) {
  Rng rng(5);
  std::vector<int> counts(logits.size());
  const int64_t n = allowed > 0 ? allowed : static_cast<int64_t>(logits.size());
  for (int i = 0; i < draws; ++i) ++counts[sample_token(logits.data(), n, o, rng)];
  return counts;
}

}  // namespace

TEST_CASE("temperature 0 is the argmax, ties to the lower id") {
  const std::vector<float> logits{0.5f, 2.0f, 2.0f, -1.0f};
  SamplingOptions o;
  o.temperature = 0;
  Rng rng(1);
  CHECK(sample_token(logits.data(), 4, o, rng) == 1);
}

TEST_CASE("sampling follows softmax(logits / temperature)") {
  // p = softmax(log([0.5, 0.3, 0.2])) = [0.5, 0.3, 0.2] at temperature 1.
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.2f)};
  SamplingOptions o;
  o.temperature = 1.0;
  const std::vector<int> counts = histogram(logits, o, 20000);
  CHECK(counts[0] / 20000.0 == doctest::Approx(0.5).epsilon(0.03));
  CHECK(counts[1] / 20000.0 == doctest::Approx(0.3).epsilon(0.05));
  CHECK(counts[2] / 20000.0 == doctest::Approx(0.2).epsilon(0.05));
  o.temperature = 0.5;  // p ~ [0.25, 0.09, 0.04] / 0.38
  const std::vector<int> sharp = histogram(logits, o, 20000);
  CHECK(sharp[0] / 20000.0 == doctest::Approx(0.25 / 0.38).epsilon(0.03));
}

TEST_CASE("top-k and top-p cut the tail, and ids past `allowed` are never drawn") {
  const std::vector<float> logits{std::log(0.5f), std::log(0.3f), std::log(0.15f), std::log(0.05f)};
  SamplingOptions o;
  o.temperature = 1.0;
  o.top_k = 2;
  std::vector<int> counts = histogram(logits, o, 5000);
  CHECK(counts[2] == 0);
  CHECK(counts[3] == 0);
  CHECK(counts[0] / 5000.0 == doctest::Approx(0.5 / 0.8).epsilon(0.05));
  o.top_k = 0;
  o.top_p = 0.85;  // 0.5 + 0.3 < 0.85 <= 0.95: the three likeliest
  counts = histogram(logits, o, 5000);
  CHECK(counts[2] > 0);
  CHECK(counts[3] == 0);
  o.top_p = 1.0;
  counts = histogram(logits, o, 5000, /*allowed=*/2);
  CHECK(counts[2] + counts[3] == 0);
}

TEST_CASE("bad sampling settings are refused") {
  SamplingOptions o;
  o.temperature = -1;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("temperature"), ValueError);
  o = SamplingOptions{};
  o.top_p = 0;
  CHECK_THROWS_WITH_AS(o.validate(), doctest::Contains("top_p"), ValueError);
  o = SamplingOptions{};
  o.top_k = -3;
  CHECK_THROWS_AS(o.validate(), ValueError);
}
