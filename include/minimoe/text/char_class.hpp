// minimoe/text/char_class.hpp: the character classes GPT-2's pre-tokeniser needs: letters
// (\p{L}), numbers (\p{N}), whitespace (\s) and everything else.
//
//   char_class(U'é') == CharClass::Letter;   char_class(U'٣') == CharClass::Number
//
// Exact for ASCII and for whitespace (the Unicode White_Space property, which is what
// Python's `regex` module, and so GPT-2, matches with \s). Letters and numbers beyond ASCII
// come from a compact table of ranges instead of the full Unicode database (thousands of
// ranges): Latin, Greek, Cyrillic, Armenian, Hebrew, Arabic, Syriac, Thaana, the Indic
// scripts from Devanagari to Malayalam, Thai, Georgian, Ethiopic, Hangul, kana, CJK
// ideographs, fullwidth forms, and the number forms (superscripts, fractions, circled and
// Roman numerals). The approximation:
//   - every other script (Tibetan, Khmer, Mongolian, Sinhala, historic scripts, ...), the
//     letter-like symbols (ℕ, ℓ) and the math alphanumerics are Other;
//   - in the Indic blocks one rule shared by all of them (from their common ISCII layout)
//     tells letters, vowel signs and digits apart, which is right for the bulk of each block
//     but not for its rarer code points;
//   - unassigned code points inside a range take the range's class.
// Only pre-token boundaries depend on the classes, never the round trip: a misclassified
// character still encodes and decodes to itself. docs/tokenizers.md measures the agreement.
#pragma once

#include <algorithm>
#include <cstdint>
#include <iterator>

