#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/pointwise.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

namespace {

// 0, 1, ..., n-1 in the given shape.
template <typename T>
Var<T> iota(Shape shape, bool requires_grad = false) {
  return Var<T>(Tensor<T>::arange(numel_of(shape)).view(std::move(shape)), requires_grad);
}

// A transposed (non-contiguous) view inside the graph, checked to really be strided.
Var<double> strided(const Var<double>& v, int64_t a0 = 0, int64_t a1 = 1) {
  Var<double> view = transpose(v, a0, a1);
  CHECK_FALSE(view.value().is_contiguous());
  return view;
}

}  // namespace

TEST_CASE_TEMPLATE("reshape forward", T, float, double) {
  Var<T> x = iota<T>({2, 3});
  Var<T> r = reshape(x, {3, 2});
  CHECK(r.shape() == Shape{3, 2});
  CHECK(r.value().to_vector() == std::vector<T>{0, 1, 2, 3, 4, 5});
  CHECK(r.value().shares_storage_with(x.value()));  // a view of a contiguous input
  CHECK(reshape(x, {-1}).shape() == Shape{6});
  CHECK(reshape(x, {1, -1, 2}).shape() == Shape{1, 3, 2});
  // A non-contiguous input is copied in logical order.
  Var<T> xt(x.value().transpose(0, 1));
  Var<T> rt = reshape(xt, {6});
  CHECK(rt.value().to_vector() == std::vector<T>{0, 3, 1, 4, 2, 5});
  CHECK_FALSE(rt.value().shares_storage_with(x.value()));
  CHECK(reshape(Var<T>(Tensor<T>::scalar(7)), {1, 1}).value().to_vector() == std::vector<T>{7});
}

TEST_CASE_TEMPLATE("transpose and contiguous forward", T, float, double) {
  Var<T> x = iota<T>({2, 3, 4});
  Var<T> t = transpose(x, 0, 2);
  CHECK(t.shape() == Shape{4, 3, 2});
  CHECK(t.value().at({3, 1, 0}) == T(7));   // x[0, 1, 3]
  CHECK(t.value().at({1, 2, 1}) == T(21));  // x[1, 2, 1]
  CHECK(t.value().shares_storage_with(x.value()));
  CHECK(transpose(x, -1, -3).shape() == Shape{4, 3, 2});
  CHECK(transpose(x, 1, 1).value().to_vector() == x.value().to_vector());

  Var<T> c = contiguous(transpose(iota<T>({2, 3}), 0, 1));
  CHECK(c.value().is_contiguous());
  CHECK(c.value().to_vector() == std::vector<T>{0, 3, 1, 4, 2, 5});
  // Already contiguous: the same Var, no new node.
  Var<T> leaf = iota<T>({2, 3}, true);
  CHECK(contiguous(leaf).node() == leaf.node());
  Var<T> view = transpose(leaf, 0, 1);
  Var<T> copy = contiguous(view);
  CHECK(std::string(copy.op()) == "contiguous");
  CHECK_FALSE(copy.value().shares_storage_with(leaf.value()));
}

TEST_CASE_TEMPLATE("slice forward", T, float, double) {
  Var<T> x = iota<T>({3, 4});
  Var<T> s = slice(x, 1, 1, 3);
  CHECK(s.shape() == Shape{3, 2});
  CHECK(s.value().to_vector() == std::vector<T>{1, 2, 5, 6, 9, 10});
  CHECK(s.value().shares_storage_with(x.value()));
  CHECK(slice(x, 0, 2, 3).value().to_vector() == std::vector<T>{8, 9, 10, 11});
  CHECK(slice(x, -1, -3, -1).value().to_vector() == std::vector<T>{1, 2, 5, 6, 9, 10});
  CHECK(slice(x, 0, -1, 3).value().to_vector() == std::vector<T>{8, 9, 10, 11});
  CHECK(slice(x, 1, 2, 2).shape() == Shape{3, 0});
  CHECK(slice(x, 1, 0, 4).value().to_vector() == x.value().to_vector());
  // Slicing a transposed view.
  Var<T> xt(x.value().transpose(0, 1));  // [4, 3]
  CHECK(slice(xt, 0, 1, 2).value().to_vector() == std::vector<T>{1, 5, 9});
}

