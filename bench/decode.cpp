// bench/decode: batch-1 generation speed of a preset, next to the memory-bandwidth bound, with
// float32 weights and then with int8 ones (models/quantize.hpp), in one run; then several
// sequences decoded together.
//
//   decode --preset minimoe --prompt 128 --tokens 64 --threads 2 [--repeat 3] [--json]
//          [--batches 1,4,8]
//
// A randomly initialised model (speed does not depend on the weights) runs a prompt of
// --prompt random ids through the model once (prefill, filling the KV caches), then decodes
// --tokens tokens greedily, one position at a time through the caches (StepDecoder), as `minimoe sample`
// does. Medians over --repeat runs. Then the same model is quantised (`--int8 0` skips that)
// and measured again.
//
// Batched: --batches sequences of different prompt lengths (from --prompt down to half of it)
// in one BatchDecoder (generate.hpp); the step that prefills them is not timed, the --tokens
// steps after it are, and tokens/s counts every sequence's tokens. The weights are read once
// per step whatever the batch, so the first column should grow nearly with the batch while
// decoding is bound by reading them.
//
// The bound: a decoded token reads every weight it touches once, the "active" weights (the
// attention, router and norm weights of every layer, its top-k experts, the LM head), so
// decoding cannot run faster than  bandwidth / active weight bytes  tokens per second. The
// embedding tables are not counted (one row each) except as the tied LM head, which reads
// all of them; the KV cache is printed apart. A model whose weights fit in the last-level cache
// (the `tiny` preset) reads them from there and can beat the DRAM bound. With int8 weights the
// quantised matrices (attention projections, experts, the LM head) count one byte per weight
// plus a float scale per row; norms, routers and biases stay float32.
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
#include <minimoe/models/quantize.hpp>

#include "bandwidth.hpp"

using namespace minimoe;

