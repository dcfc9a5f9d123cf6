// minimoe/kernels/int8_gemm.hpp: float activations times int8 weights (weight-only
// quantisation for inference), for decoding and for prefill.
//
// A weight matrix W [n, k] in the Linear layout ([out, in]) is stored as int8 rows with one
// float scale per row (per output channel, symmetric):
//
//   scale[j] = max_p |W[j, p]| / 127        q[j, p] = round(W[j, p] / scale[j]) in [-127, 127]
//   C[i, j] = scale[j] sum_p A(i)[p] q[j, p]                 (+ bias, in an epilogue)
//
// Decoding is bound by the bytes of weights it reads, and int8 rows are a quarter of float ones.
// Two paths, chosen per task by its row count as in kernels/grouped_gemm.hpp:
// - a few rows (decoding): the int8 row-dot kernel streams q once, widens each loaded vector
//   of weights to float, feeds the task's rows with it and applies the scale once per output;
// - many rows (prefill): each K block of the task's columns is dequantised to float and packed
//   into the panels of the float micro-kernel of the same ISA (kernels/gemm_microkernel.hpp),
//   which then runs over every strip of rows, so dequantising costs once per up to 512 rows.
//
//   std::vector<int8_t> q(n * k);
//   std::vector<float> scale(n);
//   quantize_rows_int8(w, n, k, q.data(), scale.data());
//   int8_matmul(m, n, k, x, q.data(), scale.data(), bias, y);  // y [m, n] = x W^T + bias
//
//   Int8Phase phase;                // grouped products over routed rows, like GemmPhase
//   phase.add(product);             // Int8GroupedProduct
//   phase.run();                    // inside `#pragma omp parallel`, or run_parallel()
//
// Selection follows the float kernels: MINIMOE_FORCE_SCALAR gives the portable kernel; x86-64
// builds compile AVX2+FMA and AVX-512 versions with target attributes and take the widest the
// CPU supports; AArch64 builds use NEON.
#pragma once

#include <algorithm>
#include <array>
#include <cmath>
#include <cstdint>
#include <functional>
#include <utility>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/kernels/gemm_microkernel.hpp"
#include "minimoe/kernels/grouped_gemm.hpp"
#include "minimoe/kernels/pack.hpp"

namespace minimoe {

// Quantises the rows of w [n, k] (row-major): scale[j] = max |w[j, :]| / 127, q = w / scale
// rounded to the nearest integer. An all-zero row gets scale 0 and q 0. The quotient is taken
// in double against the stored float scale, so |w - q scale| <= scale / 2 holds for the values
// the kernels see.
inline void quantize_rows_int8(const float* w, int64_t n, int64_t k, int8_t* q, float* scale) {
  for (int64_t j = 0; j < n; ++j) {
    const float* row = w + j * k;
    float max_abs = 0;
    for (int64_t p = 0; p < k; ++p)  // NaN wins, unlike with std::max
      if (!(std::fabs(row[p]) <= max_abs)) max_abs = std::fabs(row[p]);
    check<ValueError>(std::isfinite(max_abs),
                      "quantize_rows_int8: row {} holds a value that is not finite", j);
    const float s = max_abs / 127.0f;
    scale[j] = s;
    for (int64_t p = 0; p < k; ++p) {
      const double v = s > 0 ? std::round(double(row[p]) / double(s)) : 0.0;
      q[j * k + p] = static_cast<int8_t>(std::clamp(v, -127.0, 127.0));
    }
  }
}

// c[i ldc + j] = scale[j] sum_p a[i][p] q[j ldq + p] for i < m <= kGemmMaxMR, j < ncols.
using Int8DotFn = void (*)(int64_t k, const float* const* a, int m, const int8_t* q, int64_t ldq,
                           const float* scale, int64_t ncols, float* c, int64_t ldc);

struct Int8Kernel {
  const char* name = "";
  Int8DotFn dot = nullptr;  // decoding: a few rows against int8 W rows
  GemmKernel<float> tile;   // prefill: the float micro-kernel of the same ISA
};

namespace detail {

inline void int8_dot_ref(int64_t k, const float* const* a, int m, const int8_t* q, int64_t ldq,
                         const float* scale, int64_t ncols, float* c, int64_t ldc) {
  for (int64_t j = 0; j < ncols; ++j, q += ldq)
    for (int i = 0; i < m; ++i) {
      float sum = 0;
      for (int64_t p = 0; p < k; ++p) sum += a[i][p] * float(q[p]);
      c[i * ldc + j] = scale[j] * sum;
    }
}

// The row count picks an instantiation (the accumulators of M rows live in registers).
template <typename Impl, size_t... I>
constexpr std::array<void (*)(int64_t, const float* const*, const int8_t*, int64_t, const float*,
                              int64_t, float*, int64_t),
                     sizeof...(I)>
int8_rows_table(std::index_sequence<I...>) {
  return {&Impl::template rows<int(I) + 1>...};
}

template <typename Impl>
void int8_dot_by_rows(int64_t k, const float* const* a, int m, const int8_t* q, int64_t ldq,
                      const float* scale, int64_t ncols, float* c, int64_t ldc) {
  static constexpr auto table = int8_rows_table<Impl>(std::make_index_sequence<kGemmMaxMR>{});
  table[m - 1](k, a, q, ldq, scale, ncols, c, ldc);
}

// Columns handled together by the x86 kernels for M rows of A: M J independent FMA chains,
// enough to cover the FMA latency when M is small (decoding: M = 1 streams 4 W rows at once),
// and few enough registers when M is large.
template <int M>
inline constexpr int kInt8Columns = M <= 2 ? 4 : (M <= 4 ? 2 : 1);

#ifdef MINIMOE_GEMM_X86
MINIMOE_TARGET_AVX2 inline __m256 widen8_avx2(const int8_t* q) {  // 8 int8 -> float
  return _mm256_cvtepi32_ps(
      _mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q))));
}

