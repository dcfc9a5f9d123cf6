// minimoe/train/schedule.hpp: the learning rate as a function of the step.
//
//   LRSchedule s{ScheduleKind::Cosine, /*peak=*/1e-3, /*min=*/1e-4, /*warmup=*/100, /*total=*/2000};
//   double lr = s(step);                 // step = 0, 1, ..., total - 1
//
// Every schedule starts with a linear warmup from peak / warmup to the peak over `warmup`
// steps (step 0 already learns). After it:
//   constant  the peak until the end
//   cosine    half a cosine from the peak down to `min_lr` at the last step (GPT-2, nanoGPT)
//   wsd       warmup-stable-decay (MiniCPM): the peak until the last `decay_fraction` of the
//             steps, then linearly down to min_lr. The stable phase can be extended or a run
//             branched off for a decay at any point, which cosine does not allow.
// Past `total` the schedule stays at its final value, so a resumed run asked for more steps
// never sees a negative or exploding rate.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <string>

#include "minimoe/error.hpp"

namespace minimoe {

enum class ScheduleKind { Constant, Cosine, WSD };

inline ScheduleKind schedule_from_string(const std::string& name) {
  if (name == "constant") return ScheduleKind::Constant;
  if (name == "cosine") return ScheduleKind::Cosine;
  if (name == "wsd") return ScheduleKind::WSD;
  throw ValueError(
      fmt::format("unknown learning-rate schedule '{}' (expected constant, cosine or wsd)", name));
}

inline const char* to_string(ScheduleKind kind) {
  switch (kind) {
    case ScheduleKind::Constant:
      return "constant";
    case ScheduleKind::Cosine:
      return "cosine";
    case ScheduleKind::WSD:
      return "wsd";
  }
  return "?";
}

struct LRSchedule {
  ScheduleKind kind = ScheduleKind::Cosine;
  double peak_lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = 100;
  int64_t total = 1000;
  double decay_fraction = 0.2;  // wsd: share of the steps spent decaying

  void validate() const {
    check<ValueError>(peak_lr > 0 && std::isfinite(peak_lr),
                      "schedule: lr must be positive, got {}", peak_lr);
    check<ValueError>(min_lr >= 0 && min_lr <= peak_lr,
                      "schedule: min_lr must be in [0, lr = {}], got {}", peak_lr, min_lr);
    check<ValueError>(warmup >= 0, "schedule: warmup must be >= 0, got {}", warmup);
    check<ValueError>(total > 0, "schedule: the number of steps must be positive, got {}", total);
    check<ValueError>(decay_fraction > 0 && decay_fraction <= 1,
                      "schedule: decay_fraction must be in (0, 1], got {}", decay_fraction);
  }

  double operator()(int64_t step) const {
    step = std::max<int64_t>(step, 0);
    if (step < warmup) return peak_lr * double(step + 1) / double(warmup);
    const int64_t last = std::max<int64_t>(total - 1, warmup);
    const double progress =  // 0 at the end of the warmup, 1 at the last step
        last == warmup ? 1.0 : std::min(1.0, double(step - warmup) / double(last - warmup));
    switch (kind) {
      case ScheduleKind::Constant:
        return peak_lr;
      case ScheduleKind::Cosine:
        return min_lr + 0.5 * (peak_lr - min_lr) * (1.0 + std::cos(M_PI * progress));
      case ScheduleKind::WSD: {
        const double decay_start = double(total) * (1.0 - decay_fraction);
        if (double(step) < decay_start) return peak_lr;
        const double t =
            std::min(1.0, (double(step) - decay_start) / std::max(1.0, double(last) - decay_start));
        return peak_lr + (min_lr - peak_lr) * t;
      }
    }
    return peak_lr;
  }
};

}  // namespace minimoe
