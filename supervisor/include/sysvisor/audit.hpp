// Audit: one JSON object per line for each recorded decision, defined in proto/audit.proto and
// written through protobuf's JSON mapping. docs/audit.md describes the format.
#pragma once

#include <sys/types.h>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "audit.pb.h"
#include "sysvisor/error.hpp"

namespace sysvisor::audit {

using Event = v1::Event;
using Suppressed = v1::Suppressed;
using Daemon = v1::Daemon;

// The JSON line, without the trailing newline (snake_case keys, as in the proto).
[[nodiscard]] std::string to_json(const Event& event);
[[nodiscard]] std::string to_json(const Suppressed& summary);
[[nodiscard]] std::string to_json(const Daemon& record);

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

// A token bucket: admit() says whether one more record may be written now. ready() and
// take() do the same in two steps, for a record that must pass two buckets (its container's
// and its owner's) and may take from neither unless both have a token.
class Bucket {
 public:
  explicit Bucket(Rate rate) : rate_(rate), tokens_(rate.burst) {}
  [[nodiscard]] bool admit(std::chrono::steady_clock::time_point now);
  // Refills for the time since the last call; whether a token is there.
  [[nodiscard]] bool ready(std::chrono::steady_clock::time_point now);
  // Takes the token ready() found.
  void take() noexcept {
    if (!rate_.unlimited()) tokens_ -= 1.0;
  }
  [[nodiscard]] const Rate& rate() const noexcept { return rate_; }

 private:
  Rate rate_;
  double tokens_;
  std::chrono::steady_clock::time_point last_{};
  bool started_ = false;
};

// What happens to a call whose record cannot be written (auditd's disk_full_action): `Keep`
// answers it as decided (the default); `Refuse` tells the dispatcher to refuse it instead.
enum class FailureAction { Keep, Refuse };
[[nodiscard]] std::string_view to_string(FailureAction action) noexcept;
[[nodiscard]] std::optional<FailureAction> parse_failure_action(std::string_view text) noexcept;

// How the audit sink fares, for `sysvisor status` and the metrics. Process-wide: a SIGHUP that
// switches to another sink keeps counting.
struct Health {
  std::string sink;                  // where records go now
  std::uint64_t write_failures = 0;  // records not written since the start (each one is lost)
  bool failing = false;              // the last write failed
  std::string last_error;            // what the last failure was ("" before any)
  FailureAction action = FailureAction::Keep;
};
[[nodiscard]] Health health();

// The audit file must be root's alone, and so must the directory it is in:
//  - opened with O_NOFOLLOW (a symbolic link is refused, its target untouched) and O_CLOEXEC;
//    created 0600;
//  - an existing file is used only if it is a regular file with one link, owned by root, and
//    no one but root may read or write it (mode & 077 == 0);
//  - its directory is owned by root and writable by no one else; every directory above it is
//    owned by root and writable by no one else unless sticky (/tmp); a symbolic link on the way
//    is followed only when root owns it. Like sshd's StrictModes.
// Refusals name the file and say what is wrong.
class Sink {
 public:
  // "-" writes to stdout; "syslog" to syslog(3) (ident sysvisor-audit, LOG_AUTHPRIV|LOG_INFO,
  // one record per message); anything else is a file opened for appending (rules above).
  [[nodiscard]] static Result<Sink> open(const std::string& where);
  Sink(Sink&&) noexcept;
  Sink& operator=(Sink&&) noexcept;
  Sink(const Sink&) = delete;
  Sink& operator=(const Sink&) = delete;
  ~Sink();

  // Process-wide (it outlives a switch of sink at SIGHUP); `serve --audit-failure`.
  static void set_failure_action(FailureAction action) noexcept;
  [[nodiscard]] static FailureAction failure_action() noexcept;
  // Whether a call whose record was not written must be refused (failure action `refuse`).
  [[nodiscard]] static bool refuses_unrecorded() noexcept {
    return failure_action() == FailureAction::Refuse;
  }

  // One record, one line, written whole or not at all: true when it was written. A record not
  // written is counted (health().write_failures) and logged (at most one line per 10 s).
  bool write(const Event& event);
  bool write(const Suppressed& summary);
  bool write(const Daemon& record);
  // Opens the file again (after logrotate moved it); stdout and syslog stay as they are. On
  // failure (the new file breaks the rules above, or cannot be opened) the old file stays in use.
  [[nodiscard]] Result<void> reopen();
  [[nodiscard]] const std::string& where() const noexcept { return where_; }

 private:
  Sink() = default;
  bool write_line(const std::string& json);
  void close_fd() noexcept;
  int fd_ = -1;
  bool owned_ = false;
  bool syslog_ = false;
  bool torn_ = false;  // a record could be neither completed nor cut back: start the next on a new line
  std::string where_;
};

}  // namespace sysvisor::audit
