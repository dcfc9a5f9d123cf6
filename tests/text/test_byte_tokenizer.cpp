#include <minimoe/text/byte_tokenizer.hpp>

#include <random>

#include "../test_util.hpp"

using namespace minimoe;
using Ids = std::vector<int32_t>;

TEST_CASE("ByteTokenizer maps each byte to its value") {
  const ByteTokenizer bytes;
  CHECK(bytes.vocab_size() == 257);
  CHECK(bytes.eot_id() == 256);
  CHECK(bytes.encode("") == Ids{});
  CHECK(bytes.encode("h\xC3\xA9") == Ids{104, 195, 169});
  CHECK(bytes.decode({104, 195, 169, 256}) == "h\xC3\xA9<|endoftext|>");
}

TEST_CASE("ByteTokenizer round-trips any bytes") {
  const ByteTokenizer bytes;
  std::string all;
  for (int b = 0; b < 256; ++b) all.push_back(static_cast<char>(b));
  CHECK(bytes.decode(bytes.encode(all)) == all);
  std::mt19937 rng(3);
  for (int trial = 0; trial < 100; ++trial) {
    std::string text(static_cast<size_t>(rng() % 100), '\0');
    for (char& b : text) b = static_cast<char>(rng());
    REQUIRE(bytes.decode(bytes.encode(text)) == text);
    REQUIRE(bytes.decode(bytes.encode_with_special(text)) == text);
  }
}

TEST_CASE("ByteTokenizer special tokens") {
  const ByteTokenizer bytes({"<|endoftext|>", "<|pad|>"});
  CHECK(bytes.vocab_size() == 258);
  CHECK(bytes.special_tokens().id("<|pad|>") == 257);
  // Plain text by default: a document cannot forge a boundary.
  CHECK(bytes.encode("a<|pad|>").size() == 8);
  CHECK(bytes.encode_with_special("<|pad|>a<|endoftext|><|endoftext|>b<|pad|>") ==
        Ids{257, 97, 256, 256, 98, 257});
  CHECK(bytes.encode_with_special("<|pad") == bytes.encode("<|pad"));
  CHECK(bytes.decode({257, 97, 256}) == "<|pad|>a<|endoftext|>");
  CHECK(ByteTokenizer(std::vector<std::string>{}).vocab_size() == 256);
  CHECK_THROWS_WITH_AS(ByteTokenizer(std::vector<std::string>{}).eot_id(),
                       "no special token '<|endoftext|>'", ValueError);
}

TEST_CASE("SpecialTokens prefers the earliest, then the longest match") {
  const SpecialTokens specials({{"<a>", 1}, {"<a><b>", 2}, {"<b>", 3}});
  std::vector<std::string> pieces;
  specials.split(
      "x<a><b>y<b><a>", [&](std::string_view text) { pieces.emplace_back(text); },
      [&](int32_t id) { pieces.push_back(std::to_string(id)); });
  CHECK(pieces == std::vector<std::string>{"x", "2", "y", "3", "1"});
}

TEST_CASE("special token and decode errors") {
  CHECK_THROWS_WITH_AS(ByteTokenizer({"<|a|>", ""}), "special token 1 is empty", ValueError);
  CHECK_THROWS_WITH_AS(ByteTokenizer({"<|a|>", "<|a|>"}), "special token '<|a|>' appears twice",
                       ValueError);
  CHECK_THROWS_WITH_AS(ByteTokenizer({"\xFF"}), "special token 0 is not valid UTF-8", ValueError);
  const ByteTokenizer bytes;
  CHECK_THROWS_WITH_AS(bytes.decode({1, 257}),
                       "decode: token id 257 out of range [0, 257) at position 1", IndexError);
  CHECK_THROWS_WITH_AS(bytes.decode({-1}),
                       "decode: token id -1 out of range [0, 257) at position 0", IndexError);
}
