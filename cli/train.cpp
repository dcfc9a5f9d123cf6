// minimoe train: fetches nothing, tokenizes the corpus, trains, evaluates, checkpoints,
// plots, and prints a sample. docs/training.md walks through a run.
//
// Under mpirun (a build with MINIMOE_WITH_MPI) the ranks train data-parallel: rank 0 trains
// the tokenizer, tokenizes the corpus, logs, writes the metrics, checkpoints and the model,
// and prints the sample; the others only train (docs/distributed.md). With --expert-parallel G
// the ranks also split every MoE layer's experts in groups of G.
#include <atomic>
#include <csignal>
#include <filesystem>
#include <memory>
#include <optional>

#include "common.hpp"
#ifdef MINIMOE_WITH_MPI
#include <minimoe/distributed/mpi.hpp>
#endif

namespace minimoe::cli {
namespace {

namespace fs = std::filesystem;

struct TrainArgs {
  std::string preset = "tiny";
  std::string data_dir = "data/corpus";
  std::vector<std::string> corpus;   // files; replace data_dir
  std::vector<std::string> weights;  // NAME=WEIGHT
  std::string tokenizer;             // empty: by vocabulary (see resolve_tokenizer)
  std::string out;                   // empty: runs/<preset>
  bool resume = false, force = false;
  int64_t experts = -1, topk = -1;
  double aux_weight = -1, z_weight = -1, capacity_factor = -1;
  int threads = 0;
  uint64_t seed = 1337;
  int64_t sample_tokens = 200;
  std::string prompt = "The ";
  bool profile = false;
  bool recompute = false;
  double mpi_timeout = 300;     // seconds a rank waits for the others before giving up
  int64_t expert_parallel = 1;  // ranks that split the experts of each MoE layer
  TrainOptions options;
};

std::atomic<int> g_interrupt_signal{0};

// Ctrl-C (or SIGTERM) asks the loop to stop after the current step and save a checkpoint.
void on_interrupt(int signal) { g_interrupt_signal = signal; }

std::vector<CorpusFile> corpus_files(const TrainArgs& a) {
  std::vector<CorpusFile> files;
  if (a.corpus.empty()) {
    files = find_corpus_files(a.data_dir);
  } else {
    for (const std::string& path : a.corpus) {
      check<IOError>(fs::is_regular_file(path), "corpus file '{}' does not exist", path);
      files.push_back({fs::path(path).stem().string(), path, 1.0});
    }
  }
  for (const std::string& w : a.weights) {
    const size_t eq = w.find('=');
    if (eq == std::string::npos)
      throw UsageError(fmt::format("--weight '{}' is not NAME=WEIGHT", w));
    const std::string name = w.substr(0, eq);
    double value = 0;
    try {
      value = std::stod(w.substr(eq + 1));
    } catch (const std::exception&) {
      throw UsageError(fmt::format("--weight '{}': '{}' is not a number", w, w.substr(eq + 1)));
    }
    auto it = std::find_if(files.begin(), files.end(),
                           [&](const CorpusFile& f) { return f.name == name; });
    if (it == files.end()) throw UsageError(fmt::format("--weight: no domain named '{}'", name));
    it->weight = value;
  }
  return files;
}

// bytes, gpt2[:DIR], a BPE file, or "bpe" (train one of the model's vocabulary size on the
// corpus). The default follows the preset's vocabulary: 50257 is GPT-2's, else a trained BPE.
// In a group, rank 0 trains a BPE and sends it to the others.
Tokenizer resolve_tokenizer(const TrainArgs& a, const GPTConfig& config,
                            const std::vector<CorpusFile>& files, Progress& progress,
                            ProcessGroup* group) {
  std::string spec = a.tokenizer;
  if (spec.empty()) spec = config.vocab_size == 50257 ? "gpt2" : "bpe";
  if (spec == "gpt2") spec = std::string("gpt2:") + kDefaultGpt2Dir;
  if (spec != "bpe") return load_tokenizer(spec);
  if (group != nullptr && !group->is_root()) {
    std::string trained;
    group->broadcast(trained, 0, "the broadcast of the tokenizer");
    return Tokenizer(bpe_from_string(trained, "rank 0's tokenizer"));
  }
  const auto start = std::chrono::steady_clock::now();
  BpeTrainOptions options;
  options.vocab_size = static_cast<int32_t>(config.vocab_size);
  const std::vector<std::string> texts = training_text(files);
  Tokenizer t(train_bpe(std::vector<std::string_view>(texts.begin(), texts.end()), options));
  progress.print(fmt::format(
      "tokenizer: trained a byte-level BPE of {} tokens on the training text in {:.1f} s",
      t.vocab_size(),
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count()));
  if (group != nullptr) {
    std::string trained = embed_tokenizer(t);
    group->broadcast(trained, 0, "the broadcast of the tokenizer");
  }
  return t;
}

GPTConfig model_config(const TrainArgs& a) {
  GPTConfig c = preset(a.preset);
  if (a.experts >= 0) c.n_experts = a.experts;
  if (a.topk >= 0) c.top_k = a.topk;
  if (a.aux_weight >= 0) c.aux_loss_weight = a.aux_weight;
  if (a.z_weight >= 0) c.z_loss_weight = a.z_weight;
  if (a.capacity_factor >= 0) c.capacity_factor = a.capacity_factor;
  return c;
}

std::string eval_line(const EvalReport& e) {
  std::string line =
      fmt::format("eval @ step {}: val loss {:.4f} (ppl {:.1f})", e.step, e.loss, std::exp(e.loss));
  for (const DomainEval& d : e.domains) line += fmt::format(" | {} {:.3f}", d.name, d.loss);
  return line;
}

void print_sample(GPT<float>& model, const Tokenizer& tokenizer, const TrainArgs& a) {
  if (a.sample_tokens <= 0) return;
  std::vector<int32_t> prompt = tokenizer.encode(a.prompt);
  if (prompt.empty()) prompt.push_back(tokenizer.eot_id());
  GenerateOptions g;
  g.max_tokens = a.sample_tokens;
  g.sampling.temperature = 0.8;
  g.sampling.top_k = 40;
  g.seed = a.seed;
  g.stop_id = tokenizer.eot_id();
  g.allowed_vocab = tokenizer.vocab_size();
  fmt::print("\n--- sample (temperature 0.8, top-k 40) ---\n{}", a.prompt);
  std::fflush(stdout);
  generate(model, prompt, g, [&](int32_t id) {
    fmt::print("{}", tokenizer.decode({id}));
    std::fflush(stdout);
    return true;
  });
  fmt::print("\n---\n");
}

// group: the data-parallel ranks, or nullptr in a single process.
void train(TrainArgs a, const CLI::App& cmd, ProcessGroup* group) {
  set_threads(a.threads);
  if (a.out.empty()) a.out = "runs/" + a.preset;
  const std::string checkpoint_path = a.out + "/checkpoint.safetensors";
  const bool root = group == nullptr || group->is_root();
  Progress progress(0, root ? stderr : nullptr);

  std::unique_ptr<Checkpoint<float>> resumed;
  std::unique_ptr<GPT<float>> fresh;
  std::optional<Tokenizer> tokenizer;
  std::vector<Domain> domains;
  if (a.resume) {
    for (const char* flag : {"--preset",        "--data",
                             "--corpus",        "--weight",
                             "--tokenizer",     "--moe-experts",
                             "--moe-topk",      "--moe-aux-weight",
                             "--z-loss-weight", "--capacity-factor",
                             "--steps",         "--time",
                             "--batch-size",    "--context",
                             "--grad-accum",    "--lr",
                             "--min-lr",        "--warmup",
                             "--schedule",      "--weight-decay",
                             "--grad-clip",     "--precision",
                             "--eval-every",    "--checkpoint-every",
                             "--seed"})
      if (cmd.count(flag) > 0)
        throw UsageError(fmt::format(
            "{} cannot change on --resume: a resumed run keeps the settings of its checkpoint",
            flag));
    if (!fs::exists(checkpoint_path))
      throw UsageError(fmt::format("--resume: no checkpoint at '{}'", checkpoint_path));
    resumed = std::make_unique<Checkpoint<float>>(load_checkpoint<float>(checkpoint_path));
    // Evaluation reads fixed batches and no random state: it may change without changing the
    // trajectory.
    if (cmd.count("--eval-batches") > 0) resumed->options.eval_batches = a.options.eval_batches;
    a.seed = resumed->options.seed;  // the final sample's, as in the uninterrupted run
    const SafetensorsFile file = SafetensorsFile::open(checkpoint_path);
    tokenizer = tokenizer_of(file, kDefaultGpt2Dir);
    const auto data = file.metadata().find("data");
    check<FormatError>(data != file.metadata().end(), "{}: no 'data' in the metadata",
                       checkpoint_path);
    for (const nlohmann::json& d : nlohmann::json::parse(data->second)) {
      const std::string name = d.at("name").get<std::string>();
      domains.push_back(
          {name, a.out + "/tokens/" + name + ".tokens", d.at("weight").get<double>()});
    }
    progress.print(fmt::format("resuming {} at step {} of {}", checkpoint_path, resumed->state.step,
                               resumed->state.total_steps));
  } else {
    if (fs::exists(checkpoint_path) && !a.force)
      throw UsageError(fmt::format(
          "'{}' already holds a run; pass --resume to continue it, --force to start over, or "
          "--out for another directory",
          a.out));
    GPTConfig config = model_config(a);
    const std::vector<CorpusFile> files = corpus_files(a);
    tokenizer = resolve_tokenizer(a, config, files, progress, group);
    config.vocab_size = tokenizer->vocab_size();
    config.validate();
    if (root) {
      std::error_code error;
      fs::create_directories(a.out, error);
      if (error)
        throw WriteError(
            fmt::format("cannot create the run directory '{}': {}", a.out, error.message()));
      domains = tokenize_corpus(files, *tokenizer, a.out + "/tokens");
    }
    // The other ranks find rank 0's token files up to date and only open them.
    if (group != nullptr) group->any(false, "waiting for rank 0 to tokenize the corpus");
    if (!root) domains = tokenize_corpus(files, *tokenizer, a.out + "/tokens");
    fresh = std::make_unique<GPT<float>>(config, a.seed);
  }
  // A run killed while writing a file leaves its temporary behind: never read, only cleared.
  if (root)
    for (const std::string& dir : {a.out, a.out + "/tokens"}) remove_stale_temporaries(dir);
  GPT<float>& model = resumed ? resumed->model : *fresh;
  for (Block<float>& b : model.blocks) b.moe.dispatch_options.recompute_activation = a.recompute;
  const Dataset data(domains);
  std::unique_ptr<Trainer<float>> trainer =
      resumed ? std::make_unique<Trainer<float>>(*resumed, data, group, a.expert_parallel)
              : std::make_unique<Trainer<float>>(model, data, a.options, group, a.expert_parallel);
  const std::string embedded = embed_tokenizer(*tokenizer);
  nlohmann::json data_json = nlohmann::json::array();
  for (const Domain& d : domains) data_json.push_back({{"name", d.name}, {"weight", d.weight}});
  const std::map<std::string, std::string> extra{{"data", data_json.dump()}};

  const TrainOptions& o = trainer->options();
  const GPTConfig& c = model.config;
  progress.print(fmt::format(
      "model: {} layers x d={}, {} experts top-{}, vocab {}: {:.2f}M parameters, {:.2f}M active",
      c.n_layers, c.d_model, c.n_experts, c.top_k, c.vocab_size, double(c.num_parameters()) / 1e6,
      double(c.num_active_parameters()) / 1e6));
  progress.print(fmt::format("data ({} tokens per step, {} threads):\n{}",
                             trainer->tokens_per_step(), current_threads(), data.summary()));
  {
    const ScopedMatmulPrecision precision(o.precision);
    progress.print(fmt::format("matrix products: {} ({} kernel){}", to_string(o.precision),
                               gemm_kernel<float>().name,
                               o.precision == MatmulPrecision::bf16 && !bf16_accelerated()
                                   ? "; this CPU has no bf16 instructions: fp32 is faster"
                                   : ""));
  }
  if (group != nullptr)
    progress.print(
        fmt::format("data parallel: {} ranks x {} sequences of each batch; {:.2f} MiB of gradients "
                    "all-reduced per step",
                    group->size(), o.batch_size / group->size(),
                    double(trainer->gradient_bytes_per_step()) / double(1 << 20)));
  const ExpertParallel<float>* experts = trainer->expert_parallel();
  if (experts != nullptr && group != nullptr)  // expert parallelism needs a group
    progress.print(fmt::format(
        "expert parallel: {} ranks = {} data x {} expert, each holding {} of the {} experts of "
        "every MoE layer; {:.2f} MiB of expert gradients all-reduced over each expert's {} "
        "ranks per step",
        group->size(), experts->replicas(), experts->group_size(),
        c.n_experts / experts->group_size(), c.n_experts,
        double(trainer->expert_gradient_bytes_per_step()) / double(1 << 20), experts->replicas()));
  int64_t exchanged_bytes = 0, exchanged_steps = 0;  // rank 0's all-to-alls in training steps

  // The metrics are rank 0's to write: opening them truncates a resumed run's file.
  std::optional<MetricsLog> metrics;
  if (root) metrics.emplace(a.out + "/metrics.jsonl", trainer->state().step);
  auto save = [&] {
    trainer->save(checkpoint_path, embedded, extra);
    if (root) write_training_plots(read_metrics(metrics->path()), a.out);
  };
  std::signal(SIGINT, on_interrupt);
  std::signal(SIGTERM, on_interrupt);

  constexpr int64_t kCalibrationSteps = 5;  // a time budget is turned into steps after these
  double calibration_seconds = 0;
  int64_t calibration_start = trainer->state().step;
  progress.set_total(trainer->total_steps());
  double recent_seconds = 0;  // mean step time, for the ETA
  Profiler& profiler = Profiler::instance();
  profiler.enable(a.profile);
  int64_t profiled_steps = 0, profiled_tokens = 0;
  double profiled_seconds = 0;
  const int64_t first_step = trainer->state().step;
  while (!trainer->done()) {
    const int64_t bytes_before = experts != nullptr ? experts->bytes_sent() : 0;
    const StepReport r = trainer->step();
    if (experts != nullptr) {
      exchanged_bytes += experts->bytes_sent() - bytes_before;
      ++exchanged_steps;
    }
    if (a.profile && r.step > first_step) {  // this process's first step warms caches up
      ++profiled_steps;
      profiled_tokens += r.tokens;
      profiled_seconds += r.seconds;
    } else {
      profiler.reset();
    }
    if (root) metrics->write(step_record(r));
    recent_seconds = recent_seconds == 0 ? r.seconds : 0.9 * recent_seconds + 0.1 * r.seconds;
    if (r.skipped) progress.print(fmt::format("step {} skipped: {}", r.step, r.skip_reason));
    const int64_t done = trainer->state().step;
    if (trainer->total_steps() == 0) {  // a time budget, still measuring
      if (done > calibration_start + 1) calibration_seconds += r.seconds;  // the first is slow
      if (done >= calibration_start + 1 + kCalibrationSteps) {
        trainer->plan_for_time(calibration_seconds / kCalibrationSteps);
        progress.set_total(trainer->total_steps());
        progress.print(fmt::format("--time {}: {} steps at {:.2f} s per step", o.time_minutes,
                                   trainer->total_steps(),
                                   calibration_seconds / kCalibrationSteps));
      }
    }
    progress.update(done, fmt::format("loss {:.4f} aux {:.3f} lr {:.2e}", r.loss, r.aux_loss, r.lr),
                    double(r.tokens) / r.seconds, recent_seconds);
    const bool last = trainer->done();
    profiler.enable(false);  // evaluations and checkpoints are not steps
    if ((o.eval_every > 0 && done % o.eval_every == 0) || last) {
      const EvalReport e = trainer->evaluate();
      if (root) metrics->write(eval_record(e));
      progress.print(eval_line(e));
    }
    // The ranks stop together, after the same step, whichever of them got the signal.
    const bool interrupted =
        group != nullptr ? group->any(g_interrupt_signal != 0, "the check for interruptions")
                         : g_interrupt_signal != 0;
    if ((o.checkpoint_every > 0 && done % o.checkpoint_every == 0) || last || interrupted) save();
    profiler.enable(a.profile);
    if (interrupted) {
      progress.finish();
      if (root)
        fmt::print(stderr, "interrupted: saved step {} to {}; continue with --resume\n", done,
                   checkpoint_path);
      // Under mpirun the first rank to exit with a non-zero code ends the others: none leaves
      // before rank 0 has written and said so.
      if (group != nullptr) group->any(false, "the ranks stopping together");
      std::signal(SIGINT, SIG_DFL);
      std::signal(SIGTERM, SIG_DFL);
      // Ranks stopped by another rank's signal report it as a Ctrl-C.
      exit_status() = 128 + (g_interrupt_signal != 0 ? g_interrupt_signal.load() : SIGINT);
      return;
    }
  }
  progress.finish();
  std::signal(SIGINT, SIG_DFL);
  std::signal(SIGTERM, SIG_DFL);
  trainer->gather_experts();  // rank 0 samples and writes the whole model alone
  if (!root) return;
  if (exchanged_steps > 0)
    fmt::print(stderr, "expert parallel: rank 0 sent {:.3f} MB per step in the all-to-alls\n",
               double(exchanged_bytes) / double(exchanged_steps) / 1e6);
  if (a.profile && profiled_tokens > 0)
    fmt::print(stderr, "\nprofile of {} steps after the first:\n{}", profiled_steps,
               profile_report(model.config, trainer->context(), profiled_tokens, profiler.times(),
                              profiled_seconds));
  std::map<std::string, std::string> model_meta = extra;
  model_meta["tokenizer"] = embedded;
  save_model(model, a.out + "/model.safetensors", model_meta);
  const TrainState& s = trainer->state();
  fmt::print(stderr,
             "trained {} steps ({} skipped), {:.1f}M tokens in {}: {:.0f} tokens/s\n"
             "model: {}/model.safetensors  checkpoint: {}\n"
             "plots: {}/loss.svg{}  metrics: {}\n",
             s.step, s.skipped, double(s.tokens) / 1e6, format_duration(s.seconds),
             double(s.tokens) / std::max(s.seconds, 1e-9), a.out, checkpoint_path, a.out,
             fs::exists(a.out + "/expert_load.svg") ? " " + a.out + "/expert_load.svg" : "",
             metrics->path());
  print_sample(model, *tokenizer, a);
}

// Under an MPI launcher, every rank trains its share in one data-parallel group.
void run_train(const TrainArgs& a, const CLI::App& cmd) {
#ifdef MINIMOE_WITH_MPI
  if (launched_by_mpi()) {
    MpiSession session;
    MpiProcessGroup world(a.mpi_timeout);
    try {
      train(a, cmd, world.size() > 1 ? &world : nullptr);
    } catch (const DistributedError& e) {
      throw TrainingError(e.what());  // a failure while working (exit code 1), not bad input
    }
    return;
  }
#else
  if (launched_by_mpi())
    throw UsageError(
        "started by an MPI launcher, but this minimoe was built without MPI: every process would "
        "train alone in the same run directory; rebuild with -DMINIMOE_WITH_MPI=ON");
#endif
  train(a, cmd, nullptr);
}

}  // namespace

void add_train_command(CLI::App& app) {
  auto a = std::make_shared<TrainArgs>();
  TrainOptions& o = a->options;
  CLI::App* cmd = app.add_subcommand("train", "Train a model on text corpora");
  cmd->add_option("--preset", a->preset,
                  "model preset: " + fmt::format("{}", fmt::join(preset_names(), ", ")))
      ->capture_default_str();
  cmd->add_option("--data", a->data_dir, "directory of .txt files, one domain each")
      ->capture_default_str();
  cmd->add_option("--corpus", a->corpus, "text files to train on instead of --data (repeatable)");
  cmd->add_option("--weight", a->weights, "sampling weight of a domain, NAME=WEIGHT (repeatable)");
  cmd->add_option("--tokenizer", a->tokenizer,
                  "bpe (train one on the corpus), bytes, gpt2[:DIR] or a BPE file; default: gpt2 "
                  "for a 50257 vocabulary, else bpe");
  cmd->add_option("--out", a->out, "run directory (default runs/<preset>)");
  cmd->add_flag("--resume", a->resume, "continue the run in --out from its checkpoint");
  cmd->add_flag("--force", a->force, "start over in an --out that holds a run");
  cmd->add_option("--steps", o.steps, "optimizer steps")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--time", o.time_minutes, "train for about this many minutes (sets --steps)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--moe-experts", a->experts, "experts per MoE layer (0 = dense)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--moe-topk", a->topk, "experts per token")->check(CLI::PositiveNumber);
  cmd->add_option("--moe-aux-weight", a->aux_weight, "weight of the load-balancing loss")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--z-loss-weight", a->z_weight, "weight of the router z-loss")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--capacity-factor", a->capacity_factor, "expert capacity factor (0 = dropless)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--batch-size", o.batch_size, "sequences per micro-batch")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--context", o.context, "tokens per sequence (default: the model's context)")
      ->check(CLI::PositiveNumber);
  cmd->add_option("--grad-accum", o.grad_accum, "micro-batches per step")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--lr", o.lr, "peak learning rate")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--min-lr", o.min_lr, "final learning rate")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--warmup", o.warmup, "warmup steps")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option_function<std::string>(
         "--schedule", [&o](const std::string& s) { o.schedule = schedule_from_string(s); },
         "learning-rate schedule: cosine, wsd or constant (default cosine)")
      ->check(CLI::IsMember({"cosine", "wsd", "constant"}));
  cmd->add_option("--weight-decay", o.adamw.weight_decay, "AdamW weight decay")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--grad-clip", o.grad_clip, "global gradient norm limit (0 = off)")
      ->capture_default_str()
      ->check(CLI::NonNegativeNumber);
  cmd->add_option_function<std::string>(
         "--precision",
         [&o](const std::string& s) {
           o.precision = s == "bf16" ? MatmulPrecision::bf16 : MatmulPrecision::fp32;
         },
         "operands of the matrix products: fp32, or bf16 (rounded to bfloat16, summed in fp32: "
         "faster on CPUs with AVX-512 BF16) (default fp32)")
      ->check(CLI::IsMember({"fp32", "bf16"}));
  cmd->add_option("--eval-every", o.eval_every, "steps between evaluations")->capture_default_str();
  cmd->add_option("--eval-batches", o.eval_batches, "validation batches per domain")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--checkpoint-every", o.checkpoint_every, "steps between checkpoints")
      ->capture_default_str();
  cmd->add_option("--threads", a->threads, "threads (default: all cores)")
      ->check(CLI::NonNegativeNumber);
  cmd->add_option("--seed", a->seed, "seed of the initialisation and the data order")
      ->capture_default_str();
  cmd->add_option("--sample-tokens", a->sample_tokens, "tokens to sample at the end (0 = none)")
      ->capture_default_str();
  cmd->add_option("--prompt", a->prompt, "prompt of the final sample")->capture_default_str();
  cmd->add_flag("--recompute", a->recompute,
                "recompute the experts' activations in backward instead of storing them (less "
                "memory, a little more time)");
  cmd->add_flag("--profile", a->profile,
                "print where the steps' time goes (per region, GFLOP/s) and the memory used");
#ifdef MINIMOE_WITH_MPI
  cmd->add_option("--mpi-timeout", a->mpi_timeout,
                  "under mpirun: seconds a rank waits for the others before it stops the run")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
  cmd->add_option("--expert-parallel", a->expert_parallel,
                  "under mpirun: split every MoE layer's experts over groups of this many ranks "
                  "(1 = each rank holds all; the ranks and the experts must be multiples of it)")
      ->capture_default_str()
      ->check(CLI::PositiveNumber);
#endif
  cmd->callback([a, cmd] {
    TrainArgs args = *a;
    args.options.seed = args.seed;
    // A short run gets a tenth of its steps as warmup unless told otherwise.
    if (cmd->count("--warmup") == 0 && args.options.time_minutes == 0)
      args.options.warmup =
          std::min(args.options.warmup, std::max<int64_t>(1, args.options.steps / 10));
    run_train(args, *cmd);
  });
}

}  // namespace minimoe::cli
