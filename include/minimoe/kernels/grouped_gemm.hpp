// minimoe/kernels/grouped_gemm.hpp: the matrix products of all experts of an MoE layer, as
// one pool of work items over OpenMP threads instead of one GEMM call per expert.
//
// The rows of a routed activation matrix are grouped by expert (kernels/routing.hpp): group g
// owns rows [offsets[g], offsets[g + 1]). Two kinds of product cover forward and backward:
//
//   GroupedProduct     C[r, :] = A(r) op(W_g)                 r in group g
//                      A(r) = a + index[r] * lda (the token gather, free: rows are read in
//                      place by the micro-kernel), op(W) = W^T (W [n, k] as in Linear: the
//                      forward) or W (W [k, n]: dX), then a per-strip epilogue (bias,
//                      activation, its derivative) while the strip is hot in cache
//   GroupedWeightGrad  dW_g = D_g^T X_g (ragged K = the group's rows), and db_g = colsum D_g
//
// Each product is split into tasks (group, row tile, column tile) with a cost; the tasks of
// one phase (several products may share one) are sorted by cost and handed out dynamically,
// with no barrier between experts, so skewed routing keeps every thread busy. Groups with few
// rows (decoding) are split along the columns instead, so that each thread streams its own
// slice of the weights. Every output tile has one owner and every sum runs in a fixed order
// (K in fixed blocks): no atomics, and results do not depend on the thread count.
//
// A task is a blocked GEMM: for each K block of kBlockK, B is packed into NR-wide panels
// (kernels/pack.hpp) that stay in L2, then each strip of MR rows of A (in L1) runs through the
// micro-kernel (kernels/gemm_microkernel.hpp) against every panel. A forward-form task of a
// few rows (decoding) skips the packing: the row-dot kernel streams W instead; one of a few
// dozen rows swaps the operands, so that W streams through the micro-kernel (gemm_streaming_w).
//
//   GemmPhase<float> phase;
//   phase.add(product);                  // GroupedProduct or GroupedWeightGrad
//   phase.run();                         // inside `#pragma omp parallel`, or run_parallel()
#pragma once

#include <algorithm>
#include <cstdint>
#include <functional>
#include <memory>
#include <type_traits>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/kernels/gemm_microkernel.hpp"
#include "minimoe/kernels/pack.hpp"
#include "minimoe/kernels/parallel.hpp"

namespace minimoe {

// Groups of consecutive rows: group g is rows [offsets[g], offsets[g + 1]).
struct RowGroups {
  const int32_t* offsets = nullptr;
  int64_t count = 0;

  int64_t begin(int64_t g) const { return offsets[g]; }
  int64_t rows(int64_t g) const { return offsets[g + 1] - offsets[g]; }
  int64_t total() const { return count == 0 ? 0 : offsets[count]; }
};

// The weight operand: row v of group g's matrix, from `first` below `split` and from `second`
// above it (GLU: gate and up stacked as one [2h, C] matrix, or one [2h]-deep K); `ld` is the
// row stride of both.
template <typename T>
struct WeightRows {
  const T* const* first = nullptr;
  const T* const* second = nullptr;
  int64_t split = INT64_MAX;
  int64_t ld = 0;

