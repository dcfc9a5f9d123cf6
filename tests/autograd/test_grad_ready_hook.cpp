#include <string>
#include <vector>

#include <minimoe/ops/elementwise.hpp>
#include <minimoe/ops/reduce.hpp>

#include "../test_util.hpp"

using namespace minimoe;

TEST_CASE("a grad-ready hook sees the leaf's final gradient, once per backward") {
  Var<double> w(Tensor<double>({2}, {1.0, 2.0}), true);
  Var<double> x(Tensor<double>({2}, {3.0, 4.0}), true);
  std::vector<std::vector<double>> seen;
  w.set_grad_ready_hook([&] { seen.push_back(w.grad().to_vector()); });
  // w reaches the loss through three ops at different depths, once twice in the same op.
  Var<double> loss = sum(w * w * x + w);  // d/dw = 2 w x + 1
  loss.backward();
  REQUIRE(seen.size() == 1);
  CHECK(seen[0] == std::vector<double>{7.0, 17.0});
  CHECK(w.grad().to_vector() == seen[0]);

  sum(w * x).backward();  // accumulates: the hook sees the sum so far
  REQUIRE(seen.size() == 2);
  CHECK(seen[1] == std::vector<double>{10.0, 21.0});
}

TEST_CASE("grad-ready hooks fire in backward order, before the walk reaches earlier layers") {
  Var<double> first(Tensor<double>::scalar(2.0), true);
  Var<double> second(Tensor<double>::scalar(3.0), true);
  Var<double> x(Tensor<double>::scalar(5.0), true);
  std::vector<std::string> events;
  first.set_grad_ready_hook([&] { events.push_back("first"); });
  second.set_grad_ready_hook([&] { events.push_back("second"); });
  x.set_grad_ready_hook([&] { events.push_back("x"); });
  // Two "layers": h = x * first, y = h * second. second's gradient is final once the last op
  // has run; first's and x's only after the op that made h.
  Var<double> y = (x * first) * second;
  y.backward();
  REQUIRE(events.size() == 3);
  CHECK(events[0] == "second");
  CHECK(first.grad().item() == 15.0);
  CHECK(x.grad().item() == 6.0);
}

TEST_CASE("a grad-ready hook fires only in passes that reach its leaf, and can be removed") {
  Var<double> w(Tensor<double>::scalar(2.0), true);
  Var<double> other(Tensor<double>::scalar(3.0), true);
  int calls = 0;
  w.set_grad_ready_hook([&] { ++calls; });
  (other * other).backward();
  CHECK(calls == 0);
  (w * other).backward();
  CHECK(calls == 1);
  w.set_grad_ready_hook({});
  (w * other).backward();
  CHECK(calls == 1);
}

TEST_CASE("a grad-ready hook fires for a leaf that is itself the output") {
  Var<double> w(Tensor<double>::scalar(2.0), true);
  int calls = 0;
  w.set_grad_ready_hook([&] { ++calls; });
  w.backward();
  CHECK(calls == 1);
  CHECK(w.grad().item() == 1.0);
}

TEST_CASE("only leaves take a grad-ready hook") {
  Var<double> w(Tensor<double>::scalar(2.0), true);
  Var<double> y = w * w;
  CHECK_THROWS_WITH_AS(y.set_grad_ready_hook([] {}),
                       "set_grad_ready_hook: only leaves have one, not the output of mul",
                       ValueError);
}
