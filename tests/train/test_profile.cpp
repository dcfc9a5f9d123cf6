#include <doctest/doctest.h>

#include <minimoe/models/presets.hpp>
#include <minimoe/train/profile.hpp>
#include <minimoe/train/trainer.hpp>

#include "train_fixtures.hpp"

using namespace minimoe;

TEST_CASE("forward FLOPs per token follow the closed form of each region") {
  const GPTConfig c = preset("tiny");  // MoE on every block, no GQA, GELU experts with biases
  const int64_t T = 100;
  const double C = double(c.d_model), h = double(c.ffn_hidden), L = double(c.n_layers);
  const auto f = forward_flops_per_token(c, T);
  CHECK(f.at("attention") == doctest::Approx(L * (8 * C * C + 2 * double(T) * C)));
  CHECK(f.at("router") == doctest::Approx(L * 2 * C * double(c.n_experts)));
  CHECK(f.at("experts") == doctest::Approx(L * 2 * double(c.top_k) * (2 * C * h + h + C)));
  CHECK(f.at("lm_head") == doctest::Approx(2 * C * double(c.vocab_size)));
  CHECK(f.count("mlp") == 0);

  const auto dense = forward_flops_per_token(preset("dense"), T);
  CHECK(dense.count("experts") == 0);
  CHECK(dense.count("router") == 0);
  // The dense preset's MLP has the FLOPs of tiny's two active experts, up to their biases.
  CHECK(dense.at("mlp") == doctest::Approx(f.at("experts")).epsilon(0.01));
}

TEST_CASE("a profiled training step accounts for its regions, and the report shows them") {
  test::TempDir dir;
  const Dataset data(test::small_domains(dir));
  GPT<float> model(test::small_config(), 1);
  TrainOptions o = test::small_options();
  o.steps = 3;
  Trainer<float> trainer(model, data, o);
  Profiler& profiler = Profiler::instance();
  profiler.reset();
  profiler.enable(true);
  double seconds = 0;
  int64_t tokens = 0;
  while (!trainer.done()) {
    const StepReport r = trainer.step();
    seconds += r.seconds;
    tokens += r.tokens;
  }
  profiler.enable(false);
  const auto times = profiler.times();
  profiler.reset();
  for (const char* region :
       {"data", "embedding", "attention", "router", "experts", "lm_head", "optimizer"}) {
    CAPTURE(region);
    REQUIRE(times.count(region) == 1);
    CHECK(times.at(region).total() > 0);
  }
  CHECK(times.at("attention").backward > 0);
  CHECK(times.at("experts").backward > 0);
  double measured = 0;
  for (const auto& [name, t] : times) measured += t.total();
  CHECK(measured <= seconds * 1.05);  // the regions are parts of the steps

  const std::string report =
      profile_report(model.config, trainer.context(), tokens, times, seconds);
  CHECK(report.find("experts") != std::string::npos);
  CHECK(report.find("GFLOP/s") != std::string::npos);
  CHECK(report.find("step total") != std::string::npos);
  CHECK(report.find("MiB") != std::string::npos);
}