  const T* row(int64_t g, int64_t v) const {
    return v < split ? first[g] + v * ld : second[g] + (v - split) * ld;
  }
};

// C[r, s n + j] = sum_p A(r)[p] B_g[p, s n + j] for rows r of group g, j < n, s < segments.
// B_g = W_g^T when transposed (W rows are output columns), else W_g (W rows are p). Segments
// put gate and up of the same hidden units in one task, so one epilogue sees both.
template <typename T>
struct GroupedProduct {
  RowGroups groups;
  const T* a = nullptr;
  int64_t lda = 0;
  const int32_t* index = nullptr;  // A(r) = a + (index ? index[r] : r) * lda
  int64_t k = 0;
  WeightRows<T> w;
  bool transposed = true;
  int64_t n = 0;  // columns per segment
  int segments = 1;
  T* c = nullptr;
  int64_t ldc = 0;
  // Called once per finished strip: (group, first row, rows, first column, end column); the
  // columns are within a segment, every segment of them is final.
  std::function<void(int64_t, int64_t, int64_t, int64_t, int64_t)> epilogue;
};

// grads[g][i, j] = sum_{r in g} D[r, i] X(r)[j] for i < m, j < n (overwritten, or added to
// when `accumulate`), and bias_grads[g][i] = sum_{r in g} D[r, i] when given (overwritten).
// Groups without rows are left alone.
template <typename T>
struct GroupedWeightGrad {
  RowGroups groups;
  const T* d = nullptr;
  int64_t ldd = 0;
  const T* x = nullptr;
  int64_t ldx = 0;
  const int32_t* index = nullptr;  // X(r) = x + (index ? index[r] : r) * ldx
  int64_t m = 0, n = 0;
  T* const* grads = nullptr;
  T* const* bias_grads = nullptr;
  bool accumulate = false;  // grads += (a product in several calls over row chunks)
};

namespace detail {

// A K block keeps an MR x kc strip of A in L1 and kc x nc of packed B in L2; a task's rows
// reuse its packed B.
inline constexpr int64_t kBlockK = 256;
inline constexpr int64_t kBlockN = 256;
inline constexpr int64_t kBlockRows = 512;
// Output rows of a weight-gradient task (narrowed when the product has too few tasks). Every
// task packs its own B, the group's rows of X, so short tiles repack it many times: the tied LM
// head's dW [50257, 256] in tiles of 256 rows packed its 2 MB of X 197 times a step. 1024 rows
// made that product 7-20% faster (bench/linear, dW at T=2048, 50257 x 256).
inline constexpr int64_t kBlockGradRows = 1024;
inline int64_t round_up(int64_t v, int64_t to) { return (v + to - 1) / to * to; }

// Forward-form tasks of at most kDotStrips strips of MR rows use the row-dot kernel, over
// column blocks of kDotColumns W rows.
inline constexpr int64_t kDotStrips = 2;
inline constexpr int64_t kDotColumns = 16;
// Forward-form tasks of up to kStreamRows rows (and more than the row-dot ones) stream W
// through the micro-kernel instead of packing it (gemm_streaming_w), which computes the rows in
// panels of NR: so only when little of the last panel is padding. 48 rows in panels of 32 (a
// third computed in vain) took 0.049 ms against 0.041 packed (x W^T, W 512 x 128), 64 and 96
// rows of the LM head 10-20% less.
inline constexpr int64_t kStreamRows = 96;
inline bool streaming_pays(int64_t rows, int nr) {
  return rows <= kStreamRows && round_up(rows, nr) - rows <= rows / 8;
}

// An a_strip of gemm_block over rows r.. of A, read through `index` (the routing plan's
// rows) when there is one: points ptrs[i] at A(index[r + i], p0).
template <typename T>
int64_t indexed_rows(const T* a, int64_t lda, const int32_t* index, int64_t r, int rows, int64_t p0,
                     const T** ptrs) {
  for (int i = 0; i < rows; ++i) ptrs[i] = a + (index ? int64_t{index[r + i]} : r + i) * lda + p0;
  return 1;
}

template <typename T>
struct Scratch {
  std::vector<T> b, a, tile;
  std::vector<uint32_t> b_pairs, a_pairs;  // the bf16 operands of a bf16 kernel
};
// Per thread and reused: OpenMP's workers persist, so the buffers are allocated once.
template <typename T>
Scratch<T>& scratch() {
  thread_local Scratch<T> s;
  return s;
}

// The blocked product of one task:
//   C_s[0:m, 0:n] = sum_p A(i, p) B_s[p, 0:n]   for each segment s < nseg (C_s = c[s], ldc)
// a_strip(i0, rows, p0, kc, ptrs) points ptrs[i] at A(i0 + i, p0) and returns the p step;
// pack_b(s, p0, kc, dst) packs rows [p0, p0 + kc) of B_s (into float panels, or bf16 ones when
// dst is a uint32_t*: kernels/pack.hpp); epilogue(i0, rows) runs on each
// strip of C once its sums are complete. With add_to_c the sums are added to C instead.
// A bf16 kernel gets its B packed as bf16 pairs, and each A strip rounded into pairs.
// A bf16 kernel may get A already rounded, rows of ceil(k / 2) pairs (a_pairs + i * kp for row
// i); it is used when the K blocks start at even k.
template <typename T, typename AStrip, typename PackB, typename Epilogue>
void gemm_block(const GemmKernel<T>& kernel, int64_t m, int64_t n, int64_t k, int nseg, T* const* c,
                int64_t ldc, AStrip&& a_strip, PackB&& pack_b, Epilogue&& epilogue,
                bool add_to_c = false, const uint32_t* a_pairs = nullptr) {
  Scratch<T>& ws = scratch<T>();
  const int mr = kernel.mr, nr = kernel.nr;
  const int64_t panels = (n + nr - 1) / nr;
  const int64_t blocks = std::max<int64_t>(1, (k + kBlockK - 1) / kBlockK);
  const int64_t kc_max = (k + blocks - 1) / blocks;
  ws.tile.resize(static_cast<size_t>(mr * nr));
  const bool bf16 = kernel.bf16();
  if (bf16) {
    const int64_t kp_max = (std::max<int64_t>(kc_max, 1) + 1) / 2;
    ws.b_pairs.resize(static_cast<size_t>(nseg * panels * kp_max * nr));
    ws.a_pairs.resize(static_cast<size_t>(mr * kp_max));
  } else {
    ws.b.resize(static_cast<size_t>(nseg * panels * std::max<int64_t>(kc_max, 1) * nr));
  }
  const T* ap[kGemmMaxMR];
  const uint32_t* ap_pairs[kGemmMaxMR];
  if (k == 0) {
    for (int s = 0; s < nseg && !add_to_c; ++s)
      for (int64_t i = 0; i < m; ++i) std::fill_n(c[s] + i * ldc, n, T(0));
    for (int64_t i0 = 0; i0 < m; i0 += mr) epilogue(i0, std::min<int64_t>(mr, m - i0));
    return;
  }
  for (int64_t kb = 0; kb < blocks; ++kb) {
    const int64_t p0 = kb * kc_max, kc = std::min(kc_max, k - p0), kp = (kc + 1) / 2;
    for (int s = 0; s < nseg; ++s) {
      if constexpr (std::is_same_v<T, float>)
        if (bf16) {
          pack_b(s, p0, kc, ws.b_pairs.data() + s * panels * kp * nr);
          continue;
        }
      pack_b(s, p0, kc, ws.b.data() + s * panels * kc * nr);
    }
    const bool accumulate = kb > 0 || add_to_c;
    for (int64_t i0 = 0; i0 < m; i0 += mr) {
      const int rows = static_cast<int>(std::min<int64_t>(mr, m - i0));
      int64_t a_step = 0, pair_step = 1;
      if (bf16 && a_pairs && (blocks == 1 || kc_max % 2 == 0)) {
        for (int i = 0; i < rows; ++i) ap_pairs[i] = a_pairs + (i0 + i) * ((k + 1) / 2) + p0 / 2;
      } else {
        a_step = a_strip(i0, rows, p0, kc, ap);
        if constexpr (std::is_same_v<T, float>)
          if (bf16)
            pair_step = pack_strip_bf16(ap, a_step, rows, mr, kc, ws.a_pairs.data(), ap_pairs);
      }
      // An m x nr tile of C (stride ldt) from panel q of segment s.
      auto tile_product = [&](int s, int64_t q, T* ct, int64_t ldt) {
        if constexpr (std::is_same_v<T, float>)
          if (bf16)
            return kernel.bf16_rows[rows](kp, ap_pairs, pair_step,
                                          ws.b_pairs.data() + (s * panels + q) * kp * nr, ct, ldt,
                                          accumulate);
        kernel.rows[rows](kc, ap, a_step, ws.b.data() + (s * panels + q) * kc * nr, ct, ldt,
                          accumulate);
      };
      for (int s = 0; s < nseg; ++s)
        for (int64_t q = 0; q < panels; ++q) {
          const int64_t j0 = q * nr;
          const int cols = static_cast<int>(std::min<int64_t>(nr, n - j0));
          T* cp = c[s] + i0 * ldc + j0;
          if (cols == nr) {
            tile_product(s, q, cp, ldc);
            continue;
          }
          // A narrow last panel goes through a full-width tile, with the same arithmetic.
          T* tile = ws.tile.data();
          for (int i = 0; i < rows && accumulate; ++i)
            std::copy_n(cp + i * ldc, cols, tile + i * nr);
          tile_product(s, q, tile, nr);
          for (int i = 0; i < rows; ++i) std::copy_n(tile + i * nr, cols, cp + i * ldc);
        }
      if (kb == blocks - 1) epilogue(i0, rows);
    }
  }
}

// The forward-form product of a task with few rows and a wide W,
//   C_s[i, v] = sum_p A(i)[p] W_s(v)[p]        i < m, v < nc, s < nseg,
// computed as C^T = W A^T. Packing W^T into panels reads nc x k weights, often from memory, and
// transposes them for only m rows; here W's rows stream through the micro-kernel as its A
// operand (read in place), the m rows of A are packed transposed into panels of NR as its B,
// and each MR x NR tile of C^T is stored transposed into C. Every sum runs over p in order, as
// in gemm_block, so both give the same bits. a_row(i) points at A(i)[0], w_row(s, v) at W_s(v)[0];
// epilogue(i0, rows) runs on strips of MR rows of C once all segments are done.
template <typename T, typename ARow, typename WRow, typename Epilogue>
void gemm_streaming_w(const GemmKernel<T>& kernel, int64_t m, int64_t nc, int64_t k, int nseg,
                      T* const* c, int64_t ldc, ARow&& a_row, WRow&& w_row, Epilogue&& epilogue) {
  Scratch<T>& ws = scratch<T>();
  const int mr = kernel.mr, nr = kernel.nr;
  const int64_t panels = (m + nr - 1) / nr;
  ws.b.resize(static_cast<size_t>(panels * std::max<int64_t>(k, 1) * nr));
  ws.tile.resize(static_cast<size_t>(mr * nr));
  pack_b_n_rows(nr, k, m, a_row, ws.b.data());
  const T* wp[kGemmMaxMR];
  for (int s = 0; s < nseg; ++s)
    for (int64_t v0 = 0; v0 < nc; v0 += mr) {
      const int rows = static_cast<int>(std::min<int64_t>(mr, nc - v0));
      for (int i = 0; i < rows; ++i) wp[i] = w_row(s, v0 + i);
      // The W rows of the strip 3 ahead, into L2: the hardware's prefetcher, following rows of
      // a few KB each, left W's reads from memory exposed.
      for (int64_t v = v0 + 3 * mr; v < std::min<int64_t>(nc, v0 + 4 * mr); ++v) {
        const char* ahead = reinterpret_cast<const char*>(w_row(s, v));
        for (int64_t byte = 0; byte < k * int64_t(sizeof(T)); byte += 64)
          __builtin_prefetch(ahead + byte, 0, 2);
      }
      for (int64_t q = 0; q < panels; ++q) {
        T* tile = ws.tile.data();
        kernel.rows[rows](k, wp, 1, ws.b.data() + q * k * nr, tile, nr, false);
        const int64_t j0 = q * nr;
        const int cols = static_cast<int>(std::min<int64_t>(nr, m - j0));
        T* out = c[s] + j0 * ldc + v0;
        int done = 0;  // columns of the tile stored by 8 x 8 transposes
#ifdef MINIMOE_GEMM_X86
        if constexpr (std::is_same_v<T, float>) {
          if (cpu_transposes_8x8() && rows == 8) {
            const float* tile_rows[8];
            for (int i = 0; i < 8; ++i) tile_rows[i] = tile + i * nr;
            for (; done + 8 <= cols; done += 8)
              transpose_8x8(tile_rows, done, out + done * ldc, ldc);
          }
        }
#endif
        for (int j = done; j < cols; ++j)
          for (int i = 0; i < rows; ++i) out[j * ldc + i] = tile[i * nr + j];
      }
    }
  for (int64_t i0 = 0; i0 < m; i0 += mr) epilogue(i0, std::min<int64_t>(mr, m - i0));
}

struct GemmTask {
  int32_t product;  // index into the phase's products
  int32_t group;
  int64_t m0, m1;  // rows: of A (GroupedProduct, absolute) or of dW (GroupedWeightGrad)
  int64_t n0, n1;
  double cost;
};

// Splits [0, extent) into `parts` near-equal ranges aligned to `align`.
inline std::vector<int64_t> split_range(int64_t extent, int64_t parts, int64_t align) {
  std::vector<int64_t> bounds{0};
  for (int64_t i = 1; i < parts; ++i)
    bounds.push_back(std::min(extent, round_up(extent * i / parts, align)));
  bounds.push_back(extent);
  bounds.erase(std::unique(bounds.begin(), bounds.end()), bounds.end());
  return bounds;
}

// The tasks of product `id` over `groups` (n columns per segment, depth k): row tiles of at most
// kBlockRows, column tiles of kBlockN, narrowed until there are enough tasks for the threads
// (few rows: every thread streams a slice of the weights).
inline void add_product_tasks(const RowGroups& groups, int64_t n, int64_t k, int segments, int mr,
                              int nr, int threads, int32_t id, std::vector<GemmTask>& tasks) {
  int64_t row_tiles = 0;
  for (int64_t g = 0; g < groups.count; ++g)
    row_tiles += (groups.rows(g) + kBlockRows - 1) / kBlockRows;
  int64_t nc = std::min(round_up(n, nr), kBlockN / segments);
  while (nc > 2 * nr && row_tiles * ((n + nc - 1) / nc) < 4 * threads) nc = round_up(nc / 2, nr);
  for (int64_t g = 0; g < groups.count; ++g) {
    const int64_t rows = groups.rows(g);
    if (rows == 0) continue;
    const auto bounds = split_range(rows, (rows + kBlockRows - 1) / kBlockRows, mr);
    for (size_t i = 0; i + 1 < bounds.size(); ++i)
      for (int64_t n0 = 0; n0 < n; n0 += nc) {
        const int64_t n1 = std::min(n, n0 + nc);
        tasks.push_back(
            {id, static_cast<int32_t>(g), groups.begin(g) + bounds[i],
             groups.begin(g) + bounds[i + 1], n0, n1,
             double(bounds[i + 1] - bounds[i]) * double(n1 - n0) * segments * double(k)});
      }
  }
}

}  // namespace detail

// One phase of work: the tasks of several independent products, run as one dynamic pool.
template <typename T>
class GemmPhase {
 public:
  explicit GemmPhase(const GemmKernel<T>& kernel = gemm_kernel<T>(),
                     int threads = detail::max_threads())
      : kernel_(kernel), threads_(std::max(threads, 1)) {}

