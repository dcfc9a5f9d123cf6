#include <minimoe/tensor/broadcast.hpp>
#include <minimoe/tensor/tensor.hpp>

#include "../test_util.hpp"

using namespace minimoe;

TEST_CASE_TEMPLATE("Tensor construction and element access", T, float, double) {
  Tensor<T> x({2, 3}, {1, 2, 3, 4, 5, 6});
  CHECK(x.shape() == Shape{2, 3});
  CHECK(x.strides() == Shape{3, 1});
  CHECK(x.numel() == 6);
  CHECK(x.is_contiguous());
  CHECK(x.at({1, 2}) == T(6));
  CHECK(Tensor<T>::scalar(T(3)).item() == T(3));
  CHECK(Tensor<T>::zeros({0, 4}).numel() == 0);
  CHECK_FALSE(Tensor<T>().defined());
  Tensor<T> x4 = Tensor<T>::arange(24).view({2, 3, 2, 2});
  CHECK(x4.at({1, 2, 1, 0}) == T(22));
}

TEST_CASE("Tensor views share storage, clone does not") {
  Tensor<float> x({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<float> t = x.transpose(0, 1);
  CHECK(t.shape() == Shape{3, 2});
  CHECK_FALSE(t.is_contiguous());
  CHECK(t.at({2, 1}) == 6.0f);
  CHECK(t.contiguous().to_vector() == std::vector<float>{1, 4, 2, 5, 3, 6});
  t.at({0, 1}) = 40.0f;
  CHECK(x.at({1, 0}) == 40.0f);
  Tensor<float> c = x.clone();
  c.at({0, 0}) = -1.0f;
  CHECK(x.at({0, 0}) == 1.0f);
  CHECK_FALSE(c.shares_storage_with(x));

  Tensor<float> s = x.slice(1, 1, 3);  // columns 1..2
  CHECK(s.shape() == Shape{2, 2});
  CHECK(s.to_vector() == std::vector<float>{2, 3, 5, 6});
  CHECK(x.slice(0, -1, 2).to_vector() == std::vector<float>{40, 5, 6});

  Tensor<float> r = x.reshape({3, -1});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.shares_storage_with(x));
  CHECK_FALSE(t.reshape({6}).shares_storage_with(x));  // a transposed view must be copied
}

TEST_CASE("Tensor copy_, fill_ and Eigen maps on views") {
  Tensor<double> x = Tensor<double>::arange(6).view({2, 3});
  Tensor<double> t = x.transpose(0, 1);
  t.fill_(7.0);
  CHECK(x.to_vector() == std::vector<double>(6, 7.0));
  t.copy_(Tensor<double>({3, 2}, {0, 3, 1, 4, 2, 5}));
  CHECK(x.to_vector() == std::vector<double>{0, 1, 2, 3, 4, 5});
  CHECK(x.matrix()(1, 2) == 5.0);
  CHECK(x.array().sum() == 15.0);
  CHECK(x.cast<float>().to_vector() == std::vector<float>{0, 1, 2, 3, 4, 5});
}

TEST_CASE("Tensor errors name the operation and the shapes") {
  Tensor<float> x({2, 3});
  CHECK_THROWS_WITH_AS(Tensor<float>({2, 2}, {1, 2, 3}),
                       "Tensor: 3 values given for shape [2, 2] (4 elements)", ShapeError);
  CHECK_THROWS_WITH_AS(x.view({4, 2}), "view: shape [4, 2] does not fit 6 elements of [2, 3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(x.view({-1, -1}), "view: more than one -1 in [-1, -1]", ShapeError);
  CHECK_THROWS_WITH_AS(x.transpose(0, 1).view({6}),
                       "view: tensor of shape [3, 2] is not contiguous", ShapeError);
  CHECK_THROWS_WITH_AS(x.transpose(0, 2), "transpose: axis 2 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(x.slice(1, 2, 5),
                       "slice: range [2, 5) out of bounds for axis 1 of shape [2, 3]", IndexError);
  CHECK_THROWS_WITH_AS(x.at({2, 0}), "at: index 2 out of range for axis 0 of [2, 3]", IndexError);
  CHECK_THROWS_WITH_AS(x.item(), "item: tensor of shape [2, 3] has 6 elements, not 1", ShapeError);
  CHECK_THROWS_WITH_AS(Tensor<float>({-1, 3}), "shape [-1, 3] has a negative extent", ShapeError);
  CHECK_THROWS_AS(Tensor<float>({int64_t{1} << 30, int64_t{1} << 30}), ShapeError);
  CHECK_THROWS_WITH_AS(x.transpose(0, 1).matrix(),
                       "matrix: tensor of shape [3, 2] is not contiguous", ShapeError);
}

TEST_CASE("broadcasting and sum_to") {
  CHECK(broadcast_shapes({4, 1, 3}, {5, 1}, "t") == Shape{4, 5, 3});
  CHECK_THROWS_WITH_AS(broadcast_shapes({2, 3}, {4}, "add"),
                       "add: shapes [2, 3] and [4] do not broadcast", ShapeError);
  Tensor<double> a({2, 3}, {1, 2, 3, 4, 5, 6});
  Tensor<double> row({3}, {10, 20, 30});
  Tensor<double> col({2, 1}, {100, 200});
  auto plus = [](double x, double y) { return x + y; };
  CHECK(broadcast_binary(a, row, plus, "t").to_vector() ==
        std::vector<double>{11, 22, 33, 14, 25, 36});
  CHECK(broadcast_binary(a, col, plus, "t").to_vector() ==
        std::vector<double>{101, 102, 103, 204, 205, 206});
  CHECK(broadcast_binary(a.transpose(0, 1), col.view({2}), plus, "t").to_vector() ==
        std::vector<double>{101, 204, 102, 205, 103, 206});
  CHECK(sum_to(a, {3}).to_vector() == std::vector<double>{5, 7, 9});
  CHECK(sum_to(a, {2, 1}).to_vector() == std::vector<double>{6, 15});
  CHECK(sum_to(a, {}).item() == 21.0);
}

TEST_CASE("broadcasting fast paths agree with the strided walk, on many threads too") {
  // 3 x 50000 elements: above the size at which the loops go parallel.
  Rng rng(12);
  const Tensor<double> a = Tensor<double>::randn({3, 250, 200}, rng);
  const Tensor<double> row = Tensor<double>::randn({200}, rng);
  const Tensor<double> plane = Tensor<double>::randn({1, 250, 200}, rng);
  auto minus = [](double x, double y) { return x - y; };
  // The strided walk's result, element by element.
  auto walk = [&](const Tensor<double>& x, const Tensor<double>& y) {
    const Shape shape = broadcast_shapes(x.shape(), y.shape(), "t");
    std::vector<double> out(static_cast<size_t>(numel_of(shape)));
    for_each_broadcast(shape, broadcast_strides(x.shape(), shape),
                       broadcast_strides(y.shape(), shape), [&](int64_t i, int64_t ix, int64_t iy) {
                         out[static_cast<size_t>(i)] = x.data()[ix] - y.data()[iy];
                       });
    return out;
  };
  CHECK(broadcast_binary(a, row, minus, "t").to_vector() == walk(a, row));
  CHECK(broadcast_binary(row, a, minus, "t").to_vector() == walk(row, a));
  CHECK(broadcast_binary(a, plane, minus, "t").to_vector() == walk(a, plane));
  CHECK(broadcast_binary(Tensor<double>::scalar(2.0), a, minus, "t").to_vector() ==
        walk(Tensor<double>::scalar(2.0), a));
  CHECK(broadcast_binary(a, a, minus, "t").to_vector() == std::vector<double>(a.numel(), 0.0));
  // Sums down to trailing axes, in row order (exactly the serial sums).
  for (const Shape& to : {Shape{200}, Shape{1, 250, 200}, Shape{1}, Shape{}}) {
    const Tensor<double> got = sum_to(a, to);
    std::vector<double> want(static_cast<size_t>(numel_of(to)), 0.0);
    for (int64_t i = 0; i < a.numel(); ++i)
      want[static_cast<size_t>(i % numel_of(to))] += a.data()[i];
    CHECK(got.shape() == to);
    CHECK(got.to_vector() == want);
  }
}

TEST_CASE("Rng is reproducible and restorable") {
  Rng a(7), b(7);
  for (int i = 0; i < 10; ++i) CHECK(a.next_u64() == b.next_u64());
  a.normal();
  const Rng::Snapshot s = a.snapshot();
  const double next = a.normal();
  const double after = a.uniform();
  a.restore(s);
  CHECK(a.normal() == next);
  CHECK(a.uniform() == after);
  double sum = 0, sq = 0;
  Rng r(1);
  for (int i = 0; i < 20000; ++i) {
    const double z = r.normal();
    sum += z;
    sq += z * z;
  }
  CHECK(std::abs(sum / 20000) < 0.03);
  CHECK(std::abs(sq / 20000 - 1.0) < 0.05);
  for (int i = 0; i < 1000; ++i) CHECK(r.below(7) < 7);
}
