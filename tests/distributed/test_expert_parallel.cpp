#include <algorithm>
#include <cmath>
#include <filesystem>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <doctest/doctest.h>

#include <minimoe/distributed/expert_parallel.hpp>
#include <minimoe/distributed/mpi.hpp>
#include <minimoe/train/trainer.hpp>

#include "../train/train_fixtures.hpp"
#include "replica_checks.hpp"

using namespace minimoe;
using namespace minimoe::test;

namespace {

// What rank `from` sends as value c of its row i to rank `to`.
double row_value(int from, int to, int64_t i, int64_t c) {
  return 1000.0 * from + 100.0 * to + 10.0 * double(i) + double(c);
}

// all_to_all_v where rank r sends rows(r, s) rows of 3 values to rank s; checks every value.
void check_rows_exchange(MpiProcessGroup& group, int64_t (*rows)(int from, int to)) {
  const int R = group.size(), r = group.rank();
  constexpr int64_t width = 3;
  std::vector<int64_t> send_rows(R), recv_rows(R);
  std::vector<float> send;
  for (int s = 0; s < R; ++s) {
    send_rows[s] = rows(r, s);
    recv_rows[s] = rows(s, r);
    for (int64_t i = 0; i < send_rows[s]; ++i)
      for (int64_t c = 0; c < width; ++c) send.push_back(float(row_value(r, s, i, c)));
  }
  int64_t total = 0;
  for (int64_t n : recv_rows) total += n;
  std::vector<float> recv(static_cast<size_t>(std::max<int64_t>(total * width, 1)), -1.0f);
  group.all_to_all_v(send.data(), send_rows.data(), recv.data(), recv_rows.data(), width,
                     "the test all-to-all");
  size_t k = 0;
  for (int s = 0; s < R; ++s)
    for (int64_t i = 0; i < recv_rows[s]; ++i)
      for (int64_t c = 0; c < width; ++c) CHECK(recv[k++] == float(row_value(s, r, i, c)));
}

// A copy of an expert with its own parameters (the same values).
template <typename T>
Expert<T> clone_expert(const Expert<T>& e) {
  Expert<T> out = e;
  out.visit(ModuleVisitor<T>().on_parameter([](const std::string&, Var<T>& p) {
    p = Var<T>(p.value().clone(), /*requires_grad=*/true);
  }));
  return out;
}

template <typename T>
void check_close(const Tensor<T>& got, const Tensor<T>& want, double tolerance) {
  REQUIRE(got.shape() == want.shape());
  const std::vector<T> a = got.to_vector(), b = want.to_vector();
  for (size_t i = 0; i < a.size(); ++i)
    CHECK(double(a[i]) == doctest::Approx(double(b[i])).epsilon(tolerance).scale(1.0));
}

}  // namespace

TEST_CASE("MPI process group: all-to-all of counts and rows, and split groups") {
  MpiProcessGroup group(20);
  const int R = group.size(), r = group.rank();

  std::vector<int64_t> send, recv(2 * R);
  for (int s = 0; s < R; ++s) send.insert(send.end(), {100 * r + s, -(int64_t(1) << 40) - r});
  group.all_to_all(send.data(), recv.data(), 2, "the test all-to-all");
  for (int s = 0; s < R; ++s) {
    CHECK(recv[2 * s] == 100 * s + r);
    CHECK(recv[2 * s + 1] == -(int64_t(1) << 40) - s);
  }

  SUBCASE("uneven rows, some ranks sending none") {
    check_rows_exchange(group, [](int from, int to) { return int64_t((from + 2 * to) % 3); });
  }
  SUBCASE("one rank receives every row") {
    check_rows_exchange(group, [](int, int to) { return to == 0 ? int64_t(4) : int64_t(0); });
  }
  SUBCASE("nothing to send at all") {
    check_rows_exchange(group, [](int, int) { return int64_t(0); });
  }
  SUBCASE("doubles") {
    std::vector<int64_t> rows(R, 1);
    std::vector<double> out(R), in(R);
    for (int s = 0; s < R; ++s) out[s] = row_value(r, s, 0, 0) + 0.25;
    group.all_to_all_v(out.data(), rows.data(), in.data(), rows.data(), 1, "the test all-to-all");
    for (int s = 0; s < R; ++s) CHECK(in[s] == row_value(s, r, 0, 0) + 0.25);
  }
  SUBCASE("split: the ranks of one color, ranked by key") {
    const std::unique_ptr<ProcessGroup> part = group.split(r % 2, -r);
    const int members = (R + 1 - r % 2) / 2;
    CHECK(part->size() == members);
    CHECK(part->rank() == members - 1 - r / 2);  // reversed by the key
    double sum = r;
    part->all_reduce_sum(&sum, 1, "the test sum");
    double expected = 0;
    for (int s = r % 2; s < R; s += 2) expected += s;
    CHECK(sum == expected);
  }
}

