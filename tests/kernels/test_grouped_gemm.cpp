#include <cmath>
#include <limits>
#include <string>

#include <minimoe/kernels/activation.hpp>
#include <minimoe/kernels/grouped_gemm.hpp>
#include <minimoe/tensor/tensor.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

// Tolerances scale with the length of the sums.
template <typename T>
double tolerance(int64_t k) {
  return (std::is_same_v<T, float> ? 2e-6 : 1e-13) * double(k + 8);
}

// Every micro-kernel this build and CPU run, the reference first; names go to the test log.
template <typename T>
std::vector<GemmKernel<T>> kernels_under_test() {
  std::vector<GemmKernel<T>> kernels = gemm_kernels<T>();
  std::string names;
  for (const auto& k : kernels) names += fmt::format(" {} ({}x{})", k.name, k.mr, k.nr);
  MESSAGE("kernels:" << names);
  return kernels;
}

// Random operands for `kernel`: a bf16 kernel gets values bf16 holds exactly, so that its
// products and float sums match the naive loop to the same tolerance as a float kernel's (the
// rounding itself is tested on its own below).
template <typename T>
Tensor<T> operand(const GemmKernel<T>& kernel, const Shape& shape, Rng& rng, double scale = 1.0) {
  Tensor<T> t = Tensor<T>::randn(shape, rng, scale);
  if constexpr (std::is_same_v<T, float>)
    if (kernel.bf16())
      for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = round_to_bf16(t.data()[i]);
  return t;
}

// Every value rounded to bf16 (float), or as it is (double).
template <typename T>
Tensor<T> bf16_exact(Tensor<T> t) {
  if constexpr (std::is_same_v<T, float>)
    for (int64_t i = 0; i < t.numel(); ++i) t.data()[i] = round_to_bf16(t.data()[i]);
  return t;
}

// A random problem: group sizes (zeros included), a gather index into `sources` rows.
struct Problem {
  std::vector<int32_t> offsets{0};
  std::vector<int32_t> index;
  int64_t sources = 0;
};

Problem make_problem(const std::vector<int32_t>& sizes, int64_t sources, Rng& rng) {
  Problem p;
  p.sources = sources;
  for (int32_t s : sizes) p.offsets.push_back(p.offsets.back() + s);
  for (int32_t r = 0; r < p.offsets.back(); ++r)
    p.index.push_back(static_cast<int32_t>(rng.below(uint64_t(sources))));
  return p;
}

// The same products as plain loops over rows, accumulated in double.
template <typename T>
Tensor<T> naive_matmul(const Problem& p, const Tensor<T>& a, bool gather,
                       const std::vector<Tensor<T>>& w, bool transposed, int64_t k, int64_t n) {
  Tensor<T> c({p.offsets.back(), n});
  for (size_t g = 0; g + 1 < p.offsets.size(); ++g)
    for (int64_t r = p.offsets[g]; r < p.offsets[g + 1]; ++r)
      for (int64_t j = 0; j < n; ++j) {
        double acc = 0;
        for (int64_t i = 0; i < k; ++i) {
          const T x = a.data()[(gather ? p.index[r] : r) * k + i];
          acc += double(x) * double(transposed ? w[g].data()[j * k + i] : w[g].data()[i * n + j]);
        }
        c.data()[r * n + j] = T(acc);
      }
  return c;
}

template <typename T>
void check_matmul(const GemmKernel<T>& kernel, const std::vector<int32_t>& sizes, int64_t k,
                  int64_t n, bool gather, bool transposed) {
  CAPTURE(kernel.name);
  CAPTURE(sizes.size());
  CAPTURE(k);
  CAPTURE(n);
  CAPTURE(gather);
  CAPTURE(transposed);
  Rng rng(sizes.size() * 31 + k * 7 + n);
  const Problem p = make_problem(sizes, 23, rng);
  const int64_t rows = p.offsets.back();
  const Tensor<T> a = operand(kernel, {gather ? p.sources : rows, k}, rng);
  std::vector<Tensor<T>> w;
  std::vector<const T*> ptrs;
  for (size_t g = 0; g < sizes.size(); ++g) {
    w.push_back(operand(kernel, transposed ? Shape{n, k} : Shape{k, n}, rng));
    ptrs.push_back(w.back().data());
  }
  Tensor<T> c({rows, n}, T(777));  // overwritten, whatever it held
  const RowGroups groups{p.offsets.data(), static_cast<int64_t>(sizes.size())};
  grouped_matmul(groups, a.data(), k, gather ? p.index.data() : nullptr, ptrs.data(), transposed, k,
                 n, c.data(), n, kernel);
  test::check_close(c, naive_matmul(p, a, gather, w, transposed, k, n), tolerance<T>(k));
}