namespace {

struct Options {
  std::string preset = "minimoe";
  int64_t prompt = 128, tokens = 64;
  int threads = 2, repeat = 3;
  int64_t flush_mb = 512;
  bool json = false, int8 = true;
  std::vector<int64_t> batches{1, 4, 8};  // sequences decoded together (BatchDecoder)
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

// The quantised matrices a decoded token reads, in float32 and as int8 rows with their scales:
// the attention projections, the top-k routed experts (all of the same size), the shared
// experts or the dense MLP, and the LM head.
struct QuantisedBytes {
  int64_t float32 = 0, int8 = 0;
};

QuantisedBytes active_quantised_bytes(const GPT<float>& model) {
  QuantisedBytes b;
  auto add = [&](const Linear<float>& l, int64_t times) {
    b.float32 += times * l.weight.numel() * int64_t(sizeof(float));
    b.int8 += times * l.int8->bytes();
  };
  auto add_expert = [&](const Expert<float>& e, int64_t times) {
    add(e.up, times);
    if (e.config.glu) add(e.gate, times);
    add(e.down, times);
  };
  for (const Block<float>& block : model.blocks) {
    for (const Linear<float>* p :
         {&block.attn.q_proj, &block.attn.k_proj, &block.attn.v_proj, &block.attn.o_proj})
      add(*p, 1);
    if (!block.is_moe) {
      add_expert(block.mlp, 1);
      continue;
    }
    add_expert(block.moe.experts.front(), block.moe.router.config.top_k);
    for (const Expert<float>& e : block.moe.shared_experts) add_expert(e, 1);
  }
  add(model.quantized_head, 1);
  return b;
}

struct Result {
  double prefill_seconds = 0, decode_seconds = 0;
};

// Prefill and decode tokens/s: medians of `repeat` runs after a warm-up one.
struct Speed {
  double prefill_tps = 0, decode_tps = 0;
  double bandwidth_gbs = 0;  // median of the measurements between the runs
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
  StepDecoder<float> step(model);  // generate()'s path for a lone sequence
  const int64_t V = model.config.vocab_size;
  for (int64_t t = 0; t < tokens; ++t) {
    const float* logits = step(next, caches);
    next = static_cast<int32_t>(std::max_element(logits, logits + V) - logits);
  }
  r.decode_seconds = seconds_since(start);
  return r;
}

// The read bandwidth is measured before every run (best of 2 passes over `buffer`): on a shared
// machine it moves by 2x within minutes, and a bound from another moment than the runs says
// little about them.
Speed measure(GPT<float>& model, const std::vector<int32_t>& prompt, const Options& o,
              const std::vector<float>& buffer) {
  run_once(model, prompt, std::min<int64_t>(o.tokens, 8));  // warm-up: allocations, page faults
  std::vector<double> prefill, decode, bandwidth;
  for (int i = 0; i < o.repeat; ++i) {
    bandwidth.push_back(bench::read_bandwidth_gbs(buffer, 2));
    run_once(model, prompt, 2);  // the weights back in the caches the measurement evicted
    const Result r = run_once(model, prompt, o.tokens);
    prefill.push_back(r.prefill_seconds);
    decode.push_back(r.decode_seconds);
  }
  return {double(o.prompt) / median(prefill), double(o.tokens) / median(decode), median(bandwidth)};
}

// Prompts of a batch: different lengths, from --prompt down to half of it.
std::vector<std::vector<int32_t>> batch_prompts(const std::vector<int32_t>& prompt, int64_t n) {
  std::vector<std::vector<int32_t>> prompts;
  const int64_t longest = static_cast<int64_t>(prompt.size());
  for (int64_t i = 0; i < n; ++i) {
    const int64_t length = std::max<int64_t>(1, longest - i * longest / (2 * n));
    prompts.emplace_back(prompt.begin(), prompt.begin() + length);
  }
  return prompts;
}

// Seconds of the decoding steps of n sequences together, each decoding `tokens` after the
// step that prefills them all (untimed).
double batched_decode_seconds(GPT<float>& model, const std::vector<std::vector<int32_t>>& prompts,
                              int64_t tokens) {
  BatchDecoder<float> batch(model);
  GenerateOptions g;
  g.max_tokens = tokens + 1;  // the first comes out of the prefill step
  g.sampling.temperature = 0;
  for (const std::vector<int32_t>& p : prompts) batch.add({p, g});
  batch.step();
  const auto start = Clock::now();
  while (!batch.idle()) batch.step();
  return seconds_since(start);
}

// Tokens/s of all sequences together, median of `repeat` runs after a warm-up one.
double batched_decode_tps(GPT<float>& model, const std::vector<int32_t>& prompt, int64_t n,
                          const Options& o) {
  const std::vector<std::vector<int32_t>> prompts = batch_prompts(prompt, n);
  batched_decode_seconds(model, prompts, std::min<int64_t>(o.tokens, 8));
  std::vector<double> seconds;
  for (int i = 0; i < o.repeat; ++i)
    seconds.push_back(batched_decode_seconds(model, prompts, o.tokens));
  return double(n * o.tokens) / median(seconds);
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
  app.add_option("--int8", o.int8, "also measure the model with int8 weights (0 = float32 only)")
      ->capture_default_str();
  app.add_option("--batches", o.batches,
                 "sequences decoded together, of prompts from --prompt down to half of it")
      ->delimiter(',')
      ->capture_default_str()
      ->check(CLI::Range(int64_t{1}, int64_t{256}));
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

  struct Row {
    const char* weights;
    Speed speed;
    int64_t weight_bytes;
    std::vector<double> batch_tps;  // per entry of o.batches
    double bound_tps = 0;
  };
  auto batched = [&] {
    std::vector<double> tps;
    for (int64_t n : o.batches) tps.push_back(batched_decode_tps(model, prompt, n, o));
    return tps;
  };
  const std::vector<float> buffer = bench::make_buffer(o.flush_mb);
  std::vector<Row> rows;
  const int64_t float_bytes = active_weight_bytes(config);
  rows.push_back({"float32", measure(model, prompt, o, buffer), float_bytes, batched()});
  if (o.int8) {
    quantize_int8(model);
    const QuantisedBytes q = active_quantised_bytes(model);
    rows.push_back(
        {"int8", measure(model, prompt, o, buffer), float_bytes - q.float32 + q.int8, batched()});
  }

  for (Row& r : rows) r.bound_tps = r.speed.bandwidth_gbs * 1e9 / double(r.weight_bytes);
  // K and V of every layer at the mean decoding position.
  const double kv_bytes = 2.0 * double(config.n_layers * config.kv_heads() * config.head_dim()) *
                          (double(o.prompt) + double(o.tokens) / 2) * sizeof(float);

  if (o.json) {
    for (const Row& r : rows)
      fmt::print(
          "{{\"impl\": \"minimoe\", \"weights\": \"{}\", \"preset\": \"{}\", \"threads\": {}, "
          "\"prompt\": {}, \"tokens\": {}, \"prefill_tokens_per_s\": {:.6g}, "
          "\"decode_tokens_per_s\": {:.6g}, \"params\": {}, \"active_weight_bytes\": {}, "
          "\"kv_bytes_per_token\": {:.6g}, \"read_bandwidth_gbs\": {:.6g}, "
          "\"bound_tokens_per_s\": {:.6g}}}\n",
          r.weights, o.preset, o.threads, o.prompt, o.tokens, r.speed.prefill_tps,
          r.speed.decode_tps, config.num_parameters(), r.weight_bytes, kv_bytes,
          r.speed.bandwidth_gbs, r.bound_tps);
    for (const Row& r : rows)
      for (size_t i = 0; i < o.batches.size(); ++i)
        fmt::print(
            "{{\"impl\": \"minimoe\", \"weights\": \"{}\", \"preset\": \"{}\", "
            "\"threads\": {}, \"batch\": {}, \"tokens\": {}, \"decode_tokens_per_s\": {:.6g}}}\n",
            r.weights, o.preset, o.threads, o.batches[i], o.tokens, r.batch_tps[i]);
    return 0;
  }
  fmt::print(
      "decode: preset {} ({:.2f}M parameters, {:.2f}M active), {} threads, kernels {} "
      "(float) and {} (int8)\n",
      o.preset, double(config.num_parameters()) / 1e6, double(config.num_active_parameters()) / 1e6,
      o.threads, gemm_kernel<float>().name, int8_kernel().name);
  fmt::print("prompt {} tokens, {} decoded; KV cache +{:.2f} MB; read bandwidth {:.1f} GB/s",
             o.prompt, o.tokens, kv_bytes / 1e6, rows.front().speed.bandwidth_gbs);
  if (rows.size() == 2)
    fmt::print(" (float32 runs), {:.1f} GB/s (int8 runs)", rows[1].speed.bandwidth_gbs);
  fmt::print(", medians of measurements before each run\n");
  fmt::print("{:<8} {:>14} {:>13} {:>9} {:>16} {:>12} {:>11}\n", "weights", "prefill tok/s",
             "decode tok/s", "ms/token", "active MB/token", "bound tok/s", "% of bound");
  for (const Row& r : rows)
    fmt::print("{:<8} {:>14.0f} {:>13.1f} {:>9.2f} {:>16.1f} {:>12.1f} {:>10.0f}%\n", r.weights,
               r.speed.prefill_tps, r.speed.decode_tps, 1e3 / r.speed.decode_tps,
               double(r.weight_bytes) / 1e6, r.bound_tps, 100 * r.speed.decode_tps / r.bound_tps);
  if (rows.size() == 2)
    fmt::print("int8 / float32: decode {:.2f}x, prefill {:.2f}x, bound {:.2f}x\n",
               rows[1].speed.decode_tps / rows[0].speed.decode_tps,
               rows[1].speed.prefill_tps / rows[0].speed.prefill_tps,
               rows[1].bound_tps / rows[0].bound_tps);
  fmt::print(
      "\nbatched decoding (BatchDecoder; prompts from {} down to {} tokens, {} tokens each):\n",
      o.prompt, std::max<int64_t>(1, o.prompt / 2), o.tokens);
  fmt::print("{:<8} {:>6} {:>19} {:>17} {:>11}\n", "weights", "batch", "decode tok/s (all)",
             "per sequence", fmt::format("vs batch {}", o.batches[0]));
  for (const Row& r : rows)
    for (size_t i = 0; i < o.batches.size(); ++i)
      fmt::print("{:<8} {:>6} {:>19.1f} {:>17.1f} {:>10.2f}x\n", r.weights, o.batches[i],
                 r.batch_tps[i], r.batch_tps[i] / double(o.batches[i]),
                 r.batch_tps[i] / r.batch_tps[0]);
  return 0;
}
