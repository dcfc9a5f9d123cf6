// bench/linear.cpp: a Linear layer's three products with minimoe's GEMM kernels and with
// Eigen's, the measurement behind ops/matmul.hpp's choice of kernel.
//
//   linear --tokens 2048 --in 256 --out 1024 --threads 2
//
//   forward   y  = x W^T      [T, out] = [T, in] [out, in]^T
//   dx        dx = dy W       [T, in]  = [T, out] [out, in]
//   dW        dW = dy^T x     [out, in] = [T, out]^T [T, in]
//
// Each product is checked against the other implementation, then timed (median of runs).
// --out 50304 --tokens 512 is an LM head over GPT-2's (padded) vocabulary.
#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <vector>

#include <fmt/format.h>
#include <CLI/CLI.hpp>
#include <Eigen/Core>
#ifdef _OPENMP
#include <omp.h>
#endif

#include <minimoe/kernels/grouped_gemm.hpp>
#include <minimoe/tensor/tensor.hpp>

using namespace minimoe;

namespace {

using Mat = Eigen::Matrix<float, Eigen::Dynamic, Eigen::Dynamic, Eigen::RowMajor>;
using Map = Eigen::Map<Mat>;
using ConstMap = Eigen::Map<const Mat>;

double median_seconds(const std::function<void()>& run, double min_time) {
  run();  // warm-up
  std::vector<double> samples;
  double total = 0;
  while (samples.size() < 5 || total < min_time) {
    const auto t0 = std::chrono::steady_clock::now();
    run();
    const double dt = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
    samples.push_back(dt);
    total += dt;
  }
  std::sort(samples.begin(), samples.end());
  return samples[samples.size() / 2];
}

}  // namespace

int main(int argc, char** argv) {
  int64_t T = 2048, in = 256, out = 1024;
  int threads = 0;
  double min_time = 0.5;
  CLI::App app{"linear: a Linear layer's products, minimoe's GEMM against Eigen's"};
  app.add_option("--tokens", T, "rows T")->check(CLI::PositiveNumber);
  app.add_option("--in", in, "input features")->check(CLI::PositiveNumber);
  app.add_option("--out", out, "output features")->check(CLI::PositiveNumber);
  app.add_option("--threads", threads, "threads (0: OpenMP's default)")
      ->check(CLI::NonNegativeNumber);
  app.add_option("--min-time", min_time, "minimum timed seconds per product");
  CLI11_PARSE(app, argc, argv);
#ifdef _OPENMP
  if (threads == 0) threads = omp_get_max_threads();
  omp_set_num_threads(threads);
#else
  threads = 1;
#endif
  Eigen::setNbThreads(threads);

  Rng rng(1);
  const Tensor<float> x = Tensor<float>::randn({T, in}, rng);
  const Tensor<float> w = Tensor<float>::randn({out, in}, rng, 1.0 / std::sqrt(double(in)));
  const Tensor<float> dy = Tensor<float>::randn({T, out}, rng);
  Tensor<float> y({T, out}), y2({T, out}), dx({T, in}), dx2({T, in}), dw({out, in}), dw2({out, in});
  const ConstMap X(x.data(), T, in), W(w.data(), out, in), DY(dy.data(), T, out);

  struct Product {
    const char* name;
    std::function<void()> eigen, minimoe;
    const Tensor<float>*a, *b;
    double flops;
  };
  const double f = 2.0 * double(T) * double(in) * double(out);
  const std::vector<Product> products = {
      {"forward x W^T", [&] { Map(y.data(), T, out).noalias() = X * W.transpose(); },
       [&] { gemm(false, true, T, out, in, x.data(), w.data(), y2.data()); }, &y, &y2, f},
      {"dx = dy W", [&] { Map(dx.data(), T, in).noalias() = DY * W; },
       [&] { gemm(false, false, T, in, out, dy.data(), w.data(), dx2.data()); }, &dx, &dx2, f},
      {"dW = dy^T x", [&] { Map(dw.data(), out, in).noalias() = DY.transpose() * X; },
       [&] { gemm(true, false, out, in, T, dy.data(), x.data(), dw2.data()); }, &dw, &dw2, f},
  };
  fmt::print("linear: T={} in={} out={} threads={} kernel={}\n\n", T, in, out, threads,
             gemm_kernel<float>().name);
  fmt::print("{:<14} {:>10} {:>10} {:>10} {:>10} {:>8}\n", "product", "eigen ms", "GFLOP/s",
             "minimoe ms", "GFLOP/s", "speedup");
  for (const Product& p : products) {
    p.eigen();
    p.minimoe();
    double diff = 0, scale = 0;
    for (int64_t i = 0; i < p.a->numel(); ++i) {
      diff = std::max(diff, double(std::abs(p.a->data()[i] - p.b->data()[i])));
      scale = std::max(scale, double(std::abs(p.a->data()[i])));
    }
    if (!(diff <= 1e-4 * scale)) {
      fmt::print(stderr, "linear: {} disagrees: max |error| {} (scale {})\n", p.name, diff, scale);
      return 1;
    }
    const double te = median_seconds(p.eigen, min_time), tm = median_seconds(p.minimoe, min_time);
    fmt::print("{:<14} {:>10.3f} {:>10.1f} {:>10.3f} {:>10.1f} {:>7.2f}x\n", p.name, te * 1e3,
               p.flops / te / 1e9, tm * 1e3, p.flops / tm / 1e9, te / tm);
  }
  return 0;
}
