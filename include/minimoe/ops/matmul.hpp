// minimoe/ops/matmul.hpp: matrix products over Eigen's GEMM, and over minimoe's own kernels
// (kernels/grouped_gemm.hpp) for the single float products of Linear layers and the LM head,
// where they measure 2-4x faster than Eigen's (docs/kernels.md, bench/linear.cpp).
//
//   matmul(x, w, false, true)   x [B, T, C], w [D, C]      -> [B, T, D]   (a Linear layer)
//   matmul(q, k, false, true)   q [B, H, T, D], k [B, H, S, D] -> [B, H, T, S]
//
// a is [..., M, K] ([..., K, M] when transpose_a). b is either 2-d and shared by every matrix
// of a, or has exactly a's leading (batch) dimensions. A shared b with an untransposed a is one
// GEMM over all of a's rows, which is what Linear layers hit.
#pragma once

#include <string>

#include <type_traits>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"

namespace minimoe {

namespace detail {

inline std::string transpose_note(bool transpose_a, bool transpose_b) {
  if (transpose_a && transpose_b) return " (transpose_a, transpose_b)";
  if (transpose_a) return " (transpose_a)";
  if (transpose_b) return " (transpose_b)";
  return "";
}

// The product's geometry: `batch` matrices of a ([M, K] after transposition) times b.
struct MatmulShape {
  int64_t batch = 1, m = 0, k = 0, n = 0;
  bool shared_b = false;  // b is one 2-d matrix used for every batch entry
  Shape out;
};

inline MatmulShape matmul_shape(const Shape& a, const Shape& b, bool ta, bool tb) {
  check<ShapeError>(a.size() >= 2 && b.size() >= 2,
                    "matmul: operands must be at least 2-d, got {} x {}", a, b);
  MatmulShape s;
  const size_t ra = a.size(), rb = b.size();
  s.m = ta ? a[ra - 1] : a[ra - 2];
  s.k = ta ? a[ra - 2] : a[ra - 1];
  const int64_t kb = tb ? b[rb - 1] : b[rb - 2];
  s.n = tb ? b[rb - 2] : b[rb - 1];
  check<ShapeError>(s.k == kb, "matmul: inner dimensions differ: {} x {}{}", a, b,
                    transpose_note(ta, tb));
  s.shared_b = rb == 2;
  check<ShapeError>(s.shared_b || std::equal(a.begin(), a.end() - 2, b.begin(), b.end() - 2),
                    "matmul: batch dimensions differ: {} x {}", a, b);
  s.out.assign(a.begin(), a.end() - 2);
  for (int64_t extent : s.out) s.batch *= extent;
  s.out.push_back(s.m);
  s.out.push_back(s.n);
  return s;
}

template <typename T>
using ConstMatrixMap = typename Tensor<T>::ConstMatrixMap;
template <typename T>
using MatrixMap = typename Tensor<T>::MatrixMap;

// Matrix i of a contiguous [..., rows, cols] tensor.
template <typename T>
ConstMatrixMap<T> matrix_at(const Tensor<T>& t, int64_t i, int64_t rows, int64_t cols) {
  return ConstMatrixMap<T>(t.data() + i * rows * cols, rows, cols);
}
template <typename T>
MatrixMap<T> matrix_at(Tensor<T>& t, int64_t i, int64_t rows, int64_t cols) {
  return MatrixMap<T>(t.data() + i * rows * cols, rows, cols);
}

// One operand of a batched product: `batch` stored [rows, cols] matrices (or one, when
// shared), used transposed or not.
template <typename T>
struct GemmOperand {
  const Tensor<T>& t;
  int64_t rows, cols;
  bool transposed;
  bool shared = false;
};

// out_i = op(a_i) op(b_i) for i < batch; with `reduce_into_one` out_0 = the sum of the
// products (the gradient of a shared operand), which needs `out` zero on entry only when
// batch is 0. Otherwise `out` may hold anything: every element is overwritten.
template <typename T>
void batched_gemm(const GemmOperand<T>& a, const GemmOperand<T>& b, Tensor<T>& out, int64_t batch,
                  bool reduce_into_one = false) {
  const int64_t m = a.transposed ? a.cols : a.rows, n = b.transposed ? b.rows : b.cols;
  if constexpr (std::is_same_v<T, float>) {
    const int64_t k = a.transposed ? a.rows : a.cols;
    if (batch == 1 && gemm(a.transposed, b.transposed, m, n, k, a.t.data(), b.t.data(), out.data()))
      return;
  }
  for (int64_t i = 0; i < batch; ++i) {
    const auto ai = matrix_at(a.t, a.shared ? 0 : i, a.rows, a.cols);
    const auto bi = matrix_at(b.t, b.shared ? 0 : i, b.rows, b.cols);
    auto oi = matrix_at(out, reduce_into_one ? 0 : i, m, n);
    if (!reduce_into_one || i == 0) oi.setZero();
    if (!a.transposed && !b.transposed) oi.noalias() += ai * bi;
    if (!a.transposed && b.transposed) oi.noalias() += ai * bi.transpose();
    if (a.transposed && !b.transposed) oi.noalias() += ai.transpose() * bi;
    if (a.transposed && b.transposed) oi.noalias() += ai.transpose() * bi.transpose();
  }
}

}  // namespace detail

template <typename T>
Var<T> matmul(const Var<T>& a, const Var<T>& b, bool transpose_a = false,
              bool transpose_b = false) {
  const detail::MatmulShape s =
      detail::matmul_shape(a.shape(), b.shape(), transpose_a, transpose_b);
  const Tensor<T> ac = a.value().contiguous();
  const Tensor<T> bc = b.value().contiguous();
  // With a shared b and an untransposed a, all of a's rows form one [batch * M, K] matrix.
  const bool flatten = s.shared_b && !transpose_a;
  const int64_t batch = flatten ? 1 : s.batch;
  const int64_t m = flatten ? s.batch * s.m : s.m;
  using Operand = detail::GemmOperand<T>;
  // Stored extents of each matrix of a and b.
  const int64_t a_rows = transpose_a ? s.k : m, a_cols = transpose_a ? m : s.k;
  const int64_t b_rows = transpose_b ? s.n : s.k, b_cols = transpose_b ? s.k : s.n;

  Tensor<T> out = Tensor<T>::empty(s.out);
  detail::batched_gemm(Operand{ac, a_rows, a_cols, transpose_a},
                       Operand{bc, b_rows, b_cols, transpose_b, s.shared_b}, out, batch);

  return make_op<
      T>("matmul", std::move(out), {a, b}, [=](const std::vector<Var<T>>& in, const Tensor<T>& g) {
    const Tensor<T> gc = g.contiguous();
    const Operand G{gc, m, s.n, false};
    // C = op(A) op(B) gives d op(A) = G op(B)^T and d op(B) = op(A)^T G; a transposed
    // operand stores the transpose of that: dA = op(B) G^T, dB = G^T op(A).
    if (in[0].requires_grad()) {
      Tensor<T> da(in[0].shape());
      const Operand B{bc, b_rows, b_cols, transpose_b, s.shared_b};
      if (!transpose_a)
        detail::batched_gemm(G, Operand{bc, b_rows, b_cols, !transpose_b, s.shared_b}, da, batch);
      else
        detail::batched_gemm(B, Operand{gc, m, s.n, true}, da, batch);
      in[0].add_grad(std::move(da));
    }
    if (in[1].requires_grad()) {
      Tensor<T> db(in[1].shape());
      if (!transpose_b)
        detail::batched_gemm(Operand{ac, a_rows, a_cols, !transpose_a}, G, db, batch, s.shared_b);
      else
        detail::batched_gemm(Operand{gc, m, s.n, true}, Operand{ac, a_rows, a_cols, transpose_a},
                             db, batch, s.shared_b);
      in[1].add_grad(std::move(db));
    }
  });
}

}  // namespace minimoe