TEST_CASE_TEMPLATE("expert-parallel dispatch: the values and gradients of one process", T, float,
                   double) {
  MpiProcessGroup group(20);
  const int R = group.size(), r = group.rank();
  const double tolerance = std::is_same_v<T, float> ? 1e-5 : 1e-12;
  const int64_t E = 2 * R, K = 2, C = 8, n = 5, N = n * R;  // n tokens per rank
  ExpertConfig config;
  config.d_model = C;
  config.hidden = 12;
  Rng rng(7);  // every rank draws the same experts and tokens
  std::vector<Expert<T>> all;
  for (int64_t e = 0; e < E; ++e) all.emplace_back(config, rng);
  const Tensor<T> x = Tensor<T>::randn({N, C}, rng);
  const Tensor<T> w = Tensor<T>::uniform({N, K}, rng, 0.1, 1.0);
  const Tensor<T> dy = Tensor<T>::randn({N, C}, rng);
  std::vector<int32_t> choice(static_cast<size_t>(N * K));
  int64_t capacity = 0;
  SUBCASE("spread over the ranks, some experts without rows") {
    for (int64_t p = 0; p < N * K; ++p) choice[p] = int32_t((p * 3 + p / 7) % (E - 1));
  }
  SUBCASE("every row to rank 0's experts, no rows for the others") {
    for (int64_t p = 0; p < N * K; ++p) choice[p] = int32_t(p % 2);
  }
  SUBCASE("with a capacity, some pairs dropped") {
    for (int64_t p = 0; p < N * K; ++p) choice[p] = int32_t(p % 3);
    capacity = 3;
  }

  // One process: all tokens, all experts.
  const Var<T> x_all(x.clone(), true), w_all(w.clone(), true);
  const RoutingPlan plan_all = make_routing_plan(choice.data(), N, K, E, capacity);
  Var<T> y_all = dispatch_grouped(x_all, w_all, plan_all, all);
  y_all.backward(dy);

  // This rank: its tokens, its experts.
  const Var<T> x_mine(x.slice(0, r * n, (r + 1) * n).contiguous(), true);
  const Var<T> w_mine(w.slice(0, r * n, (r + 1) * n).contiguous(), true);
  const RoutingPlan plan_mine = make_routing_plan(choice.data() + r * n * K, n, K, E, capacity);
  std::vector<Expert<T>> mine;
  for (int64_t e = 2 * r; e < 2 * r + 2; ++e) mine.push_back(clone_expert(all[e]));
  int64_t bytes = 0;
  Var<T> y = dispatch_expert_parallel(x_mine, w_mine, plan_mine, mine, group, {}, &bytes);
  y.backward(dy.slice(0, r * n, (r + 1) * n).contiguous());

  if (capacity == 0) {
    check_close(y.value(), y_all.value().slice(0, r * n, (r + 1) * n).contiguous(), tolerance);
    check_close(x_mine.grad(), x_all.grad().slice(0, r * n, (r + 1) * n).contiguous(), tolerance);
    check_close(w_mine.grad(), w_all.grad().slice(0, r * n, (r + 1) * n).contiguous(), tolerance);
    for (int64_t j = 0; j < 2; ++j) {
      const Expert<T>& want = all[2 * r + j];
      const Expert<T>& got = mine[j];
      CHECK(got.up.weight.has_grad() == want.up.weight.has_grad());
      if (!want.up.weight.has_grad()) continue;
      check_close(got.up.weight.grad(), want.up.weight.grad(), tolerance);
      check_close(got.up.bias.grad(), want.up.bias.grad(), tolerance);
      check_close(got.down.weight.grad(), want.down.weight.grad(), tolerance);
      check_close(got.down.bias.grad(), want.down.bias.grad(), tolerance);
    }
  } else {
    // Each rank applies the capacity to its own tokens (as data parallelism does): compare
    // with dispatch_grouped on this rank's tokens and plan, with all experts here.
    std::vector<Expert<T>> here;
    for (const Expert<T>& e : all) here.push_back(clone_expert(e));
    const Var<T> x_here(x_mine.value().clone(), true);
    const Var<T> y_here = dispatch_grouped(x_here, Var<T>(w_mine.value()), plan_mine, here);
    check_close(y.value(), y_here.value(), tolerance);
    CHECK(plan_mine.dropped > 0);
  }
  CHECK(bytes > 0);
}

namespace {

// Checks b against a; returns the relative difference of the losses.
double check_same_step(const StepReport& a, const StepReport& b) {
  CHECK(b.loss == doctest::Approx(a.loss).epsilon(kLossTolerance));
  CHECK(b.aux_loss == doctest::Approx(a.aux_loss).epsilon(kLossTolerance));
  CHECK(b.z_loss == doctest::Approx(a.z_loss).epsilon(kLossTolerance));
  CHECK(b.grad_norm == doctest::Approx(a.grad_norm).epsilon(kLossTolerance));
  CHECK(b.tokens == a.tokens);
  REQUIRE(b.load.size() == a.load.size());
  for (size_t l = 0; l < a.load.size(); ++l)
    for (size_t e = 0; e < a.load[l].fraction.size(); ++e)
      CHECK(b.load[l].fraction[e] == doctest::Approx(a.load[l].fraction[e]));
  return std::abs(b.loss - a.loss) / std::abs(a.loss);
}

std::set<std::string> tensor_names(const std::string& path) {
  std::set<std::string> names;
  const SafetensorsFile file = SafetensorsFile::open(path);
  for (const auto& [name, entry] : file.entries()) names.insert(name);
  return names;
}

}  // namespace

