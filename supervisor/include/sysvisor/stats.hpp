// What the daemon counts of its decisions: per container (for `sysvisor containers`) and in
// the Recorder the daemon may install (metrics). Session::account() is the one place a
// decided call is counted; every answer path goes through it.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "sysvisor/policy.hpp"

namespace sysvisor::stats {

struct Counters {
  std::uint64_t notifications = 0;  // every notification received
  std::uint64_t emulated = 0;
  std::uint64_t allowed = 0;  // handed back to the kernel (CONTINUE)
  std::uint64_t denied = 0;   // deny, and calls refused because they could not be decided
  std::uint64_t returned = 0;
  std::uint64_t killed = 0;  // kill and kill-container
  std::uint64_t errors = 0;  // the machinery failed (not the caller's errno)
  std::chrono::system_clock::time_point last_activity{};
};

// Optional observer of every decided call (installed by the daemon for metrics). Called on
// the loop thread and on the sessions' receiver threads at once: it must be thread-safe and
// must not block.
class Recorder {
 public:
  virtual ~Recorder() = default;
  // `nr` is the x86_64 syscall number, -1 when the call has none (i386 socketcall, ...).
  virtual void record(const std::string& container_id, int nr, policy::Action action,
                      std::chrono::nanoseconds latency) = 0;
  virtual void error(const std::string& container_id) = 0;
};

}  // namespace sysvisor::stats