template <typename T>
void check_weight_grad(const GemmKernel<T>& kernel, const std::vector<int32_t>& sizes, int64_t n,
                       int64_t k, bool gather) {
  CAPTURE(kernel.name);
  CAPTURE(sizes.size());
  CAPTURE(n);
  CAPTURE(k);
  CAPTURE(gather);
  Rng rng(sizes.size() * 13 + n * 5 + k);
  const Problem p = make_problem(sizes, 17, rng);
  const int64_t rows = p.offsets.back();
  const Tensor<T> d = operand(kernel, {rows, n}, rng);
  const Tensor<T> x = operand(kernel, {gather ? p.sources : rows, k}, rng);
  std::vector<Tensor<T>> grads, bias;
  std::vector<T*> ptrs, bias_ptrs;
  for (size_t g = 0; g < sizes.size(); ++g) {
    grads.push_back(Tensor<T>({n, k}, T(777)));  // overwritten, or untouched when empty
    bias.push_back(Tensor<T>({n}, T(777)));
    ptrs.push_back(grads.back().data());
    bias_ptrs.push_back(bias.back().data());
  }
  const RowGroups groups{p.offsets.data(), static_cast<int64_t>(sizes.size())};
  grouped_weight_grad(groups, d.data(), n, n, x.data(), k, gather ? p.index.data() : nullptr, k,
                      ptrs.data(), bias_ptrs.data(), kernel);
  for (size_t g = 0; g < sizes.size(); ++g) {
    const bool empty = sizes[g] == 0;
    Tensor<T> expected({n, k}, T(empty ? 777 : 0)), expected_bias({n}, T(empty ? 777 : 0));
    for (int64_t r = p.offsets[g]; r < p.offsets[g + 1]; ++r)
      for (int64_t i = 0; i < n; ++i) {
        expected_bias.data()[i] += d.data()[r * n + i];
        for (int64_t j = 0; j < k; ++j)
          expected.data()[i * k + j] +=
              d.data()[r * n + i] * x.data()[(gather ? p.index[r] : r) * k + j];
      }
    test::check_close(grads[g], expected, tolerance<T>(sizes[g]) * 10);
    test::check_close(bias[g], expected_bias, tolerance<T>(sizes[g]) * 10);
  }
}

// Shapes: empty groups, one group with every row, odd sizes, tails of every width, several
// K blocks (k > 256), rows split over tasks (> 512 rows).
const std::vector<std::vector<int32_t>> kShapes = {
    {5, 0, 7, 1}, {0, 0, 300}, {1}, {97, 3, 0, 130, 2, 64}, {0}, {}, {9, 10, 11, 12, 13}, {600}};

}  // namespace

TEST_CASE_TEMPLATE("micro-kernels match a naive loop for every tile height and K", T, float,
                   double) {
  Rng rng(7);
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    CAPTURE(kernel.name);
    REQUIRE(kernel.mr >= 1);
    REQUIRE(kernel.mr <= kGemmMaxMR);
    if constexpr (std::is_same_v<T, float>)
      if (kernel.bf16()) continue;  // their own test below
    const int nr = kernel.nr;
    for (int m = 1; m <= kernel.mr; ++m)
      for (int64_t kc : {1, 7, 64, 300})
        for (int64_t a_step : {1, 5})
          for (bool accumulate : {false, true}) {
            CAPTURE(m);
            CAPTURE(kc);
            CAPTURE(a_step);
            CAPTURE(accumulate);
            const Tensor<T> a = Tensor<T>::randn({m, kc * a_step}, rng);
            const Tensor<T> b = Tensor<T>::randn({kc, nr}, rng);
            const int64_t ldc = nr + 3;
            Tensor<T> c = Tensor<T>::randn({m, ldc}, rng);
            Tensor<T> expected = c.clone();
            const T* rows[kGemmMaxMR];
            for (int i = 0; i < m; ++i) rows[i] = a.data() + i * kc * a_step;
            kernel.rows[m](kc, rows, a_step, b.data(), c.data(), ldc, accumulate);
            for (int i = 0; i < m; ++i)
              for (int j = 0; j < nr; ++j) {
                double acc = accumulate ? double(expected.data()[i * ldc + j]) : 0.0;
                for (int64_t p = 0; p < kc; ++p)
                  acc += double(rows[i][p * a_step]) * double(b.data()[p * nr + j]);
                expected.data()[i * ldc + j] = T(acc);
              }
            test::check_close(c, expected, tolerance<T>(kc));  // the padding columns untouched
          }
  }
}

TEST_CASE_TEMPLATE("row-dot kernels match a naive loop for every row count and K", T, float,
                   double) {
  Rng rng(11);
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    CAPTURE(kernel.name);
    REQUIRE(static_cast<bool>(kernel.dot));
    for (int m = 1; m <= kernel.mr; ++m)
      for (int64_t k : {0, 1, 7, 8, 15, 16, 33, 64, 300})
        for (int64_t ncols : {1, 5, 40}) {
          CAPTURE(m);
          CAPTURE(k);
          CAPTURE(ncols);
          const int64_t ldw = k + 3, ldc = ncols + 2;
          const Tensor<T> a = Tensor<T>::randn({m, k + 1}, rng);  // rows through pointers
          const Tensor<T> w = Tensor<T>::randn({ncols, ldw}, rng);
          Tensor<T> c = Tensor<T>::randn({m, ldc}, rng);
          Tensor<T> expected = c.clone();
          const T* rows[kGemmMaxMR];
          for (int i = 0; i < m; ++i) rows[i] = a.data() + (m - 1 - i) * (k + 1);
          kernel.dot(k, rows, m, w.data(), ldw, ncols, c.data(), ldc);
          for (int i = 0; i < m; ++i)
            for (int64_t j = 0; j < ncols; ++j) {
              double acc = 0;
              for (int64_t p = 0; p < k; ++p)
                acc += double(rows[i][p]) * double(w.data()[j * ldw + p]);
              expected.data()[i * ldc + j] = T(acc);
            }
          test::check_close(c, expected, tolerance<T>(k));  // columns past ncols untouched
        }
  }
}

