// minimoe/kernels/parallel.hpp: when a loop is worth an OpenMP parallel region.
//
//   #pragma omp parallel for if (detail::worth_parallel(rows * C))
//
// Waking the team and the barrier at the end of a region cost microseconds, as much as a
// small model's whole projection when decoding one token: below kParallelWork multiply-adds
// (or element operations) the calling thread alone finishes first.
#pragma once

#include <cstdint>

#ifdef _OPENMP
#include <omp.h>
#endif

namespace minimoe::detail {

inline constexpr double kParallelWork = 1 << 17;

inline bool worth_parallel(double work) { return work >= kParallelWork; }

// f(i) for i in [0, n), over the threads when n elements are worth it: the flat elementwise
// loops (sums, scalings) of tensors of any size.
template <typename F>
void parallel_for(int64_t n, F&& f) {
#pragma omp parallel for schedule(static) if (worth_parallel(double(n)))
  for (int64_t i = 0; i < n; ++i) f(i);
}

inline int max_threads() {
#ifdef _OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

}  // namespace minimoe::detail
