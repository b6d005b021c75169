// Reporting a failure on the way to exec: from the agent itself (a line on stderr), or from a
// container init to its parent agent (a record on a pipe that the parent prints). fail() does not
// allocate and ends the process with _exit(), so it is safe after clone() and after the seccomp
// filter is installed (where every syscall may be trapped).
#pragma once

#include <string_view>

namespace sysvisor::agent {

// Prints "sysvisor-agent: <message>" on stderr.
void print_error(std::string_view message) noexcept;

class FailureChannel {
 public:
  // Failures become "sysvisor-agent: <message>\n" on stderr.
  static FailureChannel to_stderr() noexcept { return FailureChannel(2, false); }
  // Failures become one record on `fd`: the exit code as one byte, then the message.
  static FailureChannel to_parent(int fd) noexcept { return FailureChannel(fd, true); }

  [[noreturn]] void fail(int exit_code, std::string_view message) const noexcept;

 private:
  FailureChannel(int fd, bool record) noexcept : fd_(fd), record_(record) {}

  int fd_;
  bool record_;
};

// A record read back by the parent.
struct FailureRecord {
  int exit_code = 0;
  std::string_view message;
};
// Decodes what a FailureChannel::to_parent() wrote; false when `bytes` is empty.
bool decode_failure_record(std::string_view bytes, FailureRecord& out) noexcept;

}  // namespace sysvisor::agent