TEST_CASE_TEMPLATE("concat and split forward", T, float, double) {
  Var<T> a = iota<T>({2, 2});
  Var<T> b(Tensor<T>({1, 2}, {10, 11}));
  Var<T> c(Tensor<T>({2, 1}, {20, 21}));
  CHECK(concat<T>({a, b}, 0).shape() == Shape{3, 2});
  CHECK(concat<T>({a, b}, 0).value().to_vector() == std::vector<T>{0, 1, 2, 3, 10, 11});
  CHECK(concat<T>({a, c, a}, -1).shape() == Shape{2, 5});
  CHECK(concat<T>({a, c, a}, 1).value().to_vector() ==
        std::vector<T>{0, 1, 20, 0, 1, 2, 3, 21, 2, 3});
  CHECK(concat<T>({a}, 0).value().to_vector() == std::vector<T>{0, 1, 2, 3});
  // Empty pieces and non-contiguous pieces.
  CHECK(concat<T>({Var<T>(Tensor<T>({0, 2})), b}, 0).value().to_vector() == std::vector<T>{10, 11});
  Var<T> at(a.value().transpose(0, 1));
  CHECK(concat<T>({at, b}, 0).value().to_vector() == std::vector<T>{0, 2, 1, 3, 10, 11});

  Var<T> x = iota<T>({2, 5});
  std::vector<Var<T>> pieces = split(x, {2, 0, 3}, 1);
  REQUIRE(pieces.size() == 3);
  CHECK(pieces[0].shape() == Shape{2, 2});
  CHECK(pieces[0].value().to_vector() == std::vector<T>{0, 1, 5, 6});
  CHECK(pieces[1].shape() == Shape{2, 0});
  CHECK(pieces[2].value().to_vector() == std::vector<T>{2, 3, 4, 7, 8, 9});
  CHECK(pieces[2].value().shares_storage_with(x.value()));
  std::vector<Var<T>> rows = split(x, {1, 1}, -2);
  CHECK(rows[1].value().to_vector() == std::vector<T>{5, 6, 7, 8, 9});
}

TEST_CASE_TEMPLATE("index_select forward", T, float, double) {
  Var<T> x = iota<T>({3, 4});
  Var<T> rows = index_select(x, 0, Tensor<int32_t>({4}, {2, 0, 2, 1}));
  CHECK(rows.shape() == Shape{4, 4});
  CHECK(rows.value().to_vector() ==
        std::vector<T>{8, 9, 10, 11, 0, 1, 2, 3, 8, 9, 10, 11, 4, 5, 6, 7});
  Var<T> cols = index_select(x, -1, Tensor<int32_t>({2}, {3, 0}));
  CHECK(cols.shape() == Shape{3, 2});
  CHECK(cols.value().to_vector() == std::vector<T>{3, 0, 7, 4, 11, 8});
  CHECK(index_select(x, 1, Tensor<int32_t>({0})).shape() == Shape{3, 0});
  // Middle axis of a 3-d, non-contiguous input.
  Var<T> y(iota<T>({2, 3, 2}).value().transpose(0, 2));  // [2, 3, 2]: y[i, j, o] = 6 o + 2 j + i
  CHECK(index_select(y, 1, Tensor<int32_t>({2}, {2, 2})).value().to_vector() ==
        std::vector<T>{4, 10, 4, 10, 5, 11, 5, 11});
}

