// minimoe serve: an OpenAI-compatible HTTP server for a trained model.
//
// The routes and every check of a request live in minimoe/serve/openai_api.hpp; this file
// binds them to cpp-httplib. SIGTERM and SIGINT stop the server cleanly: a thread waits for
// them (they are blocked everywhere else, so no handler runs in the middle of the server's
// work), ends the generations in progress at their next token and stops the listener.
#include <csignal>
#include <memory>
#include <thread>

#include "common.hpp"

// After Eigen: glibc's <resolv.h>, which httplib includes, defines a macro `_res` that is a
// parameter name inside Eigen's headers.
#include <httplib.h>

namespace minimoe::cli {
namespace {

struct ServeArgs {
  std::string ckpt, host = "127.0.0.1", name, gpt2_dir = kDefaultGpt2Dir;
  int port = 8080;
  int threads = 0;
  bool int8 = false;
  size_t max_body_bytes = ApiLimits{}.max_body_bytes;
  size_t max_batch = ApiLimits{}.max_batch;
};

void reply(httplib::Response& res, const ApiReply& r) {
  res.status = r.status;
  res.set_content(r.body, "application/json");
}

std::string default_model_name(const std::string& path) {
  std::string name = path.substr(path.find_last_of('/') + 1);
  const size_t dot = name.rfind(".safetensors");
  if (dot != std::string::npos && dot > 0) name.resize(dot);
  return "minimoe-" + name;
}

void run_serve(const ServeArgs& a) {
  // Blocked before any thread starts, so every thread inherits the mask.
  sigset_t stop_signals;
  sigemptyset(&stop_signals);
  sigaddset(&stop_signals, SIGTERM);
  sigaddset(&stop_signals, SIGINT);
  pthread_sigmask(SIG_BLOCK, &stop_signals, nullptr);

  set_threads(a.threads);
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_inference_model(file, a.int8);
  ApiLimits limits;
  limits.max_body_bytes = a.max_body_bytes;
  limits.max_batch = a.max_batch;
  OpenAIApi<float> api(model, tokenizer, a.name.empty() ? default_model_name(a.ckpt) : a.name,
                       limits, a.threads);

  httplib::Server server;
  server.set_payload_max_length(limits.max_body_bytes);
  // httplib's own refusals (a body over the limit, an unknown route) get OpenAI's error shape.
  server.set_error_handler(httplib::Server::HandlerWithResponse([](const httplib::Request& req,
                                                                   httplib::Response& res) {
    if (!res.body.empty()) return httplib::Server::HandlerResponse::Unhandled;
    const std::string message = res.status == 413   ? "the request body is too large"
                                : res.status == 404 ? "no route " + req.method + " " + req.path
                                                    : fmt::format("HTTP error {}", res.status);
    res.set_content(api_error_body(message, "invalid_request_error", "", ""), "application/json");
    return httplib::Server::HandlerResponse::Handled;
  }));
  auto get = [&api](const httplib::Request& req, httplib::Response& res) {
    reply(res, api.handle(req.method, req.path, req.body));
  };
  auto post = [&api](const httplib::Request& req, httplib::Response& res) {
    CompletionRequest request;
    if (const std::optional<ApiReply> bad = api.accept(req.path, req.body, request)) {
      reply(res, *bad);
    } else if (!request.stream) {
      reply(res, api.complete(request));
    } else {
      res.set_header("Cache-Control", "no-cache");
      res.set_chunked_content_provider(
          "text/event-stream", [&api, request](size_t, httplib::DataSink& sink) {
            api.stream(request, [&sink](const std::string& event) {
              return sink.is_writable() && sink.write(event.data(), event.size());
            });
            sink.done();
            return true;
          });
    }
  };
  server.Get("/health", get);
  server.Get("/v1/models", get);
  server.Post("/v1/completions", post);
  server.Post("/v1/chat/completions", post);

  if (!server.bind_to_port(a.host.c_str(), a.port))
    throw UsageError(
        fmt::format("cannot listen on {}:{} (in use, or not an address here)", a.host, a.port));
  std::thread stopper([&] {
    int signal = 0;
    sigwait(&stop_signals, &signal);
    fmt::print(stderr, "minimoe serve: {}, shutting down\n",
               signal == SIGTERM ? "SIGTERM" : "SIGINT");
    api.stop();
    server.stop();
  });
  fmt::print(stderr, "minimoe serve: {} on http://{}:{} ({} parameters, context {})\n",
             api.model_name(), a.host, a.port, num_parameters(model), model.config.context_length);
  server.listen_after_bind();
  if (stopper.joinable()) {
    pthread_kill(stopper.native_handle(), SIGTERM);  // listen ended on its own: wake the stopper
    stopper.join();
  }
}

}  // namespace

void add_serve_command(CLI::App& app) {
  auto a = std::make_shared<ServeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "serve", "Serve a model over HTTP with OpenAI's completion and chat completion API");
  cmd->add_option("--ckpt", a->ckpt, "model file or training checkpoint")->required();
  cmd->add_option("--host", a->host, "address to listen on (loopback by default)")
      ->capture_default_str();
  cmd->add_option("--port", a->port, "TCP port")
      ->capture_default_str()
      ->check(CLI::Range(1, 65535));
  cmd->add_option("--name", a->name, "model id clients ask for (default: minimoe-<file name>)");
  cmd->add_option("--threads", a->threads, "threads of the decoding (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--max-batch", a->max_batch,
                  "requests decoded together (continuous batching); more wait in order")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{256}));
  add_int8_flag(cmd, a->int8);
  cmd->add_option("--max-body", a->max_body_bytes, "largest request body in bytes (larger: 413)")
      ->capture_default_str()
      ->check(CLI::Range(size_t{1}, size_t{1} << 30));
  cmd->add_option("--gpt2-dir", a->gpt2_dir,
                  "GPT-2's encoder.json and vocab.bpe, for models trained with them")
      ->capture_default_str();
  cmd->callback([a] { run_serve(*a); });
}

}  // namespace minimoe::cli
