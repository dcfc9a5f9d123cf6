// What the distributed tests compare between R ranks and one process.
#pragma once

#include <algorithm>
#include <cmath>
#include <vector>

#include <doctest/doctest.h>

#include <minimoe/models/gpt.hpp>

namespace minimoe::test {

// docs/distributed.md: float32 sums split over ranks round differently; over 20 steps the
// losses of R ranks and of one process stay within this relative distance.
inline constexpr double kLossTolerance = 1e-5;

// The largest absolute difference between the same-named weights of two models.
inline double max_weight_difference(GPT<float>& a, GPT<float>& b) {
  const auto ta = named_tensors(a), tb = named_tensors(b);
  REQUIRE(ta.size() == tb.size());
  double worst = 0;
  for (size_t i = 0; i < ta.size(); ++i) {
    REQUIRE(ta[i].first == tb[i].first);
    const std::vector<float> x = ta[i].second.to_vector(), y = tb[i].second.to_vector();
    for (size_t k = 0; k < x.size(); ++k) worst = std::max(worst, double(std::abs(x[k] - y[k])));
  }
  return worst;
}

}  // namespace minimoe::test
