// minimoe/kernels/grouped_gemm.hpp: the matrix products of all experts of an MoE layer, as
// one parallel loop over tiles instead of one GEMM call per expert.
//
// The rows of a routed activation matrix are grouped by expert (kernels/routing.hpp): group g
// owns rows [offsets[g], offsets[g + 1]). Two products cover the forward and backward passes:
//
//   grouped_matmul       C[r] = A[index(r)] op(W_g)          for every row r of group g
//                        op(W) = W^T (forward, W [n, k] as in Linear) or W (backward dX)
//   grouped_weight_grad  dW_g = D_g^T X_g, X_g rows read through the index (ragged K = rows)
//
// A's rows are gathered through an optional index while they are packed into a tile, so the
// token activations never need a permuted copy. Work items are (group, row tile, column
// tile), handed out dynamically over OpenMP threads with no barrier between experts, so a
// skewed routing keeps every thread busy. Each output tile has exactly one owner: no atomics,
// and the result does not depend on the thread count or schedule.
//
// The tile products themselves run on Eigen's GEMM kernel (AVX-512 / AVX2+FMA / NEON, chosen
// at compile time; scalar with MINIMOE_FORCE_SCALAR), single-threaded inside each item.
#pragma once

#include <algorithm>
#include <cstdint>
#include <vector>

#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include "minimoe/error.hpp"

namespace minimoe {

// Groups of consecutive rows: group g is rows [offsets[g], offsets[g + 1]).
struct RowGroups {
  const int32_t* offsets = nullptr;
  int64_t count = 0;

