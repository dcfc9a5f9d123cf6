// minimoe/train/metrics.hpp: training metrics as JSON lines, one object per step or evaluation.
//
//   MetricsLog log("run/metrics.jsonl", /*resume_step=*/trainer.state().step);
//   log.write(step_record(report));
//   log.write(eval_record(eval));
//
// Step records: {"type": "train", "step", "loss", "lr", "tokens_per_s", "aux_loss", "z_loss",
// "grad_norm", "tokens", "skipped", "load": [[share per expert] per MoE layer], "dropped"}.
// Evaluation records: {"type": "eval", "step", "val_loss", "val_ppl", "domains": {name:
// {"val_loss", "val_ppl", "tokens"}}}. Opening the log of a resumed run drops the records of
// steps after the checkpoint (they are about to be taken again), so the file always reads as
// one uninterrupted run. Each line is flushed as it is written.
#pragma once

#include <cmath>
#include <fstream>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "minimoe/io/atomic_file.hpp"
#include "minimoe/train/trainer.hpp"

namespace minimoe {

inline nlohmann::json step_record(const StepReport& r) {
  nlohmann::json load = nlohmann::json::array(), dropped = nlohmann::json::array();
  for (const LayerLoad& l : r.load) {
    load.push_back(l.fraction);
    dropped.push_back(l.dropped);
  }
  auto number = [](double v) { return std::isfinite(v) ? nlohmann::json(v) : nlohmann::json(); };
  nlohmann::json j{{"type", "train"},
                   {"step", r.step},
                   {"loss", number(r.loss)},
                   {"lr", r.lr},
                   {"tokens_per_s", r.seconds > 0 ? double(r.tokens) / r.seconds : 0.0},
                   {"aux_loss", number(r.aux_loss)},
                   {"z_loss", number(r.z_loss)},
                   {"grad_norm", number(r.grad_norm)},
                   {"tokens", r.tokens},
                   {"skipped", r.skipped},
                   {"load", load},
                   {"dropped", dropped}};
  if (r.skipped) j["skip_reason"] = r.skip_reason;
  return j;
}

inline nlohmann::json eval_record(const EvalReport& e) {
  nlohmann::json domains = nlohmann::json::object();
  for (const DomainEval& d : e.domains)
    domains[d.name] = {{"val_loss", d.loss}, {"val_ppl", d.perplexity()}, {"tokens", d.tokens}};
  return {{"type", "eval"},
          {"step", e.step},
          {"val_loss", e.loss},
          {"val_ppl", std::exp(e.loss)},
          {"domains", domains}};
}

// The records of a metrics file; lines that are not JSON objects (a line cut by a kill) are
// skipped.
inline std::vector<nlohmann::json> read_metrics(const std::string& path) {
  std::vector<nlohmann::json> records;
  std::ifstream in(path);
  std::string line;
  while (std::getline(in, line)) {
    nlohmann::json j = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (j.is_object() && j.contains("type") && j.contains("step")) records.push_back(std::move(j));
  }
  return records;
}

class MetricsLog {
 public:
  // Keeps the records of steps before resume_step (0: starts a new file).
  MetricsLog(const std::string& path, int64_t resume_step) : path_(path) {
    std::string kept;
    if (resume_step > 0) {
      for (const nlohmann::json& j : read_metrics(path)) {
        const int64_t step = j["step"].get<int64_t>();
        const bool before = j["type"] == "eval" ? step <= resume_step : step < resume_step;
        if (before) kept += j.dump() + "\n";
      }
    }
    write_file_atomically(path, [&](std::ostream& out) { out << kept; });
    out_.open(path, std::ios::app);
    check<WriteError>(bool(out_), "cannot append to '{}'", path);
  }

  void write(const nlohmann::json& record) {
    out_ << record.dump() << '\n';
    out_.flush();
    check<WriteError>(bool(out_), "cannot write to '{}'", path_);
  }

  const std::string& path() const { return path_; }

 private:
  std::string path_;
  std::ofstream out_;
};

}  // namespace minimoe
