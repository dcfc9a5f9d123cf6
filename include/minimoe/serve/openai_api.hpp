// minimoe/serve/openai_api.hpp: the OpenAI-compatible completion API, without the HTTP.
//
//   OpenAIApi api(model, tokenizer, "minimoe-tiny");
//   ApiReply r = api.handle("POST", "/v1/completions", body);             // status + JSON
//   api.handle_stream("POST", "/v1/chat/completions", body, write_chunk);  // server-sent events
//
// The HTTP front end (cli/serve.cpp) only moves bytes; everything a request can get wrong is
// checked here, where tests and the fuzzer call it directly. Bad requests get the status and
// the error object OpenAI's API returns ({"error": {"message", "type", "param", "code"}}),
// never an exception. Requests are decoded together (continuous batching, up to
// ApiLimits::max_batch at a time, serve/decode_scheduler.hpp): a decoding step is bound by
// reading the weights, which one step reads once for the whole batch.
#pragma once

#include <atomic>
#include <charconv>
#include <chrono>
#include <cmath>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <future>
#include <limits>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/generate/chat.hpp"
#include "minimoe/generate/text_generation.hpp"
#include "minimoe/serve/decode_scheduler.hpp"

namespace minimoe {

struct ApiReply {
  int status = 200;
  std::string body;  // JSON
};

struct ApiLimits {
  size_t max_body_bytes = 1 << 20;
  size_t max_stop_strings = 4;  // as OpenAI's API
  size_t max_stop_bytes = 256;
  size_t max_batch = 8;  // requests decoded together; more wait in arrival order
};

// A request that failed validation: the HTTP status and OpenAI's error fields.
struct ApiError : Error {
  int status;
  std::string param;
  std::string code;
  ApiError(int status_, std::string message, std::string param_ = "", std::string code_ = "")
      : Error(std::move(message)),
        status(status_),
        param(std::move(param_)),
        code(std::move(code_)) {}
};

// A validated completion or chat completion request.
struct CompletionRequest {
  bool chat = false;
  bool stream = false;
  std::string prompt;                 // completions
  std::vector<ChatMessage> messages;  // chat completions
  std::optional<int64_t> max_tokens;  // default: 16 for completions, the rest of the context
                                      // for chat (as OpenAI's API)
  double temperature = 1.0;
  double top_p = 1.0;
  int64_t top_k = 0;
  double presence_penalty = 0, frequency_penalty = 0, repetition_penalty = 1;
  std::map<int32_t, double> logit_bias;
  std::vector<std::string> stop;
  std::optional<uint64_t> seed;
};

namespace detail {

inline const nlohmann::json* field(const nlohmann::json& object, const char* name) {
  const auto it = object.find(name);
  return it == object.end() || it->is_null() ? nullptr : &*it;
}

inline double number_in(const nlohmann::json& body, const char* name, double fallback, double lo,
                        double hi) {
  const nlohmann::json* v = field(body, name);
  if (!v) return fallback;
  if (!v->is_number())
    throw ApiError(400, fmt::format("'{}' must be a number", name), name, "invalid_type");
  const double x = v->get<double>();
  if (!(x >= lo && x <= hi))
    throw ApiError(400, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x),
                   name, "invalid_value");
  return x;
}

inline int64_t integer_in(const nlohmann::json& v, const char* name, int64_t lo, int64_t hi) {
  if (!v.is_number_integer() && !v.is_number_unsigned())
    throw ApiError(400, fmt::format("'{}' must be an integer", name), name, "invalid_type");
  if (v.is_number_unsigned() && v.get<uint64_t>() > static_cast<uint64_t>(hi))
    throw ApiError(400, fmt::format("'{}' must be at most {}", name, hi), name, "invalid_value");
  const int64_t x = v.get<int64_t>();
  if (x < lo || x > hi)
    throw ApiError(400, fmt::format("'{}' must be between {} and {}, got {}", name, lo, hi, x),
                   name, "invalid_value");
  return x;
}

inline std::string string_field(const nlohmann::json& v, const std::string& name) {
  if (!v.is_string())
    throw ApiError(400, fmt::format("'{}' must be a string", name), name, "invalid_type");
  return v.get<std::string>();
}

}  // namespace detail

