// The pure parts of the scheduling emulation (supervisor/src/sched.cpp), unit-tested.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/policy.hpp"

namespace sysvisor::emul::sched {

inline constexpr int kResetOnFork = 0x40000000;  // SCHED_RESET_ON_FORK, or'ed into a policy

// The NSpid line of /proc/TID/status: the task's pid in each pid namespace, outermost first.
[[nodiscard]] std::optional<std::vector<pid_t>> parse_nspid(std::string_view status);

// The host tid of the task that the pid namespace `pidns_fd` (an fd of /proc/TID/ns/pid)
// numbers `pid`, as the kernel's find_task_by_vpid() would find it for a task of that namespace
// (tasks of its descendant namespaces included). One ioctl, NS_GET_PID_FROM_PIDNS (kernel >= 6.7):
// no directory of /proc is read, so the cost does not grow with the host's task count. ESRCH
// when the namespace has no such task; ENOTTY on older kernels (the caller gets ESRCH then: a
// pid other than 0 is not emulated there).
[[nodiscard]] Result<pid_t> host_tid(int pidns_fd, pid_t pid);
// The reverse: `host` as namespace `pidns_fd` numbers it (NS_GET_PID_IN_PIDNS); ESRCH if it
// does not see it.
[[nodiscard]] Result<pid_t> pid_in_ns(int pidns_fd, pid_t host);

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

// What the emulator answers from the decided call and its rule alone, before it looks at a task
// (src/sched_request.cpp, pure; `sysvisor policy test` models the daemon with it): setpriority
// other than PRIO_PROCESS (EPERM: PRIO_PGRP and PRIO_USER name tasks the container may not own),
// sched_setattr with flags (EINVAL), a negative pid, then check_request(). err 0: the emulator
// goes on with `pid` and `req` (the task's owner and capabilities, sched_attr's flags and the
// kernel have their say at run time).
struct Early {
  int err = 0;
  std::string why;  // for the daemon's log: what sysvisor does not emulate ("" for the kernel's errnos)
  pid_t pid = 0;    // the target in the caller's pid namespace (0: the caller)
  Request req;
};
[[nodiscard]] Early check_call(std::string_view syscall, const policy::Call& call, const policy::Rule& rule);

}  // namespace sysvisor::emul::sched
