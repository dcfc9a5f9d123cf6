// minimoe/train/compare.hpp: several training runs side by side, from their metrics files, as
// in a dense-versus-MoE experiment.
//
//   std::vector<RunSummary> runs{summarize_run("dense", read_metrics("runs/dense/metrics.jsonl")),
//                                summarize_run("4e", read_metrics("runs/4e/metrics.jsonl"))};
//   std::cout << comparison_table(runs);           // Markdown: losses, tokens, time per step
//   write_comparison_plot(runs, "compare.svg");    // validation and training loss curves
//
// A run's final figures are those of its last evaluation; its time per step is the median
// over its training steps (robust to the slow first steps and to evaluation pauses).
#pragma once

#include <algorithm>
#include <cmath>
#include <map>
#include <string>
#include <vector>

#include <fmt/format.h>
#include <nlohmann/json.hpp>

#include "minimoe/error.hpp"
#include "minimoe/train/plots.hpp"

namespace minimoe {

struct RunSummary {
  std::string name;
  int64_t params = 0, active_params = 0;  // 0 when unknown
  int64_t steps = 0, tokens = 0;
  double seconds_per_step = NAN;                  // median of the training steps
  double val_loss = NAN;                          // at the last evaluation
  std::map<std::string, double> domain_val_loss;  // at the last evaluation
  Series train, val;                              // loss curves: smoothed training, validation
};

inline RunSummary summarize_run(const std::string& name,
                                const std::vector<nlohmann::json>& records) {
  RunSummary s;
  s.name = name;
  s.train.name = s.val.name = name;
  std::vector<double> step_seconds;
  for (const nlohmann::json& r : records) {
    const double step = r["step"].get<double>();
    if (r["type"] == "train") {
      ++s.steps;
      const double tokens = detail::number_or_nan(r, "tokens");
      const double rate = detail::number_or_nan(r, "tokens_per_s");
      if (std::isfinite(tokens)) s.tokens += static_cast<int64_t>(tokens);
      if (std::isfinite(tokens) && rate > 0) step_seconds.push_back(tokens / rate);
      s.train.x.push_back(step + 1);
      s.train.y.push_back(detail::number_or_nan(r, "loss"));
    } else if (r["type"] == "eval") {
      s.val.x.push_back(step);
      s.val.y.push_back(detail::number_or_nan(r, "val_loss"));
      s.val_loss = s.val.y.back();
      s.domain_val_loss.clear();
      if (r.contains("domains") && r["domains"].is_object())
        for (const auto& [domain, d] : r["domains"].items())
          s.domain_val_loss[domain] = detail::number_or_nan(d, "val_loss");
    }
  }
  check<ValueError>(s.steps > 0, "run '{}' has no training steps in its metrics", name);
  s.train.y = detail::trailing_mean(s.train.y, 20);
  if (!step_seconds.empty()) {
    std::nth_element(step_seconds.begin(), step_seconds.begin() + step_seconds.size() / 2,
                     step_seconds.end());
    s.seconds_per_step = step_seconds[step_seconds.size() / 2];
  }
  return s;
}

// A Markdown table: one row per run, the domains of the first run as columns, and each run's
// final validation loss against the first run's.
inline std::string comparison_table(const std::vector<RunSummary>& runs) {
  check<ValueError>(!runs.empty(), "compare: no runs");
  std::vector<std::string> domains;
  for (const auto& [domain, loss] : runs.front().domain_val_loss) domains.push_back(domain);
  auto cell = [](double v) { return std::isfinite(v) ? fmt::format("{:.4f}", v) : "-"; };
  auto count = [](int64_t v) { return v > 0 ? fmt::format("{:.2f}M", double(v) / 1e6) : "-"; };
  std::string header = "| run | params | active | steps | tokens | s/step | val loss | vs first |";
  std::string rule = "|---|---|---|---|---|---|---|---|";
  for (const std::string& d : domains) {
    header += fmt::format(" {} |", d);
    rule += "---|";
  }
  std::string out = header + "\n" + rule + "\n";
  for (const RunSummary& r : runs) {
    const double delta = r.val_loss - runs.front().val_loss;
    out += fmt::format(
        "| {} | {} | {} | {} | {:.2f}M | {} | {} | {} |", r.name, count(r.params),
        count(r.active_params), r.steps, double(r.tokens) / 1e6,
        std::isfinite(r.seconds_per_step) ? fmt::format("{:.3f}", r.seconds_per_step) : "-",
        cell(r.val_loss), std::isfinite(delta) ? fmt::format("{:+.4f}", delta) : "-");
    for (const std::string& d : domains) {
      const auto it = r.domain_val_loss.find(d);
      out += fmt::format(" {} |", cell(it != r.domain_val_loss.end() ? it->second : NAN));
    }
    out += "\n";
  }
  return out;
}

inline void write_comparison_plot(const std::vector<RunSummary>& runs, const std::string& path) {
  LineChart val{"Validation loss", "step", "cross-entropy (nats)", {}};
  LineChart train{"Training loss (mean of 20 steps)", "step", "cross-entropy (nats)", {}};
  for (const RunSummary& r : runs) {
    val.series.push_back(r.val);
    train.series.push_back(r.train);
  }
  write_svg(path, {val, train});
}

}  // namespace minimoe
