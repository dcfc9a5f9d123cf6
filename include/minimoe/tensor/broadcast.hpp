// minimoe/tensor/broadcast.hpp: NumPy-style broadcasting for elementwise kernels.
//
// An operand of shape {C} used against an output of shape {N, C} is read with strides {0, 1}:
// the broadcast axis advances nothing. The backward of a broadcast op sums the output
// gradient over those axes (sum_to), so every elementwise op handles scalar, row and column
// broadcasting with the same two helpers.
#pragma once

#include <algorithm>
#include <vector>

#include "minimoe/kernels/parallel.hpp"
#include "minimoe/tensor/tensor.hpp"

namespace minimoe {

// Strides that read a contiguous tensor of `shape` as if it had shape `out` (broadcast).
inline Shape broadcast_strides(const Shape& shape, const Shape& out) {
  const Shape own = contiguous_strides(shape);
  Shape strides(out.size(), 0);
  const size_t lead = out.size() - shape.size();
  for (size_t i = 0; i < shape.size(); ++i) strides[lead + i] = shape[i] == 1 ? 0 : own[i];
  return strides;
}

// Calls fn(i, offset_a, offset_b) for every element i (row-major) of `out`, with the offsets
// of the matching elements of two operands read through the given (broadcast) strides.
template <typename Fn>
void for_each_broadcast(const Shape& out, const Shape& strides_a, const Shape& strides_b, Fn&& fn) {
  const int64_t n = numel_of(out);
  if (n == 0) return;
  if (out.empty()) {
    fn(int64_t{0}, int64_t{0}, int64_t{0});
    return;
  }
  const size_t last = out.size() - 1;
  const int64_t inner = out[last];
  const int64_t step_a = strides_a[last];
  const int64_t step_b = strides_b[last];
  std::vector<int64_t> counter(last, 0);
  int64_t base_a = 0;
  int64_t base_b = 0;
  for (int64_t i = 0; i < n; i += inner) {
    for (int64_t j = 0; j < inner; ++j) fn(i + j, base_a + j * step_a, base_b + j * step_b);
    for (size_t ax = last; ax-- > 0;) {  // odometer over the outer axes
      if (++counter[ax] < out[ax]) {
        base_a += strides_a[ax];
        base_b += strides_b[ax];
        break;
      }
      base_a -= (out[ax] - 1) * strides_a[ax];
      base_b -= (out[ax] - 1) * strides_b[ax];
      counter[ax] = 0;
    }
  }
}

namespace detail {

// Whether `part` is the trailing axes of `whole` (leading 1s of `part` ignored): an operand
// repeated once per leading index, like a bias over rows.
inline bool is_trailing_shape(const Shape& part, const Shape& whole) {
  size_t lead = 0;
  while (lead < part.size() && part[lead] == 1) ++lead;
  const size_t n = part.size() - lead;
  return n <= whole.size() && std::equal(part.begin() + lead, part.end(), whole.end() - n);
}

// out[c] += sum over the rows r of g[r, c] (times x[r, c] when x is given), for g and x
// [rows, C]: a bias's or a norm's weight gradient. Blocks of columns go to the threads, each
// column summed over the rows in order (the same sums for any thread count).
template <typename T>
void column_sums(const T* g, const T* x, int64_t rows, int64_t C, T* out) {
  constexpr int64_t kBlock = 64;
#pragma omp parallel for schedule(static) if (worth_parallel(double(rows) * double(C)))
  for (int64_t c0 = 0; c0 < C; c0 += kBlock) {
    const int64_t c1 = std::min(C, c0 + kBlock);
    for (int64_t r = 0; r < rows; ++r)
      for (int64_t c = c0; c < c1; ++c) out[c] += x ? g[r * C + c] * x[r * C + c] : g[r * C + c];
  }
}

}  // namespace detail

// out = f(a, b) elementwise with broadcasting; `op` names the caller in errors. Equal shapes and
// an operand repeated over rows (a bias) take flat loops over all threads, so f must be safe to
// call concurrently and must not throw; other broadcasts go through the strided walk.
template <typename T, typename F>
Tensor<T> broadcast_binary(const Tensor<T>& a, const Tensor<T>& b, F f, const char* op) {
  const Shape shape =
      a.shape() == b.shape() ? a.shape() : broadcast_shapes(a.shape(), b.shape(), op);
  const Tensor<T> ca = a.contiguous();
  const Tensor<T> cb = b.contiguous();
  Tensor<T> out = Tensor<T>::empty(shape);  // every element written below
  const T* pa = ca.data();
  const T* pb = cb.data();
  T* po = out.data();
  const int64_t n = out.numel();
  if (a.shape() == b.shape()) {
    detail::parallel_for(n, [&](int64_t i) { po[i] = f(pa[i], pb[i]); });
    return out;
  }
  const bool a_rows = a.shape() == shape && detail::is_trailing_shape(b.shape(), shape);
  const bool b_rows = b.shape() == shape && detail::is_trailing_shape(a.shape(), shape);
  // One operand whole, the other repeated once per row (n > 0: no axis, so no operand, is empty).
  if ((a_rows || b_rows) && n > 0) {
    const int64_t width = a_rows ? cb.numel() : ca.numel();
#pragma omp parallel for schedule(static) if (detail::worth_parallel(double(n)))
    for (int64_t r = 0; r < n / width; ++r) {
      T* o = po + r * width;
      if (a_rows) {
        const T* x = pa + r * width;
        for (int64_t j = 0; j < width; ++j) o[j] = f(x[j], pb[j]);
      } else {
        const T* y = pb + r * width;
        for (int64_t j = 0; j < width; ++j) o[j] = f(pa[j], y[j]);
      }
    }
    return out;
  }
  for_each_broadcast(shape, broadcast_strides(a.shape(), shape),
                     broadcast_strides(b.shape(), shape),
                     [&](int64_t i, int64_t ia, int64_t ib) { po[i] = f(pa[ia], pb[ib]); });
  return out;
}

// Sums `grad` (of a broadcast output shape) down to `shape`, the inverse of broadcasting. Down
// to trailing axes (a bias's gradient) the columns are shared out over the threads, each summed
// over the rows in order: the same sums as the serial walk.
template <typename T>
Tensor<T> sum_to(const Tensor<T>& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const Tensor<T> g = grad.contiguous();
  Tensor<T> out(shape);
  const T* pg = g.data();
  T* po = out.data();
  const int64_t width = out.numel();
  if (detail::is_trailing_shape(shape, g.shape()) && width > 0) {
    detail::column_sums(pg, static_cast<const T*>(nullptr), g.numel() / width, width, po);
    return out;
  }
  const Shape strides = broadcast_strides(shape, g.shape());
  for_each_broadcast(g.shape(), strides, strides,
                     [&](int64_t i, int64_t io, int64_t) { po[io] += pg[i]; });
  return out;
}

}  // namespace minimoe
