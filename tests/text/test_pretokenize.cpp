#include <minimoe/text/pretokenize.hpp>

#include <random>

#include "../test_util.hpp"

using namespace minimoe;
using Pieces = std::vector<std::string_view>;

TEST_CASE("pretokenize splits words, numbers and symbols with their leading space") {
  CHECK(pretokenize("") == Pieces{});
  CHECK(pretokenize("Hello world") == Pieces{"Hello", " world"});
  CHECK(pretokenize("Hi  there, it's 42!\n") ==
        Pieces{"Hi", " ", " there", ",", " it", "'s", " 42", "!", "\n"});
  CHECK(pretokenize("abc123def") == Pieces{"abc", "123", "def"});
  CHECK(pretokenize("3.14 -2 x**2") == Pieces{"3", ".", "14", " -", "2", " x", "**", "2"});
  CHECK(pretokenize("a,b;c") == Pieces{"a", ",", "b", ";", "c"});
  CHECK(pretokenize(" ...!?") == Pieces{" ...!?"});
}

TEST_CASE("pretokenize takes the English contraction suffixes, case-sensitively") {
  CHECK(pretokenize("I'm we're you've they'll he'd can't it's") ==
        Pieces{"I", "'m", " we", "'re", " you", "'ve", " they", "'ll", " he", "'d", " can", "'t",
               " it", "'s"});
  CHECK(pretokenize("DON'T") == Pieces{"DON", "'", "T"});
  CHECK(pretokenize("'sup 'x") == Pieces{"'s", "up", " '", "x"});
  CHECK(pretokenize("x!'s") == Pieces{"x", "!'", "s"});  // inside a symbol run, no contraction
}

TEST_CASE("pretokenize leaves the last space of a run to the word that follows") {
  CHECK(pretokenize("a   b") == Pieces{"a", "  ", " b"});
  CHECK(pretokenize("a \nb") == Pieces{"a", " ", "\n", "b"});
  CHECK(pretokenize("a\n\nb") == Pieces{"a", "\n", "\n", "b"});
  CHECK(pretokenize("a\n\n b") == Pieces{"a", "\n\n", " b"});
  CHECK(pretokenize("end  ") == Pieces{"end", "  "});
  CHECK(pretokenize("  start") == Pieces{" ", " start"});
  CHECK(pretokenize("\t\tx\t") == Pieces{"\t", "\t", "x", "\t"});
  CHECK(pretokenize(" ") == Pieces{" "});
  // Only U+0020 may lead a word; other whitespace is a piece of its own.
  CHECK(pretokenize("a\u00a0b\u3000c") == Pieces{"a", "\u00a0", "b", "\u3000", "c"});
  CHECK(pretokenize("x \u3000 y") == Pieces{"x", " \u3000", " y"});
}

TEST_CASE("pretokenize beyond ASCII") {
  CHECK(pretokenize("café naïve") == Pieces{"café", " naïve"});
  CHECK(pretokenize("Привет, мир!") == Pieces{"Привет", ",", " мир", "!"});
  CHECK(pretokenize("日本語のテキスト。") == Pieces{"日本語のテキスト", "。"});
  CHECK(pretokenize("e\u0301t\u00e9") == Pieces{"e", "\u0301", "t\u00e9"});  // combining acute
  CHECK(pretokenize("hi 😀😀 there") == Pieces{"hi", " 😀😀", " there"});
  CHECK(pretokenize("½² ٣٤") == Pieces{"½²", " ٣٤"});
  CHECK(pretokenize("नमस्ते") == Pieces{"नमस", "्", "त", "े"});
}

TEST_CASE("pretokenize keeps every byte, valid UTF-8 or not") {
  CHECK(pretokenize("a\xFF\xFE b\xC3") == Pieces{"a", "\xFF\xFE", " b", "\xC3"});
  CHECK(pretokenize(std::string_view("x\0\0y", 4)) ==
        Pieces{"x", std::string_view("\0\0", 2), "y"});
  std::mt19937 rng(7);
  for (int trial = 0; trial < 200; ++trial) {
    std::string bytes(static_cast<size_t>(rng() % 64), '\0');
    for (char& b : bytes) b = static_cast<char>(rng());
    std::string joined;
    for (const std::string_view piece : pretokenize(bytes)) {
      REQUIRE_FALSE(piece.empty());
      joined += piece;
    }
    REQUIRE(joined == bytes);
  }
}
