#include <minimoe/data/dataset.hpp>

#include <cmath>
#include <numeric>

#include "../test_util.hpp"
#include "temp_dir.hpp"

using namespace minimoe;

namespace {

constexpr int64_t kVocab = 4096;

// A token file holding first, first + 1, ..., first + n - 1: a token's value tells where in
// which file it came from.
std::string counting_file(const test::TempDir& dir, const std::string& name, int32_t first,
                          int32_t n, int64_t vocab = kVocab) {
  std::vector<int32_t> ids(static_cast<size_t>(n));
  std::iota(ids.begin(), ids.end(), first);
  const std::string path = dir.file(name + ".tokens");
  write_token_file(path, ids, vocab);
  return path;
}

// Three domains: story holds 0..999, speech 1000..1199, code 2000..2499; weights 1, 2, 5.
Dataset three_domains(const test::TempDir& dir) {
  return Dataset({{"story", counting_file(dir, "story", 0, 1000), 1},
                  {"speech", counting_file(dir, "speech", 1000, 200), 2},
                  {"code", counting_file(dir, "code", 2000, 500), 5}});
}

bool same_batch(const Batch& a, const Batch& b) {
  return a.ids.to_vector() == b.ids.to_vector() && a.targets.to_vector() == b.targets.to_vector() &&
         a.domain == b.domain;
}

}  // namespace

TEST_CASE("each domain's last val_fraction is its validation split") {
  test::TempDir dir;
  const Dataset data = three_domains(dir);
  REQUIRE(data.num_domains() == 3);
  CHECK(data.vocab_size() == kVocab);
  CHECK(data.domain(1).name == "speech");
  CHECK(data.domain(1).weight == 2);
  CHECK(data.tokens(0, Split::Train) == 900);
  CHECK(data.tokens(0, Split::Validation) == 100);
  CHECK(data.tokens(1, Split::Train) == 180);
  CHECK(data.tokens(1, Split::Validation) == 20);
  CHECK(data.tokens(2, Split::Train) == 450);
  CHECK(data.tokens(2, Split::Validation) == 50);
  CHECK(data.probability(0) == doctest::Approx(0.125));
  CHECK(data.probability(2) == doctest::Approx(0.625));
  CHECK(data.summary() ==
        "domain       probability        train   validation\n"
        "story              0.125          900          100\n"
        "speech             0.250          180           20\n"
        "code               0.625          450           50\n");

  const Dataset quarter({{"story", counting_file(dir, "q", 0, 10)}}, 0.25);
  CHECK(quarter.tokens(0, Split::Train) == 7);  // 10 x 0.25 = 2.5 validation tokens, rounded up
  CHECK(quarter.tokens(0, Split::Validation) == 3);
}

TEST_CASE("targets are the ids shifted by one, inside the split of the row's domain") {
  test::TempDir dir;
  const Dataset data = three_domains(dir);
  const int32_t first_token[] = {0, 1000, 2000};
  Rng rng(1);
  const int64_t B = 64, T = 16;
  for (Split split : {Split::Train, Split::Validation}) {
    const Batch b = data.sample_batch(split, B, T, rng);
    REQUIRE(b.ids.shape() == Shape{B, T});
    REQUIRE(b.targets.shape() == Shape{B, T});
    REQUIRE(b.domain.size() == static_cast<size_t>(B));
    for (int64_t r = 0; r < B; ++r) {
      const int64_t d = b.domain[r];
      const int64_t begin =
          first_token[d] + (split == Split::Train ? 0 : data.tokens(d, Split::Train));
      const int64_t end = begin + data.tokens(d, split);
      CHECK(b.ids.at({r, 0}) >= begin);
      CHECK(b.targets.at({r, T - 1}) < end);
      for (int64_t t = 0; t < T; ++t) {
        CHECK(b.ids.at({r, t}) == b.ids.at({r, 0}) + t);
        CHECK(b.targets.at({r, t}) == b.ids.at({r, t}) + 1);
      }
    }
  }
}