TEST_CASE_TEMPLATE("B packing lays out zero-padded panels", T, float, double) {
  Rng rng(3);
  for (int nr : {8, 12, 16, 32})
    for (int64_t kc : {1, 8, 13, 64, 35})
      for (int64_t n : {1, 8, 17, 40, 64}) {
        CAPTURE(nr);
        CAPTURE(kc);
        CAPTURE(n);
        const int64_t panels = (n + nr - 1) / nr;
        // B[p, j] = k_rows[p * (n + 2) + j] = n_rows[j * (kc + 1) + p]
        const Tensor<T> k_rows = Tensor<T>::randn({kc, n + 2}, rng);
        Tensor<T> n_rows({n, kc + 1});
        for (int64_t p = 0; p < kc; ++p)
          for (int64_t j = 0; j < n; ++j)
            n_rows.data()[j * (kc + 1) + p] = k_rows.data()[p * (n + 2) + j];
        Tensor<T> from_k({panels * kc * nr}, T(-1)), from_n({panels * kc * nr}, T(-1));
        detail::pack_b_k_rows(
            nr, kc, n, [&](int64_t p) { return k_rows.data() + p * (n + 2); }, from_k.data());
        detail::pack_b_n_rows(
            nr, kc, n, [&](int64_t j) { return n_rows.data() + j * (kc + 1); }, from_n.data());
        Tensor<T> expected({panels * kc * nr});
        for (int64_t q = 0; q < panels; ++q)
          for (int64_t p = 0; p < kc; ++p)
            for (int64_t jj = 0; jj < nr; ++jj) {
              const int64_t j = q * nr + jj;
              expected.data()[(q * kc + p) * nr + jj] = j < n ? k_rows.data()[p * (n + 2) + j] : 0;
            }
        test::check_close(from_k, expected, 0.0);
        test::check_close(from_n, expected, 0.0);
        if constexpr (std::is_same_v<T, float>) {
          // bf16 panels: pairs of rows of the float panels, the odd K padded with zero.
          const int64_t kp = (kc + 1) / 2;
          std::vector<uint32_t> pairs_k(panels * kp * nr + 1, 1u),
              pairs_n(panels * kp * nr + 1, 1u);
          detail::pack_b_k_rows(
              nr, kc, n, [&](int64_t p) { return k_rows.data() + p * (n + 2); }, pairs_k.data());
          detail::pack_b_n_rows(
              nr, kc, n, [&](int64_t j) { return n_rows.data() + j * (kc + 1); }, pairs_n.data());
          for (int64_t q = 0; q < panels; ++q)
            for (int64_t p = 0; p < kc; p += 2)
              for (int64_t jj = 0; jj < nr; ++jj) {
                const float* panel = expected.data() + q * kc * nr;
                const uint32_t want = detail::bf16_pair(
                    panel[p * nr + jj], p + 1 < kc ? panel[(p + 1) * nr + jj] : 0.0f);
                const size_t at = static_cast<size_t>((q * kp + p / 2) * nr + jj);
                REQUIRE(pairs_k[at] == want);
                REQUIRE(pairs_n[at] == want);
              }
          CHECK(pairs_k.back() == 1u);  // nothing written past the panels
          CHECK(pairs_n.back() == 1u);
        }
      }
}

TEST_CASE_TEMPLATE("grouped_matmul matches a loop over rows, with every kernel", T, float, double) {
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    for (const auto& sizes : kShapes)
      for (bool gather : {false, true})
        for (bool transposed : {false, true})
          check_matmul<T>(kernel, sizes, 13, 9, gather, transposed);
    check_matmul<T>(kernel, {3, 2}, 256, 1030, true, true);       // few rows: columns split
    check_matmul<T>(kernel, {1, 0, 8, 1}, 77, 45, true, true);    // row-dot path, odd sizes
    check_matmul<T>(kernel, {1, 9}, 520, 33, false, true);        // row-dot and packed, 3 K blocks
    check_matmul<T>(kernel, {40, 0, 333}, 517, 70, true, false);  // three K blocks
    check_matmul<T>(kernel, {40, 0, 333}, 517, 70, false, true);
    check_matmul<T>(kernel, {31, 90, 62}, 77, 45, true, true);  // W streamed, ragged tiles
  }
}

TEST_CASE_TEMPLATE("streaming W and packing it give the same bits", T, float, double) {
  // Rows of a group of 60 stream W through the micro-kernel (gemm_streaming_w); the same rows
  // as the start of a group of 140 go through packed panels in three K blocks. Each sum runs
  // over K in order either way, so the outputs are identical.
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    if (kernel.bf16()) continue;  // bf16 kernels always pack W
    CAPTURE(kernel.name);
    Rng rng(3);
    const int64_t k = 517, n = 75, rows = 140, few = 60;
    const Tensor<T> a = operand(kernel, {rows, k}, rng);
    const Tensor<T> w = operand(kernel, {n, k}, rng);
    const T* ptrs[] = {w.data()};
    const std::vector<int32_t> streamed_offsets = {0, few}, packed_offsets = {0, rows};
    Tensor<T> streamed({few, n}), packed({rows, n});
    grouped_matmul(RowGroups{streamed_offsets.data(), 1}, a.data(), k, nullptr, ptrs, true, k, n,
                   streamed.data(), n, kernel);
    grouped_matmul(RowGroups{packed_offsets.data(), 1}, a.data(), k, nullptr, ptrs, true, k, n,
                   packed.data(), n, kernel);
    for (int64_t i = 0; i < few * n; ++i) {
      INFO("row ", i / n, ", column ", i % n);
      REQUIRE(streamed.data()[i] == packed.data()[i]);
    }
  }
}