// Parses and validates a request body. Everything the model does not depend on is checked
// here; the context length is checked once the prompt is tokenised.
inline CompletionRequest parse_completion_request(std::string_view body, bool chat,
                                                  const std::string& model_name,
                                                  const ApiLimits& limits = {}) {
  using detail::field;
  if (body.size() > limits.max_body_bytes)
    throw ApiError(413, fmt::format("the request body has {} bytes, more than the limit of {}",
                                    body.size(), limits.max_body_bytes));
  nlohmann::json j;
  try {
    j = nlohmann::json::parse(body.begin(), body.end());
  } catch (const nlohmann::json::exception& e) {
    throw ApiError(400, fmt::format("the body is not valid JSON: {}", e.what()), "",
                   "invalid_json");
  }
  if (!j.is_object()) throw ApiError(400, "the body must be a JSON object", "", "invalid_json");

  CompletionRequest r;
  r.chat = chat;
  if (const nlohmann::json* m = field(j, "model")) {
    const std::string name = detail::string_field(*m, "model");
    if (name != model_name)
      throw ApiError(
          400, fmt::format("the model '{}' does not exist; this server has '{}'", name, model_name),
          "model", "model_not_found");
  }
  if (chat) {
    const nlohmann::json* messages = field(j, "messages");
    if (!messages || !messages->is_array() || messages->empty())
      throw ApiError(400, "'messages' must be a non-empty array", "messages", "invalid_value");
    for (size_t i = 0; i < messages->size(); ++i) {
      const nlohmann::json& m = (*messages)[i];
      const std::string where = fmt::format("messages[{}]", i);
      if (!m.is_object())
        throw ApiError(400, fmt::format("'{}' must be an object", where), where, "invalid_type");
      const nlohmann::json* role = field(m, "role");
      const nlohmann::json* content = field(m, "content");
      if (!role || !content)
        throw ApiError(400, fmt::format("'{}' needs a role and a content", where), where,
                       "invalid_value");
      ChatMessage message{detail::string_field(*role, where + ".role"),
                          detail::string_field(*content, where + ".content")};
      if (message.role != "system" && message.role != "user" && message.role != "assistant")
        throw ApiError(400,
                       fmt::format("'{}.role' is '{}'; expected system, user or assistant", where,
                                   message.role),
                       where + ".role", "invalid_value");
      r.messages.push_back(std::move(message));
    }
  } else {
    const nlohmann::json* prompt = field(j, "prompt");
    if (!prompt) throw ApiError(400, "'prompt' is required", "prompt", "invalid_value");
    if (prompt->is_array()) {  // a batch of prompts: one is supported
      if (prompt->size() != 1)
        throw ApiError(400, "'prompt' as an array must hold exactly one string", "prompt",
                       "invalid_value");
      r.prompt = detail::string_field((*prompt)[0], "prompt");
    } else {
      r.prompt = detail::string_field(*prompt, "prompt");
    }
  }
  if (const nlohmann::json* v = field(j, "stream")) {
    if (!v->is_boolean())
      throw ApiError(400, "'stream' must be a boolean", "stream", "invalid_type");
    r.stream = v->get<bool>();
  }
  if (const nlohmann::json* v = field(j, "n"); v && detail::integer_in(*v, "n", 1, 1) != 1)
    throw ApiError(400, "only n = 1 is supported", "n", "invalid_value");
  if (const nlohmann::json* v = field(j, "echo"); v && (!v->is_boolean() || v->get<bool>()))
    throw ApiError(400, "'echo' is not supported", "echo", "invalid_value");
  const char* max_tokens_name =
      field(j, "max_completion_tokens") ? "max_completion_tokens" : "max_tokens";
  if (const nlohmann::json* v = field(j, max_tokens_name))
    r.max_tokens = detail::integer_in(*v, max_tokens_name, 0, int64_t(1) << 40);
  r.temperature = detail::number_in(j, "temperature", 1.0, 0, 2);
  r.top_p = detail::number_in(j, "top_p", 1.0, 0, 1);
  if (r.top_p == 0) r.top_p = 1e-9;  // "only the likeliest token", what 0 means to clients
  if (const nlohmann::json* v = field(j, "top_k"))
    r.top_k = detail::integer_in(*v, "top_k", 0, int64_t(1) << 31);
  r.presence_penalty = detail::number_in(j, "presence_penalty", 0, -2, 2);
  r.frequency_penalty = detail::number_in(j, "frequency_penalty", 0, -2, 2);
  r.repetition_penalty = detail::number_in(j, "repetition_penalty", 1, 1e-3, 100);
  if (const nlohmann::json* v = field(j, "seed"))
    r.seed = static_cast<uint64_t>(detail::integer_in(
        *v, "seed", std::numeric_limits<int64_t>::min(), std::numeric_limits<int64_t>::max()));
  if (const nlohmann::json* v = field(j, "stop")) {
    if (v->is_string()) {
      r.stop.push_back(v->get<std::string>());
    } else if (v->is_array()) {
      for (const nlohmann::json& s : *v) r.stop.push_back(detail::string_field(s, "stop"));
    } else {
      throw ApiError(400, "'stop' must be a string or an array of strings", "stop", "invalid_type");
    }
    if (r.stop.size() > limits.max_stop_strings)
      throw ApiError(400, fmt::format("'stop' holds at most {} strings", limits.max_stop_strings),
                     "stop", "invalid_value");
    for (const std::string& s : r.stop)
      if (s.empty() || s.size() > limits.max_stop_bytes)
        throw ApiError(400,
                       fmt::format("a stop string must have 1 to {} bytes", limits.max_stop_bytes),
                       "stop", "invalid_value");
  }
  if (const nlohmann::json* v = field(j, "logit_bias")) {
    if (!v->is_object())
      throw ApiError(400, "'logit_bias' must map token ids to numbers", "logit_bias",
                     "invalid_type");
    for (const auto& [key, value] : v->items()) {
      int32_t id = -1;
      const auto [end, ec] = std::from_chars(key.data(), key.data() + key.size(), id);
      if (ec != std::errc() || end != key.data() + key.size() || id < 0)
        throw ApiError(400, fmt::format("'logit_bias' key '{}' is not a token id", key),
                       "logit_bias", "invalid_value");
      if (!value.is_number() || !(std::abs(value.get<double>()) <= 100))
        throw ApiError(400, fmt::format("'logit_bias' of token {} must be in [-100, 100]", id),
                       "logit_bias", "invalid_value");
      r.logit_bias[id] = value.get<double>();
    }
  }
  return r;
}