TEST_CASE("window starts are uniform over every position that fits") {
  test::TempDir dir;
  const Dataset data({{"story", counting_file(dir, "story", 0, 100)}});  // train: 0..89
  Rng rng(2);
  const int64_t T = 8;
  std::vector<int64_t> count(90, 0);
  const Batch b = data.sample_batch(Split::Train, 8200, T, rng);
  for (int64_t r = 0; r < 8200; ++r) ++count[static_cast<size_t>(b.ids.at({r, 0}))];
  // Starts 0..81 leave room for 8 ids and the last target (token 89); each has p = 1/82.
  for (int64_t start = 0; start < 90; ++start) {
    CAPTURE(start);
    if (start <= 81)
      CHECK(std::abs(count[start] - 100) < 40);  // 100 expected, sd ~10
    else
      CHECK(count[start] == 0);
  }
}

TEST_CASE("batches are determined by the seed, and resume from an Rng snapshot") {
  test::TempDir dir;
  const Dataset data = three_domains(dir);
  Rng a(7), b(7), other(8);
  const Batch first = data.sample_batch(Split::Train, 4, 8, a);
  CHECK(same_batch(first, data.sample_batch(Split::Train, 4, 8, b)));
  CHECK_FALSE(same_batch(first, data.sample_batch(Split::Train, 4, 8, other)));

  // Resuming training: the Rng is the dataset's whole state.
  const Rng::Snapshot checkpoint = a.snapshot();
  const Batch next = data.sample_batch(Split::Train, 4, 8, a);
  Rng resumed(0);
  resumed.restore(checkpoint);
  CHECK(same_batch(next, data.sample_batch(Split::Train, 4, 8, resumed)));
  // Pinned: per row, the domain then the window start, so a seed means the same batches in
  // every version.
  CHECK(first.domain == std::vector<int64_t>{2, 2, 2, 0});
  CHECK(first.ids.slice(1, 0, 1).to_vector() == std::vector<int32_t>{2422, 2340, 2047, 592});
}

TEST_CASE("rows follow the domain weights") {
  test::TempDir dir;
  const Dataset data = three_domains(dir);  // p = 1/8, 2/8, 5/8
  Rng rng(3);
  const int64_t n = 40000;
  const Batch b = data.sample_batch(Split::Train, n, 4, rng);
  std::vector<int64_t> rows(3, 0);
  int64_t misnamed = 0;  // rows whose tokens come from another domain than the one they name
  for (int64_t r = 0; r < n; ++r) {
    const int64_t d = b.domain[r];
    ++rows[d];
    misnamed += b.ids.at({r, 0}) / 1000 != d;
  }
  CHECK(misnamed == 0);
  for (int64_t d = 0; d < 3; ++d) {
    const double p = data.probability(d);
    const double sd = std::sqrt(n * p * (1 - p));
    CAPTURE(d);
    CHECK(std::abs(rows[d] - n * p) < 5 * sd);
  }
}

TEST_CASE("evaluation walks the validation split in consecutive windows") {
  test::TempDir dir;
  const Dataset data = three_domains(dir);  // story's validation split: tokens 900..999
  const int64_t T = 8;                      // 99 / 8 = 12 windows, in batches of 5, 5, 2
  std::vector<int64_t> rows;
  std::vector<int32_t> ids, targets;
  const int64_t batches = data.for_each_eval_batch(0, 5, T, [&](const Batch& b) {
    rows.push_back(b.ids.size(0));
    CHECK(b.domain == std::vector<int64_t>(static_cast<size_t>(b.ids.size(0)), 0));
    for (int32_t id : b.ids.to_vector()) ids.push_back(id);
    for (int32_t t : b.targets.to_vector()) targets.push_back(t);
  });
  CHECK(batches == 3);
  CHECK(rows == std::vector<int64_t>{5, 5, 2});
  std::vector<int32_t> expected(96);
  std::iota(expected.begin(), expected.end(), 900);
  CHECK(ids == expected);  // 900..995; 996..999 are the tail shorter than a window
  std::iota(expected.begin(), expected.end(), 901);
  CHECK(targets == expected);

  int64_t seen = 0;
  CHECK(data.for_each_eval_batch(
            2, 4, T, [&](const Batch& b) { seen += b.ids.size(0); }, 1) == 1);
  CHECK(seen == 4);
  std::vector<int32_t> code_first;
  data.for_each_eval_batch(
      2, 1, T, [&](const Batch& b) { code_first = b.ids.to_vector(); }, 1);
  CHECK(code_first.front() == 2450);  // code's validation split starts after 450 train tokens
}

