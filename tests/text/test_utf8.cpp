#include <minimoe/text/char_class.hpp>
#include <minimoe/text/utf8.hpp>

#include "../test_util.hpp"

using namespace minimoe;

namespace {

// (value, length) of each character of `text`, decoded one after the other.
std::vector<std::pair<char32_t, size_t>> decode_all(std::string_view text) {
  std::vector<std::pair<char32_t, size_t>> out;
  for (size_t pos = 0; pos < text.size();) {
    const CodePoint c = decode_utf8(text, pos);
    out.emplace_back(c.value, c.length);
    pos += c.length;
  }
  return out;
}

using Decoded = std::vector<std::pair<char32_t, size_t>>;
constexpr char32_t X = kInvalidCodePoint;

}  // namespace

TEST_CASE("decode_utf8 decodes one to four bytes") {
  CHECK(decode_all("a\xC3\xA9\xE2\x82\xAC\xF0\x9F\x98\x80") ==
        Decoded{{U'a', 1}, {U'é', 2}, {U'€', 3}, {U'😀', 4}});
  CHECK(decode_all(std::string_view("\0z", 2)) == Decoded{{0, 1}, {U'z', 1}});
  CHECK(decode_all("\xF4\x8F\xBF\xBF") == Decoded{{0x10FFFF, 4}});
  CHECK(decode_all("\xEF\xBF\xBD") == Decoded{{0xFFFD, 3}});
}

TEST_CASE("decode_utf8 takes an invalid byte as one invalid character and goes on") {
  CHECK(decode_all("\x80z") == Decoded{{X, 1}, {U'z', 1}});              // stray continuation
  CHECK(decode_all("\xC0\xAF") == Decoded{{X, 1}, {X, 1}});              // overlong '/'
  CHECK(decode_all("\xE0\x80\xAF") == Decoded{{X, 1}, {X, 1}, {X, 1}});  // overlong, 3 bytes
  CHECK(decode_all("\xF0\x80\x80\xAF") == Decoded{{X, 1}, {X, 1}, {X, 1}, {X, 1}});
  CHECK(decode_all("\xED\xA0\x80") == Decoded{{X, 1}, {X, 1}, {X, 1}});  // surrogate D800
  CHECK(decode_all("\xF4\x90\x80\x80") == Decoded{{X, 1}, {X, 1}, {X, 1}, {X, 1}});  // > 10FFFF
  CHECK(decode_all("\xFF\xFE") == Decoded{{X, 1}, {X, 1}});
  CHECK(decode_all("\xE2\x82") == Decoded{{X, 1}, {X, 1}});              // cut short
  CHECK(decode_all("\xE2\x82z") == Decoded{{X, 1}, {X, 1}, {U'z', 1}});  // interrupted
  CHECK(decode_all("\xF0\x9F\x98") == Decoded{{X, 1}, {X, 1}, {X, 1}});
}

TEST_CASE("is_valid_utf8 and append_utf8") {
  CHECK(is_valid_utf8(""));
  CHECK(is_valid_utf8("h\xC3\xA9 \xF0\x9F\x98\x80"));
  CHECK_FALSE(is_valid_utf8("h\xC3"));
  CHECK_FALSE(is_valid_utf8("\xED\xBF\xBF"));
  std::string out;
  for (const char32_t c : {U'a', U'\u00e9', U'\u0120', U'\u20ac', U'\U0001F600', U'\U0010FFFF'}) {
    append_utf8(c, out);
  }
  CHECK(out == "a\xC3\xA9\xC4\xA0\xE2\x82\xAC\xF0\x9F\x98\x80\xF4\x8F\xBF\xBF");
  // Every scalar value survives encoding and decoding.
  for (char32_t c = 0; c <= 0x10FFFF; c += (c < 0x800 ? 1 : 97)) {
    if (c >= 0xD800 && c <= 0xDFFF) continue;
    std::string bytes;
    append_utf8(c, bytes);
    const CodePoint back = decode_utf8(bytes, 0);
    REQUIRE(back.value == c);
    REQUIRE(back.length == bytes.size());
  }
}

TEST_CASE("char_class is exact for ASCII") {
  for (char32_t c = 0; c < 128; ++c) {
    const CharClass expected = std::isalpha(static_cast<int>(c))   ? CharClass::Letter
                               : std::isdigit(static_cast<int>(c)) ? CharClass::Number
                               : std::isspace(static_cast<int>(c)) ? CharClass::Space
                                                                   : CharClass::Other;
    CHECK_MESSAGE(char_class(c) == expected, "code point ", static_cast<int>(c));
  }
}

TEST_CASE("char_class beyond ASCII") {
  for (const char32_t c : {U'é', U'ß', U'Ω', U'ж', U'ա', U'א', U'ب', U'क', U'ก', U'ა', U'ḁ', U'あ',
                           U'ア', U'中', U'한', U'Ａ', U'ª', U'ⁿ', U'\U00020000'}) {
    CHECK_MESSAGE(char_class(c) == CharClass::Letter, "U+", fmt::format("{:04X}", uint32_t(c)));
  }
  for (const char32_t c : {U'²', U'½', U'٣', U'۵', U'५', U'৩', U'๓', U'Ⅻ', U'①', U'０', U'〇'}) {
    CHECK_MESSAGE(char_class(c) == CharClass::Number, "U+", fmt::format("{:04X}", uint32_t(c)));
  }
  for (const char32_t c : {U'\u0085', U'\u00a0', U'\u1680', U'\u2003', U'\u2028', U'\u3000'}) {
    CHECK_MESSAGE(char_class(c) == CharClass::Space, "U+", fmt::format("{:04X}", uint32_t(c)));
  }
  // Punctuation, symbols, combining marks (the Devanagari virama and vowel sign too), emoji,
  // the byte-order mark (not White_Space), and no code point at all.
  for (const char32_t c : {U'¿', U'×', U'—', U'€', U'«', U'。', U'，', U'\u0301', U'\u094D',
                           U'\u093E', U'😀', U'\u200d', U'\ufeff', X}) {
    CHECK_MESSAGE(char_class(c) == CharClass::Other, "U+", fmt::format("{:04X}", uint32_t(c)));
  }
}
