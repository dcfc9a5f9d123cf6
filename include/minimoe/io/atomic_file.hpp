// minimoe/io/atomic_file.hpp: write a file so that readers see the old or the new version,
// never a half-written one.
//
//   write_file_atomically("model.safetensors", [&](std::ostream& out) { out << bytes; });
//
// The content goes to a temporary file in the same directory, is flushed and fsync'ed, and
// then renamed over the destination (rename is atomic on POSIX file systems). A crash or a
// kill at any point leaves either the previous file or the complete new one; a failure
// (disk full, no permission) removes the temporary and throws WriteError (an IOError) naming the path. A
// kill leaves the temporary behind: remove_stale_temporaries(dir) clears those of dead writers.
#pragma once

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include "minimoe/error.hpp"

namespace minimoe {

inline void write_file_atomically(const std::string& path,
                                  const std::function<void(std::ostream&)>& write) {
  const std::string temporary = path + ".tmp." + std::to_string(::getpid());
  auto fail = [&](const std::string& what, int error) {
    std::remove(temporary.c_str());
    throw WriteError(fmt::format("cannot write '{}': {}: {}", path, what, std::strerror(error)));
  };
  {
    std::ofstream out(temporary, std::ios::binary | std::ios::trunc);
    if (!out) fail("cannot create a temporary file", errno);
    try {
      write(out);
    } catch (...) {
      std::remove(temporary.c_str());
      throw;
    }
    out.flush();
    if (!out) fail("write failed", errno ? errno : EIO);
  }
  const int fd = ::open(temporary.c_str(), O_RDONLY);
  if (fd < 0 || ::fsync(fd) != 0) {
    const int error = errno;
    if (fd >= 0) ::close(fd);
    fail("fsync failed", error);
  }
  ::close(fd);
  if (std::rename(temporary.c_str(), path.c_str()) != 0) fail("rename failed", errno);
}

// Removes dir's files named <name>.tmp.<pid> whose writer process no longer exists (killed
// during write_file_atomically) and returns how many; a live writer's temporary is kept.
inline int remove_stale_temporaries(const std::string& dir) {
  namespace fs = std::filesystem;
  int removed = 0;
  std::error_code ec;
  for (const fs::directory_entry& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    const size_t at = name.rfind(".tmp.");
    if (at == std::string::npos || !entry.is_regular_file(ec)) continue;
    const std::string digits = name.substr(at + 5);
    if (digits.empty() || digits.size() > 9 ||
        digits.find_first_not_of("0123456789") != std::string::npos)
      continue;
    const pid_t pid = static_cast<pid_t>(std::atol(digits.c_str()));
    if (pid == ::getpid() || ::kill(pid, 0) == 0 || errno != ESRCH) continue;
    if (fs::remove(entry.path(), ec)) ++removed;
  }
  return removed;
}

// The whole file as bytes; IOError when it cannot be read.
inline std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) throw IOError(fmt::format("cannot open '{}': {}", path, std::strerror(errno)));
  std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) throw IOError(fmt::format("cannot read '{}'", path));
  return bytes;
}

}  // namespace minimoe
