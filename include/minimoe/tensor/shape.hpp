// minimoe/tensor/shape.hpp: shapes, strides and axis arithmetic shared by tensors and ops.
//
// A Shape lists the extent of each dimension, outermost first (row-major):
//   Shape{B, T, C}  ->  strides {T*C, C, 1} when contiguous.
// Formatting a Shape with fmt gives "[B, T, C]", the form used in every error message.
#pragma once

#include <cstdint>
#include <vector>

#include "minimoe/error.hpp"

namespace minimoe {

using Shape = std::vector<int64_t>;

// Largest element count a tensor may hold (64 GiB of float32). Sizes read from files or
// requests are checked against this before anything is allocated.
inline constexpr int64_t kMaxNumel = int64_t{1} << 34;

// Product of the extents; throws on a negative extent or an absurd total.
inline int64_t numel_of(const Shape& shape) {
  int64_t n = 1;
  for (int64_t extent : shape) {
    check<ShapeError>(extent >= 0, "shape {} has a negative extent", shape);
    check<ShapeError>(extent == 0 || n <= kMaxNumel / extent, "shape {} has more than {} elements",
                      shape, kMaxNumel);
    n *= extent;
  }
  return n;
}

inline Shape contiguous_strides(const Shape& shape) {
  Shape strides(shape.size());
  int64_t stride = 1;
  for (size_t i = shape.size(); i-- > 0;) {
    strides[i] = stride;
    stride *= shape[i];
  }
  return strides;
}

// Maps a possibly negative axis (-1 = last) into [0, ndim); `op` names the caller.
inline int64_t normalize_axis(int64_t axis, int64_t ndim, const char* op) {
  check<IndexError>(axis >= -ndim && axis < ndim, "{}: axis {} out of range for a {}-d tensor", op,
                    axis, ndim);
  return axis < 0 ? axis + ndim : axis;
}

// NumPy broadcasting: align shapes at the right; extents must match or be 1.
inline Shape broadcast_shapes(const Shape& a, const Shape& b, const char* op) {
  const size_t ndim = std::max(a.size(), b.size());
  Shape out(ndim);
  for (size_t i = 0; i < ndim; ++i) {
    const int64_t ea = i < ndim - a.size() ? 1 : a[i - (ndim - a.size())];
    const int64_t eb = i < ndim - b.size() ? 1 : b[i - (ndim - b.size())];
    check<ShapeError>(ea == eb || ea == 1 || eb == 1, "{}: shapes {} and {} do not broadcast", op,
                      a, b);
    out[i] = ea == 1 ? eb : ea;
  }
  return out;
}

}  // namespace minimoe
