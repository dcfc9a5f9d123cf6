#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/matmul.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// op(a) op(b) one scalar at a time through at(): the oracle for the GEMM-based op. a is
// [..., M, K] (or [..., K, M] when ta); b is 2-d (shared) or has a's leading dimensions.
template <typename T>
Tensor<T> matmul_reference(const Tensor<T>& a, const Tensor<T>& b, bool ta, bool tb) {
  const int64_t ra = a.dim(), rb = b.dim();
  const int64_t M = ta ? a.size(ra - 1) : a.size(ra - 2);
  const int64_t K = ta ? a.size(ra - 2) : a.size(ra - 1);
  const int64_t N = tb ? b.size(rb - 2) : b.size(rb - 1);
  int64_t batch = 1;
  Shape out_shape;
  for (int64_t i = 0; i < ra - 2; ++i) {
    batch *= a.size(i);
    out_shape.push_back(a.size(i));
  }
  out_shape.push_back(M);
  out_shape.push_back(N);
  // Flatten the batch dimensions so at() takes three indices.
  const Tensor<T> a3 = a.reshape({batch, a.size(ra - 2), a.size(ra - 1)});
  const Tensor<T> b3 = rb == 2 ? b.reshape({1, b.size(0), b.size(1)})
                               : b.reshape({batch, b.size(rb - 2), b.size(rb - 1)});
  Tensor<T> out({batch, M, N});
  for (int64_t p = 0; p < batch; ++p) {
    const int64_t pb = rb == 2 ? 0 : p;
    for (int64_t i = 0; i < M; ++i)
      for (int64_t j = 0; j < N; ++j) {
        double acc = 0;
        for (int64_t k = 0; k < K; ++k) {
          const double av = ta ? a3.at({p, k, i}) : a3.at({p, i, k});
          const double bv = tb ? b3.at({pb, j, k}) : b3.at({pb, k, j});
          acc += av * bv;
        }
        out.at({p, i, j}) = static_cast<T>(acc);
      }
  }
  return out.reshape(out_shape);
}

// Stored shape of an operand whose used (op) shape is [lead..., rows, cols].
Shape stored(Shape lead, int64_t rows, int64_t cols, bool transposed) {
  lead.push_back(transposed ? cols : rows);
  lead.push_back(transposed ? rows : cols);
  return lead;
}

}  // namespace

TEST_CASE_TEMPLATE("matmul forward by hand", T, float, double) {
  Var<T> a(Tensor<T>({2, 3}, {1, 2, 3, 4, 5, 6}));
  Var<T> b(Tensor<T>({3, 2}, {7, 8, 9, 10, 11, 12}));
  Var<T> c = matmul(a, b);
  CHECK(c.shape() == Shape{2, 2});
  CHECK(c.value().to_vector() == std::vector<T>{58, 64, 139, 154});
  // a^T [3, 2] x a [2, 3]
  Var<T> ata = matmul(a, a, true, false);
  CHECK(ata.shape() == Shape{3, 3});
  CHECK(ata.value().to_vector() == std::vector<T>{17, 22, 27, 22, 29, 36, 27, 36, 45});
  // a [2, 3] x a^T [3, 2]
  Var<T> aat = matmul(a, a, false, true);
  CHECK(aat.value().to_vector() == std::vector<T>{14, 32, 32, 77});
  // a^T [3, 2] x b^T [2, 3]
  Var<T> both = matmul(a, b, true, true);
  CHECK(both.shape() == Shape{3, 3});
  CHECK(both.value().to_vector() == std::vector<T>{39, 49, 59, 54, 68, 82, 69, 87, 105});

  // A batch of two matrices times a shared b, and times a batched b.
  Var<T> a3(Tensor<T>({2, 1, 2}, {1, 2, 3, 4}));
  Var<T> shared(Tensor<T>({2, 2}, {1, 0, 0, 2}));
  CHECK(matmul(a3, shared).shape() == Shape{2, 1, 2});
  CHECK(matmul(a3, shared).value().to_vector() == std::vector<T>{1, 4, 3, 8});
  Var<T> batched(Tensor<T>({2, 2, 1}, {1, 1, 2, -1}));
  CHECK(matmul(a3, batched).shape() == Shape{2, 1, 1});
  CHECK(matmul(a3, batched).value().to_vector() == std::vector<T>{3, 2});

  // An empty inner dimension gives zeros.
  Var<T> z = matmul(Var<T>(Tensor<T>({2, 0})), Var<T>(Tensor<T>({0, 3})));
  CHECK(z.shape() == Shape{2, 3});
  CHECK(z.value().to_vector() == std::vector<T>(6, T(0)));
}

