#include <minimoe/kernels/routing.hpp>

#include <doctest/doctest.h>

using namespace minimoe;

TEST_CASE("routing plan groups pairs by expert, in token order") {
  // 4 tokens, top-2 over 3 experts.
  const std::vector<int32_t> chosen = {2, 0, 0, 1, 2, 1, 0, 2};
  const RoutingPlan p = make_routing_plan(chosen.data(), 4, 2, 3);
  CHECK(p.offsets == std::vector<int32_t>{0, 3, 5, 8});
  CHECK(p.token_of == std::vector<int32_t>{0, 1, 3, 1, 2, 0, 2, 3});
  CHECK(p.pair_of == std::vector<int32_t>{1, 2, 6, 3, 5, 0, 4, 7});
  for (int64_t r = 0; r < p.rows(); ++r) CHECK(p.row_of[size_t(p.pair_of[size_t(r)])] == r);
  CHECK(p.requested == std::vector<int64_t>{3, 2, 3});
  CHECK(p.dropped == 0);
}

TEST_CASE("capacity drops later slots first, then later tokens") {
  // Expert 0 is wanted by every token's first choice and by token 3's second choice.
  const std::vector<int32_t> chosen = {0, 1, 0, 1, 0, 2, 1, 0};
  const RoutingPlan p = make_routing_plan(chosen.data(), 4, 2, 3, /*capacity=*/2);
  CHECK(p.load(0) == 2);  // tokens 0 and 1 (first choices) win
  CHECK(p.load(1) == 2);  // token 3's first choice and token 0's second; token 1's dropped
  CHECK(p.load(2) == 1);
  CHECK(p.dropped == 3);
  CHECK(p.row_of[4] == -1);  // token 2 slot 0: expert 0 full
  CHECK(p.row_of[7] == -1);  // token 3 slot 1
  CHECK(p.requested == std::vector<int64_t>{4, 3, 1});
}

TEST_CASE("routing plan edge cases and errors") {
  const std::vector<int32_t> all_on_one = {1, 1, 1};
  const RoutingPlan p = make_routing_plan(all_on_one.data(), 3, 1, 4);
  CHECK(p.offsets == std::vector<int32_t>{0, 0, 3, 3, 3});
  const RoutingPlan empty = make_routing_plan(nullptr, 0, 2, 4);
  CHECK(empty.rows() == 0);
  const std::vector<int32_t> bad = {0, 5};
  CHECK_THROWS_WITH_AS(make_routing_plan(bad.data(), 1, 2, 3),
                       "routing plan: expert 5 out of range [0, 3) at 1", IndexError);
  CHECK_THROWS_WITH_AS(make_routing_plan(bad.data(), 1, 4, 3),
                       "routing plan: bad sizes: tokens=1 top_k=4 experts=3 capacity=0",
                       ValueError);
}
