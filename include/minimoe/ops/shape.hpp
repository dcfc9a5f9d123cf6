// minimoe/ops/shape.hpp: differentiable reshaping and indexing.
//
//   reshape(x, {B, T, H, D})        view when x is contiguous, copy otherwise
//   transpose(x, 1, 2)              view
//   slice(x, -1, 0, C)              view of [0, C) along the last axis
//   concat({a, b}, 0), split(x, {2, 3}, -1)
//   index_select(tokens, 0, rows)   rows of tokens picked by an index tensor
//
// Views share storage with their input (see tensor/tensor.hpp); their backward maps the
// gradient back through the same view. Gradients are always dense and contiguous.
#pragma once

#include <vector>

#include "minimoe/autograd/var.hpp"

namespace minimoe {

template <typename T>
Var<T> reshape(const Var<T>& x, Shape shape) {
  return make_op<T>("reshape", x.value().reshape(std::move(shape)), {x},
                    [](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      in[0].add_grad(g.reshape(in[0].shape()));
                    });
}

template <typename T>
Var<T> transpose(const Var<T>& x, int64_t axis0, int64_t axis1) {
  return make_op<T>("transpose", x.value().transpose(axis0, axis1), {x},
                    [axis0, axis1](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      in[0].add_grad(g.transpose(axis0, axis1).contiguous());
                    });
}

// A contiguous copy of x (identity for gradients); a no-op for contiguous x.
template <typename T>
Var<T> contiguous(const Var<T>& x) {
  if (x.value().is_contiguous()) return x;
  return make_op<T>("contiguous", x.value().contiguous(), {x},
                    [](const std::vector<Var<T>>& in, const Tensor<T>& g) { in[0].add_grad(g); });
}

// Elements [start, end) along axis; negative bounds count from the end.
template <typename T>
Var<T> slice(const Var<T>& x, int64_t axis, int64_t start, int64_t end) {
  const Tensor<T> view = x.value().slice(axis, start, end);
  const int64_t ax = normalize_axis(axis, x.dim(), "slice");
  const int64_t begin = start < 0 ? start + x.size(ax) : start;  // valid: slice checked it
  return make_op<T>("slice", view, {x},
                    [ax, begin](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      Tensor<T> dx(in[0].shape());
                      dx.slice(ax, begin, begin + g.size(ax)).copy_(g);
                      in[0].add_grad(std::move(dx));
                    });
}

// Joins the inputs along axis; all other extents must agree.
template <typename T>
Var<T> concat(const std::vector<Var<T>>& xs, int64_t axis) {
  check<ValueError>(!xs.empty(), "concat: no inputs");
  const int64_t ax = normalize_axis(axis, xs[0].dim(), "concat");
  Shape shape = xs[0].shape();
  shape[ax] = 0;
  for (size_t i = 0; i < xs.size(); ++i) {
    // Compare ranks first: size(ax) of an input with fewer axes would throw its own error.
    Shape expected = xs[0].shape();
    if (xs[i].dim() == xs[0].dim()) expected[ax] = xs[i].size(ax);
    check<ShapeError>(xs[i].shape() == expected,
                      "concat: input {} has shape {}, incompatible with {} along axis {}", i,
                      xs[i].shape(), xs[0].shape(), axis);
    shape[ax] += xs[i].size(ax);
  }
  Tensor<T> out(shape);
  std::vector<int64_t> offsets;
  int64_t offset = 0;
  for (const auto& x : xs) {
    offsets.push_back(offset);
    out.slice(ax, offset, offset + x.size(ax)).copy_(x.value());
    offset += x.size(ax);
  }
  return make_op<T>("concat", std::move(out), xs,
                    [ax, offsets](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      for (size_t i = 0; i < in.size(); ++i) {
                        if (!in[i].requires_grad()) continue;
                        in[i].add_grad(g.slice(ax, offsets[i], offsets[i] + in[i].size(ax)));
                      }
                    });
}

// Cuts x along axis into consecutive pieces of the given sizes (which must add up to the
// extent); each piece is a slice view.
template <typename T>
std::vector<Var<T>> split(const Var<T>& x, const std::vector<int64_t>& sizes, int64_t axis) {
  const int64_t ax = normalize_axis(axis, x.dim(), "split");
  int64_t total = 0;
  for (int64_t s : sizes) {
    check<ValueError>(s >= 0, "split: negative size {} in {}", s, sizes);
    total += s;
  }
  check<ShapeError>(total == x.size(ax),
                    "split: sizes {} add up to {}, not the extent {} of axis {}", sizes, total,
                    x.size(ax), axis);
  std::vector<Var<T>> pieces;
  int64_t start = 0;
  for (int64_t s : sizes) {
    pieces.push_back(slice(x, ax, start, start + s));
    start += s;
  }
  return pieces;
}

// out[..., j, ...] = x[..., index[j], ...] along axis; index is 1-d.
template <typename T>
Var<T> index_select(const Var<T>& x, int64_t axis, const Tensor<int32_t>& index) {
  const int64_t ax = normalize_axis(axis, x.dim(), "index_select");
  check<ShapeError>(index.dim() == 1, "index_select: index must be 1-d, got shape {}",
                    index.shape());
  const Tensor<int32_t> ic = index.contiguous();
  const int64_t n = x.size(ax), k = ic.numel();
  for (int64_t j = 0; j < k; ++j)
    check<IndexError>(ic.data()[j] >= 0 && ic.data()[j] < n,
                      "index_select: index {} out of range [0, {}) at position {}", ic.data()[j], n,
                      j);
  int64_t outer = 1, inner = 1;
  for (int64_t i = 0; i < ax; ++i) outer *= x.size(i);
  for (int64_t i = ax + 1; i < x.dim(); ++i) inner *= x.size(i);
  Shape shape = x.shape();
  shape[ax] = k;
  const Tensor<T> xc = x.value().contiguous();
  Tensor<T> out(shape);
  for (int64_t o = 0; o < outer; ++o)
    for (int64_t j = 0; j < k; ++j)
      std::copy_n(xc.data() + (o * n + ic.data()[j]) * inner, inner,
                  out.data() + (o * k + j) * inner);
  return make_op<T>("index_select", std::move(out), {x},
                    [ic, outer, n, k, inner](const std::vector<Var<T>>& in, const Tensor<T>& g) {
                      const Tensor<T> gc = g.contiguous();
                      Tensor<T> dx(in[0].shape());
                      for (int64_t o = 0; o < outer; ++o)
                        for (int64_t j = 0; j < k; ++j) {
                          const T* src = gc.data() + (o * k + j) * inner;
                          T* dst = dx.data() + (o * n + ic.data()[j]) * inner;
                          for (int64_t i = 0; i < inner; ++i) dst[i] += src[i];
                        }
                      in[0].add_grad(std::move(dx));
                    });
}

}  // namespace minimoe
