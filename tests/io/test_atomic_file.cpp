#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>

#include <sys/wait.h>
#include <unistd.h>

#include <minimoe/io/atomic_file.hpp>

#include "../data/temp_dir.hpp"

using namespace minimoe;
namespace fs = std::filesystem;

namespace {

void touch(const std::string& path) { std::ofstream(path) << "partial"; }

// The pid of a process that has exited and been reaped: no process has it (until reused).
pid_t dead_pid() {
  const pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ::waitpid(child, nullptr, 0);
  return child;
}

int files_in(const std::string& dir) {
  int n = 0;
  for ([[maybe_unused]] const auto& entry : fs::directory_iterator(dir)) ++n;
  return n;
}

}  // namespace

TEST_CASE("an atomic write replaces the file whole and leaves no temporary") {
  test::TempDir dir;
  const std::string path = dir.file("out.txt");
  write_file_atomically(path, [](std::ostream& out) { out << "first"; });
  write_file_atomically(path, [](std::ostream& out) { out << "second"; });
  CHECK(read_file(path) == "second");
  CHECK(files_in(dir.file("")) == 1);
}

TEST_CASE("a failed atomic write keeps the previous file and removes its temporary") {
  test::TempDir dir;
  const std::string path = dir.file("out.txt");
  write_file_atomically(path, [](std::ostream& out) { out << "kept"; });
  CHECK_THROWS_WITH_AS(write_file_atomically(path,
                                             [](std::ostream& out) {
                                               out << "half";
                                               throw std::runtime_error("writer failed");
                                             }),
                       "writer failed", std::runtime_error);
  CHECK(read_file(path) == "kept");
  CHECK(files_in(dir.file("")) == 1);
  CHECK_THROWS_WITH_AS(
      write_file_atomically(dir.file("missing/out.txt"), [](std::ostream& out) { out << "x"; }),
      doctest::Contains("missing/out.txt"), WriteError);
}

TEST_CASE("stale temporaries of dead writers are removed, live ones and other files kept") {
  test::TempDir dir;
  const std::string dead = std::to_string(dead_pid());
  touch(dir.file("checkpoint.safetensors.tmp." + dead));
  touch(dir.file("metrics.jsonl.tmp." + dead));
  touch(dir.file("mine.tmp." + std::to_string(::getpid())));  // this process: a live writer
  touch(dir.file("init.tmp.1"));                              // pid 1 always exists
  touch(dir.file("notes.tmp.draft"));                         // not a pid
  touch(dir.file("model.safetensors"));
  CHECK(remove_stale_temporaries(dir.file("")) == 2);
  CHECK_FALSE(fs::exists(dir.file("checkpoint.safetensors.tmp." + dead)));
  CHECK(fs::exists(dir.file("mine.tmp." + std::to_string(::getpid()))));
  CHECK(fs::exists(dir.file("init.tmp.1")));
  CHECK(fs::exists(dir.file("notes.tmp.draft")));
  CHECK(fs::exists(dir.file("model.safetensors")));
  CHECK(remove_stale_temporaries(dir.file("no-such-dir")) == 0);
}