inline std::string api_error_body(const std::string& message, const std::string& type,
                                  const std::string& param, const std::string& code) {
  nlohmann::json e = {{"message", message},
                      {"type", type},
                      {"param", param.empty() ? nlohmann::json() : nlohmann::json(param)},
                      {"code", code.empty() ? nlohmann::json() : nlohmann::json(code)}};
  // The message may quote the request's bytes, which need not be UTF-8.
  return nlohmann::json{{"error", e}}.dump(-1, ' ', false,
                                           nlohmann::json::error_handler_t::replace);
}

inline ApiReply api_error_reply(const ApiError& e) {
  const char* type = e.status < 500 ? "invalid_request_error" : "server_error";
  return {e.status, api_error_body(e.what(), type, e.param, e.code)};
}

template <typename T>
class OpenAIApi {
 public:
  // Called with each server-sent event ("data: ...\n\n"); returns false when the client left.
  using ChunkWriter = std::function<bool(const std::string&)>;

  // threads: OpenMP threads of the decoding thread (0 = OpenMP's default).
  OpenAIApi(GPT<T>& model, const Tokenizer& tokenizer, std::string model_name,
            ApiLimits limits = {}, int threads = 0)
      : model_(model),
        tokenizer_(tokenizer),
        name_(std::move(model_name)),
        limits_(limits),
        created_(std::chrono::duration_cast<std::chrono::seconds>(
                     std::chrono::system_clock::now().time_since_epoch())
                     .count()),
        scheduler_(model, {limits.max_batch, threads}) {}

