#include <cmath>
#include <limits>

#include <minimoe/kernels/int8_gemm.hpp>
#include <minimoe/tensor/tensor.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

// Every int8 kernel this build and CPU run, the reference first; names go to the test log.
std::vector<Int8Kernel> int8_kernels_under_test() {
  std::vector<Int8Kernel> kernels = int8_kernels();
  std::string names;
  for (const auto& k : kernels) names += fmt::format(" {} (tile {})", k.name, k.tile.name);
  MESSAGE("int8 kernels:" << names);
  return kernels;
}

// A quantised random matrix [n, k] with rows of different magnitudes, stored with row stride ld.
struct Int8Matrix {
  int64_t n = 0, k = 0, ld = 0;
  std::vector<int8_t> q;
  std::vector<float> scale;

  Int8Matrix(int64_t n_, int64_t k_, int64_t ld_, Rng& rng) : n(n_), k(k_), ld(ld_) {
    std::vector<float> w(static_cast<size_t>(n * k));
    for (int64_t j = 0; j < n; ++j)
      for (int64_t p = 0; p < k; ++p) w[j * k + p] = float(rng.normal() * (0.01 + 0.3 * (j % 4)));
    std::vector<int8_t> dense(w.size());
    scale.resize(static_cast<size_t>(n));
    quantize_rows_int8(w.data(), n, k, dense.data(), scale.data());
    q.assign(static_cast<size_t>(n * ld), int8_t(99));  // padding between rows is never read
    for (int64_t j = 0; j < n; ++j) std::copy_n(dense.data() + j * k, k, q.data() + j * ld);
  }
  double dequantised(int64_t j, int64_t p) const { return double(scale[j]) * q[j * ld + p]; }
};

// out[i, j] = sum_p a_i[p] W[j, p] (+ bias[j]) in double, W the dequantised weights, and the
// tolerance of a float computation of it: proportional to the length and the absolute sum.
struct Reference {
  std::vector<double> value, tolerance;
};

Reference reference(const std::vector<const float*>& a, const Int8Matrix& w, const float* bias) {
  Reference r;
  for (const float* row : a)
    for (int64_t j = 0; j < w.n; ++j) {
      double sum = bias ? bias[j] : 0, abs_sum = bias ? std::fabs(bias[j]) : 0;
      for (int64_t p = 0; p < w.k; ++p) {
        sum += double(row[p]) * w.dequantised(j, p);
        abs_sum += std::fabs(double(row[p]) * w.dequantised(j, p));
      }
      r.value.push_back(sum);
      r.tolerance.push_back(1.2e-7 * double(w.k + 2) * abs_sum + 1e-30);
    }
  return r;
}

void check_against(const float* c, int64_t ldc, int64_t m, int64_t n, const Reference& r) {
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      const double expected = r.value[i * n + j], tol = r.tolerance[i * n + j];
      const double actual = c[i * ldc + j];
      if (!(std::fabs(actual - expected) <= tol)) {
        FAIL_CHECK(
            fmt::format("C[{}, {}] = {} != expected {} (tol {:.3g})", i, j, actual, expected, tol));
        return;
      }
    }
}

}  // namespace

TEST_CASE("quantize_rows_int8: per-row scales, |w - q scale| <= scale / 2") {
  Rng rng(3);
  const int64_t n = 6, k = 37;
  std::vector<float> w(n * k);
  for (auto& v : w) v = float(rng.normal());
  for (int64_t p = 0; p < k; ++p) w[1 * k + p] *= 1e-4f;  // a tiny row keeps its precision
  std::fill_n(w.data() + 2 * k, k, 0.0f);                 // an all-zero row
  w[3 * k + 5] = -40.0f;                                  // a row whose max is negative
  std::vector<int8_t> q(n * k);
  std::vector<float> scale(n);
  quantize_rows_int8(w.data(), n, k, q.data(), scale.data());

  for (int64_t j = 0; j < n; ++j) {
    float max_abs = 0;
    for (int64_t p = 0; p < k; ++p) max_abs = std::max(max_abs, std::fabs(w[j * k + p]));
    CHECK(scale[j] == doctest::Approx(max_abs / 127.0f).epsilon(1e-6));
    int8_t max_q = 0;
    for (int64_t p = 0; p < k; ++p) {
      const int8_t v = q[j * k + p];
      CHECK(v >= -127);
      max_q = std::max<int8_t>(max_q, static_cast<int8_t>(std::abs(v)));
      const double error = std::fabs(double(w[j * k + p]) - double(v) * double(scale[j]));
      if (!(error <= double(scale[j]) / 2 * (1 + 1e-12))) {
        FAIL_CHECK(fmt::format("w[{}, {}] = {}: q {} x scale {} is {} away", j, p, w[j * k + p], v,
                               scale[j], error));
        break;
      }
    }
    CHECK(max_q == (j == 2 ? 0 : 127));  // the largest magnitude maps to +-127
  }
  CHECK(scale[2] == 0.0f);
  CHECK(q[3 * k + 5] == -127);
}