TEST_CASE("expert-parallel training takes the steps of one process; checkpoints move both ways") {
  MpiProcessGroup group(60);
  const int R = group.size();
  TempDir dir;
  const Dataset data(small_domains(dir));
  std::string path = dir.file("ckpt");
  group.broadcast(path, 0, "the checkpoints' directory");
  // G = 2 (2 ranks: 1 x 2; 4 ranks: 2 data x 2 expert), and G = R.
  for (const int64_t G : std::set<int64_t>{2, R}) {
    CAPTURE(G);
    GPTConfig c = small_config();
    c.aux_loss_weight = 0.05;
    c.z_loss_weight = 1e-3;
    c.aux_free_balancing = G == R;
    TrainOptions o = small_options();
    o.batch_size = 4;
    o.grad_accum = G == R ? 2 : 1;
    o.steps = 25;
    GPT<float> single(c, 5), sharded(c, 5 + uint64_t(group.rank()));
    Trainer<float> one(single, data, o);
    Trainer<float> many(sharded, data, o, &group, G);
    REQUIRE(many.expert_parallel() != nullptr);
    CHECK(many.expert_parallel()->replicas() == R / G);
    const int64_t local = c.n_experts / G;
    CHECK(int64_t(sharded.blocks[0].moe.experts.size()) == local);
    CHECK(many.gradient_bytes_per_step() > 0);
    CHECK(many.expert_gradient_bytes_per_step() > 0);
    double worst = 0;
    for (int64_t s = 0; s < 20; ++s) {
      CAPTURE(s);
      worst = std::max(worst, check_same_step(one.step(), many.step()));
    }
    if (group.rank() == 0)
      MESSAGE(
          fmt::format("{} ranks, {} data x {} expert: the largest relative difference of the "
                      "loss from one process over 20 steps is {:.2g}",
                      R, R / G, G, worst));
    CHECK(many.expert_parallel()->bytes_sent() > 0);
    const EvalReport ea = one.evaluate(), eb = many.evaluate();
    CHECK(eb.loss == doctest::Approx(ea.loss).epsilon(kLossTolerance));

    // Rank 0 writes both checkpoints: the same tensors and metadata, the same weights.
    const std::string single_path = path + "-single-" + std::to_string(G);
    const std::string sharded_path = path + "-sharded-" + std::to_string(G);
    if (group.rank() == 0) one.save(single_path, "bytes");
    many.save(sharded_path, "bytes");
    CHECK(int64_t(sharded.blocks[0].moe.experts.size()) == local);  // gathered, then dropped
    group.any(false, "waiting for the checkpoints");
    CHECK(tensor_names(sharded_path) == tensor_names(single_path));
    Checkpoint<float> from_sharded = load_checkpoint<float>(sharded_path);
    CHECK(max_weight_difference(from_sharded.model, single) < 1e-4);

    // Five more steps: one process, the sharded run resumed in one process, the single run
    // resumed expert-parallel.
    Checkpoint<float> from_single = load_checkpoint<float>(single_path);
    Trainer<float> resumed_single(from_sharded, data);
    Trainer<float> resumed_sharded(from_single, data, &group, G);
    for (int64_t s = 20; s < 25; ++s) {
      CAPTURE(s);
      const StepReport a = one.step();
      check_same_step(a, resumed_single.step());
      check_same_step(a, resumed_sharded.step());
    }

    // The end of a run: rank 0's model has every expert and runs alone.
    many.gather_experts();
    if (group.rank() == 0) {
      CHECK(int64_t(sharded.blocks[0].moe.experts.size()) == c.n_experts);
      Tensor<int32_t> ids({1, 4}, {1, 2, 3, 4});
      CHECK(sharded(ids).value().size(2) == c.vocab_size);
    }
    CHECK_THROWS_AS(many.step(), ValueError);
  }
}

TEST_CASE("expert parallelism refuses sizes that do not split, naming the numbers") {
  MpiProcessGroup group(20);
  const int R = group.size();
  TempDir dir;
  const Dataset data(small_domains(dir));
  const TrainOptions o = small_options();
  {
    GPT<float> model(small_config(), 1);
    CHECK_THROWS_WITH_AS(Trainer<float>(model, data, o, &group, 3),
                         fmt::format("expert parallel: {} ranks do not form groups of 3: the "
                                     "number of ranks must be a multiple of the expert-parallel "
                                     "size",
                                     R)
                             .c_str(),
                         ValueError);
  }
  GPTConfig c = small_config();
  c.n_experts = 2 * R - 1;
  GPT<float> model(c, 1);
  CHECK_THROWS_WITH_AS(Trainer<float>(model, data, o, &group, R),
                       fmt::format("expert parallel: {} experts per MoE layer do not split over "
                                   "{} ranks: the experts must be a multiple of the "
                                   "expert-parallel size",
                                   2 * R - 1, R)
                           .c_str(),
                       ValueError);
}