  const std::string& model_name() const { return name_; }
  const ApiLimits& limits() const { return limits_; }
  // Ends generations in progress at their next token and refuses new ones (on shutdown).
  void stop() { scheduler_.stop(); }
  // The most requests decoded together so far.
  size_t largest_batch() const { return scheduler_.largest_batch(); }

  // GET /health, GET /v1/models, and the completion routes answered as a whole (a request
  // asking for "stream" is answered without streaming here).
  ApiReply handle(std::string_view method, std::string_view path, std::string_view body) {
    try {
      if (path == "/health") return get_only(method, {200, R"({"status":"ok"})"});
      if (path == "/v1/models")
        return get_only(
            method,
            {200, models_json().dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)});
      if (path == "/v1/completions" || path == "/v1/chat/completions") {
        if (method != "POST") throw ApiError(405, fmt::format("{} needs POST", path));
        CompletionRequest request;
        if (std::optional<ApiReply> bad = accept(path, body, request)) return *bad;
        return complete(request);
      }
      throw ApiError(404, fmt::format("no route {} {}", method, path), "", "not_found");
    } catch (const ApiError& e) {
      return api_error_reply(e);
    }
  }

  // Parses and checks a completion request (path /v1/completions or /v1/chat/completions):
  // the error reply when it is bad, nothing when `request` can be completed or streamed.
  std::optional<ApiReply> accept(std::string_view path, std::string_view body,
                                 CompletionRequest& request) const {
    try {
      request = parse_completion_request(body, path == "/v1/chat/completions", name_, limits_);
      prepare(request);
      return std::nullopt;
    } catch (const ApiError& e) {
      return api_error_reply(e);
    }
  }

  ApiReply complete(const CompletionRequest& request) {
    try {
      return {200,
              run(request, nullptr).dump(-1, ' ', false, nlohmann::json::error_handler_t::replace)};
    } catch (const ApiError& e) {
      return api_error_reply(e);
    } catch (const std::exception& e) {  // a bug of ours, not of the request
      return api_error_reply(ApiError(500, fmt::format("internal error: {}", e.what())));
    }
  }

  // Streams an accepted request: chunks of text as they are decoded, a final chunk with the
  // finish reason, then "data: [DONE]".
  void stream(const CompletionRequest& request, const ChunkWriter& write) {
    try {
      run(request, &write);
    } catch (const std::exception& e) {  // after the headers: the error travels as an event
      write("data: " + api_error_body(e.what(), "server_error", "", "") + "\n\n");
    }
    write("data: [DONE]\n\n");
  }

 private:
  struct Prepared {
    std::string prompt;
    int64_t max_tokens = 0;
  };

  ApiReply get_only(std::string_view method, ApiReply reply) const {
    if (method != "GET") throw ApiError(405, "this route needs GET");
    return reply;
  }

  nlohmann::json models_json() const {
    return {
        {"object", "list"},
        {"data",
         {{{"id", name_}, {"object", "model"}, {"created", created_}, {"owned_by", "minimoe"}}}}};
  }

  // The prompt text and the number of tokens to generate, checked against the context.
  Prepared prepare(const CompletionRequest& r) const {
    const int64_t context = model_.config.context_length;
    Prepared p;
    if (r.chat) {
      const int64_t reply_budget = r.max_tokens.value_or(context / 4);
      if (reply_budget >= context)
        throw ApiError(400,
                       fmt::format("This model's maximum context length is {} tokens; "
                                   "max_tokens {} leaves no room for the messages",
                                   context, reply_budget),
                       "max_tokens", "context_length_exceeded");
      try {
        const ChatPrompt cp = chat_prompt(tokenizer_, r.messages, context - reply_budget);
        p.prompt = cp.text;
        p.max_tokens = r.max_tokens.value_or(context - cp.tokens);
      } catch (const ValueError& e) {
        throw ApiError(400, e.what(), "messages", "context_length_exceeded");
      }
    } else {
      p.prompt = r.prompt;
      int64_t prompt_tokens = static_cast<int64_t>(tokenizer_.encode(r.prompt).size());
      prompt_tokens = std::max<int64_t>(prompt_tokens, 1);  // an empty prompt is <|endoftext|>
      p.max_tokens = r.max_tokens.value_or(16);
      if (prompt_tokens + p.max_tokens > context)
        throw ApiError(
            400,
            fmt::format("This model's maximum context length is {} tokens, but {} "
                        "were requested ({} in the prompt, {} to generate)",
                        context, prompt_tokens + p.max_tokens, prompt_tokens, p.max_tokens),
            "max_tokens", "context_length_exceeded");
    }
    for (const auto& [id, b] : r.logit_bias)
      if (id >= tokenizer_.vocab_size())
        throw ApiError(400,
                       fmt::format("'logit_bias' names token {}, outside the vocabulary of {}", id,
                                   tokenizer_.vocab_size()),
                       "logit_bias", "invalid_value");
    return p;
  }

  TextGenerateOptions options(const CompletionRequest& r, int64_t max_tokens) {
    TextGenerateOptions o;
    o.generation.max_tokens = max_tokens;
    o.generation.sampling.temperature = r.temperature;
    o.generation.sampling.top_p = r.top_p;
    o.generation.sampling.top_k = r.top_k;
    o.generation.seed = r.seed ? *r.seed : std::random_device{}();
    if (r.repetition_penalty != 1)
      o.generation.processors.push_back(repetition_penalty(r.repetition_penalty));
    if (r.presence_penalty != 0 || r.frequency_penalty != 0)
      o.generation.processors.push_back(
          presence_frequency_penalty(r.presence_penalty, r.frequency_penalty));
    if (!r.logit_bias.empty()) o.generation.processors.push_back(logit_bias(r.logit_bias));
    o.stop = r.stop;
    if (r.chat)
      for (std::string& s : chat_stop_strings()) o.stop.push_back(std::move(s));
    return o;
  }

  // What the decoding thread hands to a streaming request's own thread: text as it is final.
  struct Outbox {
    std::mutex mutex;
    std::condition_variable ready;
    std::vector<std::string> pieces;
    bool ended = false;
    std::atomic<bool> client_gone{false};
  };

  // Generates the reply on the scheduler's thread; with a writer, streams it from this thread
  // and returns nothing useful.
  nlohmann::json run(const CompletionRequest& r, const ChunkWriter* write) {
    const Prepared p = prepare(r);
    const TextGenerateOptions o = options(r, p.max_tokens);
    const GenerateRequest request = text_request(tokenizer_, p.prompt, o);
    const uint64_t serial = ++requests_;
    const std::string id = fmt::format("{}-{}", r.chat ? "chatcmpl" : "cmpl", serial);
    const int64_t created = std::chrono::duration_cast<std::chrono::seconds>(
                                std::chrono::system_clock::now().time_since_epoch())
                                .count();
    const char* object =
        r.chat ? (write ? "chat.completion.chunk" : "chat.completion") : "text_completion";
    auto chunk = [&](const nlohmann::json& choice) {
      const nlohmann::json c = {{"id", id},
                                {"object", object},
                                {"created", created},
                                {"model", name_},
                                {"choices", {choice}}};
      return "data: " + c.dump(-1, ' ', false, nlohmann::json::error_handler_t::replace) + "\n\n";
    };
    auto box = std::make_shared<Outbox>();
    if (write && r.chat &&
        !(*write)(chunk({{"index", 0},
                         {"delta", {{"role", "assistant"}, {"content", ""}}},
                         {"finish_reason", nullptr}})))
      box->client_gone = true;
    // Runs on the scheduler's thread while decoding, then here for the held-back tail.
    auto on_text = [box, streaming = write != nullptr](std::string_view piece) {
      if (streaming) {
        std::lock_guard<std::mutex> lock(box->mutex);
        box->pieces.emplace_back(piece);
      }
      box->ready.notify_one();
      return !box->client_gone;
    };
    // Shared with the decoding thread, which may outlive this call if it throws.
    auto text = std::make_shared<TextStream>(tokenizer_, o.stop, on_text);
    auto on_end = [box] {
      {
        std::lock_guard<std::mutex> lock(box->mutex);
        box->ended = true;
      }
      box->ready.notify_one();
    };
    std::future<Generation> generation;
    try {
      generation = scheduler_.submit(
          request, [text](int32_t token) { return text->on_token(token); }, on_end);
    } catch (const ShutdownError& e) {
      throw ApiError(503, e.what());
    }
    bool started = false;  // of a chat reply: see reply_piece
    auto send = [&](std::vector<std::string>& pieces) {
      for (const std::string& raw : pieces) {
        const std::string_view piece = r.chat ? reply_piece(raw, started) : raw;
        if (piece.empty() || box->client_gone) continue;
        nlohmann::json choice = {{"index", 0}, {"finish_reason", nullptr}};
        if (r.chat)
          choice["delta"] = {{"content", std::string(piece)}};
        else
          choice["text"] = std::string(piece);
        if (!(*write)(chunk(choice))) box->client_gone = true;
      }
      pieces.clear();
    };
    if (write) {
      for (bool ended = false; !ended;) {
        std::vector<std::string> pieces;
        {
          std::unique_lock<std::mutex> lock(box->mutex);
          box->ready.wait(lock, [&] { return box->ended || !box->pieces.empty(); });
          std::swap(pieces, box->pieces);
          ended = box->ended;
        }
        send(pieces);
      }
    }
    Generation g;
    try {
      g = generation.get();
    } catch (const ShutdownError& e) {
      throw ApiError(503, e.what());
    }
    const TextGeneration t = text->finish(g, static_cast<int64_t>(request.prompt.size()));
    const nlohmann::json usage = {
        {"prompt_tokens", t.prompt_tokens},
        {"completion_tokens", static_cast<int64_t>(t.ids.size())},
        {"total_tokens", t.prompt_tokens + static_cast<int64_t>(t.ids.size())}};
    if (write) {
      send(box->pieces);  // the tail finish() flushed (the decoding thread is done)
      if (!box->client_gone) {
        nlohmann::json last = {{"index", 0}, {"finish_reason", t.finish}};
        if (r.chat)
          last["delta"] = nlohmann::json::object();
        else
          last["text"] = "";
        (*write)(chunk(last));
      }
      return {};
    }
    nlohmann::json choice = {{"index", 0}, {"finish_reason", t.finish}};
    if (r.chat)
      choice["message"] = {{"role", "assistant"}, {"content", trim_blanks(t.text)}};
    else {
      choice["text"] = t.text;
      choice["logprobs"] = nullptr;
    }
    return {{"id", id},       {"object", object},    {"created", created},
            {"model", name_}, {"choices", {choice}}, {"usage", usage}};
  }

  GPT<T>& model_;
  const Tokenizer& tokenizer_;
  std::string name_;
  ApiLimits limits_;
  int64_t created_;
  std::atomic<uint64_t> requests_{0};
  DecodeScheduler<T> scheduler_;  // last: its thread stops before the rest goes
};

}  // namespace minimoe