  void add(const GroupedProduct<T>& p) {
    check<ValueError>(p.segments >= 1 && p.segments <= 2 && (p.segments == 1 || p.w.second),
                      "grouped product: bad segments {}", p.segments);
    const int32_t id = static_cast<int32_t>(products_.size());
    products_.push_back(p);
    detail::add_product_tasks(p.groups, p.n, p.k, p.segments, kernel_.mr, kernel_.nr, threads_, id,
                              tasks_);
  }

  void add(const GroupedWeightGrad<T>& p) {
    check<ValueError>(!p.accumulate || p.bias_grads == nullptr,
                      "grouped weight gradient: accumulate does not apply to bias gradients");
    const int32_t id = static_cast<int32_t>(grads_.size());
    grads_.push_back(p);
    int64_t groups = 0;
    for (int64_t g = 0; g < p.groups.count; ++g) groups += p.groups.rows(g) > 0;
    const int64_t mr = kernel_.mr, nr = kernel_.nr;
    int64_t mc = std::min(detail::round_up(p.m, mr), detail::kBlockGradRows);
    const int64_t nc = std::min(detail::round_up(p.n, nr), detail::kBlockN);
    const int64_t n_tiles = (p.n + nc - 1) / nc;
    while (mc > 4 * mr && groups * ((p.m + mc - 1) / mc) * n_tiles < 4 * threads_)
      mc = detail::round_up(mc / 2, mr);
    for (int64_t g = 0; g < p.groups.count; ++g) {
      const int64_t rows = p.groups.rows(g);
      if (rows == 0) continue;
      for (int64_t m0 = 0; m0 < p.m; m0 += mc)
        for (int64_t n0 = 0; n0 < p.n; n0 += nc) {
          const int64_t m1 = std::min(p.m, m0 + mc), n1 = std::min(p.n, n0 + nc);
          tasks_.push_back({-1 - id, static_cast<int32_t>(g), m0, m1, n0, n1,
                            double(rows) * double(m1 - m0) * double(n1 - n0)});
        }
    }
  }

