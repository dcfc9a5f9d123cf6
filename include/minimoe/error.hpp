// minimoe/error.hpp: the exceptions minimoe throws, and the check() helper that throws them.
//
// Every message names the operation and the offending values, so that a user can fix the
// call without a debugger:
//
//   matmul: inner dimensions differ: [4, 3] x [5, 2]
//
// The hierarchy is small on purpose: catch minimoe::Error for everything, or one of the
// subclasses to tell a programming error (shape, index, value) from bad data (format, io).
#pragma once

#include <stdexcept>
#include <string>

#include <fmt/format.h>
#include <fmt/ranges.h>

namespace minimoe {

struct Error : std::runtime_error {
  using std::runtime_error::runtime_error;
};
// Operands whose shapes do not fit the operation.
struct ShapeError : Error {
  using Error::Error;
};
// An index or axis out of range.
struct IndexError : Error {
  using Error::Error;
};
// An argument or configuration value outside its domain.
struct ValueError : Error {
  using Error::Error;
};
// A file or buffer that is not what it claims to be (truncated, corrupt, wrong format).
struct FormatError : Error {
  using Error::Error;
};
// The operating system refused a read or write.
struct IOError : Error {
  using Error::Error;
};
// A write that failed (disk full, no permission): a failure while working, not bad input.
struct WriteError : IOError {
  using IOError::IOError;
};

// Throws E with a formatted message when cond is false. The message is only formatted on
// failure, so checks are cheap on the hot path.
template <typename E = Error, typename... Args>
inline void check(bool cond, fmt::format_string<Args...> format, Args&&... args) {
  if (!cond) throw E(fmt::format(format, std::forward<Args>(args)...));
}

}  // namespace minimoe
