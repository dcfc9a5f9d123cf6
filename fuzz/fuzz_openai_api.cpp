// Fuzzes the HTTP server's request handling (serve/openai_api.hpp) without a socket: the first
// byte picks the route and whether to stream, the rest is the body. Every reply must be a
// status the API documents with a JSON body, an error reply must carry OpenAI's error object,
// and a stream must be well-formed server-sent events ending in [DONE].
#include <cstdint>
#include <memory>
#include <string>

#include <minimoe/models/presets.hpp>
#include <minimoe/serve/openai_api.hpp>

#include "fuzz_util.hpp"

using namespace minimoe;
using fuzz::require;

namespace {

struct Server {
  Tokenizer bytes = load_tokenizer("bytes");
  GPT<float> model{config(), 1};
  OpenAIApi<float> api{model, bytes, "fuzz", limits()};

  static GPTConfig config() {  // small enough that a request costs microseconds
    GPTConfig c = preset("tinymoe");
    c.vocab_size = 257;
    c.context_length = 24;
    c.n_layers = 1;
    c.d_model = 8;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.ffn_hidden = 8;
    c.n_experts = 2;
    c.top_k = 1;
    c.validate();
    return c;
  }
  static ApiLimits limits() {
    ApiLimits l;
    l.max_body_bytes = 4096;  // the fuzzer's inputs reach it
    return l;
  }
};

void check_reply(const ApiReply& r) {
  require(
      r.status == 200 || r.status == 400 || r.status == 404 || r.status == 405 || r.status == 413,
      "a documented status");
  const nlohmann::json j = nlohmann::json::parse(r.body);  // throws (a finding) if not JSON
  if (r.status != 200)
    require(j.contains("error") && j["error"]["message"].is_string(), "an error object");
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static Server server;
  if (size == 0) return 0;
  const std::string body = fuzz::bytes_of(data + 1, size - 1);
  const char route = static_cast<char>(data[0]);
  const bool chat = route == 'h' || route == 'H';
  const bool stream = route == 'C' || route == 'H';
  if (route == 'm') {
    check_reply(server.api.handle("GET", "/v1/models", body));
  } else if (route == 'g') {
    check_reply(server.api.handle("GET", "/health", body));
  } else if (chat || route == 'c' || route == 'C') {
    const std::string path = chat ? "/v1/chat/completions" : "/v1/completions";
    if (!stream) {
      check_reply(server.api.handle("POST", path, body));
      return 0;
    }
    CompletionRequest request;
    if (const std::optional<ApiReply> bad = server.api.accept(path, body, request)) {
      check_reply(*bad);
      return 0;
    }
    bool done = false;
    server.api.stream(request, [&](const std::string& event) {
      require(!done, "nothing after [DONE]");
      require(event.rfind("data: ", 0) == 0 && event.size() >= 8 &&
                  event.compare(event.size() - 2, 2, "\n\n") == 0,
              "a server-sent event");
      const std::string payload = event.substr(6, event.size() - 8);
      if (payload == "[DONE]")
        done = true;
      else
        (void)nlohmann::json::parse(payload);
      return true;
    });
    require(done, "the stream ends with [DONE]");
  } else {
    check_reply(server.api.handle(route == 'p' ? "POST" : "GET", body, ""));
  }
  return 0;
}
