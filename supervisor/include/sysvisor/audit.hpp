// Audit: one JSON object per line for each recorded decision, defined in proto/audit.proto and
// written through protobuf's JSON mapping. docs/audit.md describes the format.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <cstdio>
#include <optional>
#include <string>
#include <string_view>

#include "audit.pb.h"
#include "sysvisor/error.hpp"

namespace sysvisor::audit {

using Event = v1::Event;
using Suppressed = v1::Suppressed;

// The JSON line, without the trailing newline (snake_case keys, as in the proto).
[[nodiscard]] std::string to_json(const Event& event);
[[nodiscard]] std::string to_json(const Suppressed& summary);

// `s` as valid UTF-8 for a proto string field: a byte that is not part of a valid UTF-8
// sequence becomes the character of the same value (Latin-1), so a hostile path is kept,
// recognisably, and never makes the record unprintable.
[[nodiscard]] std::string utf8(std::string_view s);

void set_time(google::protobuf::Timestamp& out, std::chrono::system_clock::time_point t);

// What the caller is, from /proc: filled in only for audited calls (it costs a few reads).
struct Process {
  pid_t host_pid = 0;  // thread group id
  std::optional<pid_t> container_pid, container_tid;
  std::string comm, exe;
  std::optional<uid_t> host_uid, container_uid;
};
// Reads /proc/TID/status (Tgid, NSpid, Uid), comm, exe and uid_map. Missing parts stay empty:
// the task may be gone.
[[nodiscard]] Process describe(pid_t tid);
// A uid seen from the host as the namespace whose uid_map is `map` sees it (nullopt: unmapped).
[[nodiscard]] std::optional<uid_t> map_uid(std::string_view uid_map, uid_t host_uid);

// Records per second a container may write, and how many at once after a quiet spell.
struct Rate {
  double per_second = 200;
  double burst = 400;
  [[nodiscard]] bool unlimited() const noexcept { return per_second <= 0; }
};

// A token bucket: admit() says whether one more record may be written now.
class Bucket {
 public:
  explicit Bucket(Rate rate) : rate_(rate), tokens_(rate.burst) {}
  [[nodiscard]] bool admit(std::chrono::steady_clock::time_point now);

 private:
  Rate rate_;
  double tokens_;
  std::chrono::steady_clock::time_point last_{};
  bool started_ = false;
};

class Sink {
 public:
  // "-" writes to stdout; "syslog" to syslog(3) (ident sysvisor-audit, LOG_AUTHPRIV|LOG_INFO,
  // one record per message); anything else is a file opened for appending (created 0600).
  [[nodiscard]] static Result<Sink> open(const std::string& where);
  Sink(Sink&&) noexcept;
  Sink& operator=(Sink&&) noexcept;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  ~Sink();

  void write(const Event& event);
  void write(const Suppressed& summary);
  // Opens the file again (after logrotate moved it); stdout and syslog stay as they are.
  [[nodiscard]] Result<void> reopen();
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

 private:
  Sink() = default;
  void write_line(const std::string& json);
  std::FILE* file_ = nullptr;
  bool owned_ = false;
  bool syslog_ = false;
  std::string where_;
};

}  // namespace sysvisor::audit