TEST_CASE_TEMPLATE("matmul forward matches the reference for every layout", T, float, double) {
  Rng rng(31);
  const double tol = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  const int64_t M = 3, K = 4, N = 5;
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      // 2-d x 2-d
      auto a2 = Tensor<T>::randn(stored({}, M, K, ta), rng);
      auto b2 = Tensor<T>::randn(stored({}, K, N, tb), rng);
      test::check_close(matmul(Var<T>(a2), Var<T>(b2), ta, tb).value(),
                        matmul_reference(a2, b2, ta, tb), tol);
      // [2, 3, ...] x shared 2-d
      auto a4 = Tensor<T>::randn(stored({2, 3}, M, K, ta), rng);
      Var<T> shared = matmul(Var<T>(a4), Var<T>(b2), ta, tb);
      CHECK(shared.shape() == Shape{2, 3, M, N});
      test::check_close(shared.value(), matmul_reference(a4, b2, ta, tb), tol);
      // [2, 3, ...] x batched [2, 3, ...]
      auto b4 = Tensor<T>::randn(stored({2, 3}, K, N, tb), rng);
      test::check_close(matmul(Var<T>(a4), Var<T>(b4), ta, tb).value(),
                        matmul_reference(a4, b4, ta, tb), tol);
      // Non-contiguous operands (transposed views of the other layout).
      auto a_view = Tensor<T>::randn(stored({2}, M, K, !ta), rng).transpose(1, 2);
      auto b_view = Tensor<T>::randn(stored({2}, K, N, !tb), rng).transpose(1, 2);
      REQUIRE_FALSE(a_view.is_contiguous());
      test::check_close(matmul(Var<T>(a_view), Var<T>(b_view), ta, tb).value(),
                        matmul_reference(a_view, b_view, ta, tb), tol);
      auto b2_view = Tensor<T>::randn(stored({}, K, N, !tb), rng).transpose(0, 1);
      test::check_close(matmul(Var<T>(a_view), Var<T>(b2_view), ta, tb).value(),
                        matmul_reference(a_view, b2_view, ta, tb), tol);
    }
}

TEST_CASE("matmul gradcheck: every transposition, shared and batched b") {
  Rng rng(32);
  const int64_t M = 3, K = 2, N = 4;
  auto mm = [](bool ta, bool tb) {
    return [=](const V& in) { return matmul(in[0], in[1], ta, tb); };
  };
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      const auto b2 = Tensor<double>::randn(stored({}, K, N, tb), rng);
      // 2-d x 2-d
      test::check_gradients(mm(ta, tb), {Tensor<double>::randn(stored({}, M, K, ta), rng), b2});
      // 3-d and 4-d a with a shared 2-d b (one GEMM over all rows when !ta)
      test::check_gradients(mm(ta, tb), {Tensor<double>::randn(stored({2}, M, K, ta), rng), b2});
      test::check_gradients(mm(ta, tb), {Tensor<double>::randn(stored({2, 2}, M, K, ta), rng), b2});
      // batched b with the same leading dimensions
      test::check_gradients(mm(ta, tb), {Tensor<double>::randn(stored({2}, M, K, ta), rng),
                                         Tensor<double>::randn(stored({2}, K, N, tb), rng)});
      test::check_gradients(mm(ta, tb), {Tensor<double>::randn(stored({2, 2}, M, K, ta), rng),
                                         Tensor<double>::randn(stored({2, 2}, K, N, tb), rng)});
      // Only one operand requiring grad.
      const auto a3 = Tensor<double>::randn(stored({2}, M, K, ta), rng);
      test::check_gradients(mm(ta, tb), {a3, b2}, only_wrt({true, false}));
      test::check_gradients(mm(ta, tb), {a3, b2}, only_wrt({false, true}));
    }
}

