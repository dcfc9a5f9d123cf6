// minimoe/generate/chat.hpp: a conversation as the plain-text transcript a language model
// continues.
//
//   std::vector<ChatMessage> history{{"system", "You are terse."}, {"user", "Hi!"}};
//   ChatPrompt p = chat_prompt(tokenizer, history, /*max_prompt_tokens=*/200);
//   // p.text == "You are terse.\n\nUser: Hi!\nAssistant:"; generate with stop = chat_stop_strings()
//
// minimoe's models are trained on raw text, not on a chat template with special tokens, so a
// conversation is written the way dialogue appears in text: one "User:" or "Assistant:" line per
// turn after an optional system paragraph, ending with "Assistant:" for the model to continue.
// The reply ends where the model starts the next turn. When the transcript outgrows the prompt
// budget, the oldest turns are dropped (never the system message or the last message).
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "minimoe/error.hpp"
#include "minimoe/text/tokenizer.hpp"

namespace minimoe {

struct ChatMessage {
  std::string role;  // "system", "user" or "assistant"
  std::string content;
};

inline std::vector<std::string> chat_stop_strings() { return {"\nUser:", "\nAssistant:"}; }

// Text without the spaces, tabs and line breaks around it.
inline std::string trim_blanks(std::string_view text) {
  const size_t begin = text.find_first_not_of(" \t\r\n");
  if (begin == std::string_view::npos) return "";
  return std::string(text.substr(begin, text.find_last_not_of(" \t\r\n") - begin + 1));
}

// The reply streamed after "Assistant:" starts with blanks that belong to the transcript, not
// to the reply: returns the piece without them until the first other character has been seen.
inline std::string_view reply_piece(std::string_view piece, bool& started) {
  if (!started) {
    const size_t first = piece.find_first_not_of(" \t\r\n");
    if (first == std::string_view::npos) return {};
    piece.remove_prefix(first);
    started = true;
  }
  return piece;
}

struct ChatPrompt {
  std::string text;
  int64_t tokens = 0;
  size_t dropped = 0;  // oldest turns left out to fit the budget
};

inline std::string chat_transcript(const std::vector<ChatMessage>& messages, size_t first_turn) {
  std::string text;
  for (size_t i = 0; i < messages.size(); ++i) {
    const ChatMessage& m = messages[i];
    if (m.role == "system") {
      text += m.content + "\n\n";
    } else if (i >= first_turn) {
      text += (m.role == "user" ? "User: " : "Assistant: ") + m.content + "\n";
    }
  }
  return text + "Assistant:";
}

inline ChatPrompt chat_prompt(const Tokenizer& tokenizer, const std::vector<ChatMessage>& messages,
                              int64_t max_prompt_tokens) {
  check<ValueError>(!messages.empty(), "chat: there are no messages");
  for (const ChatMessage& m : messages)
    check<ValueError>(m.role == "system" || m.role == "user" || m.role == "assistant",
                      "chat: unknown role '{}' (expected system, user or assistant)", m.role);
  // Drop whole turns from the front until the transcript fits; the last message always stays.
  for (size_t first = 0; first < messages.size(); ++first) {
    ChatPrompt p;
    p.text = chat_transcript(messages, first);
    p.tokens = static_cast<int64_t>(tokenizer.encode(p.text).size());
    for (size_t i = 0; i < first; ++i) p.dropped += messages[i].role != "system";
    if (p.tokens <= max_prompt_tokens) return p;
  }
  throw ValueError(fmt::format(
      "chat: the last message does not fit in the {} tokens the context leaves for the prompt",
      max_prompt_tokens));
}

}  // namespace minimoe
