// minimoe/text/utf8.hpp: UTF-8 decoding that accepts any bytes.
//
//   for (size_t pos = 0; pos < text.size();) {
//     const CodePoint c = decode_utf8(text, pos);   // c.value, c.length >= 1
//     pos += c.length;
//   }
//
// The tokenizers must round-trip any bytes, including text that is not UTF-8 at all, so
// decoding never throws and never reads past the end: a byte that does not start a well-formed
// sequence (a stray continuation byte, an overlong form, a surrogate, a value above U+10FFFF,
// a sequence cut short) decodes as kInvalidCodePoint of length 1, and decoding resumes at the
// next byte. Well-formed means Table 3-7 of the Unicode standard.
#pragma once

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace minimoe {

// Outside the Unicode range, so it never collides with a real character.
inline constexpr char32_t kInvalidCodePoint = 0x110000;

struct CodePoint {
  char32_t value;  // kInvalidCodePoint for a byte that starts no well-formed sequence
  size_t length;   // bytes consumed, 1 to 4
};

// The character starting at text[pos]; pos must be < text.size().
inline CodePoint decode_utf8(std::string_view text, size_t pos) {
  const auto byte = [&](size_t i) { return static_cast<uint8_t>(text[pos + i]); };
  const uint8_t lead = byte(0);
  if (lead < 0x80) return {lead, 1};
  const CodePoint invalid{kInvalidCodePoint, 1};
  size_t length;
  if (lead >= 0xC2 && lead <= 0xDF) {
    length = 2;
  } else if (lead >= 0xE0 && lead <= 0xEF) {
    length = 3;
  } else if (lead >= 0xF0 && lead <= 0xF4) {
    length = 4;
  } else {
    return invalid;  // a continuation byte, or a lead byte that only overlong forms use
  }
  if (text.size() - pos < length) return invalid;
  char32_t value = lead & (0x7F >> length);  // the lead byte's payload bits
  for (size_t i = 1; i < length; ++i) {
    if ((byte(i) & 0xC0) != 0x80) return invalid;
    value = (value << 6) | (byte(i) & 0x3F);
  }
  const bool overlong = (length == 3 && value < 0x800) || (length == 4 && value < 0x10000);
  const bool surrogate = value >= 0xD800 && value <= 0xDFFF;
  if (overlong || surrogate || value > 0x10FFFF) return invalid;
  return {value, length};
}

inline bool is_valid_utf8(std::string_view text) {
  for (size_t pos = 0; pos < text.size();) {
    const CodePoint c = decode_utf8(text, pos);
    if (c.value == kInvalidCodePoint) return false;
    pos += c.length;
  }
  return true;
}

// Appends the UTF-8 encoding of c, a Unicode scalar value (not a surrogate, <= U+10FFFF).
inline void append_utf8(char32_t c, std::string& out) {
  const auto put = [&](uint32_t bits) { out.push_back(static_cast<char>(bits)); };
  if (c < 0x80) {
    put(c);
    return;
  }
  // The lead byte's marker and high bits, then 6 bits per continuation byte.
  constexpr uint32_t kLeadMarker[] = {0, 0xC0, 0xE0, 0xF0};
  const int continuation_bytes = c < 0x800 ? 1 : c < 0x10000 ? 2 : 3;
  put(kLeadMarker[continuation_bytes] | (c >> (6 * continuation_bytes)));
  for (int i = continuation_bytes - 1; i >= 0; --i) put(0x80 | ((c >> (6 * i)) & 0x3F));
}

}  // namespace minimoe
