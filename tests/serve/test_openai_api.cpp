#include <doctest/doctest.h>

#include <atomic>
#include <thread>

#include <minimoe/models/presets.hpp>
#include <minimoe/serve/openai_api.hpp>

using namespace minimoe;
using nlohmann::json;

namespace {

struct Fixture {
  Tokenizer bytes = load_tokenizer("bytes");
  GPT<float> model{small_config(), 2};
  OpenAIApi<float> api{model, bytes, "test-model"};

  static GPTConfig small_config() {
    GPTConfig c = preset("tinymoe");
    c.vocab_size = 257;
    c.context_length = 48;
    c.n_layers = 1;
    c.d_model = 16;
    c.n_heads = 2;
    c.n_kv_heads = 1;
    c.ffn_hidden = 16;
    c.validate();
    return c;
  }

  json post(const std::string& path, const json& body, int expected_status = 200) {
    const ApiReply r = api.handle("POST", path, body.dump());
    CHECK(r.status == expected_status);
    return json::parse(r.body);
  }

  // The error object of a bad request, checking the status.
  json error(const std::string& path, const std::string& body, int status) {
    const ApiReply r = api.handle("POST", path, body);
    CHECK(r.status == status);
    const json j = json::parse(r.body);
    REQUIRE(j.contains("error"));
    CHECK(j["error"]["type"] == "invalid_request_error");
    return j["error"];
  }
};

}  // namespace

TEST_CASE("GET /health and /v1/models") {
  Fixture f;
  CHECK(f.api.handle("GET", "/health", "").body == R"({"status":"ok"})");
  const json models = json::parse(f.api.handle("GET", "/v1/models", "").body);
  CHECK(models["object"] == "list");
  CHECK(models["data"][0]["id"] == "test-model");
  CHECK(f.api.handle("POST", "/health", "").status == 405);
  CHECK(f.api.handle("GET", "/v1/completions", "").status == 405);
  CHECK(f.api.handle("GET", "/nowhere", "").status == 404);
}

TEST_CASE("a completion: text, finish reason, usage; the same seed gives the same text") {
  Fixture f;
  const json body = {{"model", "test-model"}, {"prompt", "Hello"}, {"max_tokens", 8}, {"seed", 7},
                     {"temperature", 0.9},    {"top_k", 50}};
  const json r = f.post("/v1/completions", body);
  CHECK(r["object"] == "text_completion");
  CHECK(r["model"] == "test-model");
  CHECK(r["usage"]["prompt_tokens"] == 5);
  const int64_t completion = r["usage"]["completion_tokens"];
  CHECK(completion <= 8);
  CHECK(r["usage"]["total_tokens"] == 5 + completion);
  const std::string finish = r["choices"][0]["finish_reason"];
  CHECK((finish == "length" || finish == "stop"));
  CHECK(f.post("/v1/completions", body)["choices"][0]["text"] == r["choices"][0]["text"]);
  CHECK(f.post("/v1/completions", {{"prompt", "Hello"},
                                   {"max_tokens", 8},
                                   {"seed", 7},
                                   {"temperature", 0.9},
                                   {"top_k", 50},
                                   {"n", 1}})["choices"][0]["text"] ==
        r["choices"][0]["text"]);  // "model" is optional
}

TEST_CASE("a chat completion answers as the assistant") {
  Fixture f;
  const json r = f.post(
      "/v1/chat/completions",
      {{"messages",
        {{{"role", "system"}, {"content", "Be nice."}}, {{"role", "user"}, {"content", "Hi!"}}}},
       {"max_tokens", 6},
       {"seed", 1}});
  CHECK(r["object"] == "chat.completion");
  CHECK(r["choices"][0]["message"]["role"] == "assistant");
  CHECK(r["choices"][0]["message"]["content"].is_string());
  CHECK(r["usage"]["prompt_tokens"] == std::string("Be nice.\n\nUser: Hi!\nAssistant:").size());
}

