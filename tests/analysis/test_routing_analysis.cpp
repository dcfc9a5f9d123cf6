#include <doctest/doctest.h>

#include <cmath>

#include <minimoe/analysis/routing_analysis.hpp>

using namespace minimoe;

namespace {

RoutingAnalysis by_hand(std::vector<std::vector<double>> first_layer) {
  RoutingAnalysis a;
  a.experts = static_cast<int64_t>(first_layer[0].size());
  a.layers = {0};
  for (size_t d = 0; d < first_layer.size(); ++d) {
    a.domains.push_back("d" + std::to_string(d));
    a.counts.push_back({first_layer[d]});
    a.tokens.push_back(100);
  }
  return a;
}

}  // namespace

TEST_CASE("specialisation is 0 when domains are routed alike and log2(D) when disjoint") {
  CHECK(by_hand({{10, 30}, {20, 60}}).specialization(0) == doctest::Approx(0.0));
  CHECK(by_hand({{50, 0, 0}, {0, 50, 0}, {0, 0, 50}}).specialization(0) ==
        doctest::Approx(std::log2(3.0)));
  const double partial = by_hand({{40, 10}, {10, 40}}).specialization(0);
  CHECK(partial > 0.1);
  CHECK(partial < 1.0);
}

TEST_CASE("shares sum to one and dead experts are the ones nobody uses") {
  const RoutingAnalysis a = by_hand({{30, 10, 0, 0}, {10, 30, 1, 0}});
  CHECK(a.share(0, 0, 0) == doctest::Approx(0.75));
  CHECK(a.mean_share(1, 1) == doctest::Approx(30.0 / 41.0));
  const auto dead = a.dead_experts(0.1);  // below 2.5 % of the pairs
  REQUIRE(dead.size() == 2);
  CHECK(dead[0] == std::make_pair(int64_t{0}, int64_t{2}));
  CHECK(dead[1] == std::make_pair(int64_t{0}, int64_t{3}));
}

TEST_CASE("analyze_routing counts every routed pair of every MoE layer") {
  GPTConfig c;
  c.vocab_size = 20;
  c.context_length = 8;
  c.n_layers = 3;
  c.d_model = 16;
  c.n_heads = 2;
  c.ffn_hidden = 16;
  c.n_experts = 4;
  c.top_k = 2;
  c.moe_every = 2;  // block 1 only
  GPT<float> model(c, 5);
  std::vector<int32_t> a(40), b(20);
  for (size_t i = 0; i < a.size(); ++i) a[i] = static_cast<int32_t>(i % 20);
  for (size_t i = 0; i < b.size(); ++i) b[i] = 3;
  const RoutingAnalysis r = analyze_routing(model, {{"a", a}, {"b", b}});
  CHECK(r.layers == std::vector<int64_t>{1});
  CHECK(r.tokens == std::vector<int64_t>{40, 16});
  double pairs = 0;
  for (double n : r.counts[1][0]) pairs += n;
  CHECK(pairs == 16 * 2);
  CHECK_THROWS_WITH_AS(analyze_routing(model, {{"short", std::vector<int32_t>(5, 1)}}),
                       doctest::Contains("fewer than one context"), ValueError);
}
