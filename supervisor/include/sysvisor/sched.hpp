// The pure parts of the scheduling emulation (supervisor/src/sched.cpp), unit-tested.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor::emul::sched {

inline constexpr int kResetOnFork = 0x40000000;  // SCHED_RESET_ON_FORK, or'ed into a policy

// The NSpid line of /proc/TID/status: the task's pid in each pid namespace, outermost first.
[[nodiscard]] std::optional<std::vector<pid_t>> parse_nspid(std::string_view status);

// A request as the emulator checks it against the rule that said `emulate`.
struct Request {
  int policy = 0;                    // SCHED_*; -1: unchanged (setpriority)
  std::int64_t priority = 0;         // sched_priority
  std::optional<std::int64_t> nice;  // nice to set, if any
  bool clamp_nice = false;           // setpriority clamps to -20..19; sched_setattr refuses
};
struct Verdict {
  int err = 0;  // 0: may be done; else the caller's errno
};
// EINVAL for what the kernel itself refuses as malformed; EPERM (EACCES for setpriority) for
// what needs privilege the rule does not bound: a real-time priority above `priority.max` or
// without it, a negative nice below `nice.min` or without it, SCHED_DEADLINE.
[[nodiscard]] Verdict check_request(const Request& req, const policy::Rule& rule);

}  // namespace sysvisor::emul::sched