struct Int8DotAvx2 {
  // c[i ldc + j] for J W rows j at once, 8 weights a step.
  template <int M, int J>
  MINIMOE_TARGET_AVX2 static void columns(int64_t k, const float* const* a, const int8_t* q,
                                          int64_t ldq, const float* scale, float* c, int64_t ldc) {
    const int64_t k8 = k / 8 * 8;
    __m256 s[M][J];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) s[i][j] = _mm256_setzero_ps();
    for (int64_t p = 0; p < k8; p += 8) {
      __m256 w[J];
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) w[j] = widen8_avx2(q + j * ldq + p);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        const __m256 x = _mm256_loadu_ps(a[i] + p);
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) s[i][j] = _mm256_fmadd_ps(x, w[j], s[i][j]);
      }
    }
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < J; ++j) {
        float sum = hsum_avx2(s[i][j]);
        for (int64_t r = k8; r < k; ++r) sum += a[i][r] * float(q[j * ldq + r]);
        c[i * ldc + j] = scale[j] * sum;
      }
  }

  template <int M>
  static void rows(int64_t k, const float* const* a, const int8_t* q, int64_t ldq,
                   const float* scale, int64_t ncols, float* c, int64_t ldc) {
    constexpr int J = kInt8Columns<M>;
    int64_t j = 0;
    for (; j + J <= ncols; j += J) columns<M, J>(k, a, q + j * ldq, ldq, scale + j, c + j, ldc);
    for (; j < ncols; ++j) columns<M, 1>(k, a, q + j * ldq, ldq, scale + j, c + j, ldc);
  }
};

// 16 int8 -> float. The zero-masked forms with a full mask are the same instructions; the plain
// ones start from _mm512_undefined, which trips GCC 12's -Wmaybe-uninitialized.
MINIMOE_TARGET_AVX512 inline __m512 widen16_avx512(const int8_t* q) {
  const __mmask16 all = 0xFFFF;
  return _mm512_maskz_cvtepi32_ps(
      all, _mm512_maskz_cvtepi8_epi32(all, _mm_loadu_si128(reinterpret_cast<const __m128i*>(q))));
}

MINIMOE_TARGET_AVX512 inline float hsum16_avx512(__m512 v) { return hsum_avx2(fold_avx512(v)); }