  bool empty() const { return tasks_.empty(); }

  // Multiply-adds of all tasks added so far.
  double cost() const {
    double sum = 0;
    for (const detail::GemmTask& t : tasks_) sum += t.cost;
    return sum;
  }

  // Runs every task; call from all threads of a parallel region (ends with its barrier).
  void run() {
    if (kernel_.bf16()) round_products();
#pragma omp single
    std::stable_sort(
        tasks_.begin(), tasks_.end(),
        [](const detail::GemmTask& x, const detail::GemmTask& y) { return x.cost > y.cost; });
    const int64_t count = static_cast<int64_t>(tasks_.size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) {
      const detail::GemmTask& t = tasks_[i];
      if (t.product >= 0)
        run_product(products_[t.product], t);
      else
        run_weight_grad(grads_[-1 - t.product], t);
    }
  }

  // run() in a parallel region of its own; products too small to repay waking the threads
  // run on the calling one.
  void run_parallel() {
    if (tasks_.empty()) return;
#pragma omp parallel num_threads(threads_) if (threads_ > 1 && detail::worth_parallel(cost()))
    run();
  }

 private:
  void run_product(const GroupedProduct<T>& p, const detail::GemmTask& t) const {
    const int64_t g = t.group, r0 = t.m0, nc = t.n1 - t.n0;
    T* c[2];
    for (int s = 0; s < p.segments; ++s) c[s] = p.c + r0 * p.ldc + s * p.n + t.n0;
    auto a_strip = [&](int64_t i0, int rows, int64_t p0, int64_t, const T** ptrs) {
      return detail::indexed_rows(p.a, p.lda, p.index, r0 + i0, rows, p0, ptrs);
    };
    auto pack_b = [&](int s, int64_t p0, int64_t kc, auto* dst) {
      const int64_t col0 = s * p.n + t.n0;  // first column of the task in the stacked W
      if (p.transposed)
        detail::pack_b_n_rows(
            kernel_.nr, kc, nc, [&](int64_t j) { return p.w.row(g, col0 + j) + p0; }, dst);
      else
        detail::pack_b_k_rows(
            kernel_.nr, kc, nc, [&](int64_t q) { return p.w.row(g, p0 + q) + col0; }, dst);
    };
    auto epilogue = [&](int64_t i0, int64_t rows) {
      if (p.epilogue) p.epilogue(g, r0 + i0, rows, t.n0, t.n1);
    };
    const int64_t m = t.m1 - t.m0, mr = kernel_.mr;
    if (p.transposed && m <= detail::kDotStrips * mr && kernel_.dot && rows_on_one_side(p, t)) {
      // A few tokens (decoding): streaming W beats packing it for so few strips. Columns go in
      // blocks small enough for L1, so that the strips after the first read W from there.
      const T* ap[kGemmMaxMR];
      for (int64_t j0 = 0; j0 < nc; j0 += detail::kDotColumns)
        for (int64_t i0 = 0; i0 < m; i0 += mr) {
          const int rows = static_cast<int>(std::min(mr, m - i0));
          a_strip(i0, rows, 0, p.k, ap);
          const int64_t cols = std::min(detail::kDotColumns, nc - j0);
          for (int s = 0; s < p.segments; ++s)
            kernel_.dot(p.k, ap, rows, p.w.row(g, s * p.n + t.n0 + j0), p.w.ld, cols,
                        c[s] + i0 * p.ldc + j0, p.ldc);
        }
      for (int64_t i0 = 0; i0 < m; i0 += mr) epilogue(i0, std::min(mr, m - i0));
      return;
    }
    if (p.transposed && !kernel_.bf16() && detail::streaming_pays(m, kernel_.nr) &&
        rows_on_one_side(p, t)) {
      detail::gemm_streaming_w(
          kernel_, m, nc, p.k, p.segments, c, p.ldc,
          [&](int64_t i) { return p.a + (p.index ? int64_t{p.index[r0 + i]} : r0 + i) * p.lda; },
          [&](int s, int64_t v) { return p.w.row(g, s * p.n + t.n0 + v); }, epilogue);
      return;
    }
    const auto id = static_cast<size_t>(t.product);
    const uint32_t* pairs =
        id < rounded_.size() ? rounded_[id].data() + r0 * ((p.k + 1) / 2) : nullptr;
    detail::gemm_block(kernel_, t.m1 - t.m0, nc, p.k, p.segments, c, p.ldc, a_strip, pack_b,
                       epilogue, false, pairs);
  }