  int64_t begin(int64_t g) const { return offsets[g]; }
  int64_t rows(int64_t g) const { return offsets[g + 1] - offsets[g]; }
  int64_t total() const { return count == 0 ? 0 : offsets[count]; }
};

namespace detail {

template <typename T>
using RowMajor = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
template <typename T>
using StridedMap = Eigen::Map<RowMajor<T>, 0, Eigen::OuterStride<>>;
template <typename T>
using ConstStridedMap = Eigen::Map<const RowMajor<T>, 0, Eigen::OuterStride<>>;

// Row tiles are small enough that a packed tile of A stays in L2, large enough to amortise
// the packing of W's panel inside Eigen's kernel.
inline constexpr int64_t kRowTile = 96;
inline constexpr int64_t kColumnTile = 256;

struct Tile {
  int32_t group;
  int32_t row_begin, row_end;  // absolute rows
  int32_t col_begin, col_end;
};

// Splits every group into row tiles, and the columns too when there are too few row tiles
// to keep all threads busy (few tokens, e.g. decoding).
inline std::vector<Tile> make_tiles(const RowGroups& groups, int64_t columns, int threads) {
  int64_t row_tiles = 0;
  for (int64_t g = 0; g < groups.count; ++g)
    row_tiles += (groups.rows(g) + kRowTile - 1) / kRowTile;
  int64_t col_tile = std::max<int64_t>(columns, 1);
  if (row_tiles < 4 * threads)
    col_tile = std::min(col_tile, std::max<int64_t>(64, (columns / (4 * threads) + 15) / 16 * 16));
  else
    col_tile = std::min(col_tile, kColumnTile * 4);
  std::vector<Tile> tiles;
  for (int64_t g = 0; g < groups.count; ++g)
    for (int64_t r = groups.begin(g); r < groups.begin(g) + groups.rows(g); r += kRowTile)
      for (int64_t c = 0; c < columns; c += col_tile)
        tiles.push_back(
            {static_cast<int32_t>(g), static_cast<int32_t>(r),
             static_cast<int32_t>(std::min(r + kRowTile, groups.begin(g) + groups.rows(g))),
             static_cast<int32_t>(c), static_cast<int32_t>(std::min(c + col_tile, columns))});
  return tiles;
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

// Copies rows [begin, end) of A, read through `index` when given, into a dense [rows, k] tile.
template <typename T>
void pack_rows(const T* a, int64_t lda, const int32_t* index, int64_t begin, int64_t end, int64_t k,
               std::vector<T>& tile) {
  tile.resize(static_cast<size_t>((end - begin) * k));
  for (int64_t r = begin; r < end; ++r) {
    const T* src = a + (index ? int64_t{index[r]} : r) * lda;
    std::copy_n(src, k, tile.data() + (r - begin) * k);
  }
}

}  // namespace detail

// C[r, :] = A[index ? index[r] : r, :] op(W_g) for each row r of each group g.
//   A: rows of length k (stride lda); W_g = weights[g]: [n, k] when transposed (C = A W^T),
//   [k, n] otherwise (C = A W); C: [groups.total(), n] with stride ldc, overwritten.
template <typename T>
void grouped_matmul(const RowGroups& groups, const T* a, int64_t lda, const int32_t* index,
                    const T* const* weights, bool transposed, int64_t k, int64_t n, T* c,
                    int64_t ldc) {
  using namespace detail;
  const std::vector<Tile> tiles = make_tiles(groups, n, max_threads());
  const int64_t count = static_cast<int64_t>(tiles.size());
#pragma omp parallel
  {
    std::vector<T> packed;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) {
      const Tile& t = tiles[i];
      const int64_t rows = t.row_end - t.row_begin, cols = t.col_end - t.col_begin;
      pack_rows(a, lda, index, t.row_begin, t.row_end, k, packed);
      const ConstStridedMap<T> x(packed.data(), rows, k, Eigen::OuterStride<>(k));
      StridedMap<T> out(c + int64_t{t.row_begin} * ldc + t.col_begin, rows, cols,
                        Eigen::OuterStride<>(ldc));
      if (transposed) {
        const ConstStridedMap<T> w(weights[t.group] + int64_t{t.col_begin} * k, cols, k,
                                   Eigen::OuterStride<>(k));
        out.noalias() = x * w.transpose();
      } else {
        const ConstStridedMap<T> w(weights[t.group] + t.col_begin, k, cols,
                                   Eigen::OuterStride<>(n));
        out.noalias() = x * w;
      }
    }
  }
}

// grads[g] += D_g^T X_g, [n, k], where D_g = rows of group g of D ([rows, n], stride ldd) and
// X_g = the same rows of X read through `index` ([rows, k], stride ldx). Each gradient tile
// (group, column tile of n) sums over all the group's rows in order on one thread.
template <typename T>
void grouped_weight_grad(const RowGroups& groups, const T* d, int64_t ldd, int64_t n, const T* x,
                         int64_t ldx, const int32_t* index, int64_t k, T* const* grads) {
  using namespace detail;
  // One item per (group, slice of n); slices only when there are fewer groups than threads.
  const int threads = max_threads();
  const int64_t slices = groups.count >= threads
                             ? 1
                             : (threads + groups.count - 1) / std::max<int64_t>(groups.count, 1);
  const int64_t slice = std::max<int64_t>(16, (n + slices - 1) / slices);
  const int64_t per_group = (n + slice - 1) / slice;
  const int64_t count = groups.count * per_group;
#pragma omp parallel
  {
    std::vector<T> packed_x;
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) {
      const int64_t g = i / per_group, c0 = (i % per_group) * slice, c1 = std::min(n, c0 + slice);
      if (groups.rows(g) == 0 || c0 >= c1) continue;
      StridedMap<T> grad(grads[g] + c0 * k, c1 - c0, k, Eigen::OuterStride<>(k));
      for (int64_t r = groups.begin(g); r < groups.begin(g) + groups.rows(g); r += kRowTile) {
        const int64_t end = std::min(r + kRowTile, groups.begin(g) + groups.rows(g));
        pack_rows(x, ldx, index, r, end, k, packed_x);
        const ConstStridedMap<T> xs(packed_x.data(), end - r, k, Eigen::OuterStride<>(k));
        const ConstStridedMap<T> ds(d + r * ldd + c0, end - r, c1 - c0, Eigen::OuterStride<>(ldd));
        grad.noalias() += ds.transpose() * xs;
      }
    }
  }
}

}  // namespace minimoe