TEST_CASE_TEMPLATE("grouped_weight_grad matches a loop over rows, with every kernel", T, float,
                   double) {
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    for (const auto& sizes : kShapes)
      for (bool gather : {false, true}) check_weight_grad<T>(kernel, sizes, 11, 6, gather);
    check_weight_grad<T>(kernel, {200, 1, 0, 531}, 40, 33, true);  // K blocks, ragged tiles
    check_weight_grad<T>(kernel, {3, 1}, 300, 70, false);
  }
}

TEST_CASE("SIMD kernels agree with the reference kernel on a grouped product") {
  const std::vector<GemmKernel<float>> kernels = kernels_under_test<float>();
  Rng rng(11);
  const Problem p = make_problem({130, 0, 7, 600, 1}, 300, rng);
  const int64_t k = 260, n = 200, rows = p.offsets.back();
  const Tensor<float> a = bf16_exact(Tensor<float>::randn({p.sources, k}, rng));
  std::vector<Tensor<float>> w;
  std::vector<const float*> ptrs;
  for (int g = 0; g < 5; ++g) {
    w.push_back(bf16_exact(Tensor<float>::randn({n, k}, rng, 0.1)));
    ptrs.push_back(w.back().data());
  }
  const RowGroups groups{p.offsets.data(), 5};
  Tensor<float> reference({rows, n});
  grouped_matmul(groups, a.data(), k, p.index.data(), ptrs.data(), true, k, n, reference.data(), n,
                 kernels.front());
  for (const GemmKernel<float>& kernel : kernels) {
    CAPTURE(kernel.name);
    Tensor<float> c({rows, n});
    grouped_matmul(groups, a.data(), k, p.index.data(), ptrs.data(), true, k, n, c.data(), n,
                   kernel);
    test::check_close(c, reference, 1e-4);
  }
}

TEST_CASE(
    "a phase runs two-segment products and weight gradients with epilogues, deterministically") {
  // GLU-style: gate and up stacked, two segments per task; the epilogue sees every output
  // element exactly once, after its sum is complete. Results are bitwise the same for any
  // number of threads.
  Rng rng(5);
  const std::vector<int32_t> sizes = {90, 0, 1, 301, 9};  // W streamed, packed, row-dot
  const Problem p = make_problem(sizes, 50, rng);
  const int64_t k = 300, h = 45, rows = p.offsets.back(), G = 5;  // two K blocks
  const Tensor<float> x = Tensor<float>::randn({p.sources, k}, rng);
  std::vector<Tensor<float>> gate, up;
  std::vector<const float*> gate_ptrs, up_ptrs;
  for (int64_t g = 0; g < G; ++g) {
    gate.push_back(Tensor<float>::randn({h, k}, rng));
    up.push_back(Tensor<float>::randn({h, k}, rng));
    gate_ptrs.push_back(gate.back().data());
    up_ptrs.push_back(up.back().data());
  }
  const Tensor<float> dmat = Tensor<float>::randn({rows, h}, rng);
  const RowGroups groups{p.offsets.data(), G};
  auto run = [&](int threads, Tensor<float>& out, Tensor<int>& seen, Tensor<float>& grad) {
    out = Tensor<float>({rows, 2 * h});
    seen = Tensor<int>({rows, h});
    Tensor<float> snapshot({rows, 2 * h});  // what the epilogue saw
    grad = Tensor<float>({G, h, k});
    GroupedProduct<float> prod;
    prod.groups = groups;
    prod.a = x.data();
    prod.lda = k;
    prod.index = p.index.data();
    prod.k = k;
    prod.w = WeightRows<float>{gate_ptrs.data(), up_ptrs.data(), h, k};
    prod.n = h;
    prod.segments = 2;
    prod.c = out.data();
    prod.ldc = 2 * h;
    prod.epilogue = [&](int64_t g, int64_t r0, int64_t m, int64_t j0, int64_t j1) {
      for (int64_t r = r0; r < r0 + m; ++r) {
        CHECK(r >= p.offsets[g]);
        CHECK(r < p.offsets[g + 1]);
        for (int64_t j = j0; j < j1; ++j) {
          ++seen.data()[r * h + j];
          snapshot.data()[r * 2 * h + j] = out.data()[r * 2 * h + j];
          snapshot.data()[r * 2 * h + h + j] = out.data()[r * 2 * h + h + j];
        }
      }
    };
    std::vector<float*> grad_ptrs;
    for (int64_t g = 0; g < G; ++g) grad_ptrs.push_back(grad.data() + g * h * k);
    GemmPhase<float> phase(gemm_kernel<float>(), threads);
    phase.add(prod);
    GroupedWeightGrad<float> wg;  // in the same pool: independent of the product's output
    wg.groups = groups;
    wg.d = dmat.data();
    wg.ldd = h;
    wg.x = x.data();
    wg.ldx = k;
    wg.index = p.index.data();
    wg.m = h;
    wg.n = k;
    wg.grads = grad_ptrs.data();
    phase.add(wg);
    phase.run_parallel();
    test::check_close(snapshot, out, 0.0);  // the epilogue ran on complete sums
  };
  Tensor<float> out1, out3, grad1, grad3;
  Tensor<int> seen1, seen3;
  run(1, out1, seen1, grad1);
  run(3, out3, seen3, grad3);
  test::check_close(seen1, Tensor<int>({rows, h}, 1), 0.0);
  test::check_close(seen3, Tensor<int>({rows, h}, 1), 0.0);
  test::check_close(out1, out3, 0.0);
  test::check_close(grad1, grad3, 0.0);
  for (int64_t g = 0; g < G; ++g)
    for (int64_t r = p.offsets[g]; r < p.offsets[g + 1]; ++r)
      for (int64_t j = 0; j < h; ++j) {
        double sg = 0, su = 0;
        for (int64_t i = 0; i < k; ++i) {
          sg += double(x.data()[p.index[r] * k + i]) * gate[g].data()[j * k + i];
          su += double(x.data()[p.index[r] * k + i]) * up[g].data()[j * k + i];
        }
        REQUIRE(std::abs(out1.data()[r * 2 * h + j] - sg) < 1e-3);
        REQUIRE(std::abs(out1.data()[r * 2 * h + h + j] - su) < 1e-3);
      }
}

