#include <vector>

#include <doctest/doctest.h>

#include <minimoe/distributed/gradient_reducer.hpp>
#include <minimoe/distributed/mpi.hpp>
#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/matmul.hpp>
#include <minimoe/ops/pointwise.hpp>
#include <minimoe/ops/reduce.hpp>
#include <minimoe/tensor/random.hpp>

using namespace minimoe;

namespace {

// A two-layer net whose first layer's bias is used only by rank 0 and whose `unused` parameter
// gets no gradient anywhere.
struct Net {
  Var<double> w1, b1, w2, unused;
  explicit Net(uint64_t seed) {
    Rng rng(seed);
    w1 = Var<double>(Tensor<double>::randn({3, 4}, rng), true);
    b1 = Var<double>(Tensor<double>::randn({4}, rng), true);
    w2 = Var<double>(Tensor<double>::randn({4, 2}, rng), true);
    unused = Var<double>(Tensor<double>::randn({5}, rng), true);
  }
  std::vector<Var<double>> params() const { return {w1, b1, w2, unused}; }
  Var<double> loss(int rank) const {
    Rng rng(100 + uint64_t(rank));
    const Var<double> x(Tensor<double>::randn({6, 3}, rng));
    Var<double> h = matmul(x, w1);
    if (rank == 0) h = h + b1;
    return mean(square(matmul(tanh(h), w2)));
  }
};

}  // namespace

TEST_CASE("the gradient reducer averages every rank's gradients, bucket by bucket") {
  MpiProcessGroup group(20);
  const int R = group.size();
  // The expected average: this rank computes every rank's gradients itself.
  Net reference(7);
  std::vector<std::vector<double>> expected(4);
  for (int r = 0; r < R; ++r) {
    for (Var<double>& p : reference.params()) p.zero_grad();
    reference.loss(r).backward();
    const std::vector<Var<double>> params = reference.params();
    for (size_t i = 0; i < params.size(); ++i) {
      if (!params[i].has_grad()) continue;
      const std::vector<double> g = params[i].grad().to_vector();
      expected[i].resize(g.size(), 0.0);
      for (size_t k = 0; k < g.size(); ++k) expected[i][k] += g[k] / R;
    }
  }

  for (const int64_t bucket_bytes : {int64_t(1) << 20, int64_t(40)}) {
    CAPTURE(bucket_bytes);
    Net net(7);
    GradientReducer<double> reducer(net.params(), group, bucket_bytes);
    CHECK(reducer.num_buckets() == (bucket_bytes > 1000 ? 1 : 4));
    CHECK(reducer.bytes_per_step() == (12 + 4 + 8 + 5 + 4) * 8);
    for (int round = 0; round < 2; ++round) {  // the reducer can be used step after step
      for (Var<double>& p : net.params()) p.zero_grad();
      reducer.arm();
      net.loss(group.rank()).backward();
      reducer.finish();
      const std::vector<Var<double>> params = net.params();
      for (size_t i = 0; i < 3; ++i) {
        REQUIRE(params[i].has_grad());  // b1 too, on the ranks that did not use it
        const std::vector<double> g = params[i].grad().to_vector();
        for (size_t k = 0; k < g.size(); ++k) CHECK(g[k] == doctest::Approx(expected[i][k]));
      }
      CHECK_FALSE(net.unused.has_grad());
    }
  }
}

TEST_CASE("an unarmed backward only accumulates") {
  MpiProcessGroup group(20);
  Net net(3);
  GradientReducer<double> reducer(net.params(), group);
  net.loss(group.rank()).backward();
  const std::vector<double> local = net.w2.grad().to_vector();
  net.loss(group.rank()).backward();
  const std::vector<double> twice = net.w2.grad().to_vector();
  for (size_t k = 0; k < local.size(); ++k) CHECK(twice[k] == doctest::Approx(2 * local[k]));
  CHECK_THROWS_WITH_AS(reducer.finish(), "GradientReducer: finish() without arm()", ValueError);
}