TEST_CASE("quantize_rows_int8 refuses values that are not finite") {
  std::vector<float> w{1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f, 3.0f};
  std::vector<int8_t> q(4);
  std::vector<float> scale(2);
  CHECK_THROWS_WITH_AS(quantize_rows_int8(w.data(), 2, 2, q.data(), scale.data()),
                       "quantize_rows_int8: row 0 holds a value that is not finite", ValueError);
  w[1] = std::numeric_limits<float>::infinity();
  CHECK_THROWS_AS(quantize_rows_int8(w.data(), 2, 2, q.data(), scale.data()), ValueError);
}

TEST_CASE("int8 row-dot kernels match the dequantised weights for every row count and K") {
  for (const Int8Kernel& kernel : int8_kernels_under_test())
    for (int64_t k : {1, 7, 8, 9, 15, 16, 17, 31, 32, 33, 47, 64, 100, 257})
      for (int m = 1; m <= kGemmMaxMR; ++m) {
        CAPTURE(kernel.name);
        CAPTURE(k);
        CAPTURE(m);
        Rng rng(uint64_t(k * 10 + m));
        const int64_t n = 5 + m, ld = k + 3;
        const Int8Matrix w(n, k, ld, rng);
        const Tensor<float> a = Tensor<float>::randn({m, k + 1}, rng);  // rows at stride k + 1
        std::vector<const float*> rows;
        for (int i = 0; i < m; ++i) rows.push_back(a.data() + i * (k + 1));
        const int64_t ldc = n + 2;
        std::vector<float> c(static_cast<size_t>(m * ldc), 777.0f);
        kernel.dot(k, rows.data(), m, w.q.data(), ld, w.scale.data(), n, c.data(), ldc);
        check_against(c.data(), ldc, m, n, reference(rows, w, nullptr));
        for (int i = 0; i < m; ++i) CHECK(c[i * ldc + n] == 777.0f);  // past ncols: untouched
      }
}

TEST_CASE("int8_matmul matches the dequantised weights: 1..17 rows, odd shapes, bias or not") {
  const std::vector<Int8Kernel> kernels = int8_kernels_under_test();
  for (const Int8Kernel& kernel : kernels)
    for (int64_t m = 1; m <= 17; ++m)
      for (const auto& [out, in] : std::vector<std::pair<int64_t, int64_t>>{
               {1, 3}, {5, 17}, {33, 45}, {100, 130}, {19, 300}})
        for (bool with_bias : {false, true}) {
          const int64_t n = out, k = in;  // copies: C++17 lambdas cannot capture bindings
          CAPTURE(kernel.name);
          CAPTURE(m);
          CAPTURE(n);
          CAPTURE(k);
          CAPTURE(with_bias);
          Rng rng(uint64_t(m * 1000 + n * 7 + k));
          const Int8Matrix w(n, k, k, rng);
          const Tensor<float> a = Tensor<float>::randn({m, k}, rng);
          const Tensor<float> bias = Tensor<float>::randn({n}, rng);
          std::vector<const float*> rows;
          for (int64_t i = 0; i < m; ++i) rows.push_back(a.data() + i * k);
          std::vector<float> c(static_cast<size_t>(m * n), 777.0f);
          int8_matmul(m, n, k, a.data(), w.q.data(), w.scale.data(),
                      with_bias ? bias.data() : nullptr, c.data(), kernel);
          check_against(c.data(), n, m, n, reference(rows, w, with_bias ? bias.data() : nullptr));
        }
}

TEST_CASE("int8_matmul over many rows (the dequantising path): row tiles and K blocks") {
  for (const Int8Kernel& kernel : int8_kernels_under_test())
    for (const std::array<int64_t, 3>& shape :
         std::vector<std::array<int64_t, 3>>{{40, 70, 33}, {600, 37, 300}, {1100, 9, 20}}) {
      const int64_t m = shape[0], n = shape[1], k = shape[2];
      CAPTURE(kernel.name);
      CAPTURE(m);
      CAPTURE(n);
      CAPTURE(k);
      Rng rng(uint64_t(m + n + k));
      const Int8Matrix w(n, k, k, rng);
      const Tensor<float> a = Tensor<float>::randn({m, k}, rng);
      const Tensor<float> bias = Tensor<float>::randn({n}, rng);
      std::vector<const float*> rows;
      for (int64_t i = 0; i < m; ++i) rows.push_back(a.data() + i * k);
      std::vector<float> c(static_cast<size_t>(m * n), 777.0f);
      int8_matmul(m, n, k, a.data(), w.q.data(), w.scale.data(), bias.data(), c.data(), kernel);
      check_against(c.data(), n, m, n, reference(rows, w, bias.data()));
    }
}