  // A bf16 kernel's A operands, the routed rows of each product rounded into pairs once for
  // all the tasks that read them (one per column tile), not once per task.
  void round_products() {
    if constexpr (std::is_same_v<T, float>) {
#pragma omp single
      {
        rounded_.assign(products_.size(), {});
        for (size_t id = 0; id < products_.size(); ++id) {
          const GroupedProduct<T>& p = products_[id];
          rounded_[id].resize(static_cast<size_t>(p.groups.total() * ((p.k + 1) / 2)));
        }
      }
      for (size_t id = 0; id < products_.size(); ++id) {
        const GroupedProduct<T>& p = products_[id];
        const int64_t rows = p.groups.total(), kp = (p.k + 1) / 2;
        uint32_t* out = rounded_[id].data();
#pragma omp for schedule(static)
        for (int64_t r = 0; r < rows; ++r)
          detail::pack_row_pairs(p.a + (p.index ? int64_t{p.index[r]} : r) * p.lda, p.k,
                                 out + r * kp);
      }
    }
  }

  // Whether each segment's W rows of the task come from one array (rows at a fixed stride).
  static bool rows_on_one_side(const GroupedProduct<T>& p, const detail::GemmTask& t) {
    for (int s = 0; s < p.segments; ++s) {
      const int64_t first = s * p.n + t.n0, last = s * p.n + t.n1 - 1;
      if ((first < p.w.split) != (last < p.w.split)) return false;
    }
    return true;
  }

