// minimoe/ops/rope.hpp: rotary position embedding (RoPE) on [B, T, H, D] queries or keys.
//
//   Var<float> q_rot = rope(q, /*position_offset=*/0, /*base=*/10000.0);
//
// The "rotate half" convention of GPT-NeoX and Hugging Face LLaMA: dimension i < D/2 is
// paired with i + D/2 and the pair at position p is rotated by the angle
// p * base^(-2i / D). position_offset is the absolute position of the first row, for
// decoding with a KV cache. The backward pass is the rotation by the opposite angle.
#pragma once

#include <cmath>
#include <vector>

#include "minimoe/autograd/var.hpp"
#include "minimoe/kernels/parallel.hpp"

namespace minimoe {

namespace detail {

// cos and sin [count, D/2] of the angles of positions first .. first + count - 1, the sines
// negated when direction = -1 (the inverse rotation).
template <typename T>
void rope_tables(int64_t first, int64_t count, int64_t D, double base, int direction,
                 std::vector<T>& cos_table, std::vector<T>& sin_table) {
  const int64_t half = D / 2;
  cos_table.resize(static_cast<size_t>(count * half));
  sin_table.resize(cos_table.size());
  for (int64_t t = 0; t < count; ++t)
    for (int64_t i = 0; i < half; ++i) {
      const double angle = static_cast<double>(first + t) *
                           std::pow(base, -2.0 * static_cast<double>(i) / static_cast<double>(D));
      cos_table[t * half + i] = static_cast<T>(std::cos(angle));
      sin_table[t * half + i] = static_cast<T>(direction * std::sin(angle));
    }
}

// Rotates the (x[i], x[i + half]) pairs of one head's row by the angles whose cos and sin are
// c[i], s[i]; y may be x.
template <typename T>
void rotate_half_pairs(const T* x, T* y, int64_t half, const T* c, const T* s) {
  for (int64_t i = 0; i < half; ++i) {
    const T x1 = x[i], x2 = x[i + half];
    y[i] = x1 * c[i] - x2 * s[i];
    y[i + half] = x1 * s[i] + x2 * c[i];
  }
}

// Rotates each (x[i], x[i + D/2]) pair of every row of a contiguous [B, T, H, D] tensor by
// +angle (direction = 1) or -angle (direction = -1).
template <typename T>
Tensor<T> rotate_pairs(const Tensor<T>& x, int64_t position_offset, double base, int direction) {
  const int64_t B = x.size(0), T_ = x.size(1), H = x.size(2), D = x.size(3), half = D / 2;
  std::vector<T> cos_table, sin_table;
  rope_tables(position_offset, T_, D, base, direction, cos_table, sin_table);
  Tensor<T> out(x.shape());
  const T* px = x.data();
  T* po = out.data();
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(x.numel())))
  for (int64_t bt = 0; bt < B * T_; ++bt) {
    const T* c = cos_table.data() + (bt % T_) * half;
    const T* s = sin_table.data() + (bt % T_) * half;
    for (int64_t h = 0; h < H; ++h)
      rotate_half_pairs(px + (bt * H + h) * D, po + (bt * H + h) * D, half, c, s);
  }
  return out;
}

}  // namespace detail

template <typename T>
Var<T> rope(const Var<T>& x, int64_t position_offset = 0, double base = 10000.0) {
  check<ShapeError>(x.dim() == 4 && x.size(3) % 2 == 0,
                    "rope: input must be [B, T, H, D] with an even D, got {}", x.shape());
  check<ValueError>(base > 1.0, "rope: base must be > 1, got {}", base);
  check<ValueError>(position_offset >= 0, "rope: negative position offset {}", position_offset);
  Tensor<T> y = detail::rotate_pairs(x.value().contiguous(), position_offset, base, +1);
  return make_op<T>(
      "rope", std::move(y), {x},
      [position_offset, base](const std::vector<Var<T>>& in, const Tensor<T>& g) {
        in[0].add_grad(detail::rotate_pairs(g.contiguous(), position_offset, base, -1));
      });
}

}  // namespace minimoe