struct Int8DotAvx512 {
  template <int M, int J>
  MINIMOE_TARGET_AVX512 static void columns(int64_t k, const float* const* a, const int8_t* q,
                                            int64_t ldq, const float* scale, float* c,
                                            int64_t ldc) {
    const int64_t k16 = k / 16 * 16;
    __m512 s[M][J];
#pragma GCC unroll 8
    for (int i = 0; i < M; ++i)
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) s[i][j] = _mm512_setzero_ps();
    for (int64_t p = 0; p < k16; p += 16) {
      __m512 w[J];
#pragma GCC unroll 4
      for (int j = 0; j < J; ++j) w[j] = widen16_avx512(q + j * ldq + p);
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        const __m512 x = _mm512_loadu_ps(a[i] + p);
#pragma GCC unroll 4
        for (int j = 0; j < J; ++j) s[i][j] = _mm512_fmadd_ps(x, w[j], s[i][j]);
      }
    }
    for (int i = 0; i < M; ++i)
      for (int j = 0; j < J; ++j) {
        float sum = hsum16_avx512(s[i][j]);
        for (int64_t r = k16; r < k; ++r) sum += a[i][r] * float(q[j * ldq + r]);
        c[i * ldc + j] = scale[j] * sum;
      }
  }

  template <int M>
  static void rows(int64_t k, const float* const* a, const int8_t* q, int64_t ldq,
                   const float* scale, int64_t ncols, float* c, int64_t ldc) {
    constexpr int J = kInt8Columns<M>;
    int64_t j = 0;
    for (; j + J <= ncols; j += J) columns<M, J>(k, a, q + j * ldq, ldq, scale + j, c + j, ldc);
    for (; j < ncols; ++j) columns<M, 1>(k, a, q + j * ldq, ldq, scale + j, c + j, ldc);
  }
};
#endif  // MINIMOE_GEMM_X86

#ifdef MINIMOE_GEMM_NEON
struct Int8DotNeon {
  template <int M>
  static void rows(int64_t k, const float* const* a, const int8_t* q, int64_t ldq,
                   const float* scale, int64_t ncols, float* c, int64_t ldc) {
    const int64_t k16 = k / 16 * 16, k8 = k / 8 * 8;
    for (int64_t j = 0; j < ncols; ++j, q += ldq) {
      float32x4_t s0[M], s1[M];
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) s0[i] = s1[i] = vdupq_n_f32(0.0f);
      int64_t p = 0;
      for (; p < k16; p += 16) {
        const int8x16_t bytes = vld1q_s8(q + p);
        const int16x8_t lo = vmovl_s8(vget_low_s8(bytes)), hi = vmovl_high_s8(bytes);
        const float32x4_t w0 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(lo))),
                          w1 = vcvtq_f32_s32(vmovl_high_s16(lo)),
                          w2 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(hi))),
                          w3 = vcvtq_f32_s32(vmovl_high_s16(hi));
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
          s0[i] = vfmaq_f32(s0[i], vld1q_f32(a[i] + p), w0);
          s1[i] = vfmaq_f32(s1[i], vld1q_f32(a[i] + p + 4), w1);
          s0[i] = vfmaq_f32(s0[i], vld1q_f32(a[i] + p + 8), w2);
          s1[i] = vfmaq_f32(s1[i], vld1q_f32(a[i] + p + 12), w3);
        }
      }
      if (p < k8) {
        const int16x8_t half = vmovl_s8(vld1_s8(q + p));
        const float32x4_t w0 = vcvtq_f32_s32(vmovl_s16(vget_low_s16(half))),
                          w1 = vcvtq_f32_s32(vmovl_high_s16(half));
#pragma GCC unroll 8
        for (int i = 0; i < M; ++i) {
          s0[i] = vfmaq_f32(s0[i], vld1q_f32(a[i] + p), w0);
          s1[i] = vfmaq_f32(s1[i], vld1q_f32(a[i] + p + 4), w1);
        }
        p += 8;
      }
#pragma GCC unroll 8
      for (int i = 0; i < M; ++i) {
        float sum = vaddvq_f32(vaddq_f32(s0[i], s1[i]));
        for (int64_t r = p; r < k; ++r) sum += a[i][r] * float(q[r]);
        c[i * ldc + j] = scale[j] * sum;
      }
    }
  }
};
#endif  // MINIMOE_GEMM_NEON

}  // namespace detail

// Every int8 kernel this build and this CPU can run, the reference first (tests, benches).
inline std::vector<Int8Kernel> int8_kernels() {
  std::vector<Int8Kernel> kernels{{"scalar", &detail::int8_dot_ref, gemm_kernel_ref<float>()}};
#ifdef MINIMOE_GEMM_X86
  if (detail::cpu_has_avx2_fma())
    kernels.push_back({"avx2", &detail::int8_dot_by_rows<detail::Int8DotAvx2>,
                       detail::make_avx2_kernel(std::make_integer_sequence<int, 6>{})});
  if (detail::cpu_has_avx512())
    kernels.push_back({"avx512", &detail::int8_dot_by_rows<detail::Int8DotAvx512>,
                       detail::make_avx512_kernel(std::make_integer_sequence<int, 8>{})});
#endif
#ifdef MINIMOE_GEMM_NEON
  kernels.push_back({"neon", &detail::int8_dot_by_rows<detail::Int8DotNeon>,
                     detail::make_neon_kernel(std::make_integer_sequence<int, 8>{})});
#endif
  return kernels;
}