  void run_weight_grad(const GroupedWeightGrad<T>& p, const detail::GemmTask& t) const {
    const int64_t g = t.group, begin = p.groups.begin(g), nc = t.n1 - t.n0;
    const int mr = kernel_.mr;
    T* bias = p.bias_grads && t.n0 == 0 ? p.bias_grads[g] + t.m0 : nullptr;
    detail::Scratch<T>& ws = detail::scratch<T>();
    // A(i, p) = D[begin + p, m0 + i]: packed MR wide for a float kernel (rows of D are far
    // apart); a bf16 one reads it in place, rounding it into pairs in one pass (gemm_block).
    // The bias gradient is summed on the way.
    auto a_strip = [&](int64_t i0, int rows, int64_t p0, int64_t kc, const T** ptrs) {
      const T* src = p.d + (begin + p0) * p.ldd + t.m0 + i0;
      int64_t step = p.ldd;
      if (!kernel_.bf16()) {
        ws.a.resize(static_cast<size_t>(kc * mr));
        detail::pack_a_strip(src, p.ldd, rows, kc, mr, ws.a.data());
        src = ws.a.data();
        step = mr;
      }
      if (bias) {  // line by line: D's rows in order, each column summed over q in order
        T sums[kGemmMaxMR];
        for (int i = 0; i < rows; ++i) sums[i] = p0 == 0 ? T(0) : bias[i0 + i];
        for (int64_t q = 0; q < kc; ++q)
          for (int i = 0; i < rows; ++i) sums[i] += src[q * step + i];
        std::copy_n(sums, rows, bias + i0);
      }
      for (int i = 0; i < rows; ++i) ptrs[i] = src + i;
      return step;
    };
    auto pack_b = [&](int, int64_t p0, int64_t kc, auto* dst) {
      detail::pack_b_k_rows(
          kernel_.nr, kc, nc,
          [&](int64_t q) {
            const int64_t r = begin + p0 + q;
            return p.x + (p.index ? int64_t{p.index[r]} : r) * p.ldx + t.n0;
          },
          dst);
    };
    T* c[1] = {p.grads[g] + t.m0 * p.n + t.n0};
    detail::gemm_block(
        kernel_, t.m1 - t.m0, nc, p.groups.rows(g), 1, c, p.n, a_strip, pack_b,
        [](int64_t, int64_t) {}, p.accumulate);
  }

