// minimoe analyze: which experts each domain's text is routed to, layer by layer.
#include <filesystem>
#include <memory>

#include "common.hpp"

namespace minimoe::cli {
namespace {

struct AnalyzeArgs {
  std::string ckpt, data_dir = "data/corpus", svg, gpt2_dir = kDefaultGpt2Dir;
  std::vector<std::string> corpus;
  int64_t tokens = 16384;
  double dead_fraction = 0.1;
  int threads = 0;
};

void print_share_table(const RoutingAnalysis& r, const std::string& title,
                       const std::function<double(size_t, size_t)>& share) {
  fmt::print("\n{}\n{:<12}", title, "domain");
  for (int64_t e = 0; e < r.experts; ++e) fmt::print(" {:>7}", fmt::format("e{}", e));
  fmt::print("\n");
  for (size_t d = 0; d < r.domains.size(); ++d) {
    fmt::print("{:<12}", r.domains[d]);
    for (int64_t e = 0; e < r.experts; ++e) fmt::print(" {:>6.1f}%", 100 * share(d, e));
    fmt::print("\n");
  }
}

void run_analyze(AnalyzeArgs a) {
  namespace fs = std::filesystem;
  set_threads(a.threads);
  const SafetensorsFile file = SafetensorsFile::open(a.ckpt);
  const Tokenizer tokenizer = tokenizer_of(file, a.gpt2_dir);
  GPT<float> model = load_model<float>(file);
  std::vector<CorpusFile> files;
  if (a.corpus.empty()) {
    files = find_corpus_files(a.data_dir);
  } else {
    for (const std::string& path : a.corpus)
      files.push_back({fs::path(path).stem().string(), path, 1.0});
  }
  // Validation tokens only: the tail of each file that training holds out (the tokenizer
  // sees the file whole, as in training, and the split is Dataset's).
  std::vector<std::pair<std::string, std::vector<int32_t>>> text;
  for (const CorpusFile& f : files) {
    std::vector<int32_t> ids = tokenizer.encode(read_file(f.path));
    const int64_t n = static_cast<int64_t>(ids.size());
    ids.erase(ids.begin(), ids.end() - validation_split_tokens(n, kDefaultValFraction));
    text.emplace_back(f.name, std::move(ids));
  }
  const RoutingAnalysis r = analyze_routing(model, text, a.tokens);

  fmt::print("routing of {} MoE layers x {} experts (top-{}), {} tokens per domain at most\n",
             r.layers.size(), r.experts, model.config.top_k, a.tokens);
  print_share_table(r, "share of routed tokens per expert, mean over layers",
                    [&](size_t d, size_t e) { return r.mean_share(d, e); });
  for (size_t l = 0; l < r.layers.size(); ++l)
    print_share_table(r,
                      fmt::format("layer {} (JS divergence between domains: {:.3f} bits)",
                                  r.layers[l], r.specialization(l)),
                      [&](size_t d, size_t e) { return r.share(d, l, e); });
  double mean_js = 0;
  for (size_t l = 0; l < r.layers.size(); ++l)
    mean_js += r.specialization(l) / double(r.layers.size());
  fmt::print("\nspecialisation (mean JS divergence, 0 = none, {:.2f} = disjoint): {:.3f} bits\n",
             std::log2(double(r.domains.size())), mean_js);
  const auto dead = r.dead_experts(a.dead_fraction);
  if (dead.empty()) {
    fmt::print("dead experts: none (every expert gets >= {:.0f}% of a uniform share)\n",
               100 * a.dead_fraction);
  } else {
    fmt::print("dead experts (< {:.0f}% of a uniform share):", 100 * a.dead_fraction);
    for (const auto& [layer, expert] : dead) fmt::print(" layer {} expert {};", layer, expert);
    fmt::print("\n");
  }

  Heatmap h;
  h.title =
      fmt::format("Share of routed tokens per expert ({})", fs::path(a.ckpt).filename().string());
  for (int64_t e = 0; e < r.experts; ++e) h.columns.push_back(fmt::format("e{}", e));
  for (size_t l = 0; l < r.layers.size(); ++l)
    for (size_t d = 0; d < r.domains.size(); ++d) {
      h.rows.push_back(fmt::format("L{} {}", r.layers[l], r.domains[d]));
      std::vector<double> row;
      for (int64_t e = 0; e < r.experts; ++e) row.push_back(r.share(d, l, e));
      h.values.push_back(row);
    }
  if (a.svg.empty()) a.svg = (fs::path(a.ckpt).parent_path() / "routing.svg").string();
  write_svg(a.svg, h);
  fmt::print("heatmap: {}\n", a.svg);
}

}  // namespace

void add_analyze_command(CLI::App& app) {
  auto a = std::make_shared<AnalyzeArgs>();
  CLI::App* cmd = app.add_subcommand(
      "analyze", "Expert routing per domain and layer, dead experts, specialisation");
  cmd->add_option("--ckpt", a->ckpt, "model file or training checkpoint of an MoE model")
      ->required();
  cmd->add_option("--data", a->data_dir, "directory of .txt files, one domain each")
      ->capture_default_str();
  cmd->add_option("--corpus", a->corpus, "text files instead of --data (repeatable)");
  cmd->add_option("--tokens", a->tokens, "tokens per domain at most")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--dead-fraction", a->dead_fraction,
                  "an expert is dead below this share of a uniform load")
      ->capture_default_str()
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--svg", a->svg, "heatmap file (default: routing.svg next to the checkpoint)");
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--gpt2-dir", a->gpt2_dir, "GPT-2's vocabulary files")->capture_default_str();
  cmd->callback([a] { run_analyze(*a); });
}

}  // namespace minimoe::cli
