// minimoe chat: an interactive conversation with a trained model.
//
// One line is one user turn; the reply streams as it is generated. The conversation is kept
// as a transcript (minimoe/generate/chat.hpp) and its oldest turns are dropped when it no
// longer fits in the context window. /reset forgets it, /help lists the commands, Ctrl-D
// (end of input) quits. On a terminal it shows a prompt; piped, it prints the replies only,
// one per line, so that it can be scripted.
#include <unistd.h>

#include <iostream>
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct ChatArgs {
  std::string ckpt, system, gpt2_dir = kDefaultGpt2Dir;
  int64_t tokens = 200;
  SamplingOptions sampling;
  double repetition_penalty = 1.0;
  uint64_t seed = 0;
  int threads = 0;
  bool int8 = false;
};

constexpr const char* kHelp =
    "Type a message and press Enter. Commands:\n"
    "  /reset   start a new conversation\n"
    "  /help    this text\n"
    "  /quit    leave (as does Ctrl-D)\n";

void run_chat(const ChatArgs& a) {
  set_threads(a.threads);
  a.sampling.validate();
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_inference_model(file, a.int8);
  const int64_t context = model.config.context_length;
  if (a.tokens >= context)
    throw UsageError(
        fmt::format("--tokens {} leaves no room for the conversation in the "
                    "model's context of {} tokens",
                    a.tokens, context));
  const bool terminal = isatty(STDIN_FILENO) && isatty(STDOUT_FILENO);
  if (terminal)
    fmt::print("minimoe chat: {} ({} tokens of context). /help for commands, Ctrl-D to quit.\n",
               a.ckpt, context);

  std::vector<ChatMessage> history;
  if (!a.system.empty()) history.push_back({"system", a.system});
  const size_t fresh = history.size();
  uint64_t turn = 0;
  std::string line;
  while (true) {
    if (terminal) fmt::print("> ");
    std::fflush(stdout);
    if (!std::getline(std::cin, line)) break;
    const std::string message = trim_blanks(line);
    if (message.empty()) continue;
    if (message == "/quit" || message == "/exit") break;
    if (message == "/help") {
      fmt::print("{}", kHelp);
      continue;
    }
    if (message == "/reset") {
      history.resize(fresh);
      if (terminal) fmt::print("(a new conversation)\n");
      continue;
    }
    if (message[0] == '/') {
      fmt::print(stderr, "unknown command {}; /help lists them\n", message);
      continue;
    }
    history.push_back({"user", message});
    ChatPrompt prompt;
    try {
      prompt = chat_prompt(tokenizer, history, context - a.tokens);
    } catch (const ValueError& e) {
      history.pop_back();
      fmt::print(stderr, "{}\n", e.what());
      continue;
    }
    if (prompt.dropped > 0)
      history.erase(history.begin() + static_cast<std::ptrdiff_t>(fresh),
                    history.begin() + static_cast<std::ptrdiff_t>(fresh + prompt.dropped));
    TextGenerateOptions o;
    o.generation.max_tokens = a.tokens;
    o.generation.sampling = a.sampling;
    o.generation.seed = a.seed + turn++;  // a fixed seed replays the same conversation
    if (a.repetition_penalty != 1)
      o.generation.processors.push_back(repetition_penalty(a.repetition_penalty));
    o.stop = chat_stop_strings();
    bool started = false;
    const TextGeneration reply =
        generate_text(model, tokenizer, prompt.text, o, [&](std::string_view piece) {
          fmt::print("{}", reply_piece(piece, started));
          std::fflush(stdout);
          return true;
        });
    fmt::print("\n");
    history.push_back({"assistant", trim_blanks(reply.text)});
  }
  if (terminal) fmt::print("\n");
}

}  // namespace

void add_chat_command(CLI::App& app) {
  auto a = std::make_shared<ChatArgs>();
  CLI::App* cmd = app.add_subcommand("chat", "Talk with a trained model (reads lines from stdin)");
  cmd->add_option("--ckpt", a->ckpt, "model file or training checkpoint")->required();
  cmd->add_option("--system", a->system, "a first paragraph that sets the scene");
  cmd->add_option("--tokens", a->tokens, "longest reply, in tokens")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--temperature", a->sampling.temperature, "0 = greedy")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-k", a->sampling.top_k, "keep the k likeliest tokens (0 = all)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--top-p", a->sampling.top_p, "nucleus: keep the likeliest tokens holding p")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--repetition-penalty", a->repetition_penalty,
                  "> 1 discourages repeating tokens of the conversation")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--seed", a->seed, "random seed")->capture_default_str();
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  add_int8_flag(cmd, a->int8);
  cmd->add_option("--gpt2-dir", a->gpt2_dir,
                  "GPT-2's encoder.json and vocab.bpe, for models trained with them")
      ->capture_default_str();
  cmd->callback([a] { run_chat(*a); });
}

}  // namespace minimoe::cli
