#include <doctest/doctest.h>

#include <cmath>

#include <minimoe/train/trainer.hpp>

#include "train_fixtures.hpp"

using namespace minimoe;
using test::small_config;
using test::small_domains;
using test::small_options;
using test::TempDir;

TEST_CASE("training lowers the loss on learnable data, and reports every step") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  Trainer<float> trainer(model, data, small_options());
  const double before = trainer.evaluate().loss;
  std::vector<StepReport> reports;
  while (!trainer.done()) reports.push_back(trainer.step());
  const EvalReport after = trainer.evaluate();
  REQUIRE(reports.size() == 40);
  CHECK(after.loss < before - 1.0);
  CHECK(after.domains.size() == 2);
  CHECK(after.domains[0].name == "counting");
  CHECK(after.domains[0].tokens > 0);
  for (const StepReport& r : reports) {
    CHECK_FALSE(r.skipped);
    CHECK(std::isfinite(r.loss));
    CHECK(r.aux_loss > 0);  // the Switch loss is >= 1 per layer, 2 layers
    CHECK(r.tokens == 4 * 16);
    REQUIRE(r.load.size() == 2);
    double share = 0;
    for (double f : r.load[1].fraction) share += f;
    CHECK(share == doctest::Approx(1.0));
  }
  CHECK(trainer.state().step == 40);
  CHECK(trainer.state().tokens == 40 * 64);
  CHECK(reports[0].lr == doctest::Approx(1e-2 / 5));
}

TEST_CASE("bf16 matrix products train like fp32 ones, and only inside the trainer") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  std::vector<double> loss[2];
  double final_eval[2];
  for (int bf16 = 0; bf16 < 2; ++bf16) {
    TrainOptions o = small_options();
    o.precision = bf16 ? MatmulPrecision::bf16 : MatmulPrecision::fp32;
    GPT<float> model(small_config(), 1);
    Trainer<float> trainer(model, data, o);
    while (!trainer.done()) {
      loss[bf16].push_back(trainer.step().loss);
      REQUIRE(matmul_precision() == MatmulPrecision::fp32);  // restored after the step
    }
    final_eval[bf16] = trainer.evaluate().loss;
  }
  // The rounding changes the trajectory a little (so bf16 did run), not where it goes.
  CHECK(loss[0] != loss[1]);
  CHECK(std::abs(loss[0][0] - loss[1][0]) < 1e-2);
  CHECK(std::abs(final_eval[0] - final_eval[1]) < 0.1);
  CHECK(final_eval[1] < loss[1][0] - 1.0);
}

TEST_CASE("gradient accumulation over micro-batches counts every token") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  TrainOptions o = small_options();
  o.grad_accum = 3;
  Trainer<float> trainer(model, data, o);
  const StepReport r = trainer.step();
  CHECK(r.tokens == 3 * 4 * 16);
  CHECK(trainer.tokens_per_step() == 3 * 64);
}

TEST_CASE("a step with a non-finite loss is skipped, and too many in a row stop training") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  TrainOptions o = small_options();
  o.max_bad_steps = 3;
  Trainer<float> trainer(model, data, o);
  trainer.step();
  model.ln_f.ln.weight.value().data()[0] = NAN;  // poisons every logit
  const Tensor<float> wte = model.wte.weight.value().clone();
  const StepReport r = trainer.step();
  CHECK(r.skipped);
  CHECK(r.skip_reason == "non-finite loss");
  CHECK(trainer.state().skipped == 1);
  CHECK(trainer.state().step == 2);  // the step counts, the update does not happen
  for (int64_t i = 0; i < wte.numel(); ++i)
    REQUIRE(model.wte.weight.value().data()[i] == wte.data()[i]);
  trainer.step();
  trainer.step();
  CHECK_THROWS_WITH_AS(trainer.step(), doctest::Contains("bad steps in a row"), TrainingError);
}

TEST_CASE("skipped steps leave the optimizer alone, and a good step resets the count") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  TrainOptions o = small_options();
  o.max_bad_steps = 2;
  Trainer<float> trainer(model, data, o);
  Tensor<float> gain = model.ln_f.ln.weight.value();
  const Tensor<float> good = gain.clone();
  auto bad_steps = [&](int n) {
    gain.data()[0] = NAN;
    for (int i = 0; i < n; ++i) CHECK(trainer.step().skipped);
    gain.copy_(good);
  };
  trainer.step();
  bad_steps(2);
  CHECK_FALSE(trainer.step().skipped);
  bad_steps(2);  // two in a row again: the good step reset the count
  CHECK(trainer.state().step == 6);
  CHECK(trainer.state().skipped == 4);
  CHECK(trainer.state().loss_count == 2);  // the running mean saw the applied steps only
  trainer.save(dir.file("ckpt.safetensors"), "bytes");
  CHECK(load_checkpoint<float>(dir.file("ckpt.safetensors")).optimizer_steps == 2);
  gain.data()[0] = NAN;
  CHECK_THROWS_AS(trainer.step(), TrainingError);  // a third in a row
}

TEST_CASE("a loss far above the running mean is skipped as a spike") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  TrainOptions o = small_options();
  Trainer<float> first(model, data, o);
  first.step();
  // A checkpoint whose running mean is far below any loss this model can have.
  Checkpoint<float> c;
  c.model = model;
  c.options = o;
  c.state = first.state();
  c.state.loss_mean = 0.01;
  c.state.loss_count = 100;
  for (auto& [name, p] : named_parameters(model))
    c.moments.emplace(name, std::make_pair(Tensor<float>(p.shape()), Tensor<float>(p.shape())));
  Trainer<float> trainer(c, data);
  const StepReport r = trainer.step();
  CHECK(r.skipped);
  CHECK(r.skip_reason.find("loss spike") == 0);
}

TEST_CASE("the trainer refuses data and contexts the model cannot take") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPTConfig small_vocab = small_config();
  small_vocab.vocab_size = 16;
  GPT<float> model(small_vocab, 1);
  CHECK_THROWS_WITH_AS(Trainer<float>(model, data, small_options()),
                       doctest::Contains("vocabulary (32) exceeds the model's (16)"), ValueError);
  GPT<float> ok(small_config(), 1);
  TrainOptions o = small_options();
  o.context = 64;
  CHECK_THROWS_WITH_AS(Trainer<float>(ok, data, o), doctest::Contains("context 64"), ValueError);
  o = small_options();
  o.batch_size = 0;
  CHECK_THROWS_WITH_AS(Trainer<float>(ok, data, o), doctest::Contains("batch size"), ValueError);
}

TEST_CASE("a time budget fixes the number of steps from the measured speed") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 1);
  TrainOptions o = small_options();
  o.time_minutes = 1;
  Trainer<float> trainer(model, data, o);
  CHECK(trainer.total_steps() == 0);
  CHECK_FALSE(trainer.done());
  trainer.step();
  trainer.plan_for_time(0.5, 0.1);  // 60 s minus the first step's time, 90 % of it, 0.5 s each
  CHECK(trainer.total_steps() >= 100);
  CHECK(trainer.total_steps() <= 109);
}
