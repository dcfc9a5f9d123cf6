// minimoe/generate/text_generation.hpp: generation from text to text, with stop strings and
// streaming that never splits a character.
//
//   TextGenerateOptions o;  o.generation.max_tokens = 100;  o.stop = {"\nUser:"};
//   TextGeneration g = generate_text(model, tokenizer, "Once upon a time", o,
//                                    [](std::string_view piece) { std::cout << piece; return true; });
//   // g.text, g.finish ("stop" or "length", as OpenAI's API says), g.prompt_tokens, g.ids
//
// A token's bytes can end inside a UTF-8 character, and a stop string can span tokens, so the
// stream holds back the bytes that do not yet form whole characters and the tail that could be
// the start of a stop string; when a stop string appears the text ends just before it.
#pragma once

#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "minimoe/generate/generate.hpp"
#include "minimoe/text/tokenizer.hpp"

namespace minimoe {

struct TextGenerateOptions {
  GenerateOptions generation;     // stop_id and allowed_vocab are taken from the tokenizer
  std::vector<std::string> stop;  // the text ends before the first of these to appear
};

struct TextGeneration {
  std::string text;
  std::vector<int32_t> ids;   // the tokens generated, including those of a stop string
  int64_t prompt_tokens = 0;  // after the end-of-text token an empty prompt becomes
  std::string finish;         // "stop": end of text or a stop string; "length": max_tokens
                              // or the context window
};

namespace detail {

// Length of the longest prefix of `text` that ends on a character boundary: a trailing lead
// byte whose continuation bytes have not arrived yet is held back (anything invalid is not).
inline size_t complete_utf8_prefix(std::string_view text) {
  const size_t n = text.size();
  for (size_t back = 1; back <= 3 && back <= n; ++back) {
    const auto c = static_cast<unsigned char>(text[n - back]);
    if ((c & 0xC0) == 0x80) continue;  // a continuation byte: look further back
    const size_t need = c >= 0xC2 && c <= 0xDF   ? 2
                        : c >= 0xE0 && c <= 0xEF ? 3
                        : c >= 0xF0 && c <= 0xF4 ? 4
                                                 : 1;
    return need > back ? n - back : n;
  }
  return n;
}

// Length of the longest suffix of `text` that is a proper prefix of some stop string.
inline size_t stop_prefix_suffix(std::string_view text, const std::vector<std::string>& stop) {
  size_t longest = 0;
  for (const std::string& s : stop)
    for (size_t len = std::min(text.size(), s.size() - 1); len > longest; --len)
      if (text.substr(text.size() - len) == std::string_view(s).substr(0, len)) {
        longest = len;
        break;
      }
  return longest;
}

}  // namespace detail

// The request generate_text makes of a prompt: its ids (an empty prompt becomes the
// end-of-text token, the start of a document) and the options with the tokenizer's stop id
// and vocabulary.
inline GenerateRequest text_request(const Tokenizer& tokenizer, std::string_view prompt,
                                    const TextGenerateOptions& o) {
  for (const std::string& s : o.stop)
    check<ValueError>(!s.empty(), "generate: a stop string is empty");
  GenerateRequest r{tokenizer.encode(prompt), o.generation};
  if (r.prompt.empty()) r.prompt.push_back(tokenizer.eot_id());
  r.options.stop_id = tokenizer.eot_id();
  r.options.allowed_vocab = tokenizer.vocab_size();
  return r;
}

// The text side of one generation: decodes each token as it comes and passes on the text that
// is final, holding back incomplete characters and what could start a stop string.
class TextStream {
 public:
  TextStream(const Tokenizer& tokenizer, std::vector<std::string> stop,
             std::function<bool(std::string_view)> on_text = nullptr)
      : tokenizer_(tokenizer), stop_(std::move(stop)), on_text_(std::move(on_text)) {}

  // The token callback: false once a stop string appeared or on_text asked to stop.
  bool on_token(int32_t id) {
    pending_ += tokenizer_.decode({id});
    size_t first = std::string::npos;
    for (const std::string& s : stop_) first = std::min(first, pending_.find(s));
    if (first != std::string::npos) {
      pending_.resize(first);
      emit(pending_.size());
      stopped_by_string_ = true;
      return false;
    }
    const size_t whole = detail::complete_utf8_prefix(pending_);
    const size_t held =
        detail::stop_prefix_suffix(std::string_view(pending_).substr(0, whole), stop_);
    emit(whole - held);
    return !stopped_by_caller_;
  }

  // After the last token: flushes what was held back and gives the whole result.
  TextGeneration finish(const Generation& g, int64_t prompt_tokens) {
    if (!stopped_by_string_) emit(pending_.size());
    out_.prompt_tokens = prompt_tokens;
    out_.ids = g.ids;
    out_.finish = stopped_by_string_ || g.reason == StopReason::EndOfText ? "stop" : "length";
    return out_;
  }

 private:
  void emit(size_t n) {
    if (n == 0) return;
    const std::string_view piece(pending_.data(), n);
    out_.text.append(piece);
    if (on_text_ && !on_text_(piece)) stopped_by_caller_ = true;
    pending_.erase(0, n);
  }

  const Tokenizer& tokenizer_;
  std::vector<std::string> stop_;
  std::function<bool(std::string_view)> on_text_;
  std::string pending_;  // decoded, not yet passed on
  TextGeneration out_;
  bool stopped_by_string_ = false, stopped_by_caller_ = false;
};

template <typename T>
TextGeneration generate_text(GPT<T>& model, const Tokenizer& tokenizer, std::string_view prompt,
                             const TextGenerateOptions& o,
                             const std::function<bool(std::string_view)>& on_text = nullptr) {
  const GenerateRequest r = text_request(tokenizer, prompt, o);
  TextStream stream(tokenizer, o.stop, on_text);
  const Generation g =
      generate(model, r.prompt, r.options, [&](int32_t id) { return stream.on_token(id); });
  return stream.finish(g, static_cast<int64_t>(r.prompt.size()));
}

}  // namespace minimoe
