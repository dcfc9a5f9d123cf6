// minimoe/tensor/tensor.hpp: an N-d, row-major, reference-counted array with cheap views.
//
// Ownership: a Tensor is a handle. Copying a Tensor shares its storage (like a torch.Tensor or
// a shared_ptr), so views made by reshape/transpose/slice alias the original and writes through
// one are visible through the other. clone() makes an independent deep copy. Storage is freed
// when the last handle to it goes away. Element access is const-correct: a const Tensor gives
// const pointers and read-only maps.
//
//   Tensor<float> x({2, 3}, {1, 2, 3, 4, 5, 6});
//   Tensor<float> xt = x.transpose(0, 1);   // [3, 2] view, shares storage, not contiguous
//   Tensor<float> y = xt.contiguous();      // [3, 2] copy in row-major order
//   y.matrix() *= 2;                        // Eigen map over the data
//
// Math on tensors lives in ops/ (differentiable, on Var) and kernels/ (raw loops); this file
// only knows about storage, shape and layout.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <initializer_list>
#include <memory>
#include <type_traits>
#include <utility>
#include <vector>

#include <Eigen/Core>

#include "minimoe/error.hpp"
#include "minimoe/tensor/random.hpp"
#include "minimoe/tensor/shape.hpp"
#include "minimoe/tensor/storage_pool.hpp"

namespace minimoe {

template <typename T>
class Tensor {
  static_assert(std::is_arithmetic_v<T>, "Tensor holds arithmetic element types");

 public:
  using Scalar = T;
  using Matrix = Eigen::Matrix<T, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
  using MatrixMap = Eigen::Map<Matrix>;
  using ConstMatrixMap = Eigen::Map<const Matrix>;
  using Array = Eigen::Array<T, Eigen::Dynamic, 1>;
  using ArrayMap = Eigen::Map<Array>;
  using ConstArrayMap = Eigen::Map<const Array>;

  // An undefined tensor: no storage, defined() is false.
  Tensor() = default;

  // A zero-filled tensor of the given shape.
  explicit Tensor(Shape shape) : Tensor(std::move(shape), T(0)) {}

  Tensor(Shape shape, T fill) : shape_(std::move(shape)) {
    const int64_t n = numel_of(shape_);
    strides_ = contiguous_strides(shape_);
    storage_ = allocate(n);
    std::fill_n(storage_.get(), n, fill);
  }

  // A tensor holding `values` in row-major order; their count must match the shape.
  Tensor(Shape shape, std::vector<T> values) : Tensor(std::move(shape)) {
    check<ShapeError>(static_cast<int64_t>(values.size()) == numel(),
                      "Tensor: {} values given for shape {} ({} elements)", values.size(), shape_,
                      numel());
    std::copy(values.begin(), values.end(), storage_.get());
  }
  Tensor(Shape shape, std::initializer_list<T> values)
      : Tensor(std::move(shape), std::vector<T>(values)) {}

  // A tensor whose elements are left uninitialised: for outputs that a kernel overwrites
  // entirely, where zero-filling would only cost a pass over memory.
  static Tensor empty(Shape shape) {
    Tensor t;
    t.shape_ = std::move(shape);
    t.strides_ = contiguous_strides(t.shape_);
    t.storage_ = allocate(numel_of(t.shape_));
    return t;
  }

  static Tensor scalar(T value) { return Tensor(Shape{}, value); }
  static Tensor zeros(Shape shape) { return Tensor(std::move(shape)); }
  static Tensor ones(Shape shape) { return Tensor(std::move(shape), T(1)); }
  static Tensor full(Shape shape, T value) { return Tensor(std::move(shape), value); }
  static Tensor zeros_like(const Tensor& other) { return Tensor(other.shape()); }

  // Normal(mean, stddev) entries drawn from rng, in row-major order.
  static Tensor randn(Shape shape, Rng& rng, double stddev = 1.0, double mean = 0.0) {
    Tensor t(std::move(shape));
    T* p = t.data();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(mean + stddev * rng.normal());
    return t;
  }
  // Uniform entries in [lo, hi) drawn from rng, in row-major order.
  static Tensor uniform(Shape shape, Rng& rng, double lo = 0.0, double hi = 1.0) {
    Tensor t(std::move(shape));
    T* p = t.data();
    for (int64_t i = 0; i < t.numel(); ++i) p[i] = static_cast<T>(rng.uniform(lo, hi));
    return t;
  }
  // 0, 1, ..., n-1 as a 1-d tensor.
  static Tensor arange(int64_t n) {
    Tensor t(Shape{n});
    for (int64_t i = 0; i < n; ++i) t.data()[i] = static_cast<T>(i);
    return t;
  }

