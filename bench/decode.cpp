// bench/decode: batch-1 generation speed of a preset, next to the memory-bandwidth bound.
//
//   decode --preset minimoe --prompt 128 --tokens 64 --threads 2 [--repeat 3] [--json]
//
// A randomly initialised model (speed does not depend on the weights) runs a prompt of
// --prompt random ids through the model once (prefill, filling the KV caches), then decodes
// --tokens tokens greedily, one position at a time through the caches, as `minimoe sample`
// does. Medians over --repeat runs.
//
// The bound: a decoded token reads every weight it touches once, the "active" weights (the
// attention, router and norm weights of every layer, its top-k experts, the LM head), so
// decoding cannot run faster than  bandwidth / active weight bytes  tokens per second. The
// embedding tables are not counted (one row each) except as the tied LM head, which reads
// all of them; the KV cache is printed apart. A model whose weights fit in the last-level cache
// (the `tiny` preset) reads them from there and can beat the DRAM bound.
#include <algorithm>
#include <chrono>
#include <cstdint>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <minimoe/generate/generate.hpp>
#include <minimoe/models/gpt.hpp>
#include <minimoe/models/presets.hpp>

#include "bandwidth.hpp"

using namespace minimoe;

namespace {

struct Options {
  std::string preset = "minimoe";
  int64_t prompt = 128, tokens = 64;
  int threads = 2, repeat = 3;
  int64_t flush_mb = 512;
  bool json = false;
};

using Clock = std::chrono::steady_clock;

double seconds_since(Clock::time_point start) {
  return std::chrono::duration<double>(Clock::now() - start).count();
}

double median(std::vector<double> v) {
  std::sort(v.begin(), v.end());
  return v[v.size() / 2];
}

int32_t argmax(const Tensor<float>& logits) {  // [V]
  const float* begin = logits.data();
  return static_cast<int32_t>(std::max_element(begin, begin + logits.numel()) - begin);
}

// Bytes of the weights one decoded token reads (see the header).
int64_t active_weight_bytes(const GPTConfig& c) {
  int64_t params = c.num_active_parameters();
  if (c.positions == PositionEncoding::Learned) params -= c.context_length * c.d_model;
  if (!c.tie_embeddings) params -= c.vocab_size * c.d_model;  // wte: one row; the head counts
  return params * int64_t(sizeof(float));
}

struct Result {
  double prefill_seconds = 0, decode_seconds = 0;
};

Result run_once(GPT<float>& model, const std::vector<int32_t>& prompt, int64_t tokens) {
  std::vector<KVCache<float>> caches = model.make_caches(1);
  Tensor<int32_t> ids({1, int64_t(prompt.size())});
  std::copy(prompt.begin(), prompt.end(), ids.data());
  Result r;
  auto start = Clock::now();
  int32_t next = argmax(next_token_logits(model, ids, caches));  // as generate() does
  r.prefill_seconds = seconds_since(start);
  start = Clock::now();
  Tensor<int32_t> one({1, 1});
  for (int64_t t = 0; t < tokens; ++t) {
    one.data()[0] = next;
    next = argmax(next_token_logits(model, one, caches));
  }
  r.decode_seconds = seconds_since(start);
  return r;
}

}  // namespace

int main(int argc, char** argv) {
  Options o;
  CLI::App app{"Batch-1 decoding speed of a minimoe preset against the memory-bandwidth bound"};
  app.add_option("--preset", o.preset, "model preset")->capture_default_str();
  app.add_option("--prompt", o.prompt, "prompt tokens (prefill)")->capture_default_str();
  app.add_option("--tokens", o.tokens, "tokens to decode")->capture_default_str();
  app.add_option("--threads", o.threads, "threads")->capture_default_str();
  app.add_option("--repeat", o.repeat, "timed runs (the median is reported)")
      ->capture_default_str();
  app.add_option("--flush-mb", o.flush_mb, "buffer of the bandwidth measurement, MB")
      ->capture_default_str();
  app.add_flag("--json", o.json, "one JSON object per line");
  CLI11_PARSE(app, argc, argv);

  const GPTConfig config = preset(o.preset);
  if (o.prompt < 1 || o.tokens < 1 || o.repeat < 1 || o.prompt + o.tokens > config.context_length) {
    fmt::print(stderr,
               "decode: need prompt >= 1, tokens >= 1, repeat >= 1 and prompt + tokens "
               "<= the context length {}\n",
               config.context_length);
    return 2;
  }
#ifdef _OPENMP
  omp_set_num_threads(o.threads);
#endif
  Eigen::setNbThreads(o.threads);

  GPT<float> model(config, 1);
  NoGradGuard no_grad;
  set_training(model, false);
  Rng rng(7);
  std::vector<int32_t> prompt;
  for (int64_t i = 0; i < o.prompt; ++i)
    prompt.push_back(static_cast<int32_t>(rng.below(uint64_t(config.vocab_size))));

  run_once(model, prompt, std::min<int64_t>(o.tokens, 8));  // warm-up: allocations, page faults
  std::vector<double> prefill, decode;
  for (int i = 0; i < o.repeat; ++i) {
    const Result r = run_once(model, prompt, o.tokens);
    prefill.push_back(r.prefill_seconds);
    decode.push_back(r.decode_seconds);
  }
  const double prefill_tps = double(o.prompt) / median(prefill);
  const double decode_tps = double(o.tokens) / median(decode);

  const std::vector<float> buffer = bench::make_buffer(o.flush_mb);
  const double bandwidth = bench::read_bandwidth_gbs(buffer);
  const int64_t weight_bytes = active_weight_bytes(config);
  const double bound_tps = bandwidth * 1e9 / double(weight_bytes);
  // K and V of every layer at the mean decoding position.
  const double kv_bytes = 2.0 * double(config.n_layers * config.kv_heads() * config.head_dim()) *
                          (double(o.prompt) + double(o.tokens) / 2) * sizeof(float);

  if (o.json) {
    fmt::print(
        "{{\"impl\": \"minimoe\", \"preset\": \"{}\", \"threads\": {}, \"prompt\": {}, "
        "\"tokens\": {}, \"prefill_tokens_per_s\": {:.6g}, \"decode_tokens_per_s\": {:.6g}, "
        "\"params\": {}, \"active_weight_bytes\": {}, \"kv_bytes_per_token\": {:.6g}, "
        "\"read_bandwidth_gbs\": {:.6g}, \"bound_tokens_per_s\": {:.6g}}}\n",
        o.preset, o.threads, o.prompt, o.tokens, prefill_tps, decode_tps, config.num_parameters(),
        weight_bytes, kv_bytes, bandwidth, bound_tps);
    return 0;
  }
  fmt::print("decode: preset {} ({:.2f}M parameters, {:.2f}M active), {} threads, kernel {}\n",
             o.preset, double(config.num_parameters()) / 1e6,
             double(config.num_active_parameters()) / 1e6, o.threads, gemm_kernel<float>().name);
  fmt::print("prefill  {:>5} tokens: {:>9.0f} tokens/s\n", o.prompt, prefill_tps);
  fmt::print("decode   {:>5} tokens: {:>9.1f} tokens/s  ({:.2f} ms per token)\n", o.tokens,
             decode_tps, 1e3 / decode_tps);
  fmt::print(
      "bound: {:.1f} MB of active weights per token (+{:.2f} MB of KV cache) at {:.1f} GB/s "
      "-> {:.1f} tokens/s; decoding runs at {:.0f}% of it\n",
      double(weight_bytes) / 1e6, kv_bytes / 1e6, bandwidth, bound_tps,
      100 * decode_tps / bound_tps);
  return 0;
}
