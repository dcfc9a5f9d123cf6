#include <tuple>

#include <minimoe/autograd/var.hpp>
#include <minimoe/ops/linear_cross_entropy.hpp>
#include <minimoe/ops/loss.hpp>
#include <minimoe/ops/matmul.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// Value and gradients of the fused op against the unfused head and loss, for one seed.
template <typename T>
void check_against_unfused(const Tensor<T>& h, const Tensor<T>& w, const Tensor<int32_t>& targets,
                           int64_t chunk_rows, double tol) {
  CAPTURE(chunk_rows);
  Var<T> h1(h.clone(), true), w1(w.clone(), true), h2(h.clone(), true), w2(w.clone(), true);
  Var<T> fused = linear_cross_entropy(h1, w1, targets, kIgnoreIndex, chunk_rows);
  Var<T> unfused = cross_entropy(matmul(h2, w2, false, true), targets);
  CHECK(fused.shape() == Shape{});
  CHECK(double(fused.item()) == doctest::Approx(double(unfused.item())).epsilon(tol));
  fused.backward(Tensor<T>::scalar(T(3)));
  unfused.backward(Tensor<T>::scalar(T(3)));
  test::check_close(h1.grad(), h2.grad(), tol);
  test::check_close(w1.grad(), w2.grad(), tol);
}

Tensor<double> scaled(const Tensor<double>& t, double s) {
  Tensor<double> out = t.clone();
  out.array() *= s;
  return out;
}

}  // namespace

TEST_CASE("linear_cross_entropy matches the unfused head and loss in double, in any chunking") {
  Rng rng(61);
  const Tensor<double> h = Tensor<double>::randn({2, 5, 4}, rng);
  const Tensor<double> w = Tensor<double>::randn({7, 4}, rng);
  const Tensor<int32_t> targets({2, 5}, {0, 6, kIgnoreIndex, 3, 2, 2, 1, kIgnoreIndex, 5, 4});
  for (int64_t chunk : {0, 1, 3, 4, 10, 100}) check_against_unfused(h, w, targets, chunk, 1e-12);
}

TEST_CASE("linear_cross_entropy in float runs the SIMD products and matches double") {
  // Sizes that reach the SIMD products: several chunks (16, 16, 13 rows), odd widths, a seed
  // gradient of 0.5. The reference is the unfused op in double.
  Rng rng(62);
  const int64_t rows = 45, C = 21, classes = 5003;
  const Tensor<double> h = Tensor<double>::randn({rows, C}, rng);
  const Tensor<double> w = Tensor<double>::randn({classes, C}, rng, 0.3);
  Tensor<int32_t> targets({rows});
  for (int64_t r = 0; r < rows; ++r)
    targets.data()[r] = r % 9 == 4 ? kIgnoreIndex : static_cast<int32_t>(rng.below(classes));
  Var<double> hd(h.clone(), true), wd(w.clone(), true);
  Var<double> reference = cross_entropy(matmul(hd, wd, false, true), targets);
  reference.backward();
  Var<float> hf(h.cast<float>(), true), wf(w.cast<float>(), true);
  Var<float> fused = linear_cross_entropy(hf, wf, targets, kIgnoreIndex, 16);
  CHECK(double(fused.item()) == doctest::Approx(reference.item()).epsilon(1e-5));
  fused.backward(Tensor<float>::scalar(0.5f));
  test::check_close(hf.grad().cast<double>(), scaled(hd.grad(), 0.5), 1e-5);
  test::check_close(wf.grad().cast<double>(), scaled(wd.grad(), 0.5), 1e-6);
}

#ifdef _OPENMP
TEST_CASE("linear_cross_entropy gives the same bits for any thread count") {
  // A vocabulary that splits dh along K (10 pieces), above the parallel threshold.
  Rng rng(66);
  const int64_t rows = 40, C = 16, classes = 20000;
  const Tensor<float> h = Tensor<float>::randn({rows, C}, rng);
  const Tensor<float> w = Tensor<float>::randn({classes, C}, rng, 0.3);
  Tensor<int32_t> targets({rows});
  for (int64_t r = 0; r < rows; ++r) targets.data()[r] = static_cast<int32_t>(rng.below(classes));
  auto run = [&](int threads) {
    omp_set_num_threads(threads);
    Var<float> hv(h.clone(), true), wv(w.clone(), true);
    Var<float> loss = linear_cross_entropy(hv, wv, targets, kIgnoreIndex, 16);
    loss.backward();
    return std::make_tuple(loss.item(), hv.grad(), wv.grad());
  };
  const int saved = omp_get_max_threads();
  const auto [loss1, dh1, dw1] = run(1);
  const auto [loss2, dh2, dw2] = run(2);
  omp_set_num_threads(saved);
  CHECK(loss1 == loss2);
  test::check_close(dh1, dh2, 0.0);
  test::check_close(dw1, dw2, 0.0);
}
#endif

