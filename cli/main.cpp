// minimoe: train, sample from, chat with, serve, evaluate, inspect and analyse
// Mixture-of-Experts language models. `minimoe --help` and `minimoe <command> --help` describe everything.
//
// Exit codes: 0 success, 1 a failure while working (training diverged, a write refused by the
// system, an internal error), 2 bad input (unknown flags, bad values, missing or corrupt
// files), 128 + N a training run that stopped on signal N after saving its checkpoint (130 for
// Ctrl-C, as a shell reports a process that the signal killed).
#include <cstdio>
#include <exception>

#include "common.hpp"

int main(int argc, char** argv) {
  using namespace minimoe;
  CLI::App app{"minimoe: Mixture-of-Experts language models on the CPU"};
  app.require_subcommand(1);
  app.set_version_flag("--version", "minimoe 0.1.0");
  cli::add_train_command(app);
  cli::add_sample_command(app);
  cli::add_chat_command(app);
  cli::add_serve_command(app);
  cli::add_eval_command(app);
  cli::add_tokenize_command(app);
  cli::add_inspect_command(app);
  cli::add_analyze_command(app);
  cli::add_compare_command(app);
  try {
    app.parse(argc, argv);
  } catch (const CLI::CallForHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForAllHelp& e) {
    return app.exit(e);
  } catch (const CLI::CallForVersion& e) {
    return app.exit(e);
  } catch (const CLI::ParseError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "minimoe: {}\nRun with --help for more information.\n", e.what());
    return 2;
  } catch (const TrainingError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "minimoe: {}\n", e.what());
    return 1;
  } catch (const WriteError& e) {
    std::fflush(stdout);
    fmt::print(stderr, "minimoe: error: {}\n", e.what());
    return 1;
  } catch (const Error& e) {  // bad input: values, files, shapes
    std::fflush(stdout);
    fmt::print(stderr, "minimoe: error: {}\n", e.what());
    return 2;
  } catch (const std::exception& e) {
    std::fflush(stdout);
    fmt::print(stderr, "minimoe: internal error: {}\n", e.what());
    return 1;
  }
  return cli::exit_status();
}
