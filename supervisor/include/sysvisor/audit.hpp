// Audit v1: one JSON object per line for each audited decision.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "sysvisor/error.hpp"

namespace sysvisor::audit {

struct Event {
  std::chrono::system_clock::time_point time;
  std::string container;
  std::string policy;
  pid_t pid = 0;                    // host tid of the caller
  std::string syscall;              // "mknodat"
  std::string arch;                 // "x86_64", "i386", "x32"
  std::optional<std::string> path;  // absent when it could not be read
  std::string path_error;           // why not (e.g. "EFAULT")
  std::string type;                 // "char" / "block"
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
  mode_t mode = 0;         // permission bits requested
  std::string action;      // "emulate", "allow", "deny", "kill"
  std::string rule;        // the rule's name, empty for the default
  int err = 0;             // the caller's errno (0: success)
  bool continued = false;  // allow: the kernel decided, its answer is not ours to know
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

 private:
  Sink() = default;
  std::FILE* file_ = nullptr;
  bool owned_ = false;
};

}  // namespace sysvisor::audit