TEST_CASE_TEMPLATE("row activations match the scalar functions", T, float, double) {
  Rng rng(9);
  const int64_t n = 600;  // more than one chunk
  const Tensor<T> x = Tensor<T>::randn({n}, rng, 3.0);
  const Tensor<T> u = Tensor<T>::randn({n}, rng);
  const Tensor<T> d = Tensor<T>::randn({n}, rng);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  for (Activation a : {Activation::GELU, Activation::GELUExact, Activation::ReLU, Activation::SiLU,
                       Activation::ReLU2}) {
    CAPTURE(to_string(a));
    Tensor<T> y({n}), glu({n}), dx = d.clone(), dg({n}), du = d.clone();
    Tensor<T> ey({n}), eglu({n}), edx({n}), edg({n}), edu({n});
    for (int64_t i = 0; i < n; ++i) {
      const T xi = x.data()[i], ui = u.data()[i], di = d.data()[i];
      ey.data()[i] = activate(a, xi);
      eglu.data()[i] = activate(a, xi) * ui;
      edx.data()[i] = di * activate_derivative(a, xi);
      edg.data()[i] = di * ui * activate_derivative(a, xi);
      edu.data()[i] = di * activate(a, xi);
    }
    activation_forward(a, x.data(), y.data(), n);
    glu_forward(a, x.data(), u.data(), glu.data(), n);
    activation_backward(a, x.data(), dx.data(), n);
    glu_backward(a, x.data(), u.data(), dg.data(), du.data(), n);
    test::check_close(y, ey, tol * 10);
    test::check_close(glu, eglu, tol * 10);
    test::check_close(dx, edx, tol * 10);
    test::check_close(dg, edg, tol * 10);
    test::check_close(du, edu, tol * 10);
    Tensor<T> in_place = x.clone();  // y may alias x
    activation_forward(a, in_place.data(), in_place.data(), n);
    test::check_close(in_place, ey, tol * 10);
  }
}

TEST_CASE_TEMPLATE("gemm_split_k and gemm_at_b_add match a naive loop, with every kernel", T, float,
                   double) {
  Rng rng(8);
  // K over several pieces and K blocks, A strided (a column block of a wider matrix), n not a
  // multiple of any panel width.
  const int64_t m = 13, n = 37, k = 3001, lda = k + 5;
  // Values bf16 holds exactly, for the bf16 kernels.
  const Tensor<T> a = bf16_exact(Tensor<T>::randn({m, lda}, rng));
  const Tensor<T> b = bf16_exact(Tensor<T>::randn({k, n}, rng));
  const Tensor<T> d = bf16_exact(Tensor<T>::randn({k, m}, rng));  // A^T B: A [k, m]
  const Tensor<T> start = Tensor<T>::randn({m, n}, rng);
  Tensor<T> ab({m, n}), atb({m, n});
  for (int64_t i = 0; i < m; ++i)
    for (int64_t j = 0; j < n; ++j) {
      double s = 0, t = 0;
      for (int64_t p = 0; p < k; ++p) {
        s += double(a.data()[i * lda + p]) * double(b.data()[p * n + j]);
        t += double(d.data()[p * m + i]) * double(b.data()[p * n + j]);
      }
      ab.data()[i * n + j] = T(s);
      atb.data()[i * n + j] = T(double(start.data()[i * n + j]) + t);
    }
  for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
    CAPTURE(kernel.name);
    Tensor<T> c({m, n}, T(7));  // overwritten
    gemm_split_k(m, n, k, a.data(), lda, b.data(), c.data(), kernel);
    test::check_close(c, ab, tolerance<T>(k));
    Tensor<T> acc = start.clone();  // added to
    gemm_at_b_add(m, n, k, d.data(), b.data(), acc.data(), kernel);
    test::check_close(acc, atb, tolerance<T>(k));
    // No rows: nothing to add.
    Tensor<T> same = start.clone();
    gemm_at_b_add(m, n, int64_t{0}, d.data(), b.data(), same.data(), kernel);
    test::check_close(same, start, 0.0);
  }
}

