// Run-time failures carry the errno and what was being done:
//   "open `/proc/4711/mem`: No such process".
#pragma once

#include <cerrno>
#include <expected>
#include <string>

namespace sysvisor {

struct SysError {
  int err = 0;          // errno value, 0 when the failure is not a system error
  std::string context;  // what was being done

  [[nodiscard]] std::string message() const;
};

template <class T>
using Result = std::expected<T, SysError>;

// Builds the unexpected value from the current errno (call right after the failing call).
[[nodiscard]] inline std::unexpected<SysError> sys_error(std::string context) {
  return std::unexpected(SysError{errno, std::move(context)});
}
[[nodiscard]] inline std::unexpected<SysError> sys_error(int err, std::string context) {
  return std::unexpected(SysError{err, std::move(context)});
}
// A failure that is not an errno (bad data, protocol violations).
[[nodiscard]] inline std::unexpected<SysError> plain_error(std::string context) {
  return std::unexpected(SysError{0, std::move(context)});
}

}  // namespace sysvisor