TEST_CASE("matmul gradcheck with non-contiguous operands and broadcasting") {
  Rng rng(33);
  auto t12 = [](const Var<double>& v) {
    Var<double> view = transpose(v, -1, -2);
    CHECK_FALSE(view.value().is_contiguous());
    return view;
  };
  // Views of the opposite layout: every operand is a strided transpose inside the graph.
  for (bool ta : {false, true})
    for (bool tb : {false, true}) {
      CAPTURE(ta);
      CAPTURE(tb);
      test::check_gradients([&](const V& in) { return matmul(t12(in[0]), t12(in[1]), ta, tb); },
                            {Tensor<double>::randn(stored({2}, 3, 2, !ta), rng),
                             Tensor<double>::randn(stored({2}, 2, 4, !tb), rng)});
      test::check_gradients([&](const V& in) { return matmul(t12(in[0]), t12(in[1]), ta, tb); },
                            {Tensor<double>::randn(stored({2}, 3, 2, !ta), rng),
                             Tensor<double>::randn(stored({}, 2, 4, !tb), rng)});
    }
  // A sliced operand (offset into the storage, strided rows).
  test::check_gradients(
      [](const V& in) { return matmul(slice(in[0], 1, 1, 4), in[1]); },
      {Tensor<double>::randn({2, 5, 3}, rng), Tensor<double>::randn({3, 2}, rng)});
  // A Linear layer: x [B, T, C] times w [D, C] transposed plus a broadcast bias [D].
  test::check_gradients([](const V& in) { return matmul(in[0], in[1], false, true) + in[2]; },
                        {Tensor<double>::randn({2, 3, 4}, rng), Tensor<double>::randn({5, 4}, rng),
                         Tensor<double>::randn({5}, rng)});
  // Attention-style scores q k^T per batch and head, then weights times v.
  test::check_gradients(
      [](const V& in) { return matmul(matmul(in[0], in[1], false, true), in[2]); },
      {Tensor<double>::randn({2, 2, 3, 4}, rng), Tensor<double>::randn({2, 2, 5, 4}, rng),
       Tensor<double>::randn({2, 2, 5, 2}, rng)});
  // The same Var as both operands: both gradient contributions accumulate.
  test::check_gradients([](const V& in) { return matmul(in[0], in[0], false, true); },
                        {Tensor<double>::randn({2, 3, 4}, rng)});
  test::check_gradients([](const V& in) { return matmul(in[0], in[0], true, false); },
                        {Tensor<double>::randn({3, 4}, rng)});
}

TEST_CASE("matmul backward by hand") {
  Var<double> a(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}), true);
  Var<double> b(Tensor<double>({3, 2}, {7, 8, 9, 10, 11, 12}), true);
  matmul(a, b).backward(Tensor<double>({2, 2}, {1, 0, 0, 1}));
  // da = G b^T, db = a^T G
  CHECK(a.grad().to_vector() == std::vector<double>{7, 9, 11, 8, 10, 12});
  CHECK(b.grad().to_vector() == std::vector<double>{1, 4, 2, 5, 3, 6});
  // A shared b collects the gradient of every batch entry.
  Var<double> x(Tensor<double>({2, 1, 2}, {1, 2, 3, 4}), true);
  Var<double> w(Tensor<double>({2, 1}, {5, 6}), true);
  matmul(x, w).backward(Tensor<double>({2, 1, 1}, {1, 10}));
  CHECK(w.grad().to_vector() == std::vector<double>{31, 42});
  CHECK(x.grad().to_vector() == std::vector<double>{5, 6, 50, 60});
}

TEST_CASE("matmul errors") {
  Var<float> v(Tensor<float>({3}));
  Var<float> m34(Tensor<float>({3, 4}));
  CHECK_THROWS_WITH_AS(matmul(v, m34), "matmul: operands must be at least 2-d, got [3] x [3, 4]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(m34, v), "matmul: operands must be at least 2-d, got [3, 4] x [3]",
                       ShapeError);
  Var<float> a(Tensor<float>({4, 3}));
  Var<float> b(Tensor<float>({5, 2}));
  CHECK_THROWS_WITH_AS(matmul(a, b), "matmul: inner dimensions differ: [4, 3] x [5, 2]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(a, Var<float>(Tensor<float>({2, 5})), false, true),
                       "matmul: inner dimensions differ: [4, 3] x [2, 5] (transpose_b)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(matmul(a, Var<float>(Tensor<float>({3, 5})), true, false),
                       "matmul: inner dimensions differ: [4, 3] x [3, 5] (transpose_a)",
                       ShapeError);
  CHECK_THROWS_WITH_AS(
      matmul(a, Var<float>(Tensor<float>({5, 3})), true, true),
      "matmul: inner dimensions differ: [4, 3] x [5, 3] (transpose_a, transpose_b)", ShapeError);
  CHECK_THROWS_WITH_AS(
      matmul(Var<float>(Tensor<float>({2, 3, 4})), Var<float>(Tensor<float>({3, 4, 5}))),
      "matmul: batch dimensions differ: [2, 3, 4] x [3, 4, 5]", ShapeError);
  CHECK_THROWS_WITH_AS(
      matmul(Var<float>(Tensor<float>({2, 3, 4})), Var<float>(Tensor<float>({1, 4, 5}))),
      "matmul: batch dimensions differ: [2, 3, 4] x [1, 4, 5]", ShapeError);
  CHECK_THROWS_WITH_AS(matmul(m34, Var<float>(Tensor<float>({2, 4, 5}))),
                       "matmul: batch dimensions differ: [3, 4] x [2, 4, 5]", ShapeError);
  CHECK_THROWS_WITH_AS(
      matmul(Var<float>(Tensor<float>({2, 2, 3, 4})), Var<float>(Tensor<float>({2, 4, 5}))),
      "matmul: batch dimensions differ: [2, 2, 3, 4] x [2, 4, 5]", ShapeError);
}
