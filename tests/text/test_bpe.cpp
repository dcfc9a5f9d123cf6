#include <minimoe/text/bpe.hpp>
#include <minimoe/text/bpe_train.hpp>

#include <map>

#include "../test_util.hpp"
#include "text_samples.hpp"

using namespace minimoe;
using Ids = std::vector<int32_t>;
using Pairs = std::vector<std::pair<int32_t, int32_t>>;

namespace {

Pairs merge_pairs(const BpeTokenizer& bpe) {
  Pairs pairs;
  for (const BpeMerge& m : bpe.vocab().merges) pairs.emplace_back(m.left, m.right);
  return pairs;
}

BpeTrainOptions options_for(int32_t vocab_size, std::vector<std::string> special_tokens = {}) {
  BpeTrainOptions options;
  options.vocab_size = vocab_size;
  options.special_tokens = std::move(special_tokens);
  return options;
}

// GPT-2's encoding loop, written plainly: the reference for BpeTokenizer's heap. Per
// pre-token, find the lowest-ranked pair, merge it everywhere from left to right, repeat.
Ids reference_encode(const BpeTokenizer& bpe, std::string_view text) {
  std::map<std::pair<int32_t, int32_t>, size_t> rank;
  const std::vector<BpeMerge>& merges = bpe.vocab().merges;
  for (size_t i = 0; i < merges.size(); ++i) rank[{merges[i].left, merges[i].right}] = i;
  Ids ids;
  for (const std::string_view piece : pretokenize(text)) {
    Ids word;
    for (const char c : piece) word.push_back(bpe.vocab().byte_ids[static_cast<unsigned char>(c)]);
    while (true) {
      size_t best = merges.size();
      for (size_t i = 0; i + 1 < word.size(); ++i) {
        const auto it = rank.find({word[i], word[i + 1]});
        if (it != rank.end()) best = std::min(best, it->second);
      }
      if (best == merges.size()) break;
      Ids merged;
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && word[i] == merges[best].left &&
            word[i + 1] == merges[best].right) {
          merged.push_back(merges[best].result);
          ++i;
        } else {
          merged.push_back(word[i]);
        }
      }
      word = merged;
    }
    ids.insert(ids.end(), word.begin(), word.end());
  }
  return ids;
}

// BPE training written plainly: the reference for train_bpe's incremental counts. Every
// step recounts all pairs of all pre-tokens.
Pairs reference_train(std::string_view text, int32_t n_merges) {
  std::map<Ids, int64_t> words;
  for (const std::string_view piece : pretokenize(text)) {
    Ids word;
    for (const char c : piece) word.push_back(static_cast<unsigned char>(c));
    ++words[word];
  }
  Pairs merges;
  for (int32_t token = 256; token < 256 + n_merges; ++token) {
    std::map<std::pair<int32_t, int32_t>, int64_t> counts;
    for (const auto& [word, count] : words) {
      for (size_t i = 0; i + 1 < word.size(); ++i) counts[{word[i], word[i + 1]}] += count;
    }
    if (counts.empty()) break;
    auto best = counts.begin();  // the smallest pair among the most frequent
    for (auto it = counts.begin(); it != counts.end(); ++it) {
      if (it->second > best->second) best = it;
    }
    merges.push_back(best->first);
    std::map<Ids, int64_t> merged;
    for (const auto& [word, count] : words) {
      Ids out;
      for (size_t i = 0; i < word.size(); ++i) {
        if (i + 1 < word.size() && std::make_pair(word[i], word[i + 1]) == best->first) {
          out.push_back(token);
          ++i;
        } else {
          out.push_back(word[i]);
        }
      }
      merged[out] += count;
    }
    words = std::move(merged);
  }
  return merges;
}

}  // namespace

TEST_CASE("train_bpe learns the merges of a plain recount at every step") {
  const std::string text = test::sample_text(1000, 6);
  const Pairs expected = reference_train(text, 250);
  CHECK(merge_pairs(train_bpe(text, options_for(256 + 250))) == expected);
  CHECK(expected.size() == 250);
}

