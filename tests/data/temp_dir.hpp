// A fresh directory under the system's temporary directory, removed with everything in it when
// the test ends, so tests never touch the repository's data/ folder.
#pragma once

#include <filesystem>
#include <string>

#include <unistd.h>

namespace minimoe::test {

class TempDir {
 public:
  TempDir() {
    static int counter = 0;
    path_ = std::filesystem::temp_directory_path() /
            ("minimoe-data-" + std::to_string(::getpid()) + "-" + std::to_string(counter++));
    std::filesystem::create_directories(path_);
  }
  ~TempDir() { std::filesystem::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  std::string file(const std::string& name) const { return (path_ / name).string(); }

 private:
  std::filesystem::path path_;
};

}  // namespace minimoe::test