namespace minimoe {

enum class CharClass : uint8_t { Letter, Number, Space, Other };

namespace detail {

struct CharRange {
  char32_t first, last;
  CharClass cls;
};

// Sorted, disjoint ranges; code points in none of them are Other.
inline constexpr CharRange kCharRanges[] = {
    // Latin-1 Supplement, Latin Extended-A/B, IPA, spacing modifier letters
    {0xAA, 0xAA, CharClass::Letter},
    {0xB2, 0xB3, CharClass::Number},
    {0xB5, 0xB5, CharClass::Letter},
    {0xB9, 0xB9, CharClass::Number},
    {0xBA, 0xBA, CharClass::Letter},
    {0xBC, 0xBE, CharClass::Number},
    {0xC0, 0xD6, CharClass::Letter},
    {0xD8, 0xF6, CharClass::Letter},
    {0xF8, 0x2C1, CharClass::Letter},
    {0x2C6, 0x2D1, CharClass::Letter},
    {0x2E0, 0x2E4, CharClass::Letter},
    {0x2EC, 0x2EC, CharClass::Letter},
    {0x2EE, 0x2EE, CharClass::Letter},
    // Greek, Cyrillic (0x300-0x36F are combining marks: Other)
    {0x370, 0x374, CharClass::Letter},
    {0x376, 0x37D, CharClass::Letter},
    {0x37F, 0x37F, CharClass::Letter},
    {0x386, 0x386, CharClass::Letter},
    {0x388, 0x3F5, CharClass::Letter},
    {0x3F7, 0x481, CharClass::Letter},
    {0x48A, 0x52F, CharClass::Letter},
    // Armenian, Hebrew, Arabic, Syriac, Thaana
    {0x531, 0x556, CharClass::Letter},
    {0x559, 0x559, CharClass::Letter},
    {0x560, 0x588, CharClass::Letter},
    {0x5D0, 0x5F2, CharClass::Letter},
    {0x620, 0x64A, CharClass::Letter},
    {0x660, 0x669, CharClass::Number},
    {0x66E, 0x66F, CharClass::Letter},
    {0x671, 0x6D3, CharClass::Letter},
    {0x6D5, 0x6D5, CharClass::Letter},
    {0x6E5, 0x6E6, CharClass::Letter},
    {0x6EE, 0x6EF, CharClass::Letter},
    {0x6F0, 0x6F9, CharClass::Number},
    {0x6FA, 0x6FC, CharClass::Letter},
    {0x6FF, 0x6FF, CharClass::Letter},
    {0x710, 0x72F, CharClass::Letter},  // Syriac
    {0x74D, 0x7A5, CharClass::Letter},  // Syriac, Arabic Supplement, Thaana
    // 0x900-0xD7F: the Indic blocks, classified by indic_class() below
    // Thai, Georgian, Hangul Jamo, Ethiopic, phonetic extensions
    {0xE01, 0xE30, CharClass::Letter},
    {0xE32, 0xE33, CharClass::Letter},
    {0xE40, 0xE46, CharClass::Letter},
    {0xE50, 0xE59, CharClass::Number},
    {0x10A0, 0x10C5, CharClass::Letter},
    {0x10D0, 0x10FA, CharClass::Letter},
    {0x10FC, 0x11FF, CharClass::Letter},
    {0x1200, 0x135A, CharClass::Letter},
    {0x1369, 0x137C, CharClass::Number},
    {0x1D00, 0x1DBF, CharClass::Letter},
    // Latin Extended Additional, Greek Extended (without its accent symbols)
    {0x1E00, 0x1FBC, CharClass::Letter},
    {0x1FBE, 0x1FBE, CharClass::Letter},
    {0x1FC2, 0x1FCC, CharClass::Letter},
    {0x1FD0, 0x1FDB, CharClass::Letter},
    {0x1FE0, 0x1FEC, CharClass::Letter},
    {0x1FF2, 0x1FFC, CharClass::Letter},
    // Superscripts and subscripts, number forms, enclosed and dingbat numerals
    {0x2070, 0x2070, CharClass::Number},
    {0x2071, 0x2071, CharClass::Letter},
    {0x2074, 0x2079, CharClass::Number},
    {0x207F, 0x207F, CharClass::Letter},
    {0x2080, 0x2089, CharClass::Number},
    {0x2090, 0x209C, CharClass::Letter},
    {0x2150, 0x2182, CharClass::Number},
    {0x2183, 0x2184, CharClass::Letter},
    {0x2185, 0x2189, CharClass::Number},
    {0x2460, 0x249B, CharClass::Number},
    {0x24EA, 0x24FF, CharClass::Number},
    {0x2776, 0x2793, CharClass::Number},
    // Glagolitic, Latin Extended-C, Coptic
    {0x2C00, 0x2CE4, CharClass::Letter},
    // CJK: iteration marks, Hangzhou numerals, kana, Bopomofo, Hangul compatibility Jamo,
    // circled numbers, ideographs, Yi, Hangul syllables, compatibility ideographs
    {0x3005, 0x3006, CharClass::Letter},
    {0x3007, 0x3007, CharClass::Number},
    {0x3021, 0x3029, CharClass::Number},
    {0x3031, 0x3035, CharClass::Letter},
    {0x3038, 0x303A, CharClass::Number},
    {0x303B, 0x303C, CharClass::Letter},
    {0x3041, 0x3096, CharClass::Letter},
    {0x309D, 0x309F, CharClass::Letter},
    {0x30A1, 0x30FA, CharClass::Letter},
    {0x30FC, 0x30FF, CharClass::Letter},
    {0x3105, 0x312F, CharClass::Letter},
    {0x3131, 0x318E, CharClass::Letter},
    {0x3192, 0x3195, CharClass::Number},
    {0x31A0, 0x31BF, CharClass::Letter},
    {0x31F0, 0x31FF, CharClass::Letter},
    {0x3220, 0x3229, CharClass::Number},
    {0x3248, 0x324F, CharClass::Number},
    {0x3251, 0x325F, CharClass::Number},
    {0x3280, 0x3289, CharClass::Number},
    {0x32B1, 0x32BF, CharClass::Number},
    {0x3400, 0x4DBF, CharClass::Letter},
    {0x4E00, 0xA48C, CharClass::Letter},
    // Cyrillic Extended-B, Latin Extended-D and -E
    {0xA640, 0xA66E, CharClass::Letter},
    {0xA67F, 0xA69D, CharClass::Letter},
    {0xA722, 0xA788, CharClass::Letter},
    {0xA78B, 0xA7CA, CharClass::Letter},
    {0xAB30, 0xAB5A, CharClass::Letter},
    {0xAB5C, 0xAB69, CharClass::Letter},
    {0xAC00, 0xD7A3, CharClass::Letter},
    {0xF900, 0xFAD9, CharClass::Letter},
    // Alphabetic and Arabic presentation forms, fullwidth digits and letters, halfwidth kana
    {0xFB00, 0xFB06, CharClass::Letter},
    {0xFB13, 0xFB17, CharClass::Letter},
    {0xFB1D, 0xFB1D, CharClass::Letter},
    {0xFB1F, 0xFB28, CharClass::Letter},
    {0xFB2A, 0xFBB1, CharClass::Letter},
    {0xFBD3, 0xFD3D, CharClass::Letter},
    {0xFD50, 0xFDC7, CharClass::Letter},
    {0xFDF0, 0xFDFB, CharClass::Letter},
    {0xFE70, 0xFEFC, CharClass::Letter},
    {0xFF10, 0xFF19, CharClass::Number},
    {0xFF21, 0xFF3A, CharClass::Letter},
    {0xFF41, 0xFF5A, CharClass::Letter},
    {0xFF66, 0xFFDC, CharClass::Letter},
    // CJK ideograph extensions B to H
    {0x20000, 0x323AF, CharClass::Letter},
};

// Devanagari, Bengali, Gurmukhi, Gujarati, Oriya, Tamil, Telugu, Kannada and Malayalam share
// one layout in their 128-code-point blocks: independent vowels and consonants, then vowel
// signs and virama (combining marks, so Other), then extra consonants, then the digits.
inline CharClass indic_class(char32_t c) {
  const char32_t offset = c & 0x7F;
  if ((offset >= 0x05 && offset <= 0x39) || offset == 0x3D || offset == 0x50 ||
      (offset >= 0x58 && offset <= 0x61) || (offset >= 0x71 && offset <= 0x7F)) {
    return CharClass::Letter;
  }
  if (offset >= 0x66 && offset <= 0x6F) return CharClass::Number;
  return CharClass::Other;
}

inline bool is_unicode_space(char32_t c) {
  return c == 0x85 || c == 0xA0 || c == 0x1680 || (c >= 0x2000 && c <= 0x200A) || c == 0x2028 ||
         c == 0x2029 || c == 0x202F || c == 0x205F || c == 0x3000;
}

}  // namespace detail

inline CharClass char_class(char32_t c) {
  if (c < 0x80) {
    if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z')) return CharClass::Letter;
    if (c >= '0' && c <= '9') return CharClass::Number;
    if (c == ' ' || (c >= '\t' && c <= '\r')) return CharClass::Space;
    return CharClass::Other;
  }
  if (detail::is_unicode_space(c)) return CharClass::Space;
  if (c >= 0x900 && c <= 0xD7F) return detail::indic_class(c);
  const auto* end = std::end(detail::kCharRanges);
  const auto* range =
      std::upper_bound(std::begin(detail::kCharRanges), end, c,
                       [](char32_t v, const detail::CharRange& r) { return v < r.first; });
  if (range == std::begin(detail::kCharRanges)) return CharClass::Other;
  --range;
  return c <= range->last ? range->cls : CharClass::Other;
}

}  // namespace minimoe
