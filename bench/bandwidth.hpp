// bench/bandwidth.hpp: the machine's read bandwidth, the bound of memory-bound benchmarks
// (decoding streams every active weight once per token).
//
//   std::vector<float> buffer = make_buffer(512);     // MB, larger than the caches
//   double gbs = read_bandwidth_gbs(buffer);          // best of 5 passes on all threads (or n)
//   read_pass(buffer);                                // one pass on all threads: evicts caches
#pragma once

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <vector>

namespace minimoe::bench {

inline volatile float g_bandwidth_sink = 0;  // keeps the sums observable

inline float sum_floats(const float* p, int64_t n) {
  float s[16] = {};
  int64_t i = 0;
  for (; i + 16 <= n; i += 16)
    for (int j = 0; j < 16; ++j) s[j] += p[i + j];
  for (; i < n; ++i) s[0] += p[i];
  float total = 0;
  for (float v : s) total += v;
  return total;
}

// Reads the whole buffer once on all threads, each streaming its own slice. As an eviction
// before a timed run it empties every core's caches (not only the caller's) and leaves the
// OpenMP workers awake, as the layers before an MoE layer do when a model decodes.
inline double read_pass(const std::vector<float>& buffer) {
  constexpr int64_t kBlock = 1 << 14;
  const int64_t n = int64_t(buffer.size()), blocks = (n + kBlock - 1) / kBlock;
  const auto t0 = std::chrono::steady_clock::now();
  float total = 0;
#pragma omp parallel for schedule(static) reduction(+ : total)
  for (int64_t b = 0; b < blocks; ++b)
    total += sum_floats(buffer.data() + b * kBlock, std::min(kBlock, n - b * kBlock));
  g_bandwidth_sink = g_bandwidth_sink + total;
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

inline std::vector<float> make_buffer(int64_t megabytes) {
  std::vector<float> buffer(static_cast<size_t>(megabytes * (1 << 20) / 4));
  const int64_t n = int64_t(buffer.size());
#pragma omp parallel for schedule(static)
  for (int64_t i = 0; i < n; ++i) buffer[i] = 1.0f;  // first touch on the reading threads
  return buffer;
}

inline double read_bandwidth_gbs(const std::vector<float>& buffer, int passes = 5) {
  double best = 1e30;
  for (int trial = 0; trial < passes; ++trial) best = std::min(best, read_pass(buffer));
  return double(buffer.size()) * 4.0 / best / 1e9;
}

}  // namespace minimoe::bench