TEST_CASE("shape ops backward by hand") {
  Var<double> x = iota<double>({2, 3}, true);
  transpose(x, 0, 1).backward(Tensor<double>({3, 2}, {1, 2, 3, 4, 5, 6}));
  CHECK(x.grad().to_vector() == std::vector<double>{1, 3, 5, 2, 4, 6});
  x.zero_grad();
  slice(x, 1, 1, 3).backward(Tensor<double>({2, 2}, {1, 2, 3, 4}));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 1, 2, 0, 3, 4});
  x.zero_grad();
  slice(x, -1, -1, 3).backward(Tensor<double>({2, 1}, {7, 8}));
  CHECK(x.grad().to_vector() == std::vector<double>{0, 0, 7, 0, 0, 8});
  x.zero_grad();
  // Repeated indices accumulate.
  index_select(x, 1, Tensor<int32_t>({3}, {2, 2, 0}))
      .backward(Tensor<double>({2, 3}, {1, 2, 3, 4, 5, 6}));
  CHECK(x.grad().to_vector() == std::vector<double>{3, 0, 3, 6, 0, 9});
  x.zero_grad();
  Var<double> y(Tensor<double>({1, 3}, {0, 0, 0}), true);
  Var<double> frozen(Tensor<double>({1, 3}), false);
  Var<double> cat = concat<double>({y, frozen, y}, 0);
  cat.backward(Tensor<double>({3, 3}, {1, 2, 3, 4, 5, 6, 7, 8, 9}));
  CHECK(y.grad().to_vector() == std::vector<double>{8, 10, 12});
  CHECK_FALSE(frozen.has_grad());
}

TEST_CASE("shape ops gradcheck") {
  Rng rng(71);
  const Tensor<double> x = Tensor<double>::randn({2, 3, 4}, rng);
  test::check_gradients([](const V& in) { return reshape(in[0], {4, -1}); }, {x});
  test::check_gradients([](const V& in) { return reshape(strided(in[0]), {-1}); }, {x});
  test::check_gradients([](const V& in) { return transpose(in[0], 0, 2) * 1.5; }, {x});
  test::check_gradients([](const V& in) { return transpose(in[0], -1, 1); }, {x});
  test::check_gradients([](const V& in) { return contiguous(strided(in[0], 1, 2)); }, {x});
  test::check_gradients([](const V& in) { return contiguous(in[0]); }, {x});
  test::check_gradients([](const V& in) { return slice(in[0], 1, 1, 3); }, {x});
  test::check_gradients([](const V& in) { return slice(in[0], -1, -3, -1); }, {x});
  test::check_gradients([](const V& in) { return slice(strided(in[0], 0, 2), 1, 2, 3); }, {x});
  // Overlapping slices of one input accumulate.
  test::check_gradients([](const V& in) { return slice(in[0], 2, 0, 3) * slice(in[0], 2, 1, 4); },
                        {x});
  // concat of three inputs, one of them a non-contiguous view, and broadcasting afterwards.
  test::check_gradients(
      [](const V& in) {
        return concat<double>({in[0], strided(in[1], 1, 2), in[2]}, 2) * in[3];
      },
      {x, Tensor<double>::randn({2, 2, 3}, rng), Tensor<double>::randn({2, 3, 1}, rng),
       Tensor<double>::randn({7}, rng)});
  test::check_gradients(
      [](const V& in) {
        return concat<double>({in[0], in[1], in[0]}, 0);
      },
      {x, Tensor<double>::randn({1, 3, 4}, rng)});
  test::check_gradients(
      [](const V& in) {
        return concat<double>({in[0], in[1]}, 1);
      },
      {x, Tensor<double>::randn({2, 2, 4}, rng)}, only_wrt({false, true}));
  // split into pieces that are recombined differently.
  test::check_gradients(
      [](const V& in) {
        std::vector<Var<double>> p = split(in[0], {1, 2, 1}, -1);
        return concat<double>({p[2] * p[0], tanh(p[1])}, -1);
      },
      {x});
  test::check_gradients(
      [](const V& in) {
        std::vector<Var<double>> p = split(strided(in[0], 0, 1), {2, 0, 1}, 0);
        return p[0] * p[2];
      },
      {x});
  // index_select with repeated indices along every axis, also of a strided view.
  const Tensor<int32_t> idx({4}, {1, 0, 1, 1});
  for (int64_t axis : {0, 1, 2, -1}) {
    CAPTURE(axis);
    test::check_gradients([&](const V& in) { return index_select(in[0], axis, idx); }, {x});
  }
  test::check_gradients(
      [&](const V& in) {
        return index_select(strided(in[0], 0, 2), 1, Tensor<int32_t>({2}, {2, 0}));
      },
      {x});
}