TEST_CASE_TEMPLATE("gemm_strided matches a naive loop in every transposition, with every kernel", T,
                   float, double) {
  Rng rng(9);
  // Strided operands and output (column blocks of wider matrices), sizes off every tile.
  const int64_t m = 19, n = 45, k = 301, pad = 3;
  for (const bool ta : {false, true})
    for (const bool tb : {false, true})
      for (const bool accumulate : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        CAPTURE(accumulate);
        const int64_t lda = (ta ? m : k) + pad, ldb = (tb ? k : n) + pad, ldc = n + pad;
        const Tensor<T> a = bf16_exact(Tensor<T>::randn({ta ? k : m, lda}, rng));
        const Tensor<T> b = bf16_exact(Tensor<T>::randn({tb ? n : k, ldb}, rng));
        const Tensor<T> start = Tensor<T>::randn({m, ldc}, rng);
        Tensor<T> expected = start.clone();
        for (int64_t i = 0; i < m; ++i)
          for (int64_t j = 0; j < n; ++j) {
            double s = accumulate ? double(start.data()[i * ldc + j]) : 0.0;
            for (int64_t p = 0; p < k; ++p)
              s += double(a.data()[ta ? p * lda + i : i * lda + p]) *
                   double(b.data()[tb ? j * ldb + p : p * ldb + j]);
            expected.data()[i * ldc + j] = T(s);
          }
        for (const GemmKernel<T>& kernel : kernels_under_test<T>()) {
          CAPTURE(kernel.name);
          Tensor<T> c = start.clone();  // the padding columns stay as they are
          gemm_strided(ta, tb, m, n, k, a.data(), lda, b.data(), ldb, c.data(), ldc, accumulate,
                       kernel);
          test::check_close(c, expected, tolerance<T>(k));
        }
      }
}

TEST_CASE("bf16 rounding: to nearest, ties to even, subnormals flushed, NaN kept") {
  auto bits = [](float x) { return to_bf16(x); };
  CHECK(bits(1.0f) == 0x3F80);
  CHECK(bits(-2.0f) == 0xC000);
  CHECK(bits(1.0f + 1.0f / 512) == 0x3F80);  // below half way: down
  CHECK(bits(1.0f + 1.0f / 256) == 0x3F80);  // half way, even below: down
  CHECK(bits(1.0f + 3.0f / 256) == 0x3F82);  // half way, odd below: up
  CHECK(bits(1.0f + 3.0f / 512) == 0x3F81);  // past half way: up
  CHECK(bits(3.4e38f) == 0x7F80);            // rounds past the largest bf16: infinity
  CHECK(bits(-std::numeric_limits<float>::infinity()) == 0xFF80);
  CHECK(bits(1e-40f) == 0x0000);  // a float subnormal: zero, as the hardware
  CHECK(bits(-1e-40f) == 0x8000);
  CHECK(bits(-0.0f) == 0x8000);
  CHECK(bits(std::numeric_limits<float>::min()) == 0x0080);
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::quiet_NaN())));
  CHECK(std::isnan(round_to_bf16(std::numeric_limits<float>::signaling_NaN())));
  CHECK(round_to_bf16(0.15625f) == 0.15625f);  // 8 significant bits: exact
  CHECK(detail::bf16_pair(1.0f, -2.0f) == 0xC0003F80u);
}

TEST_CASE("bf16 pair packing gives the scalar rounding for every length and value") {
  // Random values, exact ties, subnormals, infinities and NaNs, on the SIMD path when the CPU
  // has one (the scalar one otherwise: then this checks it against bf16_pair).
  Rng rng(21);
  std::vector<float> values(97);
  for (size_t i = 0; i < values.size(); ++i) values[i] = float(rng.normal()) * 100.0f;
  values[3] = 1.0f + 1.0f / 256;
  values[4] = 1.0f + 3.0f / 256;
  values[5] = 1e-40f;
  values[6] = std::numeric_limits<float>::infinity();
  values[7] = std::numeric_limits<float>::quiet_NaN();
  values[8] = -0.0f;
  for (int64_t n = 0; n <= 40; ++n) {
    CAPTURE(n);
    // Panels of 32 words (two 16-lane halves) placed 35 words apart.
    const int nr = 32, panel = 35;
    const int64_t panels = (n + nr - 1) / nr;
    std::vector<uint32_t> pairs(panels * panel + 1, 0xDEADBEEFu), rows(n / 2 + 2, 0xDEADBEEFu);
    detail::pack_pairs(values.data(), values.data() + 50, n, nr, panel, pairs.data());
    detail::pack_row_pairs(values.data(), n, rows.data());
    for (int64_t j = 0; j < panels * nr; ++j) {
      const uint32_t got = pairs[j / nr * panel + j % nr];
      if (j >= n) {
        CHECK(got == 0u);  // the padding of the last panel
      } else if (std::isnan(values[j]) || std::isnan(values[50 + j])) {
        // NaN payloads may differ; each half must be NaN where the value is.
        CHECK(std::isnan(from_bf16(static_cast<uint16_t>(got))) == std::isnan(values[j]));
      } else {
        CHECK(got == detail::bf16_pair(values[j], values[50 + j]));
      }
    }
    for (int64_t q = 0; q < panels; ++q)
      for (int64_t gap = nr; gap < panel && q + 1 < panels; ++gap)
        CHECK(pairs[q * panel + gap] == 0xDEADBEEFu);  // between the panels: untouched
    for (int64_t q = 0; q < (n + 1) / 2; ++q) {
      const float odd = 2 * q + 1 < n ? values[2 * q + 1] : 0.0f;  // an odd K pads with zero
      if (!std::isnan(values[2 * q]) && !std::isnan(odd))
        CHECK(rows[q] == detail::bf16_pair(values[2 * q], odd));
    }
    CHECK(pairs.back() == 0xDEADBEEFu);  // nothing written past the end
    CHECK(rows[(n + 1) / 2] == 0xDEADBEEFu);
    std::vector<uint32_t> zeros(panels * panel, 0xDEADBEEFu);
    detail::pack_pairs(values.data() + 10, nullptr, n, nr, panel, zeros.data());
    for (int64_t j = 0; j < n; ++j)
      CHECK((zeros[j / nr * panel + j % nr] >> 16) == 0u);  // no odd row: zero halves
  }
  // Lines of up to 16 values, `lines` of them (odd counts pad with zero), 3 words apart.
  for (int n : {1, 8, 16})
    for (int64_t lines : {1, 2, 5}) {
      CAPTURE(n);
      CAPTURE(lines);
      std::vector<uint32_t> out(((lines + 1) / 2) * (n + 3), 0xDEADBEEFu);
      detail::pack_pair_lines(values.data() + 11, 17, lines, n, out.data(), n + 3);
      for (int64_t q = 0; q < (lines + 1) / 2; ++q) {
        for (int j = 0; j < n; ++j) {
          const float even = values[11 + 2 * q * 17 + j];
          const float odd = 2 * q + 1 < lines ? values[11 + (2 * q + 1) * 17 + j] : 0.0f;
          if (!std::isnan(even) && !std::isnan(odd))
            CHECK(out[q * (n + 3) + j] == detail::bf16_pair(even, odd));
        }
        for (int j = n; j < n + 3; ++j) CHECK(out[q * (n + 3) + j] == 0xDEADBEEFu);
      }
    }
}

