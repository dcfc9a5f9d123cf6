#include <doctest/doctest.h>

#include <minimoe/generate/chat.hpp>
#include <minimoe/generate/text_generation.hpp>
#include <minimoe/models/presets.hpp>
#include <minimoe/text/utf8.hpp>

using namespace minimoe;

namespace {

GPT<float> byte_model() {
  GPTConfig c = preset("tiny");
  c.vocab_size = 257;  // the byte tokenizer's
  c.context_length = 64;
  c.n_layers = 1;
  c.d_model = 16;
  c.n_heads = 2;
  c.ffn_hidden = 16;
  c.validate();
  return GPT<float>(c, 1);
}

// Makes the model write `script` (bytes, then the end-of-text id 256) whatever its logits.
LogitsProcessor scripted(const std::string& script) {
  return [script](std::vector<float>& logits, const TokenHistory& h) {
    const size_t k = h.tokens.size() - h.output_begin;
    std::fill(logits.begin(), logits.end(), -50.0f);
    logits[k < script.size() ? static_cast<unsigned char>(script[k]) : 256] = 0;
  };
}

struct Streamed {
  TextGeneration result;
  std::vector<std::string> pieces;
};

Streamed run(const std::string& script, std::vector<std::string> stop = {},
             int64_t max_tokens = 100) {
  GPT<float> model = byte_model();
  const Tokenizer bytes = load_tokenizer("bytes");
  TextGenerateOptions o;
  o.generation.max_tokens = max_tokens;
  o.generation.processors.push_back(scripted(script));
  o.stop = std::move(stop);
  Streamed s;
  s.result = generate_text(model, bytes, "Hi", o, [&](std::string_view piece) {
    s.pieces.emplace_back(piece);
    return true;
  });
  return s;
}

std::string joined(const std::vector<std::string>& pieces) {
  std::string all;
  for (const std::string& p : pieces) all += p;
  return all;
}

}  // namespace

TEST_CASE("streamed text never splits a character and ends at the end-of-text token") {
  const std::string script = "a\xC3\xA9\xE2\x82\xAC b";  // a, é (2 bytes), € (3 bytes), space, b
  const Streamed s = run(script);
  CHECK(s.result.text == script);
  CHECK(s.result.finish == "stop");
  CHECK(s.result.prompt_tokens == 2);
  CHECK(s.result.ids.size() == script.size());
  CHECK(joined(s.pieces) == script);
  for (const std::string& piece : s.pieces) CHECK(is_valid_utf8(piece));
  CHECK(s.pieces.size() == 5);  // a, é, €, space, b: one piece per character
}

TEST_CASE("invalid UTF-8 from the model is streamed as it is, not held forever") {
  const std::string script =
      "x\xC3"
      "y\xFF";  // a lead byte without its continuation, a bad byte
  const Streamed s = run(script);
  CHECK(s.result.text == script);
  CHECK(joined(s.pieces) == script);
}

TEST_CASE("a stop string ends the text before it, even across tokens") {
  const Streamed s = run("hello STOP world", {"xyz", "STOP"});
  CHECK(s.result.text == "hello ");
  CHECK(s.result.finish == "stop");
  CHECK(joined(s.pieces) == "hello ");  // "S", "ST", "STO" were held back, never streamed
  CHECK(s.result.ids.size() == 10);     // the tokens up to the end of the stop string

  const Streamed partial = run("abST", {"STOP"});  // a stop prefix at the end is text after all
  CHECK(partial.result.text == "abST");
  CHECK(joined(partial.pieces) == "abST");
}

TEST_CASE("max_tokens ends a text with finish reason length") {
  const Streamed s = run("abcdefgh", {}, 3);
  CHECK(s.result.text == "abc");
  CHECK(s.result.finish == "length");
}

TEST_CASE("an empty prompt starts a document; an empty stop string is refused") {
  GPT<float> model = byte_model();
  const Tokenizer bytes = load_tokenizer("bytes");
  TextGenerateOptions o;
  o.generation.max_tokens = 2;
  CHECK(generate_text(model, bytes, "", o).prompt_tokens == 1);
  o.stop = {""};
  CHECK_THROWS_WITH_AS(generate_text(model, bytes, "a", o), doctest::Contains("stop string"),
                       ValueError);
}

TEST_CASE("logits processors: repetition, presence and frequency penalties, logit bias") {
  const std::vector<int32_t> tokens{0, 1, 2, 2, 2};  // prompt {0, 1}, output {2, 2, 2}
  const TokenHistory h{tokens, 2};
  std::vector<float> logits{2.0f, -2.0f, 1.0f, 3.0f};
  repetition_penalty(2.0)(logits, h);
  CHECK(logits == std::vector<float>{1.0f, -4.0f, 0.5f, 3.0f});  // seen ids only, prompt too

  logits = {2.0f, -2.0f, 1.0f, 3.0f};
  presence_frequency_penalty(0.5, 0.25)(logits, h);  // output only: id 2, three times
  CHECK(logits == std::vector<float>{2.0f, -2.0f, 1.0f - 0.5f - 0.75f, 3.0f});

  logits = {0, 0, 0, 0};
  logit_bias({{1, 5.0}, {3, -100.0}, {9, 1.0}})(logits, h);  // ids past the row are ignored
  CHECK(logits == std::vector<float>{0, 5, 0, -100});

  CHECK_THROWS_WITH_AS(repetition_penalty(0), doctest::Contains("positive"), ValueError);
  CHECK_THROWS_WITH_AS(presence_frequency_penalty(3, 0), doctest::Contains("[-2, 2]"), ValueError);
  CHECK_THROWS_WITH_AS(logit_bias({{-1, 1.0}}), doctest::Contains("negative"), ValueError);
  CHECK_THROWS_WITH_AS(logit_bias({{1, 101.0}}), doctest::Contains("[-100, 100]"), ValueError);
}

TEST_CASE("a conversation becomes a transcript; the oldest turns go when it does not fit") {
  const Tokenizer bytes = load_tokenizer("bytes");
  const std::vector<ChatMessage> history{
      {"system", "Be brief."}, {"user", "Hi"}, {"assistant", "Hello."}, {"user", "Bye"}};
  const ChatPrompt all = chat_prompt(bytes, history, 1000);
  CHECK(all.text == "Be brief.\n\nUser: Hi\nAssistant: Hello.\nUser: Bye\nAssistant:");
  CHECK(all.tokens == static_cast<int64_t>(all.text.size()));
  CHECK(all.dropped == 0);

  const ChatPrompt cut = chat_prompt(bytes, history, all.tokens - 1);
  CHECK(cut.text == "Be brief.\n\nAssistant: Hello.\nUser: Bye\nAssistant:");
  CHECK(cut.dropped == 1);
  CHECK(chat_prompt(bytes, history, 36).text == "Be brief.\n\nUser: Bye\nAssistant:");

  CHECK_THROWS_WITH_AS(chat_prompt(bytes, history, 10), doctest::Contains("does not fit"),
                       ValueError);
  CHECK_THROWS_WITH_AS(chat_prompt(bytes, {{"robot", "x"}}, 100),
                       doctest::Contains("unknown role 'robot'"), ValueError);
  CHECK_THROWS_WITH_AS(chat_prompt(bytes, {}, 100), doctest::Contains("no messages"), ValueError);

  bool started = false;
  CHECK(reply_piece("  ", started).empty());
  CHECK(reply_piece(" Hi there", started) == "Hi there");
  CHECK(reply_piece(" again", started) == " again");
  CHECK(trim_blanks("\n  two words \t") == "two words");
}