TEST_CASE("streaming sends chunks, a finish reason, then [DONE]") {
  Fixture f;
  for (const char* path : {"/v1/completions", "/v1/chat/completions"}) {
    CAPTURE(path);
    const bool chat = std::string(path) == "/v1/chat/completions";
    json body = {{"max_tokens", 10}, {"seed", 3}, {"stream", true}};
    if (chat)
      body["messages"] = {{{"role", "user"}, {"content", "Hi"}}};
    else
      body["prompt"] = "Hi";
    CompletionRequest request;
    REQUIRE_FALSE(f.api.accept(path, body.dump(), request));
    CHECK(request.stream);
    std::vector<std::string> events;
    f.api.stream(request, [&](const std::string& e) {
      events.push_back(e);
      return true;
    });
    REQUIRE(events.size() >= 2);
    CHECK(events.back() == "data: [DONE]\n\n");
    std::string streamed;
    for (size_t i = 0; i + 1 < events.size(); ++i) {
      const std::string& e = events[i];
      REQUIRE(e.rfind("data: ", 0) == 0);
      REQUIRE(e.size() > 8);
      CHECK(e.substr(e.size() - 2) == "\n\n");
      const json chunk = json::parse(e.substr(6));
      CHECK(chunk["object"] == (chat ? "chat.completion.chunk" : "text_completion"));
      const json& choice = chunk["choices"][0];
      if (chat && choice["delta"].contains("content")) streamed += choice["delta"]["content"];
      if (!chat) streamed += choice["text"];
      CHECK(choice["finish_reason"].is_null() == (i + 2 < events.size()));
    }
    // The same request without streaming writes the same text.
    body["stream"] = false;
    const json whole = f.post(path, body);
    const json& choice = whole["choices"][0];
    CHECK((chat ? trim_blanks(streamed) : streamed) ==
          (chat ? choice["message"]["content"] : choice["text"]));
  }
}

TEST_CASE("a client that goes away ends the generation") {
  Fixture f;
  CompletionRequest request;
  REQUIRE_FALSE(f.api.accept("/v1/completions",
                             R"({"prompt": "Hi", "max_tokens": 40, "stream": true})", request));
  int writes = 0;
  f.api.stream(request, [&](const std::string&) { return ++writes < 3; });
  CHECK(writes <= 5);  // two chunks, the failed one, then at most the error and [DONE]
}

TEST_CASE("bad requests get 400 or 413 with an OpenAI error object") {
  Fixture f;
  const std::string c = "/v1/completions", chat = "/v1/chat/completions";
  CHECK(f.error(c, "{bad", 400)["code"] == "invalid_json");
  CHECK(f.error(c, "[1, 2]", 400)["code"] == "invalid_json");
  CHECK(f.error(c, R"({"max_tokens": 3})", 400)["param"] == "prompt");
  CHECK(f.error(c, R"({"prompt": 5})", 400)["code"] == "invalid_type");
  CHECK(f.error(c, R"({"prompt": ["a", "b"]})", 400)["param"] == "prompt");
  CHECK(f.error(c, R"({"prompt": "a", "model": "gpt-4"})", 400)["code"] == "model_not_found");
  CHECK(f.error(c, R"({"prompt": "a", "model": 3})", 400)["code"] == "invalid_type");
  CHECK(f.error(c, R"({"prompt": "a", "max_tokens": "9"})", 400)["code"] == "invalid_type");
  CHECK(f.error(c, R"({"prompt": "a", "max_tokens": -1})", 400)["code"] == "invalid_value");
  CHECK(f.error(c, R"({"prompt": "a", "max_tokens": 1e30})", 400)["code"] == "invalid_type");
  CHECK(f.error(c, R"({"prompt": "a", "max_tokens": 18446744073709551615})", 400)["code"] ==
        "invalid_value");
  const json too_long = f.error(c, R"({"prompt": "abc", "max_tokens": 46})", 400);
  CHECK(too_long["code"] == "context_length_exceeded");
  CHECK(too_long["message"].get<std::string>().find("48 tokens") != std::string::npos);
  CHECK(f.error(c, R"({"prompt": "a", "temperature": 3})", 400)["param"] == "temperature");
  CHECK(f.error(c, R"({"prompt": "a", "temperature": "hot"})", 400)["code"] == "invalid_type");
  CHECK(f.error(c, R"({"prompt": "a", "top_p": 1.5})", 400)["param"] == "top_p");
  CHECK(f.error(c, R"({"prompt": "a", "stream": "yes"})", 400)["param"] == "stream");
  CHECK(f.error(c, R"({"prompt": "a", "n": 2})", 400)["param"] == "n");
  CHECK(f.error(c, R"({"prompt": "a", "echo": true})", 400)["param"] == "echo");
  CHECK(f.error(c, R"({"prompt": "a", "stop": 3})", 400)["param"] == "stop");
  CHECK(f.error(c, R"({"prompt": "a", "stop": [""]})", 400)["param"] == "stop");
  CHECK(f.error(c, R"({"prompt": "a", "stop": ["a","b","c","d","e"]})", 400)["param"] == "stop");
  CHECK(f.error(c, R"({"prompt": "a", "logit_bias": {"x": 1}})", 400)["param"] == "logit_bias");
  CHECK(f.error(c, R"({"prompt": "a", "logit_bias": {"5": 500}})", 400)["param"] == "logit_bias");
  CHECK(f.error(c, R"({"prompt": "a", "logit_bias": {"9999": 1}})", 400)["param"] == "logit_bias");
  CHECK(f.error(c, R"({"prompt": "a", "presence_penalty": 2.5})", 400)["param"] ==
        "presence_penalty");
  CHECK(f.error(chat, R"({"messages": []})", 400)["param"] == "messages");
  CHECK(f.error(chat, R"({"messages": [3]})", 400)["code"] == "invalid_type");
  CHECK(f.error(chat, R"({"messages": [{"role": "user"}]})", 400)["code"] == "invalid_value");
  CHECK(f.error(chat, R"({"messages": [{"role": "robot", "content": "x"}]})", 400)["param"] ==
        "messages[0].role");
  CHECK(f.error(chat, R"({"messages": [{"role": "user", "content": 1}]})", 400)["code"] ==
        "invalid_type");
  CHECK(f.error(chat, R"({"messages": [{"role": "user", "content": "x"}], "max_tokens": 48})",
                400)["code"] == "context_length_exceeded");
  const std::string huge_message(100, 'x');
  CHECK(f.error(chat, json{{"messages", {{{"role", "user"}, {"content", huge_message}}}}}.dump(),
                400)["code"] == "context_length_exceeded");
  CHECK(f.error(c, std::string(ApiLimits{}.max_body_bytes + 1, ' '), 413)["message"]
            .get<std::string>()
            .find("limit") != std::string::npos);
  // Invalid UTF-8 in a string is a JSON error, not a crash.
  CHECK(f.error(c, "{\"prompt\": \"\xFF\"}", 400)["code"] == "invalid_json");
}

