#include <minimoe/text/bpe_train.hpp>
#include <minimoe/text/tokenizer.hpp>

#include "../data/temp_dir.hpp"
#include "../test_util.hpp"
#include "text_samples.hpp"

using namespace minimoe;
using Ids = std::vector<int32_t>;

TEST_CASE("load_tokenizer: bytes, a saved BPE file, or a GPT-2 directory") {
  const Tokenizer bytes = load_tokenizer("bytes");
  CHECK(bytes.vocab_size() == 257);
  CHECK(bytes.eot_id() == 256);
  CHECK(bytes.encode("hi") == Ids{'h', 'i'});
  CHECK(bytes.encode_with_special("<|endoftext|>") == Ids{256});
  CHECK(bytes.decode({'h', 'i', 256}) == "hi<|endoftext|>");

  test::TempDir dir;
  BpeTrainOptions options;
  options.vocab_size = 300;
  const BpeTokenizer trained = train_bpe(test::sample_text(1000, 12), options);
  save_bpe(trained, dir.file("bpe.json"));
  const Tokenizer bpe = load_tokenizer(dir.file("bpe.json"));
  CHECK(bpe.vocab_size() == 300);
  CHECK(bpe.eot_id() == 299);
  CHECK(bpe.special_tokens().entries().size() == 1);
  const std::string text = test::sample_text(100, 13);
  CHECK(bpe.encode(text) == trained.encode(text));
  CHECK(bpe.decode(bpe.encode_with_special(text + "<|endoftext|>")) == text + "<|endoftext|>");

  CHECK_THROWS_WITH_AS(load_tokenizer("gpt2:"),
                       "load_tokenizer: 'gpt2:' names no directory (gpt2:DIR)", ValueError);
  CHECK_THROWS_AS(load_tokenizer("gpt2:" + dir.file("nothing")), IOError);
  CHECK_THROWS_AS(load_tokenizer(dir.file("nothing.json")), IOError);
}
