#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/embedding.hpp>
#include <minimoe/ops/matmul.hpp>
#include <minimoe/ops/shape.hpp>

#include "../test_util.hpp"

using namespace minimoe;
using V = std::vector<Var<double>>;

TEST_CASE_TEMPLATE("embedding forward", T, float, double) {
  // row v of the table is [10 v, 10 v + 1, 10 v + 2]
  Var<T> table(Tensor<T>({4, 3}, {0, 1, 2, 10, 11, 12, 20, 21, 22, 30, 31, 32}));
  Var<T> x = embedding(table, Tensor<int32_t>({2, 2}, {3, 0, 3, 1}));
  CHECK(x.shape() == Shape{2, 2, 3});
  CHECK(x.value().to_vector() == std::vector<T>{30, 31, 32, 0, 1, 2, 30, 31, 32, 10, 11, 12});
  // 1-d ids, a 0-d id and no ids at all.
  CHECK(embedding(table, Tensor<int32_t>({1}, {2})).value().to_vector() ==
        std::vector<T>{20, 21, 22});
  Var<T> one = embedding(table, Tensor<int32_t>::scalar(1));
  CHECK(one.shape() == Shape{3});
  CHECK(one.value().to_vector() == std::vector<T>{10, 11, 12});
  CHECK(embedding(table, Tensor<int32_t>({2, 0})).shape() == Shape{2, 0, 3});
  // A non-contiguous table and non-contiguous ids are read in logical order.
  Var<T> table_t(Tensor<T>({3, 4}, {0, 10, 20, 30, 1, 11, 21, 31, 2, 12, 22, 32}).transpose(0, 1));
  Tensor<int32_t> ids_t = Tensor<int32_t>({2, 2}, {3, 3, 0, 1}).transpose(0, 1);  // {3, 0, 3, 1}
  CHECK(embedding(table_t, ids_t).value().to_vector() == x.value().to_vector());
}

TEST_CASE_TEMPLATE("embedding gradients accumulate over repeated ids", T, float, double) {
  Var<T> table(Tensor<T>({4, 2}), true);
  Var<T> x = embedding(table, Tensor<int32_t>({2, 3}, {3, 0, 3, 3, 2, 0}));
  x.backward(Tensor<T>({2, 3, 2}, {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12}));
  // row 0 from positions 1 and 5, row 1 never read, row 2 from position 4, row 3 from 0, 2, 3
  CHECK(table.grad().to_vector() ==
        std::vector<T>{3 + 11, 4 + 12, 0, 0, 9, 10, 1 + 5 + 7, 2 + 6 + 8});
  // A second backward accumulates into the same leaf gradient.
  embedding(table, Tensor<int32_t>({1}, {1})).backward(Tensor<T>({1, 2}, {100, 200}));
  CHECK(table.grad().to_vector() ==
        std::vector<T>{3 + 11, 4 + 12, 100, 200, 9, 10, 1 + 5 + 7, 2 + 6 + 8});
}

TEST_CASE("embedding gradcheck") {
  Rng rng(81);
  const Tensor<int32_t> ids({2, 3}, {1, 4, 1, 0, 4, 4});
  test::check_gradients([&](const V& in) { return embedding(in[0], ids); },
                        {Tensor<double>::randn({5, 3}, rng)});
  // A non-contiguous table inside the graph (the transpose of a [3, 5] tensor).
  test::check_gradients(
      [&](const V& in) {
        Var<double> table = transpose(in[0], 0, 1);
        CHECK_FALSE(table.value().is_contiguous());
        return embedding(table, ids);
      },
      {Tensor<double>::randn({3, 5}, rng)});
  // Token plus position embeddings, broadcast over the batch: x = wte[ids] + wpe[:T].
  test::check_gradients([&](const V& in) { return embedding(in[0], ids) + slice(in[1], 0, 0, 3); },
                        {Tensor<double>::randn({5, 3}, rng), Tensor<double>::randn({4, 3}, rng)});
  // A tied LM head: the product's dense gradient reaches the table first, then the lookup's rows.
  test::check_gradients(
      [&](const V& in) { return matmul(embedding(in[0], ids), in[0], false, true); },
      {Tensor<double>::randn({5, 3}, rng)});
  // The same table read twice: both paths accumulate into it.
  test::check_gradients(
      [&](const V& in) {
        return embedding(in[0], ids) * embedding(in[0], Tensor<int32_t>({3}, {2, 2, 1}));
      },
      {Tensor<double>::randn({5, 3}, rng)});
}

TEST_CASE("embedding errors") {
  Var<float> table(Tensor<float>({4, 3}));
  CHECK_THROWS_WITH_AS(embedding(Var<float>(Tensor<float>({4})), Tensor<int32_t>({1})),
                       "embedding: weight must be 2-d [vocab, dim], got shape [4]", ShapeError);
  CHECK_THROWS_WITH_AS(embedding(Var<float>(Tensor<float>({2, 4, 3})), Tensor<int32_t>({1})),
                       "embedding: weight must be 2-d [vocab, dim], got shape [2, 4, 3]",
                       ShapeError);
  CHECK_THROWS_WITH_AS(embedding(table, Tensor<int32_t>({3}, {0, 3, 4})),
                       "embedding: id 4 out of range [0, 4) at position 2", IndexError);
  CHECK_THROWS_WITH_AS(embedding(table, Tensor<int32_t>({2, 2}, {0, 1, -1, 2})),
                       "embedding: id -1 out of range [0, 4) at position 2", IndexError);
  CHECK_THROWS_WITH_AS(embedding(Var<float>(Tensor<float>({0, 3})), Tensor<int32_t>({1}, {0})),
                       "embedding: id 0 out of range [0, 0) at position 0", IndexError);
}