TEST_CASE("train_bpe merges the most frequent pair, ties going to the smaller ids") {
  // One pre-token. Pairs: aa 4, ab 2, then the rest once. After aa: (aa a) 2 and (a b) 2 tie,
  // and (97, 98) has the smaller ids. Then (aa ab) 2; then four pairs once each: the smallest
  // ids are (a c), then (d aaab).
  const BpeTokenizer bpe = train_bpe("aaabdaaabac", options_for(261));
  CHECK(merge_pairs(bpe) == Pairs{{97, 97}, {97, 98}, {256, 257}, {97, 99}, {100, 258}});
  CHECK(bpe.token_bytes(258) == "aaab");
  CHECK(bpe.token_bytes(260) == "daaab");
  CHECK(bpe.encode("aaabdaaabac") == Ids{258, 260, 259});
}

TEST_CASE("train_bpe counts pairs within pre-tokens, weighted by their frequency") {
  // Pre-tokens "low", " lower", " lowest", " low": (l o) and (o w) 4 times, then (lo w);
  // (space low) 3 times, ( low e) twice; then (s t) has the smallest ids of the single pairs.
  const BpeTokenizer bpe = train_bpe("low lower lowest low", options_for(262, {"<|endoftext|>"}));
  CHECK(merge_pairs(bpe) == Pairs{{'l', 'o'}, {256, 'w'}, {' ', 257}, {258, 'e'}, {'s', 't'}});
  CHECK(bpe.token_bytes(259) == " lowe");
  CHECK(bpe.vocab_size() == 262);
  CHECK(bpe.eot_id() == 261);
  CHECK(bpe.encode(" lowest") == Ids{259, 260});
  CHECK(bpe.encode("lower") == Ids{257, 'e', 'r'});  // no " lowe" without the space
  CHECK(bpe.encode("low low") == Ids{257, 258});
}

TEST_CASE("train_bpe is deterministic and independent of the order of the texts") {
  const std::string a = test::sample_text(3000, 1), b = test::sample_text(3000, 2);
  const BpeTokenizer first = train_bpe({a, b}, options_for(600));
  REQUIRE(first.vocab().merges.size() == 600 - 256);
  CHECK(merge_pairs(train_bpe({a, b}, options_for(600))) == merge_pairs(first));
  CHECK(merge_pairs(train_bpe({b, a}, options_for(600))) == merge_pairs(first));
  // A longer training extends the shorter one.
  const Pairs longer = merge_pairs(train_bpe({a, b}, options_for(700)));
  REQUIRE(longer.size() == 700 - 256);
  CHECK(Pairs(longer.begin(), longer.begin() + 600 - 256) == merge_pairs(first));
}

TEST_CASE("train_bpe never merges across special-token strings, and may stop early") {
  std::string text;
  for (int i = 0; i < 50; ++i) text += "hello<|endoftext|>";
  const BpeTokenizer bpe = train_bpe(text, options_for(300, {"<|endoftext|>"}));
  // Only "hello" is left to learn, its four pairs 50 times each: e-l (the smallest ids),
  // h-el, l-o, hel-lo, then nothing.
  CHECK(bpe.vocab().merges.size() == 4);
  CHECK(bpe.vocab_size() == 256 + 4 + 1);
  CHECK(bpe.encode_with_special("hello<|endoftext|>") == Ids{259, 260});
  CHECK(train_bpe("", options_for(300)).vocab_size() == 256);
  CHECK_THROWS_WITH_AS(train_bpe("abc", options_for(256, {"<|endoftext|>"})),
                       "train_bpe: vocab_size 256 is less than the 256 byte tokens plus 1 "
                       "special tokens",
                       ValueError);
}

