#include <doctest/doctest.h>

#include <minimoe/io/atomic_file.hpp>
#include <minimoe/train/compare.hpp>

#include "../data/temp_dir.hpp"

using namespace minimoe;
using nlohmann::json;

namespace {

// A run of `steps` training steps of 100 tokens, at 1000 tokens/s except a slow first step,
// evaluated at the end with the given losses.
std::vector<json> run_records(int steps, double val_loss, double story_loss) {
  std::vector<json> records;
  for (int s = 0; s < steps; ++s)
    records.push_back({{"type", "train"},
                       {"step", s},
                       {"loss", 5.0 - 0.01 * s},
                       {"tokens", 100},
                       {"tokens_per_s", s == 0 ? 10.0 : 1000.0}});
  records.push_back({{"type", "eval"}, {"step", steps / 2}, {"val_loss", 9.0}, {"domains", {}}});
  records.push_back({{"type", "eval"},
                     {"step", steps},
                     {"val_loss", val_loss},
                     {"domains", {{"story", {{"val_loss", story_loss}}}}}});
  return records;
}

}  // namespace

TEST_CASE("a run summary takes the last evaluation and the median step time") {
  const RunSummary s = summarize_run("dense", run_records(30, 4.5, 4.25));
  CHECK(s.steps == 30);
  CHECK(s.tokens == 3000);
  CHECK(s.seconds_per_step == doctest::Approx(0.1));  // the slow first step does not count
  CHECK(s.val_loss == doctest::Approx(4.5));
  REQUIRE(s.domain_val_loss.count("story") == 1);
  CHECK(s.domain_val_loss.at("story") == doctest::Approx(4.25));
  CHECK(s.val.x.size() == 2);
  CHECK(s.train.y.size() == 30);
  CHECK(s.train.y.back() == doctest::Approx(5.0 - 0.01 * (29 + 10) / 2));  // mean of 20

  CHECK_THROWS_WITH_AS(summarize_run("empty", {}), doctest::Contains("'empty' has no training"),
                       ValueError);
}

TEST_CASE("the comparison table has a row per run and the loss against the first") {
  RunSummary dense = summarize_run("dense", run_records(10, 4.5, 4.25));
  dense.params = 1'334'016;
  const RunSummary moe = summarize_run("moe-4e", run_records(10, 4.375, 4.0));
  const std::string table = comparison_table({dense, moe});
  CHECK(table.find(
            "| run | params | active | steps | tokens | s/step | val loss | vs first | story |") ==
        0);
  CHECK(table.find("|---|---|---|---|---|---|---|---|---|\n") != std::string::npos);
  CHECK(table.find("| dense | 1.33M | - | 10 | 0.00M | 0.100 | 4.5000 | +0.0000 | 4.2500 |") !=
        std::string::npos);
  CHECK(table.find("| moe-4e | - | - | 10 | 0.00M | 0.100 | 4.3750 | -0.1250 | 4.0000 |") !=
        std::string::npos);
  CHECK_THROWS_AS(comparison_table({}), ValueError);
}

TEST_CASE("the comparison plot draws every run") {
  test::TempDir dir;
  const std::string path = dir.file("compare.svg");
  write_comparison_plot({summarize_run("dense", run_records(10, 4.5, 4.25)),
                         summarize_run("moe <8e>", run_records(10, 4.4, 4.1))},
                        path);
  const std::string svg = read_file(path);
  CHECK(svg.find("<svg") != std::string::npos);
  CHECK(svg.find("Validation loss") != std::string::npos);
  CHECK(svg.find("moe &lt;8e&gt;") != std::string::npos);  // names are escaped
}
