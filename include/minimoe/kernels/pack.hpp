// minimoe/kernels/pack.hpp: packing the B operand of a GEMM block into micro-kernel panels.
//
// A packed block holds B[p, j] for p < kc, j < n as ceil(n / NR) panels of NR columns, each
// row-major and zero-padded on the right:
//
//   dst[q * kc * NR + p * NR + jj] = B[p, q * NR + jj]      (0 where q * NR + jj >= n)
//
// so that a micro-kernel streams one panel with unit stride. B comes either as k-rows (row p of
// B is contiguous: W for dX = dH W, gathered token rows for dW = D^T X) or as n-rows (column j
// of B is contiguous: W^T for H = X W^T with W stored [out, in] like every Linear); the second
// is a transposition, done in 8 x 8 blocks with AVX when the build or the CPU has it.
#pragma once

#include <algorithm>
#include <cstdint>
#include <type_traits>
#include <utility>
#include <vector>

#include "minimoe/kernels/bf16.hpp"
#include "minimoe/kernels/gemm_microkernel.hpp"

namespace minimoe {
namespace detail {

inline constexpr int kPackMaxNR = 32;

// row(p) points at B[p, 0]; columns [0, n) are read. NR > 0 is the panel width known at
// compile time (0: nr at run time): a run-time length makes every panel row a call to memmove,
// which was 4.6% of an MoE layer's fwd+bwd; a fixed one compiles to vector moves.
template <int NR, typename T, typename RowFn>
void pack_b_k_rows_as(int nr, int64_t kc, int64_t n, RowFn&& row, T* dst) {
  if constexpr (NR > 0) nr = NR;
  const int64_t full = n / nr, tail = n - full * nr;
  for (int64_t p = 0; p < kc; ++p) {
    const T* src = row(p);
    T* d = dst + p * nr;
    for (int64_t q = 0; q < full; ++q, d += kc * nr) {
      if constexpr (NR > 0) {
        for (int j = 0; j < NR; ++j) d[j] = src[q * NR + j];
      } else {
        std::copy_n(src + q * nr, nr, d);
      }
    }
    if (tail > 0) {
      std::copy_n(src + full * nr, tail, d);
      std::fill(d + tail, d + nr, T(0));
    }
  }
}

// The panel widths of the micro-kernels (gemm_microkernel.hpp) get their own copy loops.
template <typename T, typename RowFn>
void pack_b_k_rows(int nr, int64_t kc, int64_t n, RowFn&& row, T* dst) {
  switch (nr) {
    case 32:
      return pack_b_k_rows_as<32>(nr, kc, n, row, dst);
    case 16:
      return pack_b_k_rows_as<16>(nr, kc, n, row, dst);
    case 12:
      return pack_b_k_rows_as<12>(nr, kc, n, row, dst);
    case 8:
      return pack_b_k_rows_as<8>(nr, kc, n, row, dst);
    default:
      return pack_b_k_rows_as<0>(nr, kc, n, row, dst);
  }
}

#ifdef MINIMOE_GEMM_X86
// dst[i * ldd + j] = src[j][p + i] for i, j < 8: eight columns of B in, eight packed rows out.
MINIMOE_TARGET_AVX2 inline void transpose_8x8(const float* const* src, int64_t p, float* dst,
                                              int64_t ldd) {
  __m256 r[8], t[8];
  for (int j = 0; j < 8; ++j) r[j] = _mm256_loadu_ps(src[j] + p);
  for (int j = 0; j < 8; j += 2) {
    t[j] = _mm256_unpacklo_ps(r[j], r[j + 1]);
    t[j + 1] = _mm256_unpackhi_ps(r[j], r[j + 1]);
  }
  for (int j = 0; j < 8; j += 4) {
    r[j] = _mm256_shuffle_ps(t[j], t[j + 2], 0x44);
    r[j + 1] = _mm256_shuffle_ps(t[j], t[j + 2], 0xEE);
    r[j + 2] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0x44);
    r[j + 3] = _mm256_shuffle_ps(t[j + 1], t[j + 3], 0xEE);
  }
  for (int j = 0; j < 4; ++j) {
    _mm256_storeu_ps(dst + j * ldd, _mm256_permute2f128_ps(r[j], r[j + 4], 0x20));
    _mm256_storeu_ps(dst + (j + 4) * ldd, _mm256_permute2f128_ps(r[j], r[j + 4], 0x31));
  }
}

// Whether transpose_8x8 runs on this CPU, asked once.
inline bool cpu_transposes_8x8() {
  static const bool yes = cpu_has_avx2_fma();
  return yes;
}

MINIMOE_TARGET_AVX2 inline void pack_b_n_rows_avx2(int nr, int64_t rows, const float* const* src,
                                                   int cols, float* dst) {
  for (int j0 = 0; j0 < cols; j0 += 8)
    for (int64_t p = 0; p < rows; p += 8) transpose_8x8(src + j0, p, dst + p * nr + j0, nr);
}
#endif

// row(j) points at B[0, j] (column j of B, contiguous over p); rows [0, kc) are read.
template <typename T, typename RowFn>
void pack_b_n_rows(int nr, int64_t kc, int64_t n, RowFn&& row, T* dst) {
  const T* src[kPackMaxNR];
  for (int64_t j0 = 0; j0 < n; j0 += nr, dst += kc * nr) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, n - j0));
    for (int jj = 0; jj < cols; ++jj) src[jj] = row(j0 + jj);
    // Rows [0, rows_done) x columns [0, cols_done) go through 8 x 8 SIMD transposes.
    int64_t rows_done = 0;
    int cols_done = 0;
