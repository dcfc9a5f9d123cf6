#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <functional>

#include <minimoe/io/model_file.hpp>
#include <minimoe/train/checkpoint.hpp>
#include <minimoe/train/metrics.hpp>
#include <minimoe/train/trainer.hpp>

#include "train_fixtures.hpp"

using namespace minimoe;
using test::small_config;
using test::small_domains;
using test::small_options;
using test::TempDir;

namespace {

// Dropout and router noise draw random numbers every step: the checkpoint must carry them.
GPTConfig noisy_config() {
  GPTConfig c = small_config();
  c.dropout = 0.1;
  c.router_jitter = 0.05;
  return c;
}

std::vector<float> losses(Trainer<float>& t, int steps) {
  std::vector<float> out;
  for (int i = 0; i < steps; ++i) out.push_back(static_cast<float>(t.step().loss));
  return out;
}

}  // namespace

TEST_CASE("a resumed run takes exactly the steps of the uninterrupted one") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  TrainOptions o = small_options();
  o.steps = 12;
  // The checkpoint carries the matmul precision too: bf16 resumes in bf16.
  SUBCASE("fp32") { o.precision = MatmulPrecision::fp32; }
  SUBCASE("bf16") { o.precision = MatmulPrecision::bf16; }

  GPT<float> straight_model(noisy_config(), 7);
  Trainer<float> straight(straight_model, data, o);
  const std::vector<float> expected = losses(straight, 12);

  GPT<float> first_model(noisy_config(), 7);
  Trainer<float> first(first_model, data, o);
  std::vector<float> got = losses(first, 5);
  first.save(dir.file("ckpt.safetensors"), "bytes", {{"note", "kept"}});

  Checkpoint<float> c = load_checkpoint<float>(dir.file("ckpt.safetensors"));
  CHECK(c.state.step == 5);
  CHECK(c.options.precision == o.precision);
  CHECK(c.tokenizer == "bytes");
  Trainer<float> resumed(c, data);
  const std::vector<float> rest = losses(resumed, 7);
  got.insert(got.end(), rest.begin(), rest.end());
  CHECK(got == expected);  // bitwise: same weights, moments, batches and noise
  CHECK(resumed.done());
  const auto a = named_tensors(straight_model), b = named_tensors(c.model);
  for (size_t i = 0; i < a.size(); ++i)
    for (int64_t j = 0; j < a[i].second.numel(); ++j)
      REQUIRE(a[i].second.data()[j] == b[i].second.data()[j]);
}

TEST_CASE("a checkpoint is a model file too, and model files are not checkpoints") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 3);
  Trainer<float> trainer(model, data, small_options());
  trainer.step();
  trainer.save(dir.file("ckpt.safetensors"), "bytes");
  GPT<float> loaded = load_model<float>(dir.file("ckpt.safetensors"));  // moments skipped
  CHECK(loaded.wte.weight.value().data()[5] == model.wte.weight.value().data()[5]);

  save_model(model, dir.file("model.safetensors"));
  CHECK_THROWS_WITH_AS(load_checkpoint<float>(dir.file("model.safetensors")),
                       doctest::Contains("not a training checkpoint"), FormatError);
}