// The int8 kernel the library uses: the widest one available.
inline const Int8Kernel& int8_kernel() {
  static const Int8Kernel kernel = int8_kernels().back();
  return kernel;
}

// Row v of group g's int8 matrix: q[g] + v * ld, with the scale scale[g][v].
struct Int8WeightRows {
  const int8_t* const* q = nullptr;
  const float* const* scale = nullptr;
  int64_t ld = 0;
};

// C[r, s n + j] = scale_s,g[j] sum_p A(r)[p] q_s,g[j, p] for rows r of group g, j < n,
// s < segments; A(r) = a + (index ? index[r] : r) * lda. As GroupedProduct in its forward
// (transposed) form; segment s reads w[s] (GLU: gate and up of the same hidden units in one
// task, so that one epilogue sees both).
struct Int8GroupedProduct {
  RowGroups groups;
  const float* a = nullptr;
  int64_t lda = 0;
  const int32_t* index = nullptr;
  int64_t k = 0;
  Int8WeightRows w[2];
  int64_t n = 0;  // columns per segment
  int segments = 1;
  float* c = nullptr;
  int64_t ldc = 0;
  // (group, first row, rows, first column, end column), once per finished strip of rows.
  std::function<void(int64_t, int64_t, int64_t, int64_t, int64_t)> epilogue;
};

// The tasks of several int8 products, run as one dynamic pool (as GemmPhase).
class Int8Phase {
 public:
  explicit Int8Phase(const Int8Kernel& kernel = int8_kernel(), int threads = detail::max_threads())
      : kernel_(kernel), threads_(std::max(threads, 1)) {}

  void add(const Int8GroupedProduct& p) {
    check<ValueError>(p.segments >= 1 && p.segments <= 2, "int8 product: bad segments {}",
                      p.segments);
    const int32_t id = static_cast<int32_t>(products_.size());
    products_.push_back(p);
    detail::add_product_tasks(p.groups, p.n, p.k, p.segments, kernel_.tile.mr, kernel_.tile.nr,
                              threads_, id, tasks_);
  }

  // Multiply-adds of all tasks added so far.
  double cost() const {
    double sum = 0;
    for (const detail::GemmTask& t : tasks_) sum += t.cost;
    return sum;
  }

  // Runs every task; call from all threads of a parallel region (ends with its barrier).
  void run() {
#pragma omp single
    std::stable_sort(
        tasks_.begin(), tasks_.end(),
        [](const detail::GemmTask& x, const detail::GemmTask& y) { return x.cost > y.cost; });
    const int64_t count = static_cast<int64_t>(tasks_.size());
#pragma omp for schedule(dynamic, 1)
    for (int64_t i = 0; i < count; ++i) run_task(products_[tasks_[i].product], tasks_[i]);
  }

  // run() in a parallel region of its own; products too small to repay waking the threads
  // run on the calling one.
  void run_parallel() {
    if (tasks_.empty()) return;
#pragma omp parallel num_threads(threads_) if (threads_ > 1 && detail::worth_parallel(cost()))
    run();
  }

