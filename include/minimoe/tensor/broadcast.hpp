// minimoe/tensor/broadcast.hpp: NumPy-style broadcasting for elementwise kernels.
//
// An operand of shape {C} used against an output of shape {N, C} is read with strides {0, 1}:
// the broadcast axis advances nothing. The backward of a broadcast op sums the output
// gradient over those axes (sum_to), so every elementwise op handles scalar, row and column
// broadcasting with the same two helpers.
#pragma once

#include <vector>

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

// out = f(a, b) elementwise with broadcasting; `op` names the caller in errors.
template <typename T, typename F>
Tensor<T> broadcast_binary(const Tensor<T>& a, const Tensor<T>& b, F f, const char* op) {
  if (a.shape() == b.shape()) {  // the common case: no index arithmetic
    const Tensor<T> ca = a.contiguous();
    const Tensor<T> cb = b.contiguous();
    Tensor<T> out(a.shape());
    const T* pa = ca.data();
    const T* pb = cb.data();
    T* po = out.data();
    for (int64_t i = 0; i < out.numel(); ++i) po[i] = f(pa[i], pb[i]);
    return out;
  }
  const Shape shape = broadcast_shapes(a.shape(), b.shape(), op);
  const Tensor<T> ca = a.contiguous();
  const Tensor<T> cb = b.contiguous();
  Tensor<T> out(shape);
  const T* pa = ca.data();
  const T* pb = cb.data();
  T* po = out.data();
  for_each_broadcast(shape, broadcast_strides(a.shape(), shape),
                     broadcast_strides(b.shape(), shape),
                     [&](int64_t i, int64_t ia, int64_t ib) { po[i] = f(pa[ia], pb[ib]); });
  return out;
}

// Sums `grad` (of a broadcast output shape) down to `shape`, the inverse of broadcasting.
template <typename T>
Tensor<T> sum_to(const Tensor<T>& grad, const Shape& shape) {
  if (grad.shape() == shape) return grad;
  const Tensor<T> g = grad.contiguous();
  Tensor<T> out(shape);
  const T* pg = g.data();
  T* po = out.data();
  const Shape strides = broadcast_strides(shape, g.shape());
  for_each_broadcast(g.shape(), strides, strides,
                     [&](int64_t i, int64_t io, int64_t) { po[io] += pg[i]; });
  return out;
}

}  // namespace minimoe