#ifdef MINIMOE_GEMM_X86
    if constexpr (std::is_same_v<T, float>) {
      if (cpu_transposes_8x8()) {
        rows_done = kc / 8 * 8;
        cols_done = cols / 8 * 8;
        pack_b_n_rows_avx2(nr, rows_done, src, cols_done, dst);
      }
    }
#endif
    for (int64_t p = 0; p < kc; ++p) {
      T* d = dst + p * nr;
      for (int jj = p < rows_done ? cols_done : 0; jj < cols; ++jj) d[jj] = src[jj][p];
      std::fill(d + cols, d + nr, T(0));
    }
  }
}

// The same panels for a bf16 kernel (kernels/bf16.hpp), K in pairs, packed straight from the
// float rows:
//
//   dst[q * kp * NR + (p / 2) * NR + jj] = (B[p, j], B[p + 1, j])     kp = ceil(kc / 2)
//
// (B[kc, j] = 0 when kc is odd). k-rows: two rows of B interleave into one row of pairs.
template <typename RowFn>
void pack_b_k_rows(int nr, int64_t kc, int64_t n, RowFn&& row, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2;
  for (int64_t p = 0; p < kc; p += 2)
    pack_pairs(row(p), p + 1 < kc ? row(p + 1) : nullptr, n, nr, kp * nr, dst + p / 2 * nr);
}

// n-rows: each column of B (contiguous over p) rounds into a column of pairs, and 8 x 8 blocks
// of those words transpose into the panel, with the float transpose (bits are bits).
template <typename RowFn>
void pack_b_n_rows(int nr, int64_t kc, int64_t n, RowFn&& row, uint32_t* dst) {
  const int64_t kp = (kc + 1) / 2, ld = (kp + 7) / 8 * 8;
  thread_local std::vector<uint32_t> columns;  // columns[jj * ld + q]: pair q of column jj
  columns.resize(static_cast<size_t>(nr * ld));
  for (int64_t j0 = 0; j0 < n; j0 += nr, dst += kp * nr) {
    const int cols = static_cast<int>(std::min<int64_t>(nr, n - j0));
    for (int jj = 0; jj < cols; ++jj) pack_row_pairs(row(j0 + jj), kc, columns.data() + jj * ld);
    int64_t pairs_done = 0;  // pairs [0, pairs_done) x columns [0, cols_done) went through SIMD
    int cols_done = 0;
#ifdef MINIMOE_GEMM_X86
    if (cpu_transposes_8x8()) {
      pairs_done = kp / 8 * 8;
      cols_done = cols / 8 * 8;
      for (int c0 = 0; c0 < cols_done; c0 += 8) {
        const float* src[8];
        for (int t = 0; t < 8; ++t)
          src[t] = reinterpret_cast<const float*>(columns.data() + (c0 + t) * ld);
        for (int64_t q = 0; q < pairs_done; q += 8)
          transpose_8x8(src, q, reinterpret_cast<float*>(dst + q * nr + c0), nr);
      }
    }
#endif
    for (int64_t q = 0; q < kp; ++q) {
      uint32_t* d = dst + q * nr;
      for (int jj = q < pairs_done ? cols_done : 0; jj < cols; ++jj) d[jj] = columns[jj * ld + q];
      std::fill(d + cols, d + nr, 0u);
    }
  }
}

// dst[q * mr + i] = src[q * ld + i] for q < kc, i < rows <= kGemmMaxMR: an A strip read across
// rows that lie far apart (D^T of a weight gradient). A copy of a run-time length is a call to
// memcpy per 32 bytes, which cost the LM head's dW a few percent; a fixed length is a move.
template <int Rows, typename T>
void pack_a_strip_fixed(const T* src, int64_t ld, int64_t kc, int mr, T* dst) {
  for (int64_t q = 0; q < kc; ++q)
    for (int i = 0; i < Rows; ++i) dst[q * mr + i] = src[q * ld + i];
}

template <typename T, int... R>
void pack_a_strip(const T* src, int64_t ld, int rows, int64_t kc, int mr, T* dst,
                  std::integer_sequence<int, R...>) {
  using Fn = void (*)(const T*, int64_t, int64_t, int, T*);
  static constexpr Fn by_rows[] = {&pack_a_strip_fixed<R + 1, T>...};
  by_rows[rows - 1](src, ld, kc, mr, dst);
}

template <typename T>
void pack_a_strip(const T* src, int64_t ld, int rows, int64_t kc, int mr, T* dst) {
  pack_a_strip(src, ld, rows, kc, mr, dst, std::make_integer_sequence<int, kGemmMaxMR>{});
}

}  // namespace detail
}  // namespace minimoe