TEST_CASE("concurrent requests are decoded together, each getting its own answer") {
  Fixture f;
  ApiLimits limits;
  limits.max_batch = 4;
  OpenAIApi<float> api(f.model, f.bytes, "test-model", limits);
  std::vector<std::string> bodies, expected;
  for (int i = 0; i < 6; ++i) {
    bodies.push_back(json{
        {"prompt", std::string(static_cast<size_t>(i + 1), 'a' + i)},
        {"max_tokens", 30},
        {"seed", i},
        {"stream",
         i % 2 == 1}}.dump());
    expected.push_back(json::parse(
        api.handle("POST", "/v1/completions", bodies.back()).body)["choices"][0]["text"]);
  }
  CHECK(api.largest_batch() == 1);  // one after another so far
  std::vector<std::string> texts(bodies.size()), ids(bodies.size());
  std::atomic<int> waiting{static_cast<int>(bodies.size())};
  std::vector<std::thread> clients;
  for (size_t i = 0; i < bodies.size(); ++i)
    clients.emplace_back([&, i] {
      CompletionRequest request;
      REQUIRE_FALSE(api.accept("/v1/completions", bodies[i], request));
      --waiting;
      while (waiting > 0) std::this_thread::yield();  // all at once
      if (!request.stream) {
        const json j = json::parse(api.complete(request).body);
        texts[i] = j["choices"][0]["text"];
        ids[i] = j["id"];
        return;
      }
      api.stream(request, [&](const std::string& event) {
        if (event.rfind("data: {", 0) != 0) return true;
        const json j = json::parse(event.substr(6));
        texts[i] += j["choices"][0]["text"].get<std::string>();
        ids[i] = j["id"];
        return true;
      });
    });
  for (std::thread& t : clients) t.join();
  CHECK(texts == expected);  // what each request gets alone
  CHECK(api.largest_batch() >= 2);
  CHECK(api.largest_batch() <= 4);
  std::sort(ids.begin(), ids.end());
  CHECK(std::unique(ids.begin(), ids.end()) == ids.end());  // every request got its own id
}

TEST_CASE("after stop() requests get 503 and running ones end") {
  Fixture f;
  f.api.stop();
  const ApiReply r = f.api.handle("POST", "/v1/completions", R"({"prompt": "Hi"})");
  CHECK(r.status == 503);
  CHECK(r.body.find("shutting down") != std::string::npos);
}

TEST_CASE("the decode scheduler: bad requests fail alone, stop ends and refuses") {
  Fixture f;
  DecodeScheduler<float> scheduler(f.model, {2, 0});
  GenerateOptions o;
  o.max_tokens = 5;
  std::future<Generation> bad = scheduler.submit({{}, o});  // an empty prompt
  CHECK_THROWS_WITH_AS(bad.get(), doctest::Contains("the prompt is empty"), ValueError);
  CHECK(scheduler.submit({{1, 2}, o}).get().ids.size() == 5);
  o.max_tokens = 0;
  CHECK(scheduler.submit({{1}, o}).get().ids.empty());

  // A sequence that would run for long, stopped from its own token callback.
  o.max_tokens = 40;
  std::atomic<int> tokens{0};
  std::future<Generation> running = scheduler.submit({{1}, o}, [&](int32_t) {
    if (++tokens == 3) scheduler.stop();
    return true;
  });
  const Generation g = running.get();
  CHECK(g.reason == StopReason::Callback);
  CHECK(g.ids.size() == 4);  // the stop is seen at the next token, which ends the output
  CHECK_THROWS_AS(scheduler.submit({{1}, o}), ShutdownError);
}