TEST_CASE("bf16 A strips: rows along K, rows next to each other down K, and scattered rows") {
  Rng rng(19);
  const Tensor<float> m = Tensor<float>::randn({40, 64}, rng);
  const float* base = m.data();
  for (int64_t kc : {1, 2, 7, 33}) {
    CAPTURE(kc);
    struct Layout {
      const char* name;
      int64_t step;
      std::vector<const float*> rows;
    };
    const std::vector<Layout> layouts = {
        {"along K", 1, {base + 3, base + 64 * 5, base + 64 * 2 + 1}},          // A(i, p) = row[p]
        {"down K", 64, {base + 7, base + 8, base + 9, base + 10, base + 11}},  // adjacent columns
        {"scattered", 64, {base + 2, base + 30, base + 5}}};
    for (const Layout& l : layouts) {
      CAPTURE(l.name);
      const int rows = static_cast<int>(l.rows.size()), mr = 8;
      std::vector<uint32_t> out(static_cast<size_t>(mr * (kc + 1) / 2), 0u);
      const uint32_t* pairs[kGemmMaxMR];
      const int64_t step =
          detail::pack_strip_bf16(l.rows.data(), l.step, rows, mr, kc, out.data(), pairs);
      for (int i = 0; i < rows; ++i)
        for (int64_t q = 0; q < (kc + 1) / 2; ++q) {
          const float even = l.rows[i][2 * q * l.step];
          const float odd = 2 * q + 1 < kc ? l.rows[i][(2 * q + 1) * l.step] : 0.0f;
          REQUIRE(pairs[i][q * step] == detail::bf16_pair(even, odd));
        }
    }
  }
}

TEST_CASE("bf16 micro-kernels match a naive loop over their pairs for every tile height and K") {
  Rng rng(17);
  for (const GemmKernel<float>& kernel : kernels_under_test<float>()) {
    if (!kernel.bf16()) continue;
    CAPTURE(kernel.name);
    const int nr = kernel.nr;
    for (int m = 1; m <= kernel.mr; ++m)
      for (int64_t kp : {1, 4, 33, 150})
        for (int64_t a_step : {1, 3})
          for (bool accumulate : {false, true}) {
            CAPTURE(m);
            CAPTURE(kp);
            CAPTURE(a_step);
            CAPTURE(accumulate);
            auto random_pairs = [&](int64_t count) {
              std::vector<uint32_t> v(count);
              for (auto& w : v) w = detail::bf16_pair(float(rng.normal()), float(rng.normal()));
              return v;
            };
            const std::vector<uint32_t> a = random_pairs(m * kp * a_step),
                                        b = random_pairs(kp * nr);
            const int64_t ldc = nr + 3;
            Tensor<float> c = Tensor<float>::randn({m, ldc}, rng);
            Tensor<float> expected = c.clone();
            const uint32_t* rows[kGemmMaxMR];
            for (int i = 0; i < m; ++i) rows[i] = a.data() + i * kp * a_step;
            kernel.bf16_rows[m](kp, rows, a_step, b.data(), c.data(), ldc, accumulate);
            auto half = [](uint32_t w, int h) { return double(from_bf16(uint16_t(w >> 16 * h))); };
            for (int i = 0; i < m; ++i)
              for (int j = 0; j < nr; ++j) {
                double acc = accumulate ? double(expected.data()[i * ldc + j]) : 0.0;
                for (int64_t q = 0; q < kp; ++q)
                  for (int h = 0; h < 2; ++h)
                    acc += half(rows[i][q * a_step], h) * half(b[q * nr + j], h);
                expected.data()[i * ldc + j] = float(acc);
              }
            test::check_close(c, expected, tolerance<float>(2 * kp));  // padding untouched
          }
  }
}