 private:
  void run_task(const Int8GroupedProduct& p, const detail::GemmTask& t) const {
    const int64_t g = t.group, r0 = t.m0, m = t.m1 - t.m0, nc = t.n1 - t.n0;
    const int mr = kernel_.tile.mr;
    float* c[2];
    for (int s = 0; s < p.segments; ++s) c[s] = p.c + r0 * p.ldc + s * p.n + t.n0;
    auto a_strip = [&](int64_t i0, int rows, int64_t p0, int64_t, const float** ptrs) {
      return detail::indexed_rows(p.a, p.lda, p.index, r0 + i0, rows, p0, ptrs);
    };
    auto epilogue = [&](int64_t i0, int64_t rows) {
      if (p.epilogue) p.epilogue(g, r0 + i0, rows, t.n0, t.n1);
    };
    if (m <= detail::kDotStrips * mr) {
      // Column blocks small enough for L1, so that the strips after the first read the int8
      // rows from there.
      const float* ap[kGemmMaxMR];
      for (int64_t j0 = 0; j0 < nc; j0 += detail::kDotColumns)
        for (int64_t i0 = 0; i0 < m; i0 += mr) {
          const int rows = static_cast<int>(std::min<int64_t>(mr, m - i0));
          a_strip(i0, rows, 0, p.k, ap);
          const int64_t cols = std::min(detail::kDotColumns, nc - j0), col = t.n0 + j0;
          for (int s = 0; s < p.segments; ++s) {
            const Int8WeightRows& w = p.w[s];
            kernel_.dot(p.k, ap, rows, w.q[g] + col * w.ld, w.ld, w.scale[g] + col, cols,
                        c[s] + i0 * p.ldc + j0, p.ldc);
          }
        }
      for (int64_t i0 = 0; i0 < m; i0 += mr) epilogue(i0, std::min<int64_t>(mr, m - i0));
      return;
    }
    // Dequantise rows [p0, p0 + kc) of the task's W rows to float, then pack them as the float
    // forward packs W^T.
    thread_local std::vector<float> dequantised;
    auto pack_b = [&](int s, int64_t p0, int64_t kc, auto* dst) {
      const Int8WeightRows& w = p.w[s];
      dequantised.resize(static_cast<size_t>(nc * kc));
      for (int64_t j = 0; j < nc; ++j) {
        const int8_t* src = w.q[g] + (t.n0 + j) * w.ld + p0;
        const float scale = w.scale[g][t.n0 + j];
        float* out = dequantised.data() + j * kc;
        for (int64_t v = 0; v < kc; ++v) out[v] = scale * float(src[v]);
      }
      detail::pack_b_n_rows(
          kernel_.tile.nr, kc, nc, [&](int64_t j) { return dequantised.data() + j * kc; }, dst);
    };
    detail::gemm_block(kernel_.tile, m, nc, p.k, p.segments, c, p.ldc, a_strip, pack_b, epilogue);
  }

  const Int8Kernel& kernel_;
  int threads_;
  std::vector<Int8GroupedProduct> products_;
  std::vector<detail::GemmTask> tasks_;
};

// C [m, n] = A [m, k] W^T (+ bias [n]), W as int8 rows q [n, k] with scales [n]; row-major and
// contiguous, C overwritten.
inline void int8_matmul(int64_t m, int64_t n, int64_t k, const float* a, const int8_t* q,
                        const float* scale, const float* bias, float* c,
                        const Int8Kernel& kernel = int8_kernel()) {
  auto add_bias = [&](int64_t r0, int64_t count, int64_t j0, int64_t j1) {
    for (int64_t r = r0; r < r0 + count; ++r)
      for (int64_t j = j0; j < j1; ++j) c[r * n + j] += bias[j];
  };
  const int mr = kernel.tile.mr;
  if (m <= detail::kDotStrips * mr && !detail::worth_parallel(double(m) * double(n) * double(k))) {
    // A small decoding product (a small model's projections): the row-dot kernel directly, as
    // a task of the phase would run it, without building one.
    const float* ap[kGemmMaxMR];
    for (int64_t i0 = 0; i0 < m; i0 += mr) {
      const int count = static_cast<int>(std::min<int64_t>(mr, m - i0));
      for (int i = 0; i < count; ++i) ap[i] = a + (i0 + i) * k;
      kernel.dot(k, ap, count, q, k, scale, n, c + i0 * n, n);
    }
    if (bias) add_bias(0, m, 0, n);
    return;
  }
  const int32_t rows = static_cast<int32_t>(m);
  check<ValueError>(rows == m, "int8_matmul: {} rows exceed the index range", m);
  const int32_t offsets[2] = {0, rows};
  Int8GroupedProduct p;
  p.groups = RowGroups{offsets, 1};
  p.a = a;
  p.lda = k;
  p.k = k;
  p.w[0] = Int8WeightRows{&q, &scale, k};
  p.n = n;
  p.c = c;
  p.ldc = n;
  if (bias)
    p.epilogue = [&](int64_t, int64_t r0, int64_t count, int64_t j0, int64_t j1) {
      add_bias(r0, count, j0, j1);
    };
  Int8Phase phase(kernel);
  phase.add(p);
  phase.run_parallel();
}

}  // namespace minimoe
