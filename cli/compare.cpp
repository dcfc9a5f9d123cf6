// minimoe compare: training runs side by side (a dense-versus-MoE experiment): a Markdown
// table of their final losses, sizes and time per step, and their loss curves in one SVG.
#include <filesystem>
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

namespace fs = std::filesystem;

struct CompareArgs {
  std::vector<std::string> runs;
  std::string out;  // SVG; empty = none
};

void run_compare(const CompareArgs& a) {
  std::vector<RunSummary> runs;
  for (const std::string& dir : a.runs) {
    const std::string metrics = dir + "/metrics.jsonl";
    check<IOError>(fs::is_regular_file(metrics), "'{}' holds no metrics.jsonl (not a run)", dir);
    RunSummary s = summarize_run(fs::path(dir).filename().string(), read_metrics(metrics));
    const std::string model = dir + "/model.safetensors";
    if (fs::is_regular_file(model)) {
      const GPTConfig config = read_model_config(SafetensorsFile::open(model));
      s.params = config.num_parameters();
      s.active_params = config.num_active_parameters();
    }
    runs.push_back(std::move(s));
  }
  fmt::print("{}", comparison_table(runs));
  if (!a.out.empty()) {
    write_comparison_plot(runs, a.out);
    fmt::print(stderr, "plot: {}\n", a.out);
  }
}

}  // namespace

void add_compare_command(CLI::App& app) {
  auto a = std::make_shared<CompareArgs>();
  CLI::App* cmd =
      app.add_subcommand("compare", "Compare training runs: final losses, sizes, loss curves");
  cmd->add_option("runs", a->runs, "run directories (the first is the baseline)")->required();
  cmd->add_option("--out", a->out, "write the loss curves of every run to this SVG file");
  cmd->callback([a] { run_compare(*a); });
}

}  // namespace minimoe::cli
