// minimoe/tensor/random.hpp: a small, seedable, serialisable random number generator.
//
// std::normal_distribution and friends differ between standard libraries, so results would
// differ between machines for the same seed. Rng (xoshiro256**, seeded by splitmix64) and its
// distributions are defined here bit for bit, which makes initialisation, dropout and batch
// sampling reproducible everywhere, and its state can be saved in a checkpoint.
//
//   minimoe::Rng rng(42);
//   float u = rng.uniform();       // [0, 1)
//   float z = rng.normal();        // N(0, 1)
#pragma once

#include <array>
#include <cmath>
#include <cstdint>

namespace minimoe {

class Rng {
 public:
  using State = std::array<uint64_t, 4>;

  explicit Rng(uint64_t seed = 0) { reseed(seed); }

  void reseed(uint64_t seed) {
    uint64_t x = seed;
    for (auto& word : state_) word = splitmix64(x);
  }

  uint64_t next_u64() {
    const uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform in [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next_u64() >> 11) * 0x1.0p-53; }
  double uniform(double lo, double hi) { return lo + (hi - lo) * uniform(); }

  // Uniform integer in [0, n), n > 0, without modulo bias (rejects the top partial bucket).
  uint64_t below(uint64_t n) {
    const uint64_t limit = UINT64_MAX - UINT64_MAX % n;
    uint64_t x = next_u64();
    while (x >= limit) x = next_u64();
    return x % n;
  }

  // Standard normal by Box-Muller; the second value of each pair is kept for the next call.
  double normal() {
    if (has_spare_) {
      has_spare_ = false;
      return spare_;
    }
    double u1 = uniform();
    while (u1 <= 0.0) u1 = uniform();
    const double u2 = uniform();
    const double radius = std::sqrt(-2.0 * std::log(u1));
    const double angle = 2.0 * M_PI * u2;
    spare_ = radius * std::sin(angle);
    has_spare_ = true;
    return radius * std::cos(angle);
  }

  // The full state, for checkpoints: the four words plus the cached normal.
  struct Snapshot {
    State words;
    bool has_spare;
    double spare;
  };
  Snapshot snapshot() const { return {state_, has_spare_, spare_}; }
  void restore(const Snapshot& s) {
    state_ = s.words;
    has_spare_ = s.has_spare;
    spare_ = s.spare;
  }

 private:
  static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  static uint64_t splitmix64(uint64_t& x) {
    uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
  }

  State state_{};
  bool has_spare_ = false;
  double spare_ = 0.0;
};

}  // namespace minimoe