TEST_CASE("shape op errors") {
  Var<float> x(Tensor<float>({2, 3}));
  CHECK_THROWS_WITH_AS(reshape(x, {4, 2}), "view: shape [4, 2] does not fit 6 elements of [2, 3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(reshape(x, {}), "view: shape [] does not fit 6 elements of [2, 3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(reshape(x, {-1, -1}), "view: more than one -1 in [-1, -1]", ShapeError);
  CHECK_THROWS_WITH_AS(reshape(x, {4, -1}), "view: cannot infer -1 in [4, -1] for 6 elements",
                       ShapeError);
  CHECK_THROWS_WITH_AS(transpose(x, 0, 2), "transpose: axis 2 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(transpose(x, -3, 0), "transpose: axis -3 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(slice(x, 2, 0, 1), "slice: axis 2 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(slice(x, 1, 1, 4),
                       "slice: range [1, 4) out of bounds for axis 1 of shape [2, 3]", IndexError);
  CHECK_THROWS_WITH_AS(slice(x, 1, 2, 1),
                       "slice: range [2, 1) out of bounds for axis 1 of shape [2, 3]", IndexError);
  CHECK_THROWS_WITH_AS(slice(x, 0, -3, 1),
                       "slice: range [-1, 1) out of bounds for axis 0 of shape [2, 3]", IndexError);

  CHECK_THROWS_WITH_AS(concat<float>({}, 0), "concat: no inputs", ValueError);
  CHECK_THROWS_WITH_AS(concat<float>({x, x}, 2), "concat: axis 2 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(concat<float>({x, Var<float>(Tensor<float>({2, 4}))}, 0),
                       "concat: input 1 has shape [2, 4], incompatible with [2, 3] along axis 0",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat<float>({x, x, Var<float>(Tensor<float>({3, 2}))}, -1),
                       "concat: input 2 has shape [3, 2], incompatible with [2, 3] along axis -1",
                       ShapeError);
  // Inputs of a different rank are reported as such, whichever axis is joined.
  CHECK_THROWS_WITH_AS(concat<float>({x, Var<float>(Tensor<float>({3}))}, 1),
                       "concat: input 1 has shape [3], incompatible with [2, 3] along axis 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(concat<float>({x, Var<float>(Tensor<float>({2, 3, 1}))}, 0),
                       "concat: input 1 has shape [2, 3, 1], incompatible with [2, 3] along axis 0",
                       ShapeError);

  CHECK_THROWS_WITH_AS(split(x, {1, 1}, 2), "split: axis 2 out of range for a 2-d tensor",
                       IndexError);
  CHECK_THROWS_WITH_AS(split(x, {}, 1), "split: sizes [] add up to 0, not the extent 3 of axis 1",
                       ShapeError);
  CHECK_THROWS_WITH_AS(split(x, {4, -1}, 1), "split: negative size -1 in [4, -1]", ValueError);
  CHECK_THROWS_WITH_AS(split(x, {1, 1}, -1),
                       "split: sizes [1, 1] add up to 2, not the extent 3 of axis -1", ShapeError);

  CHECK_THROWS_WITH_AS(index_select(x, 2, Tensor<int32_t>({1})),
                       "index_select: axis 2 out of range for a 2-d tensor", IndexError);
  CHECK_THROWS_WITH_AS(index_select(x, 0, Tensor<int32_t>({2, 1})),
                       "index_select: index must be 1-d, got shape [2, 1]", ShapeError);
  CHECK_THROWS_WITH_AS(index_select(x, 1, Tensor<int32_t>({3}, {0, 3, 1})),
                       "index_select: index 3 out of range [0, 3) at position 1", IndexError);
  CHECK_THROWS_WITH_AS(index_select(x, 0, Tensor<int32_t>({2}, {1, -1})),
                       "index_select: index -1 out of range [0, 2) at position 1", IndexError);
}
