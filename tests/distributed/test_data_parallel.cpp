#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <doctest/doctest.h>

#include <minimoe/distributed/mpi.hpp>
#include <minimoe/train/trainer.hpp>

#include "../train/train_fixtures.hpp"
#include "replica_checks.hpp"

using namespace minimoe;
using namespace minimoe::test;

TEST_CASE("data-parallel training takes the steps of one process on the same global batches") {
  MpiProcessGroup group(60);
  TempDir dir;
  const Dataset data(small_domains(dir));
  for (const int64_t accum : {1, 2}) {
    for (const bool aux_free : {false, true}) {
      CAPTURE(accum);
      CAPTURE(aux_free);
      GPTConfig c = small_config();
      c.aux_loss_weight = 0.05;
      c.z_loss_weight = 1e-3;
      c.aux_free_balancing = aux_free;
      TrainOptions o = small_options();
      o.batch_size = 4;
      o.grad_accum = accum;
      o.steps = 20;
      // Each rank initialises differently: the trainer starts every rank from rank 0's weights.
      GPT<float> single(c, 5), replica(c, 5 + uint64_t(group.rank()));
      Trainer<float> one(single, data, o);
      Trainer<float> many(replica, data, o, &group);
      CHECK(many.gradient_bytes_per_step() > 0);
      for (int64_t s = 0; s < o.steps; ++s) {
        CAPTURE(s);
        const StepReport a = one.step(), b = many.step();
        CHECK(b.loss == doctest::Approx(a.loss).epsilon(kLossTolerance));
        CHECK(b.aux_loss == doctest::Approx(a.aux_loss).epsilon(kLossTolerance));
        CHECK(b.z_loss == doctest::Approx(a.z_loss).epsilon(kLossTolerance));
        CHECK(b.grad_norm == doctest::Approx(a.grad_norm).epsilon(kLossTolerance));
        CHECK(b.tokens == a.tokens);
        REQUIRE(b.load.size() == a.load.size());
        for (size_t l = 0; l < a.load.size(); ++l)
          for (size_t e = 0; e < a.load[l].fraction.size(); ++e)
            CHECK(b.load[l].fraction[e] == doctest::Approx(a.load[l].fraction[e]));
      }
      CHECK(max_weight_difference(single, replica) < 1e-4);
      const EvalReport ea = one.evaluate(), eb = many.evaluate();
      CHECK(eb.loss == doctest::Approx(ea.loss).epsilon(kLossTolerance));
      REQUIRE(eb.domains.size() == ea.domains.size());
      for (size_t d = 0; d < ea.domains.size(); ++d)
        CHECK(eb.domains[d].tokens == ea.domains[d].tokens);
      // The replicas are bitwise equal: the save's check passes, and rank 0 alone writes.
      std::string path = dir.file("checkpoint.safetensors");
      group.broadcast(path, 0, "the checkpoint's path");
      many.save(path, "bytes");
      group.any(false, "waiting for the checkpoint");
      if (group.rank() == 0) {
        CHECK(std::filesystem::exists(path));
        Checkpoint<float> loaded = load_checkpoint<float>(path);
        CHECK(max_weight_difference(loaded.model, replica) == 0);
      }
    }
  }
}

TEST_CASE("data parallelism refuses a batch that does not split over the ranks") {
  MpiProcessGroup group(20);
  TempDir dir;
  const Dataset data(small_domains(dir));
  TrainOptions o = small_options();
  o.batch_size = 2 * group.size() + 1;
  GPT<float> model(small_config(), 1);
  CHECK_THROWS_WITH_AS(Trainer<float>(model, data, o, &group),
                       fmt::format("train: a batch of {} sequences does not split evenly over {} "
                                   "ranks; pass a --batch-size divisible by the number of ranks",
                                   o.batch_size, group.size())
                           .c_str(),
                       ValueError);
}