TEST_CASE("BpeTokenizer encodes as GPT-2's loop does and round-trips any bytes") {
  const BpeTokenizer bpe = train_bpe(test::sample_text(5000, 3), options_for(800));
  std::mt19937 rng(4);
  for (int trial = 0; trial < 100; ++trial) {
    const std::string text = test::sample_text(1 + static_cast<int>(rng() % 50), rng());
    const Ids ids = bpe.encode(text);
    REQUIRE(ids == reference_encode(bpe, text));
    REQUIRE(bpe.decode(ids) == text);
    CHECK(ids.size() < text.size());
    const std::string bytes = test::random_bytes(rng() % 200, rng);
    REQUIRE(bpe.decode(bpe.encode(bytes)) == bytes);
  }
  const std::string nul_and_invalid("a\0b\xFF\xC3(\xED\xA0\x80 the", 12);
  CHECK(bpe.decode(bpe.encode(nul_and_invalid)) == nul_and_invalid);
  // Long pre-tokens: the heap keeps these fast, and equal to the reference.
  for (const std::string& run : {std::string(3000, ' '), std::string(3000, 'e'),
                                 std::string(1000, '-') + "the" + std::string(1000, 'e')}) {
    CHECK(bpe.encode(run) == reference_encode(bpe, run));
  }
}

TEST_CASE("BpeTokenizer special tokens, copies and decode errors") {
  const BpeTokenizer bpe =
      train_bpe(test::sample_text(2000, 5), options_for(400, {"<|endoftext|>", "<|pad|>"}));
  CHECK(bpe.eot_id() == 398);
  CHECK(bpe.special_tokens().id("<|pad|>") == 399);
  const std::string text = "the whale<|endoftext|>sea<|pad|>";
  const Ids ids = bpe.encode_with_special(text);
  CHECK(ids[ids.size() - 1] == 399);
  CHECK(std::count(ids.begin(), ids.end(), 398) == 1);
  CHECK(bpe.decode(ids) == text);
  const Ids plain = bpe.encode(text);
  CHECK(std::count(plain.begin(), plain.end(), 398) == 0);
  const BpeTokenizer copy = bpe;  // starts with an empty cache, encodes the same
  CHECK(copy.encode(text) == bpe.encode(text));
  CHECK_THROWS_WITH_AS(bpe.decode({5, 400}),
                       "decode: token id 400 out of range [0, 400) at position 1", IndexError);
  CHECK_THROWS_WITH_AS(bpe.token_bytes(-2), "bpe: token id -2 out of range [0, 400)", IndexError);
}

TEST_CASE("BpeTokenizer rejects an inconsistent vocabulary") {
  const auto rejects = [](const BpeVocab& vocab, const std::string& message) {
    CHECK_THROWS_WITH_AS(BpeTokenizer{vocab}, message.c_str(), ValueError);
  };
  const BpeVocab good = BpeVocab::byte_ordered({{'a', 'b'}, {256, 'c'}}, {"<|endoftext|>"});
  CHECK(BpeTokenizer(good).vocab_size() == 259);
  CHECK(good.is_byte_ordered());

  BpeVocab v = good;
  v.byte_ids[7] = 300;
  rejects(v, "bpe: byte 7 has token id 300, outside [0, 259)");
  v = good;
  v.byte_ids[7] = 6;
  rejects(v, "bpe: byte 7 has token id 6, which another byte has");
  v = good;
  v.merges[0].right = 257;
  rejects(v, "bpe: merge 0 uses token 257, which no byte or earlier merge makes");
  v = good;
  v.merges[1].result = -1;
  rejects(v, "bpe: merge 1 makes token id -1, outside [0, 259)");
  v = good;
  v.merges[1].result = 'x';
  rejects(v, "bpe: merge 1 makes token 120, which already stands for other bytes");
  v = good;
  v.merges[1] = {'a', 'b', 257};
  rejects(v, "bpe: merge 1 repeats the pair of merge 0");
  v = good;
  v.special_tokens[0].second = 256;
  rejects(v,
          "bpe: special token '<|endoftext|>' has token id 256, which is taken or outside "
          "[0, 259)");
  // Two merges may make the same bytes, as in GPT-2 ("ab c" and "a bc")...
  BpeVocab twice = BpeVocab::byte_ordered({{'a', 'b'}, {'b', 'c'}, {256, 'c'}}, {});
  twice.merges.push_back({'a', 257, 258});
  CHECK(BpeTokenizer(twice).vocab_size() == 259);
  CHECK(BpeTokenizer(twice).encode("abc") == Ids{258});
  CHECK_FALSE(twice.is_byte_ordered());
  // ...but the ids must still have no gap.
  twice.merges[2].result = twice.merges[3].result = 259;
  rejects(twice, "bpe: token id 258 is missing: ids must cover [0, 260)");
}