TEST_CASE("linear_cross_entropy gradcheck") {
  Rng rng(63);
  const Tensor<int32_t> targets({2, 3}, {4, 0, kIgnoreIndex, 2, 2, 1});
  test::check_gradients(
      [&](const V& in) { return linear_cross_entropy(in[0], in[1], targets, kIgnoreIndex, 2); },
      {Tensor<double>::randn({2, 3, 3}, rng), Tensor<double>::randn({5, 3}, rng)});
  // Only the weight requires a gradient (frozen inputs), and a custom ignore_index.
  const Tensor<double> frozen = Tensor<double>::randn({4, 3}, rng);
  test::check_gradients(
      [&](const V& in) {
        return linear_cross_entropy(Var<double>(frozen), in[0], Tensor<int32_t>({4}, {1, 2, 0, 2}),
                                    2);
      },
      {Tensor<double>::randn({3, 3}, rng)});
}

TEST_CASE("linear_cross_entropy without a gradient computes the same loss and records nothing") {
  Rng rng(64);
  const Tensor<double> h = Tensor<double>::randn({6, 4}, rng);
  const Tensor<double> w = Tensor<double>::randn({9, 4}, rng);
  const Tensor<int32_t> targets({6}, {1, 8, kIgnoreIndex, 0, 3, 3});
  const double expected =
      cross_entropy(matmul(Var<double>(h), Var<double>(w), false, true), targets).item();
  Var<double> hv(h, true), wv(w, true);
  NoGradGuard no_grad;
  Var<double> loss = linear_cross_entropy(hv, wv, targets, kIgnoreIndex, 4);
  CHECK(loss.item() == doctest::Approx(expected).epsilon(1e-12));
  CHECK_FALSE(loss.requires_grad());
}

TEST_CASE_TEMPLATE("linear_cross_entropy with every target ignored is zero with zero gradient", T,
                   float, double) {
  Rng rng(65);
  Var<T> h(Tensor<T>::randn({3, 2}, rng), true), w(Tensor<T>::randn({4, 2}, rng), true);
  Var<T> loss = linear_cross_entropy(h, w, Tensor<int32_t>({3}, kIgnoreIndex));
  CHECK(loss.item() == T(0));
  loss.backward();
  CHECK(h.grad().to_vector() == std::vector<T>(6, T(0)));
  CHECK(w.grad().to_vector() == std::vector<T>(8, T(0)));
  // No rows at all: the weight's gradient is still written, as zeros (no chunk writes it).
  CHECK(linear_cross_entropy(Var<T>(Tensor<T>({0, 2})), w, Tensor<int32_t>({0})).item() == T(0));
  Var<T> w0(Tensor<T>::randn({4, 2}, rng), true);
  linear_cross_entropy(Var<T>(Tensor<T>({0, 2}), true), w0, Tensor<int32_t>({0})).backward();
  CHECK(w0.grad().to_vector() == std::vector<T>(8, T(0)));
}

TEST_CASE("linear_cross_entropy rejects bad shapes, targets and chunk sizes") {
  const Var<float> h(Tensor<float>({2, 3}));
  const Var<float> w(Tensor<float>({5, 3}));
  const Tensor<int32_t> targets({2}, {0, 4});
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, Var<float>(Tensor<float>({15})), targets),
                       doctest::Contains("the weight must be [V, C], got [15]"), ShapeError);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, Var<float>(Tensor<float>({5, 4})), targets),
                       doctest::Contains("inputs of shape [2, 3] for a weight of shape [5, 4]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, Tensor<int32_t>({3}, {0, 1, 2})),
                       doctest::Contains("targets of shape [3] for inputs of shape [2, 3]"),
                       ShapeError);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, Tensor<int32_t>({2}, {0, 5})),
                       doctest::Contains("target 5 out of range [0, 5) at position 1"), IndexError);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, w, targets, kIgnoreIndex, -1),
                       doctest::Contains("chunk_rows must be >= 0, got -1"), ValueError);
  CHECK_THROWS_WITH_AS(linear_cross_entropy(h, Var<float>(Tensor<float>({0, 3})), targets),
                       doctest::Contains("has no classes"), ShapeError);
}
