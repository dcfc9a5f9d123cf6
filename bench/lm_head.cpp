// bench/lm_head.cpp: an LM head with its cross-entropy, forward and backward, unfused
// (matmul, then cross_entropy over the whole [T, V] logits) against linear_cross_entropy
// (ops/linear_cross_entropy.hpp) at several chunk sizes: the measurement behind its default.
//
//   lm_head --tokens 2048 --d 256 --vocab 50257 --threads 2 --chunks 256,512,1024 [--precision bf16]
//
// The fused variants are first checked against the unfused one (errors relative to the largest
// gradient element), then run in interleaved rounds (each
// round runs every variant once, so that a noisy neighbour slows all of them alike); the table
// has each variant's median, its ratio to the unfused one and the size of its largest buffers.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <minimoe/ops/linear_cross_entropy.hpp>
#include <minimoe/ops/loss.hpp>
#include <minimoe/ops/matmul.hpp>

using namespace minimoe;

namespace {

struct Variant {
  std::string name;
  int64_t chunk = 0;  // 0: unfused
  double buffer_mb = 0;
  std::vector<double> seconds;
};

struct Result {
  double loss;
  Tensor<float> dh, dw;
};

Result run(const Variant& v, const Tensor<float>& h, const Tensor<float>& w,
           const Tensor<int32_t>& targets) {
  Var<float> hv(h, true), wv(w, true);
  Var<float> loss = v.chunk == 0 ? cross_entropy(matmul(hv, wv, false, true), targets)
                                 : linear_cross_entropy(hv, wv, targets, kIgnoreIndex, v.chunk);
  loss.backward();
  return {double(loss.item()), hv.grad(), wv.grad()};
}

// max |a - b| / max |b|
double relative_error(const Tensor<float>& a, const Tensor<float>& b) {
  double e = 0, scale = 0;
  for (int64_t i = 0; i < a.numel(); ++i) {
    e = std::max(e, double(std::abs(a.data()[i] - b.data()[i])));
    scale = std::max(scale, double(std::abs(b.data()[i])));
  }
  return scale > 0 ? e / scale : e;
}

}  // namespace

int main(int argc, char** argv) {
  int64_t T = 2048, d = 256, vocab = 50257;
  int threads = 0, rounds = 7;
  std::vector<int64_t> chunks = {256, 512, 1024};
  CLI::App app{"lm_head: an LM head and its loss, unfused against linear_cross_entropy"};
  app.add_option("--tokens", T, "rows T")->check(CLI::PositiveNumber);
  app.add_option("--d", d, "model width C")->check(CLI::PositiveNumber);
  app.add_option("--vocab", vocab, "vocabulary V")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "threads (0: OpenMP's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--chunks", chunks, "chunk sizes (rows) of the fused op")
      ->delimiter(',')
      ->check(CLI::PositiveNumber);
  app.add_option("--rounds", rounds, "timed rounds")->check(CLI::PositiveNumber);
  std::string precision = "fp32";
  app.add_option("--precision", precision, "matmul precision: fp32 or bf16")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  CLI11_PARSE(app, argc, argv);
  const bool bf16 = precision == "bf16";
  if (bf16) set_matmul_precision(MatmulPrecision::bf16);
  // bf16 operands carry 2^-9 relative error each: the variants agree to about 1e-2.
  const double tolerance = bf16 ? 3e-2 : 1e-4;
#ifdef _OPENMP
  if (threads == 0) threads = omp_get_max_threads();
  omp_set_num_threads(threads);
#else
  threads = 1;
#endif
  Eigen::setNbThreads(threads);

  Rng rng(1);
  const Tensor<float> h = Tensor<float>::randn({T, d}, rng);
  const Tensor<float> w = Tensor<float>::randn({vocab, d}, rng, 0.02);
  Tensor<int32_t> targets({T});
  for (int64_t r = 0; r < T; ++r) targets.data()[r] = static_cast<int32_t>(rng.below(vocab));

  const double mb = double(vocab) * 4 / 1e6;  // one row of logits, MB
  std::vector<Variant> variants = {{"unfused", 0, 2 * double(T) * mb, {}}};
  for (int64_t c : chunks)
    variants.push_back({fmt::format("fused, chunk {}", c), c, double(std::min(c, T)) * mb, {}});

  const Result reference = run(variants[0], h, w, targets);
  for (size_t i = 1; i < variants.size(); ++i) {
    const Result r = run(variants[i], h, w, targets);
    const double eh = relative_error(r.dh, reference.dh), ew = relative_error(r.dw, reference.dw);
    if (!(std::abs(r.loss - reference.loss) <= tolerance * std::abs(reference.loss) &&
          eh <= tolerance && ew <= tolerance)) {
      fmt::print(stderr, "lm_head: {} disagrees: loss {} vs {}, relative error dh {} dw {}\n",
                 variants[i].name, r.loss, reference.loss, eh, ew);
      return 1;
    }
  }
  for (int round = 0; round < rounds; ++round)
    for (Variant& v : variants) {
      const auto t0 = std::chrono::steady_clock::now();
      run(v, h, w, targets);
      v.seconds.push_back(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }

  fmt::print("lm_head: T={} d={} vocab={} threads={} kernel={}, median of {} rounds\n\n", T, d,
             vocab, threads, gemm_kernel<float>().name, rounds);
  fmt::print("{:<18} {:>9} {:>9} {:>10} {:>12}\n", "variant", "ms", "GFLOP/s", "vs unfused",
             "logits MB");
  const double flops = 3 * 2.0 * double(T) * double(d) * double(vocab);
  double unfused = 0;
  for (Variant& v : variants) {
    std::sort(v.seconds.begin(), v.seconds.end());
    const double s = v.seconds[v.seconds.size() / 2];
    if (v.chunk == 0) unfused = s;
    fmt::print("{:<18} {:>9.1f} {:>9.1f} {:>9.2f}x {:>12.0f}\n", v.name, s * 1e3, flops / s / 1e9,
               unfused / s, v.buffer_mb);
  }
  return 0;
}
