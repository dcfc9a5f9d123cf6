// minimoe/train/options.hpp: everything that decides a training run besides the model.
//
// The options travel in every checkpoint (as JSON), so a resumed run continues with exactly
// the settings it started with; docs/training.md describes each one.
#pragma once

#include <cstdint>
#include <string>
#include <type_traits>

#include <nlohmann/json.hpp>

#include "minimoe/kernels/gemm_microkernel.hpp"
#include "minimoe/optim/adamw.hpp"
#include "minimoe/train/schedule.hpp"

namespace minimoe {

struct TrainOptions {
  int64_t batch_size = 16;  // sequences per micro-batch
  int64_t context = 0;      // tokens per sequence; 0 = the model's context length
  int64_t grad_accum = 1;   // micro-batches per optimizer step
  int64_t steps = 1000;     // optimizer steps (with time_minutes: set from the measured speed)
  double time_minutes = 0;  // > 0: train for about this long

  double lr = 1e-3;
  double min_lr = 1e-4;
  int64_t warmup = 100;
  ScheduleKind schedule = ScheduleKind::Cosine;
  double decay_fraction = 0.2;  // wsd
  AdamWConfig adamw;
  double grad_clip = 1.0;  // global norm; 0 = off
  // Of the GEMMs of forward, backward and evaluation (kernels/gemm_microkernel.hpp): bf16
  // rounds their operands, everything else stays in float.
  MatmulPrecision precision = MatmulPrecision::fp32;

  int64_t eval_every = 100;        // steps; 0 = only at the end
  int64_t eval_batches = 8;        // per domain
  int64_t checkpoint_every = 100;  // steps; 0 = only at the end
  uint64_t seed = 1337;            // data order (the model's initialisation has its own seed)

  // A step whose loss exceeds spike_factor x the running mean loss, or whose loss or gradient
  // is not finite, is skipped; more than max_bad_steps in a row stop training.
  double spike_factor = 2.5;  // 0 = no spike detection
  int64_t max_bad_steps = 20;

  void validate() const {
    check<ValueError>(batch_size > 0, "train: batch size must be positive, got {}", batch_size);
    check<ValueError>(context >= 0, "train: context must be >= 0, got {}", context);
    check<ValueError>(grad_accum > 0, "train: grad_accum must be positive, got {}", grad_accum);
    check<ValueError>(steps > 0, "train: steps must be positive, got {}", steps);
    check<ValueError>(time_minutes >= 0, "train: time must be >= 0 minutes, got {}", time_minutes);
    check<ValueError>(grad_clip >= 0, "train: grad_clip must be >= 0, got {}", grad_clip);
    check<ValueError>(eval_every >= 0 && checkpoint_every >= 0,
                      "train: eval_every and checkpoint_every must be >= 0");
    check<ValueError>(eval_batches > 0, "train: eval_batches must be positive, got {}",
                      eval_batches);
    check<ValueError>(spike_factor == 0 || spike_factor > 1,
                      "train: spike_factor must be 0 (off) or > 1, got {}", spike_factor);
    check<ValueError>(max_bad_steps > 0, "train: max_bad_steps must be positive, got {}",
                      max_bad_steps);
    adamw.validate();
    schedule_for(steps).validate();
  }

  LRSchedule schedule_for(int64_t total_steps) const {
    return LRSchedule{schedule, lr, min_lr, warmup, total_steps, decay_fraction};
  }
};

inline void to_json(nlohmann::json& j, const TrainOptions& o) {
  j = nlohmann::json{{"batch_size", o.batch_size},
                     {"context", o.context},
                     {"grad_accum", o.grad_accum},
                     {"steps", o.steps},
                     {"time_minutes", o.time_minutes},
                     {"lr", o.lr},
                     {"min_lr", o.min_lr},
                     {"warmup", o.warmup},
                     {"schedule", to_string(o.schedule)},
                     {"decay_fraction", o.decay_fraction},
                     {"beta1", o.adamw.beta1},
                     {"beta2", o.adamw.beta2},
                     {"eps", o.adamw.eps},
                     {"weight_decay", o.adamw.weight_decay},
                     {"grad_clip", o.grad_clip},
                     {"precision", to_string(o.precision)},
                     {"eval_every", o.eval_every},
                     {"eval_batches", o.eval_batches},
                     {"checkpoint_every", o.checkpoint_every},
                     {"seed", o.seed},
                     {"spike_factor", o.spike_factor},
                     {"max_bad_steps", o.max_bad_steps}};
}

// Every field is required and typed: a checkpoint's options are either read whole or refused.
inline void from_json(const nlohmann::json& j, TrainOptions& o) {
  check<FormatError>(j.is_object(), "train options: not a JSON object");
  auto get = [&](const char* key, auto& field) {
    const auto it = j.find(key);
    check<FormatError>(it != j.end(), "train options: missing '{}'", key);
    // nlohmann would convert a float to an integer, with undefined behaviour out of range.
    check<FormatError>(
        !std::is_integral_v<std::decay_t<decltype(field)>> || it->is_number_integer(),
        "train options: '{}' has the wrong type: {}", key, it->dump());
    try {
      it->get_to(field);
    } catch (const nlohmann::json::exception&) {
      throw FormatError(fmt::format("train options: '{}' has the wrong type: {}", key, it->dump()));
    }
  };
  std::string schedule;
  get("batch_size", o.batch_size);
  get("context", o.context);
  get("grad_accum", o.grad_accum);
  get("steps", o.steps);
  get("time_minutes", o.time_minutes);
  get("lr", o.lr);
  get("min_lr", o.min_lr);
  get("warmup", o.warmup);
  get("schedule", schedule);
  get("decay_fraction", o.decay_fraction);
  get("beta1", o.adamw.beta1);
  get("beta2", o.adamw.beta2);
  get("eps", o.adamw.eps);
  get("weight_decay", o.adamw.weight_decay);
  get("grad_clip", o.grad_clip);
  // The one optional field: checkpoints from before it trained in float.
  std::string precision = "fp32";
  if (j.contains("precision")) get("precision", precision);
  check<FormatError>(precision == "fp32" || precision == "bf16",
                     "train options: precision must be fp32 or bf16, got '{}'", precision);
  o.precision = precision == "bf16" ? MatmulPrecision::bf16 : MatmulPrecision::fp32;
  get("eval_every", o.eval_every);
  get("eval_batches", o.eval_batches);
  get("checkpoint_every", o.checkpoint_every);
  get("seed", o.seed);
  get("spike_factor", o.spike_factor);
  get("max_bad_steps", o.max_bad_steps);
  try {
    o.schedule = schedule_from_string(schedule);
    o.validate();
  } catch (const ValueError& e) {
    throw FormatError(fmt::format("train options: {}", e.what()));
  }
}

}  // namespace minimoe