TEST_CASE("bf16 kernels multiply the bf16 roundings of float operands, in every product form") {
  // Full-precision operands: each bf16 kernel must give the float product of their roundings,
  // which differs from the product of the operands themselves by far more than float sums do.
  Rng rng(23);
  const int64_t m = 21, n = 45, k = 301, pad = 2;
  const Tensor<float> a = Tensor<float>::randn({m, k + pad}, rng);
  const Tensor<float> at = Tensor<float>::randn({k, m + pad}, rng);  // A^T, read down columns
  const Tensor<float> b = Tensor<float>::randn({k, n + pad}, rng);
  const Tensor<float> bt = Tensor<float>::randn({n, k + pad}, rng);
  const Tensor<float> ra = bf16_exact(a.clone()), rat = bf16_exact(at.clone()),
                      rb = bf16_exact(b.clone()), rbt = bf16_exact(bt.clone());
  for (const GemmKernel<float>& kernel : kernels_under_test<float>()) {
    if (!kernel.bf16()) continue;
    CAPTURE(kernel.name);
    for (const bool ta : {false, true})
      for (const bool tb : {false, true}) {
        CAPTURE(ta);
        CAPTURE(tb);
        const int64_t lda = ta ? m + pad : k + pad, ldb = tb ? k + pad : n + pad;
        Tensor<float> c({m, n}), rounded({m, n}), exact({m, n});
        gemm_strided(ta, tb, m, n, k, (ta ? at : a).data(), lda, (tb ? bt : b).data(), ldb,
                     c.data(), n, false, kernel);
        gemm_strided(ta, tb, m, n, k, (ta ? rat : ra).data(), lda, (tb ? rbt : rb).data(), ldb,
                     rounded.data(), n, false, gemm_kernel_ref<float>());
        gemm_strided(ta, tb, m, n, k, (ta ? at : a).data(), lda, (tb ? bt : b).data(), ldb,
                     exact.data(), n, false, gemm_kernel_ref<float>());
        test::check_close(c, rounded, tolerance<float>(k));
        double worst = 0;
        for (int64_t i = 0; i < m * n; ++i)
          worst = std::max(worst, std::abs(double(c.data()[i]) - exact.data()[i]));
        CHECK(worst > 20 * tolerance<float>(k));
      }
    // The grouped forms: a gathered forward and a weight gradient. Groups of more rows than
    // the row-dot kernel takes (decoding streams W as it is, in float: checked below).
    Problem p = make_problem({20, 0, 30}, 40, rng);
    const RowGroups groups{p.offsets.data(), 3};
    const Tensor<float> x = Tensor<float>::randn({40, k}, rng), rx = bf16_exact(x.clone());
    std::vector<Tensor<float>> w, rw;
    std::vector<const float*> wp, rwp;
    for (int g = 0; g < 3; ++g) {
      w.push_back(Tensor<float>::randn({n, k}, rng));
      rw.push_back(bf16_exact(w.back().clone()));
      wp.push_back(w.back().data());
      rwp.push_back(rw.back().data());
    }
    const int64_t rows = p.offsets.back();
    Tensor<float> c({rows, n}), expected({rows, n});
    grouped_matmul(groups, x.data(), k, p.index.data(), wp.data(), true, k, n, c.data(), n, kernel);
    grouped_matmul(groups, rx.data(), k, p.index.data(), rwp.data(), true, k, n, expected.data(), n,
                   gemm_kernel_ref<float>());
    test::check_close(c, expected, tolerance<float>(k));
    const Tensor<float> d = Tensor<float>::randn({rows, n}, rng), rd = bf16_exact(d.clone());
    std::vector<Tensor<float>> grads, expected_grads;
    std::vector<float*> gp, egp;
    for (int g = 0; g < 3; ++g) {
      grads.push_back(Tensor<float>({n, k}));
      expected_grads.push_back(Tensor<float>({n, k}));
      gp.push_back(grads.back().data());
      egp.push_back(expected_grads.back().data());
    }
    grouped_weight_grad(groups, d.data(), n, n, x.data(), k, p.index.data(), k, gp.data(),
                        static_cast<float* const*>(nullptr), kernel);
    grouped_weight_grad(groups, rd.data(), n, n, rx.data(), k, p.index.data(), k, egp.data(),
                        static_cast<float* const*>(nullptr), gemm_kernel_ref<float>());
    for (int g : {0, 2}) test::check_close(grads[g], expected_grads[g], tolerance<float>(30));
    Problem few = make_problem({3}, 40, rng);
    const RowGroups one{few.offsets.data(), 1};
    Tensor<float> decoded({3, n}), in_float({3, n});
    grouped_matmul(one, x.data(), k, few.index.data(), wp.data(), true, k, n, decoded.data(), n,
                   kernel);
    grouped_matmul(one, x.data(), k, few.index.data(), wp.data(), true, k, n, in_float.data(), n,
                   gemm_kernel_ref<float>());
    test::check_close(decoded, in_float, tolerance<float>(k));
  }
}

TEST_CASE("the matmul precision picks the library's float kernel, and only the float one") {
  REQUIRE(matmul_precision() == MatmulPrecision::fp32);
  CHECK_FALSE(gemm_kernel<float>().bf16());
  set_matmul_precision(MatmulPrecision::bf16);
  const bool bf16 = gemm_kernel<float>().bf16();
  const bool double_bf16 = gemm_kernel<double>().bf16();
  const std::string name = gemm_kernel<float>().name;
  set_matmul_precision(MatmulPrecision::fp32);
  CHECK(bf16);
  CHECK_FALSE(double_bf16);
  CHECK(name == (bf16_accelerated() ? "avx512-bf16" : "scalar-bf16"));
  CHECK_FALSE(gemm_kernel<float>().bf16());
}