TEST_CASE("dataset errors name the domain and the problem") {
  test::TempDir dir;
  const std::string story = counting_file(dir, "story", 0, 100);
  CHECK_THROWS_WITH_AS(Dataset({}), "Dataset: no domains", ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story}}, 0), "Dataset: val_fraction 0 outside (0, 1)",
                       ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story}}, 1), "Dataset: val_fraction 1 outside (0, 1)",
                       ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story, 0}}),
                       "Dataset: domain 'story' has weight 0; weights must be positive and finite",
                       ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story, -1}}),
                       "Dataset: domain 'story' has weight -1; weights must be positive and finite",
                       ValueError);
  CHECK_THROWS_WITH_AS(
      Dataset({{"story", story, NAN}}),
      "Dataset: domain 'story' has weight nan; weights must be positive and finite", ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story}, {"story", story}}),
                       "Dataset: domain name 'story' appears twice", ValueError);
  const std::string empty = counting_file(dir, "empty", 0, 0);
  CHECK_THROWS_WITH_AS(
      Dataset({{"story", story}, {"empty", empty}}),
      fmt::format("Dataset: domain 'empty' is empty ('{}' holds no tokens)", empty).c_str(),
      ValueError);
  CHECK_THROWS_WITH_AS(
      Dataset({{"tiny", counting_file(dir, "tiny", 0, 12)}}),
      "Dataset: domain 'tiny' has 12 tokens, split into 11 train and 1 validation; each split "
      "needs at least 2",
      ValueError);
  CHECK_THROWS_WITH_AS(Dataset({{"story", story}, {"other", counting_file(dir, "o", 0, 100, 300)}}),
                       "Dataset: domain 'other' has vocab size 300, domain 'story' has 4096; "
                       "domains must share one tokenizer",
                       ValueError);
  const std::string missing = dir.file("missing.tokens");
  CHECK_THROWS_WITH_AS(Dataset({{"story", missing}}),
                       fmt::format("cannot open '{}': No such file or directory", missing).c_str(),
                       IOError);

  const Dataset data = three_domains(dir);
  Rng rng(0);
  auto nothing = [](const Batch&) {};
  CHECK_THROWS_WITH_AS(data.sample_batch(Split::Validation, 2, 20, rng),
                       "sample_batch: context 20 needs 21 tokens, but the validation split of "
                       "domain 'speech' has 20",
                       ValueError);
  CHECK_THROWS_WITH_AS(data.sample_batch(Split::Train, 2, 180, rng),
                       "sample_batch: context 180 needs 181 tokens, but the train split of "
                       "domain 'speech' has 180",
                       ValueError);
  CHECK_THROWS_WITH_AS(data.sample_batch(Split::Train, 0, 8, rng),
                       "sample_batch: batch 0 is not positive", ValueError);
  CHECK_THROWS_WITH_AS(data.sample_batch(Split::Train, 2, 0, rng),
                       "sample_batch: context 0 is not positive", ValueError);
  CHECK_THROWS_WITH_AS(data.for_each_eval_batch(2, 4, 50, nothing),
                       "for_each_eval_batch: context 50 needs 51 tokens, but the validation "
                       "split of domain 'code' has 50",
                       ValueError);
  CHECK_THROWS_WITH_AS(data.for_each_eval_batch(0, 0, 8, nothing),
                       "for_each_eval_batch: batch 0 is not positive", ValueError);
  CHECK_THROWS_WITH_AS(data.for_each_eval_batch(0, 4, 8, nothing, 0),
                       "for_each_eval_batch: max_batches 0 is not positive", ValueError);
  CHECK_THROWS_WITH_AS(data.for_each_eval_batch(3, 4, 8, nothing),
                       "Dataset: domain 3 out of range [0, 3)", IndexError);
  CHECK_THROWS_WITH_AS(data.tokens(-1, Split::Train), "Dataset: domain -1 out of range [0, 3)",
                       IndexError);
}
