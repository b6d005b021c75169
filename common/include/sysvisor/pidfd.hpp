// pidfd_open(2), spelled once: a pidfd pins a process (or, where the kernel can, a thread) so that
// what is read or done through /proc or pidfd_getfd afterwards is known to be about it.
#pragma once

#include <fcntl.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <unistd.h>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor {

// A thread group leader's pidfd; invalid (errno set) when the process is gone or not a leader.
[[nodiscard]] inline UniqueFd open_pidfd(pid_t pid) {
  return UniqueFd(static_cast<int>(::syscall(SYS_pidfd_open, pid, 0)));
}

// Any thread's pidfd: PIDFD_THREAD (the value of O_EXCL; kernel >= 6.9), and on older kernels,
// which accept only leaders, the leader's pidfd when `tid` is one (invalid otherwise).
[[nodiscard]] inline UniqueFd open_thread_pidfd(pid_t tid) {
  constexpr unsigned kPidfdThread = O_EXCL;
  UniqueFd fd(static_cast<int>(::syscall(SYS_pidfd_open, tid, kPidfdThread)));
  if (!fd) fd = open_pidfd(tid);
  return fd;
}

}  // namespace sysvisor
