// minimoe/train/progress.hpp: a progress bar on a terminal, plain log lines elsewhere.
//
//   Progress progress(total_steps, stderr);
//   progress.update(step, fmt::format("loss {:.3f}", loss), tokens_per_s);
//   progress.print("eval: val loss 3.21");     // a line above the bar
//   progress.finish();
//
// On a terminal the bar redraws in place (step, percentage, the caller's text, tokens/s, ETA);
// when the output is a file or a pipe, one plain line is printed every `log_every` steps and
// at the end, so logs stay readable. A null `out` prints nothing (the ranks other than 0 of a
// distributed run).
#pragma once

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <string>

#include <unistd.h>

#include <fmt/format.h>

namespace minimoe {

inline std::string format_duration(double seconds) {
  if (!(seconds >= 0) || seconds > 1e8) return "?";
  const auto s = static_cast<int64_t>(seconds + 0.5);
  if (s >= 3600) return fmt::format("{}h{:02}m", s / 3600, s / 60 % 60);
  if (s >= 60) return fmt::format("{}m{:02}s", s / 60, s % 60);
  return fmt::format("{}s", s);
}

class Progress {
 public:
  Progress(int64_t total, std::FILE* out, int64_t log_every = 10)
      : total_(total),
        out_(out),
        tty_(out != nullptr && ::isatty(::fileno(out)) != 0),
        log_every_(log_every) {}

  bool is_tty() const { return tty_; }
  void set_total(int64_t total) { total_ = total; }

  // `step` steps are done of total; `seconds_per_step` drives the ETA.
  void update(int64_t step, const std::string& text, double tokens_per_s, double seconds_per_step) {
    if (out_ == nullptr) return;
    const double eta = double(total_ - step) * seconds_per_step;
    const std::string speed = fmt::format("{:.0f} tok/s", tokens_per_s);
    if (tty_) {
      const int width = 24;
      const double done = total_ > 0 ? double(step) / double(total_) : 0.0;
      const int filled = static_cast<int>(done * width);
      std::string bar(static_cast<size_t>(filled), '#');
      bar.resize(width, '.');
      fmt::print(out_, "\r\033[K[{}] {}/{} {:3.0f}% | {} | {} | ETA {}", bar, step, total_,
                 100 * done, text, speed, format_duration(eta));
      std::fflush(out_);
      drawn_ = true;
    } else if (step % log_every_ == 0 || step == total_) {
      fmt::print(out_, "step {}/{} | {} | {} | ETA {}\n", step, total_, text, speed,
                 format_duration(eta));
      std::fflush(out_);
    }
  }

  // A line of its own; on a terminal the bar is redrawn by the next update.
  void print(const std::string& line) {
    if (out_ == nullptr) return;
    if (drawn_) fmt::print(out_, "\r\033[K");
    fmt::print(out_, "{}\n", line);
    std::fflush(out_);
    drawn_ = false;
  }

  void finish() {
    if (out_ == nullptr) return;
    if (drawn_) fmt::print(out_, "\n");
    std::fflush(out_);
    drawn_ = false;
  }

 private:
  int64_t total_;
  std::FILE* out_;
  bool tty_;
  int64_t log_every_;
  bool drawn_ = false;
};

}  // namespace minimoe
