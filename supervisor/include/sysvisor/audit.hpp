// Audit v1: one JSON object per line for each audited decision.
#pragma once

#include <sys/types.h>

#include <array>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/error.hpp"

namespace sysvisor::audit {

struct Event {
  std::chrono::system_clock::time_point time;
  std::string container;
  std::string engine;
  std::string policy;
  std::string policy_version;
  pid_t pid = 0;                       // host tid of the caller
  std::string syscall;                 // "mknodat"
  std::string arch;                    // "x86_64", "i386", "x32"
  std::array<std::uint64_t, 6> raw{};  // the registers
  std::optional<std::string> path;     // the first path as passed; absent when unread
  std::string path_error;              // why it could not be read (e.g. "EFAULT")
  std::vector<std::string> paths;      // absolute, normalised, as the matchers saw them
  bool device = false;                 // mknod: type, major, minor and mode below are set
  std::string type;                    // "char" / "block" / "" (another file type)
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
  mode_t mode = 0;  // permission bits requested
  std::optional<std::string> fstype, source, target, xattr;
  std::optional<std::uint64_t> flags, value_size;
  std::optional<std::int64_t> sched_policy, priority, nice;
  std::string action;                 // "emulate", "allow", "deny", "return", "kill", "kill-container"
  std::string rule;                   // the rule's name, empty for the default
  std::string rule_origin;            // the policy that wrote the rule (differs with include)
  int err = 0;                        // the caller's errno (0: success)
  std::optional<std::int64_t> value;  // `return`: what the caller got
  bool continued = false;             // allow: the kernel decided, its answer is not ours to know
  std::uint64_t latency_us = 0;
};

// The JSON line, without the trailing newline. Strings from the container are escaped so
// that any byte sequence gives valid JSON (invalid UTF-8 bytes as \u00XX).
[[nodiscard]] std::string to_json(const Event& event);
[[nodiscard]] std::string json_string(std::string_view s);

class Sink {
 public:
  // "-" writes to stdout; anything else is a file opened for appending (created 0600).
  [[nodiscard]] static Result<Sink> open(const std::string& where);
  Sink(Sink&&) noexcept;
  Sink& operator=(Sink&&) noexcept;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  ~Sink();

  void write(const Event& event);
  // Opens the file again (after logrotate moved it); stdout stays stdout.
  [[nodiscard]] Result<void> reopen();
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

 private:
  Sink() = default;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  std::string where_;
};

}  // namespace sysvisor::audit