TEST_CASE("corrupt checkpoints are refused with the path and the problem") {
  TempDir dir;
  const Dataset data(small_domains(dir));
  GPT<float> model(small_config(), 3);
  Trainer<float> trainer(model, data, small_options());
  trainer.step();
  const std::string path = dir.file("ckpt.safetensors");
  trainer.save(path, "bytes");

  SUBCASE("truncated") {
    std::filesystem::resize_file(path, std::filesystem::file_size(path) / 2);
    CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains(path.c_str()),
                         FormatError);
  }
  SUBCASE("missing optimizer state") {
    SafetensorsFile file = SafetensorsFile::open(path);
    std::vector<std::pair<std::string, Tensor<float>>> tensors;
    for (const auto& [name, entry] : file.entries())
      if (name != "optimizer.exp_avg.wte.weight")
        tensors.emplace_back(name, file.tensor<float>(name));
    save_safetensors(path, tensors, file.metadata());
    CHECK_THROWS_WITH_AS(load_checkpoint<float>(path),
                         doctest::Contains("missing optimizer state of 'wte.weight'"), FormatError);
  }
  SUBCASE("bad training state") {
    SafetensorsFile file = SafetensorsFile::open(path);
    std::vector<std::pair<std::string, Tensor<float>>> tensors;
    for (const auto& [name, entry] : file.entries())
      tensors.emplace_back(name, file.tensor<float>(name));
    auto meta = file.metadata();
    meta["train"] = R"({"state": {"step": "seven"}})";
    save_safetensors(path, tensors, meta);
    CHECK_THROWS_WITH_AS(load_checkpoint<float>(path), doctest::Contains("bad 'train' metadata"),
                         FormatError);
  }
  SUBCASE("training state out of range") {
    // Each of these is read from the file as it is, the rest of the checkpoint unchanged.
    const SafetensorsFile file = SafetensorsFile::open(path);
    const nlohmann::json train = nlohmann::json::parse(file.metadata().at("train"));
    const auto rejects = [&](const std::function<void(nlohmann::json&)>& edit,
                             const std::string& message) {
      nlohmann::json edited = train;
      edit(edited);
      std::map<std::string, std::string> meta = file.metadata();
      meta["train"] = edited.dump();
      std::vector<std::pair<std::string, Tensor<float>>> tensors;
      for (const auto& [name, entry] : file.entries())
        tensors.emplace_back(name, file.tensor<float>(name));
      CHECK_THROWS_WITH_AS(
          load_checkpoint<float>(SafetensorsFile::from_bytes(safetensors_bytes(tensors, meta))),
          message.c_str(), FormatError);
    };
    // Floats are not converted to integers, where 1e300 would be undefined behaviour.
    rejects([](nlohmann::json& t) { t["state"]["step"] = 1e300; },
            "bad 'train' metadata: 'step' is not an integer: 1e+300");
    rejects([](nlohmann::json& t) { t["state"]["domain_tokens"]["counting"] = 0.5; },
            "bad 'train' metadata: 'counting' is not an integer: 0.5");
    rejects([](nlohmann::json& t) { t["options"]["batch_size"] = 1e300; },
            "bad 'train' metadata: train options: 'batch_size' has the wrong type: 1e+300");
    rejects([](nlohmann::json& t) { t["optimizer_steps"] = -3; },
            "bad 'train' metadata: negative optimizer steps");
    // A stream stuck at zero would never return from normal().
    rejects(
        [](nlohmann::json& t) {
          t["state"]["data_rng"]["words"] = {0, 0, 0, 0};
        },
        "bad 'train' metadata: random state: all words are zero");
    rejects(
        [](nlohmann::json& t) {
          t["state"]["data_rng"]["words"] = {1, 2, 3};
        },
        "bad 'train' metadata: random state: 'words' is not an array of 4");
    // Nesting is refused as it is parsed, which bounds the recursion of dump() in messages.
    rejects(
        [](nlohmann::json& t) {
          nlohmann::json deep = 1;
          for (int i = 0; i < 20; ++i) deep = nlohmann::json::array({deep});
          t["state"]["step"] = deep;
        },
        "bad 'train' metadata: JSON nested deeper than 16 levels");
  }
  SUBCASE("different data") {
    Checkpoint<float> c = load_checkpoint<float>(path);
    TempDir other;
    std::vector<Domain> domains = small_domains(other);
    domains.pop_back();
    const Dataset fewer(domains);
    CHECK_THROWS_WITH_AS(Trainer<float>(c, fewer), doctest::Contains("the data differs"),
                         ValueError);
  }
}

TEST_CASE("train options round-trip through JSON, and bad ones are refused") {
  TrainOptions o = small_options();
  o.schedule = ScheduleKind::WSD;
  o.grad_accum = 3;
  const TrainOptions back = nlohmann::json(o).get<TrainOptions>();
  CHECK(nlohmann::json(back) == nlohmann::json(o));
  nlohmann::json j = o;
  j.erase("lr");
  CHECK_THROWS_WITH_AS(j.get<TrainOptions>(), doctest::Contains("missing 'lr'"), FormatError);
  j = o;
  j["steps"] = "many";
  CHECK_THROWS_WITH_AS(j.get<TrainOptions>(), doctest::Contains("'steps' has the wrong type"),
                       FormatError);
  j = o;
  j["schedule"] = "zigzag";
  CHECK_THROWS_AS(j.get<TrainOptions>(), FormatError);
  o.precision = MatmulPrecision::bf16;
  j = o;
  CHECK(j.at("precision") == "bf16");
  CHECK(j.get<TrainOptions>().precision == MatmulPrecision::bf16);
  j["precision"] = "fp8";
  CHECK_THROWS_WITH_AS(j.get<TrainOptions>(), doctest::Contains("precision must be fp32 or bf16"),
                       FormatError);
  j.erase("precision");  // a checkpoint from before the field: it trained in fp32
  CHECK(j.get<TrainOptions>().precision == MatmulPrecision::fp32);
}

TEST_CASE("the metrics log of a resumed run drops the records it is about to write again") {
  TempDir dir;
  const std::string path = dir.file("metrics.jsonl");
  {
    MetricsLog log(path, 0);
    for (int step = 0; step < 6; ++step) log.write({{"type", "train"}, {"step", step}});
    log.write({{"type", "eval"}, {"step", 4}});
    log.write({{"type", "eval"}, {"step", 6}});
  }
  { std::ofstream(path, std::ios::app) << "{\"type\": \"train\", \"st"; }  // cut by a kill
  MetricsLog resumed(path, 4);
  resumed.write({{"type", "train"}, {"step", 4}});
  const std::vector<nlohmann::json> records = read_metrics(path);
  REQUIRE(records.size() == 6);  // train 0..3, eval 4, then the new train 4
  CHECK(records[3]["step"] == 3);
  CHECK(records[4]["type"] == "eval");
  CHECK(records[5]["step"] == 4);
}
