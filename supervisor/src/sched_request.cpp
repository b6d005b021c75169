// The pure part of the scheduling emulator (sched.cpp): what it answers from the decided call and
// the rule that said `emulate`, before it looks at any task. In sysvisor_policy, so that
// `sysvisor policy test` answers a case as the daemon answers the call.
#include <sched.h>
#include <sys/resource.h>

#include <algorithm>
#include <cerrno>

#include "sysvisor/sched.hpp"

namespace sysvisor::emul::sched {

Verdict check_request(const Request& req, const policy::Rule& rule) {
  const int policy = req.policy & ~kResetOnFork;
  switch (policy) {
    case SCHED_OTHER:
    case SCHED_BATCH:
    case SCHED_IDLE:
      if (req.priority != 0) return Verdict{EINVAL};
      break;
    case SCHED_FIFO:
    case SCHED_RR:
      if (req.priority < 1 || req.priority > 99) return Verdict{EINVAL};
      if (!rule.match.priority || !rule.match.priority->max || req.priority > *rule.match.priority->max) {
        return Verdict{EPERM};
      }
      break;
    default:
      return Verdict{req.policy == SCHED_DEADLINE ? EPERM : EINVAL};
  }
  if (req.nice) {
    if (*req.nice < -20 || *req.nice > 19) {
      // setpriority clamps; sched_setattr refuses.
      if (!req.clamp_nice) return Verdict{EINVAL};
    }
    const std::int64_t nice = std::clamp<std::int64_t>(*req.nice, -20, 19);
    if (nice < 0 && (!rule.match.nice || !rule.match.nice->min || nice < *rule.match.nice->min)) {
      return Verdict{req.clamp_nice ? EACCES : EPERM};
    }
  }
  return Verdict{0};
}

Early check_call(std::string_view syscall, const policy::Call& call, const policy::Rule& rule) {
  Early out;
  if (syscall == "setpriority") {
    const auto which = static_cast<int>(static_cast<std::int32_t>(call.args[0]));
    if (which != PRIO_PROCESS) {
      // PRIO_PGRP and PRIO_USER name many tasks, some perhaps outside the container.
      const char* name = which == PRIO_PGRP ? "PRIO_PGRP" : which == PRIO_USER ? "PRIO_USER" : nullptr;
      out.err = EPERM;
      out.why = std::string("which ") + (name != nullptr ? name : std::to_string(which).c_str()) +
                ": only PRIO_PROCESS is emulated";
      return out;
    }
    out.pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[1]));
    out.req.policy = -1;  // unchanged
    out.req.nice = call.nice;
    out.req.clamp_nice = true;
  } else if (syscall == "sched_setscheduler") {
    out.pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[0]));
    if (!call.sched_policy || !call.priority) return Early{EFAULT, {}, 0, {}};
    out.req.policy = *call.sched_policy;
    out.req.priority = *call.priority;
  } else if (syscall == "sched_setattr") {
    out.pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[0]));
    if (call.args[2] != 0) return Early{EINVAL, {}, 0, {}};  // flags must be 0
    if (!call.sched_policy || !call.priority || !call.nice) return Early{EFAULT, {}, 0, {}};
    // The decided copies, never a second read.
    out.req.policy = *call.sched_policy;
    out.req.priority = *call.priority;
    // nice only matters for SCHED_OTHER and SCHED_BATCH; for others the kernel ignores it.
    if (out.req.policy == SCHED_OTHER || out.req.policy == SCHED_BATCH) out.req.nice = *call.nice;
  } else {
    return Early{ENOSYS, "no scheduling emulator for " + std::string(syscall), 0, {}};
  }
  if (out.pid < 0) return Early{syscall == "setpriority" ? ESRCH : EINVAL, {}, 0, {}};
  if (out.req.policy != -1) {
    out.err = check_request(out.req, rule).err;
  } else if (out.req.nice) {
    Request only_nice = out.req;
    only_nice.policy = SCHED_OTHER;
    out.err = check_request(only_nice, rule).err;
  }
  return out;
}

}  // namespace sysvisor::emul::sched