  bool defined() const { return storage_ != nullptr; }
  const Shape& shape() const { return shape_; }
  const Shape& strides() const { return strides_; }
  int64_t dim() const { return static_cast<int64_t>(shape_.size()); }
  int64_t size(int64_t axis) const { return shape_[normalize_axis(axis, dim(), "size")]; }
  int64_t numel() const {  // the shape was checked when it was made: a plain product
    int64_t n = defined() ? 1 : 0;
    for (int64_t extent : shape_) n *= extent;
    return n;
  }
  int64_t offset() const { return offset_; }

  bool is_contiguous() const {
    int64_t expected = 1;
    for (size_t i = shape_.size(); i-- > 0;) {
      if (shape_[i] != 1 && strides_[i] != expected) return false;
      expected *= shape_[i];
    }
    return true;
  }

  // Pointer to the first element (storage + offset). For non-contiguous tensors the elements
  // are reached through strides().
  T* data() { return storage_.get() + offset_; }
  const T* data() const { return storage_.get() + offset_; }

  // Element access with bounds checks, for tests and non-hot code.
  T& at(std::initializer_list<int64_t> index) { return data()[element_offset(index)]; }
  T at(std::initializer_list<int64_t> index) const { return data()[element_offset(index)]; }

  // The single value of a one-element tensor.
  T item() const {
    check<ShapeError>(numel() == 1, "item: tensor of shape {} has {} elements, not 1", shape_,
                      numel());
    return *data();
  }

  // ---- views: share storage ----

  // Same elements, new shape; one extent may be -1 (inferred). Requires a contiguous tensor.
  Tensor view(Shape shape) const {
    check<ShapeError>(is_contiguous(), "view: tensor of shape {} is not contiguous", shape_);
    Tensor out = *this;
    out.shape_ = infer_shape(std::move(shape), "view");
    out.strides_ = contiguous_strides(out.shape_);
    return out;
  }

  // Like view, but copies first when the tensor is not contiguous.
  Tensor reshape(Shape shape) const { return contiguous().view(std::move(shape)); }

  // Swaps two axes (a view, not contiguous in general).
  Tensor transpose(int64_t axis0, int64_t axis1) const {
    const int64_t a = normalize_axis(axis0, dim(), "transpose");
    const int64_t b = normalize_axis(axis1, dim(), "transpose");
    Tensor out = *this;
    std::swap(out.shape_[a], out.shape_[b]);
    std::swap(out.strides_[a], out.strides_[b]);
    return out;
  }

  // Elements [start, end) along `axis` (a view). Negative bounds count from the end.
  Tensor slice(int64_t axis, int64_t start, int64_t end) const {
    const int64_t ax = normalize_axis(axis, dim(), "slice");
    const int64_t extent = shape_[ax];
    if (start < 0) start += extent;
    if (end < 0) end += extent;
    check<IndexError>(0 <= start && start <= end && end <= extent,
                      "slice: range [{}, {}) out of bounds for axis {} of shape {}", start, end,
                      axis, shape_);
    Tensor out = *this;
    out.shape_[ax] = end - start;
    out.offset_ += start * strides_[ax];
    return out;
  }

  // ---- copies ----

  // *this when already contiguous, otherwise a row-major copy.
  Tensor contiguous() const {
    if (is_contiguous()) return *this;
    Tensor out = empty(shape_);
    copy_strided(out.data());
    return out;
  }

  Tensor clone() const {
    Tensor out = empty(shape_);
    copy_strided(out.data());
    return out;
  }

  template <typename U>
  Tensor<U> cast() const {
    const Tensor src = contiguous();
    Tensor<U> out = Tensor<U>::empty(shape_);
    std::transform(src.data(), src.data() + src.numel(), out.data(),
                   [](T v) { return static_cast<U>(v); });
    return out;
  }

  std::vector<T> to_vector() const {
    const Tensor src = contiguous();
    return std::vector<T>(src.data(), src.data() + src.numel());
  }

  // Writes `src` (same shape, any layout) into this tensor's elements (any layout).
  void copy_(const Tensor& src) {
    check<ShapeError>(src.shape() == shape_, "copy_: shapes differ: {} <- {}", shape_, src.shape());
    const Tensor packed = src.contiguous();
    const T* from = packed.data();
    for_each_offset([&](int64_t off) { data()[off] = *from++; });
  }

  void fill_(T value) {
    for_each_offset([&](int64_t off) { data()[off] = value; });
  }

  // ---- Eigen maps (contiguous tensors only) ----

