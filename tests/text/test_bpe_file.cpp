#include <minimoe/text/bpe_file.hpp>
#include <minimoe/text/bpe_train.hpp>

#include <fstream>

#include "../data/temp_dir.hpp"
#include "../test_util.hpp"
#include "text_samples.hpp"

using namespace minimoe;

namespace {

using test::write_text;

}  // namespace

TEST_CASE("save_bpe and load_bpe round-trip a trained tokenizer") {
  test::TempDir dir;
  const std::string path = dir.file("bpe.json");
  BpeTrainOptions options;
  options.vocab_size = 500;
  options.special_tokens = {"<|endoftext|>", "<|ünïcödé|>"};
  const BpeTokenizer bpe = train_bpe(test::sample_text(3000, 9), options);
  save_bpe(bpe, path);
  const BpeTokenizer back = load_bpe(path);
  CHECK(back.vocab_size() == bpe.vocab_size());
  CHECK(back.vocab().special_tokens == bpe.vocab().special_tokens);
  CHECK(back.vocab().merges.size() == bpe.vocab().merges.size());
  for (int32_t id = 0; id < bpe.vocab_size(); ++id) {
    REQUIRE(back.token_bytes(id) == bpe.token_bytes(id));
  }
  const std::string text = test::sample_text(200, 10);
  CHECK(back.encode(text) == bpe.encode(text));
  // Saving again gives the same bytes, and replaces the file.
  const std::string first = read_file(path);
  save_bpe(back, path);
  CHECK(read_file(path) == first);
}

TEST_CASE("the BPE file format, by example") {
  test::TempDir dir;
  const std::string path = dir.file("tiny.json");
  BpeTrainOptions options;
  options.vocab_size = 259;
  save_bpe(train_bpe("ab ab ab", options), path);
  CHECK(read_file(path) ==
        "{\n"
        "  \"format\": \"minimoe-bpe\",\n"
        "  \"version\": 1,\n"
        "  \"special_tokens\": [\"<|endoftext|>\"],\n"
        "  \"merges\": [\n"
        "    [97, 98],\n"
        "    [32, 256]\n"
        "  ]\n"
        "}\n");
  options.special_tokens = {};
  options.vocab_size = 256;
  save_bpe(train_bpe("", options), path);
  CHECK(load_bpe(path).vocab_size() == 256);
}

TEST_CASE("load_bpe rejects corrupt and truncated files, naming what is wrong") {
  test::TempDir dir;
  const std::string path = dir.file("bad.json");
  const auto rejects = [&](const std::string& contents, const std::string& message) {
    write_text(path, contents);
    CHECK_THROWS_WITH_AS(load_bpe(path), (path + ": " + message).c_str(), FormatError);
  };
  const std::string head = R"("format": "minimoe-bpe", "version": 1, )";
  rejects("", "bpe file: not valid JSON (truncated or corrupt) at byte 1");
  rejects(R"({"format": "minimoe-bpe", "vers)",
          "bpe file: not valid JSON (truncated or corrupt) at byte 32");
  rejects("{" + head + R"("special_tokens": [], "merges": [[97, 98], [32)",
          "bpe file: not valid JSON (truncated or corrupt) at byte 87");
  rejects("[1, 2]", "bpe file: not a JSON object");
  rejects(R"({"version": 1, "special_tokens": [], "merges": []})", "bpe file: missing 'format'");
  rejects(R"({"format": "gpt2", "version": 1, "special_tokens": [], "merges": []})",
          "bpe file: 'format' is not \"minimoe-bpe\"");
  rejects(R"({"format": "minimoe-bpe", "special_tokens": [], "merges": []})",
          "bpe file: missing 'version'");
  rejects(R"({"format": "minimoe-bpe", "version": 2, "special_tokens": [], "merges": []})",
          "bpe file: unsupported version 2 (this build reads version 1)");
  rejects(R"({"format": "minimoe-bpe", "version": "1", "special_tokens": [], "merges": []})",
          "bpe file: unsupported version \"1\" (this build reads version 1)");
  rejects("{" + head + R"("merges": []})", "bpe file: missing 'special_tokens'");
  rejects("{" + head + R"("special_tokens": "<|endoftext|>", "merges": []})",
          "bpe file: 'special_tokens' is not an array");
  rejects("{" + head + R"("special_tokens": ["a", 7], "merges": []})",
          "bpe file: special token 1 is not a string");
  rejects("{" + head + R"("special_tokens": ["a", ""], "merges": []})", "special token 1 is empty");
  rejects("{" + head + R"("special_tokens": ["a", "a"], "merges": []})",
          "special token 'a' appears twice");
  rejects("{" + head + R"("special_tokens": []})", "bpe file: missing 'merges'");
  rejects("{" + head + R"("special_tokens": [], "merges": {}})",
          "bpe file: 'merges' is not an array");
  rejects("{" + head + R"("special_tokens": [], "merges": [[97, 98], [97]]})",
          "bpe file: merge 1 is not a pair of token ids: [97]");
  rejects("{" + head + R"("special_tokens": [], "merges": [[97, 98.5]]})",
          "bpe file: merge 0 is not a pair of token ids: [97,98.5]");
  rejects("{" + head + R"("special_tokens": [], "merges": [[-1, 98]]})",
          "bpe file: merge 0 is not a pair of token ids: [-1,98]");
  rejects("{" + head + R"("special_tokens": [], "merges": [[97, 98], [256, 257]]})",
          "bpe: merge 1 uses token 257, which no byte or earlier merge makes");
  rejects("{" + head + R"("special_tokens": [], "merges": [[97, 98], [97, 98]]})",
          "bpe: merge 1 repeats the pair of merge 0");
  rejects("{" + head + R"("special_tokens": [], "merges": [], "vocab": {}})",
          "bpe file: unknown key 'vocab'");
  rejects("{" + head + R"("special_tokens": [], "merges": )" + std::string(20, '[') +
              std::string(20, ']') + "}",
          "bpe file: JSON nested deeper than 16 levels");
  rejects(R"({"format": "minimoe-bpe", "version": 1e999})",
          "bpe file: not valid JSON: [json.exception.out_of_range.406] number overflow parsing "
          "'1e999'");
  // Each merge doubles the last token: the 41 merges would make a token of 2 TB.
  std::string doubling = R"([97, 97])";
  for (int i = 0; i < 40; ++i) doubling += fmt::format(", [{}, {}]", 256 + i, 256 + i);
  rejects("{" + head + R"("special_tokens": [], "merges": [)" + doubling + "]}",
          "bpe: merge 25 makes the merged tokens longer than 67108864 bytes in total");
}

TEST_CASE("load_bpe and save_bpe input/output errors") {
  test::TempDir dir;
  const std::string missing = dir.file("missing.json");
  CHECK_THROWS_WITH_AS(load_bpe(missing),
                       ("cannot open '" + missing + "': No such file or directory").c_str(),
                       IOError);
  BpeTrainOptions options;
  options.vocab_size = 260;
  CHECK_THROWS_AS(save_bpe(train_bpe("abc", options), dir.file("no/such/dir/bpe.json")),
                  WriteError);
}
