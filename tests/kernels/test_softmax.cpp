#include <minimoe/kernels/softmax.hpp>
#include <minimoe/kernels/vector_math.hpp>

#include <cmath>
#include <limits>
#include <random>
#include <vector>

#include <doctest/doctest.h>

using namespace minimoe;

namespace {

std::vector<float> random_row(int64_t n, float lo, float hi, unsigned seed) {
  std::mt19937 rng(seed);
  std::uniform_real_distribution<float> u(lo, hi);
  std::vector<float> x(static_cast<size_t>(n));
  for (float& v : x) v = u(rng);
  return x;
}

}  // namespace

TEST_CASE("exp_shifted matches std::exp within a few ulp over the float range") {
  // Every length mod 16 (the vector tail), and arguments from underflow to near overflow
  // (80, so that the sum stays finite).
  for (int64_t n : {1, 7, 15, 16, 17, 31, 100, 50257}) {
    const std::vector<float> x = random_row(n, -100.0f, 80.0f, unsigned(n));
    std::vector<float> y(x.size(), -1.0f);
    const float sum = detail::exp_shifted(x.data(), y.data(), n, 0.0f);
    double want_sum = 0;
    for (int64_t i = 0; i < n; ++i) {
      const double want = std::exp(double(x[i]));
      want_sum += want;
      if (want < std::numeric_limits<float>::min()) {
        CHECK(y[i] <= std::numeric_limits<float>::min());  // subnormal results may be flushed
        continue;
      }
      INFO("n=", n, " x=", x[i]);
      CHECK(std::fabs(y[i] - want) <= 4e-7 * want);
    }
    CHECK(std::fabs(sum - want_sum) <= 1e-5 * want_sum);
    // Without an output only the sum is computed, the same one.
    CHECK(detail::exp_shifted<float>(x.data(), nullptr, n, 0.0f) == sum);
  }
  const std::vector<float> top = {88.0f, 88.5f, 88.7f, 89.0f};
  std::vector<float> y(top.size());
  detail::exp_shifted(top.data(), y.data(), 4, 0.0f);
  for (size_t i = 0; i < 3; ++i) CHECK(std::fabs(y[i] - std::exp(double(top[i]))) <= 4e-7 * y[i]);
  CHECK(y[3] == std::numeric_limits<float>::infinity());  // exp(89) > FLT_MAX
}

TEST_CASE("softmax row passes: max, shift, scale; special values") {
  const float inf = std::numeric_limits<float>::infinity();
  const float nan = std::numeric_limits<float>::quiet_NaN();
  for (int64_t n : {1, 5, 16, 33, 1000}) {
    std::vector<float> x = random_row(n, -30.0f, 30.0f, unsigned(n) + 7);
    x[size_t(n / 2)] = 40.0f;  // the maximum, somewhere inside the row
    CHECK(detail::row_max(x.data(), n) == 40.0f);
    std::vector<float> p(x.size());
    const float sum = detail::exp_shifted(x.data(), p.data(), n, 40.0f);
    detail::scale_row(p.data(), n, 1.0f / sum);
    double total = 0;
    for (int64_t i = 0; i < n; ++i) {
      total += p[i];
      CHECK(p[i] == doctest::Approx(std::exp(double(x[i]) - 40.0) / sum).epsilon(1e-6));
    }
    CHECK(total == doctest::Approx(1.0).epsilon(1e-5));
  }
  // -inf (a masked logit) gives 0, +inf gives +inf, NaN stays NaN: the trainer's NaN guard
  // must see a bad step.
  std::vector<float> x = {-inf, inf,  nan,  0.0f, -inf, 1.0f,  2.0f,  3.0f, 4.0f,
                          5.0f, 6.0f, 7.0f, 8.0f, 9.0f, 10.0f, 11.0f, nan};
  std::vector<float> y(x.size());
  CHECK(std::isnan(detail::exp_shifted(x.data(), y.data(), int64_t(x.size()), 0.0f)));
  CHECK(y[0] == 0.0f);
  CHECK(y[1] == inf);
  CHECK(std::isnan(y[2]));
  CHECK(y[3] == 1.0f);
  CHECK(std::isnan(y[16]));  // in the vector tail
}

TEST_CASE("softmax row passes in double use the portable path") {
  const std::vector<double> x = {-3.0, 0.5, 2.0, 1e-3, -700.0};
  CHECK(detail::row_max(x.data(), 5) == 2.0);
  std::vector<double> y(5);
  const double sum = detail::exp_shifted(x.data(), y.data(), 5, 2.0);
  double want = 0;
  for (size_t i = 0; i < 5; ++i) {
    CHECK(y[i] == doctest::Approx(std::exp(x[i] - 2.0)).epsilon(1e-15));
    want += std::exp(x[i] - 2.0);
  }
  CHECK(sum == doctest::Approx(want).epsilon(1e-15));
  detail::scale_row(y.data(), 5, 2.0);
  CHECK(y[2] == 2.0);
}

TEST_CASE("tanh_in_place is within 4e-7 of tanh, saturates, keeps NaN") {
  for (int64_t n : {1, 16, 37, 1000}) {
    std::vector<float> x = random_row(n, -12.0f, 12.0f, unsigned(n) + 3);
    x[0] = 1e-6f;  // near 0, where 1 - 2 / (exp(2x) + 1) cancels
    const std::vector<float> in = x;
    detail::tanh_in_place(x.data(), n);
    for (int64_t i = 0; i < n; ++i) {
      INFO("x=", in[i]);
      // 2e-7 for the AVX-512 path; Eigen's, the portable one, stops at 1 - 3e-7 beyond 7.9.
      CHECK(std::fabs(double(x[i]) - std::tanh(double(in[i]))) <= 4e-7);
    }
  }
  const float inf = std::numeric_limits<float>::infinity();
  std::vector<float> x = {inf, -inf, 100.0f, -100.0f, std::numeric_limits<float>::quiet_NaN()};
  detail::tanh_in_place(x.data(), int64_t(x.size()));
  CHECK(x[0] == 1.0f);
  CHECK(x[1] == -1.0f);
  CHECK(x[2] == 1.0f);
  CHECK(x[3] == -1.0f);
  CHECK(std::isnan(x[4]));
}