  const GemmKernel<T>& kernel_;
  int threads_;
  std::vector<GroupedProduct<T>> products_;
  std::vector<std::vector<uint32_t>> rounded_;  // per product, bf16 kernels only
  std::vector<GroupedWeightGrad<T>> grads_;
  std::vector<detail::GemmTask> tasks_;
};

// C[r, :] = A[index ? index[r] : r, :] op(W_g) for each row r of each group g.
//   A: rows of length k (stride lda); W_g = weights[g]: [n, k] when transposed (C = A W^T),
//   [k, n] otherwise (C = A W); C: [groups.total(), n] with stride ldc, overwritten.
template <typename T>
void grouped_matmul(const RowGroups& groups, const T* a, int64_t lda, const int32_t* index,
                    const T* const* weights, bool transposed, int64_t k, int64_t n, T* c,
                    int64_t ldc, const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  GroupedProduct<T> p;
  p.groups = groups;
  p.a = a;
  p.lda = lda;
  p.index = index;
  p.k = k;
  p.w.first = weights;
  p.w.ld = transposed ? k : n;
  p.transposed = transposed;
  p.n = n;
  p.c = c;
  p.ldc = ldc;
  GemmPhase<T> phase(kernel);
  phase.add(p);
  phase.run_parallel();
}

// grads[g] = D_g^T X_g, [n, k], where D_g = rows of group g of D ([rows, n], stride ldd) and
// X_g = the same rows of X read through `index` ([rows, k], stride ldx). Groups without rows
// are left untouched.
template <typename T>
void grouped_weight_grad(const RowGroups& groups, const T* d, int64_t ldd, int64_t n, const T* x,
                         int64_t ldx, const int32_t* index, int64_t k, T* const* grads,
                         T* const* bias_grads = nullptr,
                         const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  GroupedWeightGrad<T> p;
  p.groups = groups;
  p.d = d;
  p.ldd = ldd;
  p.x = x;
  p.ldx = ldx;
  p.index = index;
  p.m = n;
  p.n = k;
  p.grads = grads;
  p.bias_grads = bias_grads;
  GemmPhase<T> phase(kernel);
  phase.add(p);
  phase.run_parallel();
}

// One dense product, C [m, n] = op(A) op(B), row-major and contiguous, C overwritten:
//   A [m, k] (transpose_a: [k, m]), B [k, n] (transpose_b: [n, k]).
// Not both transposed (the grouped machinery has no such form): returns false, C untouched.
template <typename T>
bool gemm(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const T* a,
          const T* b, T* c, const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  if (transpose_a && transpose_b) return false;
  const int32_t rows = static_cast<int32_t>(transpose_a ? k : m);
  check<ValueError>(rows == (transpose_a ? k : m), "gemm: {} rows exceed the index range", rows);
  const int32_t offsets[2] = {0, rows};
  const RowGroups one{offsets, 1};
  if (transpose_a) {  // C = A^T B: the weight-gradient form, K = A's rows
    grouped_weight_grad<T>(one, a, m, m, b, n, nullptr, n, &c, nullptr, kernel);
    if (k == 0) std::fill_n(c, m * n, T(0));
  } else {
    grouped_matmul<T>(one, a, k, nullptr, &b, transpose_b, k, n, c, n, kernel);
  }
  return true;
}

// C [m, n] = op(A) op(B), or C += op(A) op(B) when `accumulate`, on the calling thread: the
// small products that a caller runs inside its own parallel loop (attention, per head).
//   A(i, p) = a[i * lda + p], or a[p * lda + i] when transpose_a (read in place: the
//   micro-kernel steps down a column); B[p, j] = b[p * ldb + j], or b[j * ldb + p] when
//   transpose_b; C[i, j] = c[i * ldc + j].
template <typename T>
void gemm_strided(bool transpose_a, bool transpose_b, int64_t m, int64_t n, int64_t k, const T* a,
                  int64_t lda, const T* b, int64_t ldb, T* c, int64_t ldc, bool accumulate,
                  const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  if (m == 0 || n == 0) return;
  auto a_strip = [&](int64_t i0, int rows, int64_t p0, int64_t, const T** ptrs) -> int64_t {
    for (int i = 0; i < rows; ++i)
      ptrs[i] = transpose_a ? a + p0 * lda + i0 + i : a + (i0 + i) * lda + p0;
    return transpose_a ? lda : 1;
  };
  auto pack_b = [&](int, int64_t p0, int64_t kc, auto* dst) {
    if (transpose_b)
      detail::pack_b_n_rows(
          kernel.nr, kc, n, [&](int64_t j) { return b + j * ldb + p0; }, dst);
    else
      detail::pack_b_k_rows(
          kernel.nr, kc, n, [&](int64_t q) { return b + (p0 + q) * ldb; }, dst);
  };
  T* cp[1] = {c};
  detail::gemm_block(
      kernel, m, n, k, 1, cp, ldc, a_strip, pack_b, [](int64_t, int64_t) {}, accumulate);
}

// K per piece of gemm_split_k: a fixed depth, so that the pieces and the order of their sum
// depend on the shape alone, never on the thread count.
inline constexpr int64_t kSplitKDepth = 2048;

inline int64_t split_k_pieces(int64_t k) {
  return std::max<int64_t>(1, (k + kSplitKDepth - 1) / kSplitKDepth);
}

// C [m, n] = A B for A [m, k] (row stride lda) and B [k, n] (contiguous) when k is far larger
// than m and n: dH = dLogits W of an LM head, where K is the vocabulary. Tiles of C would each
// stream all of A or all of B again; split along K instead, each piece (a dynamic task) is one
// blocked GEMM over its K range into a partial C of its own, that reads its share of A and B
// once. The partials are summed in piece order: the result is the same for any thread count.
// Holds split_k_pieces(k) partials of m x n.
template <typename T>
void gemm_split_k(int64_t m, int64_t n, int64_t k, const T* a, int64_t lda, const T* b, T* c,
                  const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  const int64_t pieces = split_k_pieces(k);
  // Every partial is overwritten by its piece (each has K >= 1): no zero fill.
  const std::unique_ptr<T[]> partials(new T[static_cast<size_t>(pieces * m * n)]);
  [[maybe_unused]] const bool parallel =  // read by the pragmas only (none without OpenMP)
      detail::max_threads() > 1 && detail::worth_parallel(double(m) * double(n) * double(k));
#pragma omp parallel for schedule(dynamic, 1) if (parallel)
  for (int64_t piece = 0; piece < pieces; ++piece) {
    const int64_t k0 = k * piece / pieces, k1 = k * (piece + 1) / pieces;
    T* cp[1] = {partials.get() + piece * m * n};
    auto a_strip = [&](int64_t i0, int rows, int64_t p0, int64_t, const T** ptrs) {
      return detail::indexed_rows(a + k0, lda, static_cast<const int32_t*>(nullptr), i0, rows, p0,
                                  ptrs);
    };
    auto pack_b = [&](int, int64_t p0, int64_t kc, auto* dst) {
      detail::pack_b_k_rows(
          kernel.nr, kc, n, [&](int64_t q) { return b + (k0 + p0 + q) * n; }, dst);
    };
    detail::gemm_block(kernel, m, n, k1 - k0, 1, cp, n, a_strip, pack_b, [](int64_t, int64_t) {});
  }
#pragma omp parallel for schedule(static) if (parallel)
  for (int64_t i = 0; i < m; ++i) {
    T* row = c + i * n;
    std::copy_n(partials.get() + i * n, n, row);
    for (int64_t piece = 1; piece < pieces; ++piece) {
      const T* part = partials.get() + (piece * m + i) * n;
      for (int64_t j = 0; j < n; ++j) row[j] += part[j];
    }
  }
}

// C [m, n] += A^T B for A [k, m] and B [k, n], row-major and contiguous: a weight gradient
// summed over several chunks of rows (ops/linear_cross_entropy.hpp).
template <typename T>
void gemm_at_b_add(int64_t m, int64_t n, int64_t k, const T* a, const T* b, T* c,
                   const GemmKernel<T>& kernel = gemm_kernel<T>()) {
  const int32_t rows = static_cast<int32_t>(k);
  check<ValueError>(rows == k, "gemm_at_b_add: {} rows exceed the index range", k);
  const int32_t offsets[2] = {0, rows};
  GroupedWeightGrad<T> p;
  p.groups = RowGroups{offsets, 1};
  p.d = a;
  p.ldd = m;
  p.x = b;
  p.ldx = n;
  p.m = m;
  p.n = n;
  p.grads = &c;
  p.accumulate = true;
  GemmPhase<T> phase(kernel);
  phase.add(p);
  phase.run_parallel();
}

}  // namespace minimoe