  // [numel / last extent, last extent]; a 0-d or 1-d tensor is one row.
  MatrixMap matrix() { return MatrixMap(contiguous_data("matrix"), rows(), cols()); }
  ConstMatrixMap matrix() const {
    return ConstMatrixMap(contiguous_data("matrix"), rows(), cols());
  }
  // All elements as one column array.
  ArrayMap array() { return ArrayMap(contiguous_data("array"), numel()); }
  ConstArrayMap array() const { return ConstArrayMap(contiguous_data("array"), numel()); }

  // True when both handles point into the same allocation.
  bool shares_storage_with(const Tensor& other) const { return storage_ == other.storage_; }
  // How many handles share the storage (used to steal buffers that nobody else sees).
  long storage_use_count() const { return storage_.use_count(); }

  // Calls fn(offset) for every element in row-major logical order; offsets are relative to
  // data(). The innermost axis is a plain loop so contiguous rows stay fast.
  template <typename Fn>
  void for_each_offset(Fn&& fn) const {
    if (!defined() || numel() == 0) return;
    if (dim() == 0) {
      fn(int64_t{0});
      return;
    }
    const int64_t last = dim() - 1;
    const int64_t inner = shape_[last];
    const int64_t inner_stride = strides_[last];
    const int64_t outer = numel() / inner;
    std::vector<int64_t> counter(static_cast<size_t>(last), 0);
    int64_t base = 0;
    for (int64_t row = 0; row < outer; ++row) {
      for (int64_t i = 0; i < inner; ++i) fn(base + i * inner_stride);
      for (int64_t ax = last - 1; ax >= 0; --ax) {  // odometer over the outer axes
        if (++counter[ax] < shape_[ax]) {
          base += strides_[ax];
          break;
        }
        base -= (shape_[ax] - 1) * strides_[ax];
        counter[ax] = 0;
      }
    }
  }

 private:
  // Storage and its reference counts both come from the pool (tensor/storage_pool.hpp).
  static std::shared_ptr<T> allocate(int64_t n) {
    const size_t bytes = static_cast<size_t>(std::max<int64_t>(n, 1)) * sizeof(T);
    return std::shared_ptr<T>(
        static_cast<T*>(detail::StoragePool::allocate(bytes)),
        [bytes](T* p) { detail::StoragePool::deallocate(p, bytes); },
        detail::StoragePoolAllocator<T>());
  }

  Shape infer_shape(Shape shape, const char* op) const {
    int64_t known = 1;
    int64_t inferred = -1;
    for (size_t i = 0; i < shape.size(); ++i) {
      if (shape[i] == -1) {
        check<ShapeError>(inferred < 0, "{}: more than one -1 in {}", op, shape);
        inferred = static_cast<int64_t>(i);
      } else {
        check<ShapeError>(shape[i] >= 0, "{}: negative extent in {}", op, shape);
        known *= shape[i];
      }
    }
    if (inferred >= 0) {
      check<ShapeError>(known > 0 && numel() % known == 0,
                        "{}: cannot infer -1 in {} for {} elements", op, shape, numel());
      shape[inferred] = numel() / known;
    }
    check<ShapeError>(numel_of(shape) == numel(), "{}: shape {} does not fit {} elements of {}", op,
                      shape, numel(), shape_);
    return shape;
  }

  int64_t element_offset(std::initializer_list<int64_t> index) const {
    check<IndexError>(static_cast<int64_t>(index.size()) == dim(),
                      "at: {} indices for a {}-d tensor", index.size(), dim());
    int64_t off = 0;
    int64_t ax = 0;
    for (int64_t i : index) {
      check<IndexError>(i >= 0 && i < shape_[ax], "at: index {} out of range for axis {} of {}", i,
                        ax, shape_);
      off += i * strides_[ax++];
    }
    return off;
  }

  void copy_strided(T* out) const {
    if (is_contiguous()) {
      std::copy_n(data(), numel(), out);
      return;
    }
    for_each_offset([&](int64_t off) { *out++ = data()[off]; });
  }

  T* contiguous_data(const char* op) const {
    check<ShapeError>(defined(), "{}: tensor is undefined", op);
    check<ShapeError>(is_contiguous(), "{}: tensor of shape {} is not contiguous", op, shape_);
    return storage_.get() + offset_;
  }
  int64_t cols() const { return dim() == 0 ? 1 : shape_.back(); }
  int64_t rows() const { return cols() == 0 ? 0 : numel() / cols(); }

  std::shared_ptr<T> storage_;
  Shape shape_;
  Shape strides_;
  int64_t offset_ = 0;
};

}  // namespace minimoe