TEST_CASE("Int8Phase: grouped products over gathered rows, two segments, epilogue per strip") {
  for (const Int8Kernel& kernel : int8_kernels_under_test())
    for (const std::vector<int32_t>& sizes :
         std::vector<std::vector<int32_t>>{{5, 0, 7, 1}, {0, 30}, {1}, {3, 17, 2}}) {
      CAPTURE(kernel.name);
      CAPTURE(sizes.size());
      const int64_t k = 41, n = 23, sources = 11;
      Rng rng(sizes.size() * 17 + sizes.front());
      std::vector<int32_t> offsets{0}, index;
      for (int32_t s : sizes) offsets.push_back(offsets.back() + s);
      const int64_t R = offsets.back();
      for (int64_t r = 0; r < R; ++r) index.push_back(int32_t(rng.below(uint64_t(sources))));
      const Tensor<float> x = Tensor<float>::randn({sources, k}, rng);
      std::vector<Int8Matrix> first, second;
      std::vector<const int8_t*> q0, q1;
      std::vector<const float*> s0, s1;
      for (size_t g = 0; g < sizes.size(); ++g) {
        first.emplace_back(n, k, k, rng);
        second.emplace_back(n, k, k, rng);
      }
      for (size_t g = 0; g < sizes.size(); ++g) {
        q0.push_back(first[g].q.data());
        s0.push_back(first[g].scale.data());
        q1.push_back(second[g].q.data());
        s1.push_back(second[g].scale.data());
      }
      const int64_t ldc = 2 * n;
      std::vector<float> c(static_cast<size_t>(R * ldc), 777.0f);
      std::vector<int> strips(static_cast<size_t>(R * n), 0);  // epilogue calls per element
      Int8GroupedProduct p;
      p.groups = RowGroups{offsets.data(), int64_t(sizes.size())};
      p.a = x.data();
      p.lda = k;
      p.index = index.data();
      p.k = k;
      p.w[0] = Int8WeightRows{q0.data(), s0.data(), k};
      p.w[1] = Int8WeightRows{q1.data(), s1.data(), k};
      p.n = n;
      p.segments = 2;
      p.c = c.data();
      p.ldc = ldc;
      p.epilogue = [&](int64_t g, int64_t r0, int64_t rows, int64_t j0, int64_t j1) {
        for (int64_t r = r0; r < r0 + rows; ++r) {
          CHECK((r >= offsets[g] && r < offsets[g + 1]));
          for (int64_t j = j0; j < j1; ++j) ++strips[r * n + j];
        }
      };
      Int8Phase phase(kernel);
      phase.add(p);
      phase.run_parallel();
      for (size_t g = 0; g < sizes.size(); ++g) {
        std::vector<const float*> rows;
        for (int64_t r = offsets[g]; r < offsets[g + 1]; ++r)
          rows.push_back(x.data() + index[r] * k);
        if (rows.empty()) continue;
        const float* cg = c.data() + offsets[g] * ldc;
        check_against(cg, ldc, int64_t(rows.size()), n, reference(rows, first[g], nullptr));
        check_against(cg + n, ldc, int64_t(rows.size()), n, reference(rows, second[g], nullptr));
      }
      CHECK(std::all_of(strips.begin(), strips.end(), [](int s) { return s == 1; }));
    }
}

TEST_CASE("SIMD int8 kernels agree with the reference kernel, decode and prefill sizes") {
  const std::vector<Int8Kernel> kernels = int8_kernels();
  for (int64_t m : {1, 3, 64}) {
    CAPTURE(m);
    Rng rng(static_cast<uint64_t>(m));
    const int64_t n = 77, k = 129;
    const Int8Matrix w(n, k, k, rng);
    const Tensor<float> a = Tensor<float>::randn({m, k}, rng);
    std::vector<float> expected(static_cast<size_t>(m * n));
    int8_matmul(m, n, k, a.data(), w.q.data(), w.scale.data(), nullptr, expected.data(),
                kernels.front());
    for (size_t i = 1; i < kernels.size(); ++i) {
      CAPTURE(kernels[i].name);
      std::vector<float> c(static_cast<size_t>(m * n));
      int8_matmul(m, n, k, a.data(), w.q.data(), w.scale.data(), nullptr, c.data(), kernels[i]);
      for (size_t e = 0; e < c.size(); ++e)
        REQUIRE(c[e] == doctest::Approx(expected[e]).epsilon(1e-4).scale(1.0));
    }
  }
}
