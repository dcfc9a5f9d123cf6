// minimoe/train/plots.hpp: the plots of a training run, drawn from its metrics file.
//
//   write_training_plots(read_metrics("run/metrics.jsonl"), "run");
//   // run/loss.svg          training loss (smoothed) and validation loss, per step
//   // run/expert_load.svg   share of the routed tokens per expert, one chart per MoE layer
#pragma once

#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/plot/svg.hpp"

namespace minimoe {

namespace detail {

// Mean over a trailing window of `width` points, so that noisy per-step values read as trends.
inline std::vector<double> trailing_mean(const std::vector<double>& v, size_t width) {
  std::vector<double> out(v.size());
  double sum = 0;
  size_t finite = 0;
  std::vector<double> window;
  for (size_t i = 0; i < v.size(); ++i) {
    window.push_back(v[i]);
    if (std::isfinite(v[i])) sum += v[i], ++finite;
    if (window.size() > width) {
      if (std::isfinite(window.front())) sum -= window.front(), --finite;
      window.erase(window.begin());
    }
    out[i] = finite > 0 ? sum / double(finite) : NAN;
  }
  return out;
}

inline double number_or_nan(const nlohmann::json& j, const char* key) {
  const auto it = j.find(key);
  return it != j.end() && it->is_number() ? it->get<double>() : NAN;
}

}  // namespace detail

inline void write_training_plots(const std::vector<nlohmann::json>& records,
                                 const std::string& dir) {
  Series train{"train (mean of 20)", {}, {}}, val{"validation", {}, {}};
  std::vector<double> load_steps;
  std::vector<std::vector<std::vector<double>>> load;  // [step][layer][expert]
  for (const nlohmann::json& r : records) {
    const double step = r["step"].get<double>();
    if (r["type"] == "train") {
      train.x.push_back(step + 1);  // after the step, as evaluations are
      train.y.push_back(detail::number_or_nan(r, "loss"));
      if (r.contains("load") && r["load"].is_array() && !r["load"].empty()) {
        load_steps.push_back(step + 1);
        load.push_back(r["load"].get<std::vector<std::vector<double>>>());
      }
    } else if (r["type"] == "eval") {
      val.x.push_back(step);
      val.y.push_back(detail::number_or_nan(r, "val_loss"));
    }
  }
  train.y = detail::trailing_mean(train.y, 20);
  write_svg(dir + "/loss.svg", {LineChart{"Loss", "step", "cross-entropy (nats)", {train, val}}});

  if (load.empty()) return;
  std::vector<LineChart> charts;
  const size_t layers = load.front().size();
  for (size_t l = 0; l < layers; ++l) {
    LineChart chart{
        fmt::format("Expert load, MoE layer {}", l), "step", "share of routed tokens", {}};
    const size_t experts = load.front()[l].size();
    for (size_t e = 0; e < experts; ++e) {
      Series s{fmt::format("expert {}", e), load_steps, {}};
      for (const auto& step : load)
        s.y.push_back(l < step.size() && e < step[l].size() ? step[l][e] : NAN);
      s.y = detail::trailing_mean(s.y, 20);
      chart.series.push_back(std::move(s));
    }
    chart.height = 260;
    charts.push_back(std::move(chart));
  }
  write_svg(dir + "/expert_load.svg", charts);
}

}  // namespace minimoe
