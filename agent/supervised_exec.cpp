#include "supervised_exec.hpp"

#include <fcntl.h>
#include <linux/capability.h>
#include <linux/futex.h>
#include <linux/seccomp.h>
#include <pthread.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "exit_codes.hpp"
#include "timing.hpp"

namespace sysvisor::agent {
namespace {

// What the filtered thread and the helper share. Lives on the filtered thread's stack, which
// never unwinds: it either execs or is ended by the helper.
struct Handoff {
  int sock = -1;
  std::uint32_t pid = 0;
  const FailureChannel* failure = nullptr;
  // The filter never traps futex: both threads block in it instead of spinning and polling
  // (on a busy machine a spinning thread takes the CPU the handoff needs).
  bool futex_free = false;
  std::atomic<int> listener{-1};  // set by the filtered thread
  std::atomic<int> ready{0};      // set by the helper
};
static_assert(std::atomic<int>::is_always_lock_free && sizeof(std::atomic<int>) == sizeof(int),
              "the filtered thread must not need a lock to read these, and futex takes them");

void futex_wait(std::atomic<int>& word, int while_value) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<int*>(&word), FUTEX_WAIT_PRIVATE, while_value, nullptr, nullptr, 0);
}

void futex_wake(std::atomic<int>& word) noexcept {
  ::syscall(SYS_futex, reinterpret_cast<int*>(&word), FUTEX_WAKE_PRIVATE, 1, nullptr, nullptr, 0);
}

inline void cpu_relax() noexcept {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_ia32_pause();
#elif defined(__aarch64__)
  __asm__ volatile("yield");
#endif
}

// The helper thread: unfiltered, so it may block, allocate and talk to the supervisor.
void* handoff_thread(void* arg) noexcept {
  auto& h = *static_cast<Handoff*>(arg);
  int listener = -1;
  while ((listener = h.listener.load(std::memory_order_acquire)) < 0) {
    if (h.futex_free) {
      futex_wait(h.listener, -1);
    } else {
      timespec pause{0, 20'000};
      ::nanosleep(&pause, nullptr);
    }
  }
  // The kernel creates the listener close-on-exec; make sure of it from here, where fcntl
  // cannot be trapped: the workload must never inherit its own listener.
  if (::fcntl(listener, F_SETFD, FD_CLOEXEC) != 0) {
    const int err = errno;
    h.failure->fail(kExitAgentFailure,
                    std::string("mark the seccomp listener close-on-exec: ") + std::strerror(err));
  }
  auto session = hand_off(h.sock, listener, h.pid);
  // The listener travels with the message; the workload does not need our copy.
  ::close(listener);
  if (!session) {
    h.failure->fail(kExitAgentFailure, session.error().message());
  }
  timing_mark("exec");
  h.ready.store(1, std::memory_order_release);
  if (h.futex_free) futex_wake(h.ready);
  return nullptr;
}

// Whether seccomp() will accept a filter without PR_SET_NO_NEW_PRIVS.
bool has_cap_sys_admin() noexcept {
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3]{};
  if (::syscall(SYS_capget, &header, data) != 0) {
    return false;
  }
  return (data[CAP_TO_INDEX(CAP_SYS_ADMIN)].effective & CAP_TO_MASK(CAP_SYS_ADMIN)) != 0;
}

[[noreturn]] void fail_errno(const FailureChannel& failure, int code, int err,
                             const std::string& what) noexcept {
  failure.fail(code, what + ": " + std::strerror(err));
}

}  // namespace

namespace {
#ifndef CLOSE_RANGE_CLOEXEC
constexpr unsigned kCloseRangeCloexec = 1U << 2U;
#else
constexpr unsigned kCloseRangeCloexec = CLOSE_RANGE_CLOEXEC;
#endif
}  // namespace

Result<void> close_inherited_fds(unsigned preserve_fds) noexcept {
  const unsigned first = 3 + preserve_fds;
  // The benchmark's timing hook (timing.hpp) stays, close-on-exec; everything else goes.
  const int timing = timing_fd();
  const auto close_from = [&](unsigned from, unsigned to) -> Result<void> {
    if (from <= to && ::syscall(SYS_close_range, from, to, 0U) != 0) {
      return sys_error("close the inherited fds from " + std::to_string(from) + " up (close_range)");
    }
    return {};
  };
  if (timing < 0 || static_cast<unsigned>(timing) < first || ::fcntl(timing, F_SETFD, FD_CLOEXEC) != 0) {
    return close_from(first, ~0U);
  }
  if (auto closed = close_from(first, static_cast<unsigned>(timing) - 1U); !closed) return closed;
  return close_from(static_cast<unsigned>(timing) + 1U, ~0U);
}

void supervised_exec(int sock, const Filter& filter, std::uint32_t pid,
                     const std::vector<std::string>& command, unsigned preserve_fds,
                     const FailureChannel& failure) noexcept {
  if (command.empty()) {
    failure.fail(kExitAgentFailure, "no command to run");
  }
  // Everything the filtered thread needs after seccomp() is prepared now.
  std::vector<char*> argv;
  argv.reserve(command.size() + 1);
  for (const std::string& arg : command) {
    argv.push_back(const_cast<char*>(arg.c_str()));
  }
  argv.push_back(nullptr);
  sock_fprog prog{static_cast<unsigned short>(filter.program.size()),
                  const_cast<sock_filter*>(filter.program.data())};

  // Before the filter, which may trap close_range: the exec closes every fd above the ones
  // the workload is meant to get, whoever opened it (CLOEXEC rather than closed now: the
  // supervisor connection, the failure channel and the listener are still needed until then).
  if (::syscall(SYS_close_range, 3 + preserve_fds, ~0U, kCloseRangeCloexec) != 0) {
    const int err = errno;
    fail_errno(failure, kExitAgentFailure, err,
               "mark the fds above the workload's close-on-exec (close_range)");
  }

  if (!has_cap_sys_admin() && ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    const int err = errno;
    fail_errno(failure, kExitAgentFailure, err, "set PR_SET_NO_NEW_PRIVS");
  }

  Handoff handoff;
  handoff.sock = sock;
  handoff.pid = pid;
  handoff.failure = &failure;
  handoff.futex_free = filter.futex_free;
  pthread_attr_t attr;
  pthread_attr_init(&attr);
  pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  pthread_t helper;
  const int created = pthread_create(&helper, &attr, handoff_thread, &handoff);
  pthread_attr_destroy(&attr);
  if (created != 0) {
    fail_errno(failure, kExitAgentFailure, created, "start the handoff thread");
  }

  // From here on, until `ready`, no syscall on this thread that the filter may trap.
  const long listener = ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, filter.flags, &prog);
  if (listener < 0) {
    // Nothing was installed: this thread may still report (and end the helper with the process).
    const int err = errno;
    std::string what = "install the seccomp filter of policy `" + filter.policy + "`";
    if (err == EBUSY) {
      what += " (this process is already under a filter with a listener)";
    }
    fail_errno(failure, kExitAgentFailure, err, what);
  }
  handoff.listener.store(static_cast<int>(listener), std::memory_order_release);
  if (handoff.futex_free) futex_wake(handoff.listener);
  while (handoff.ready.load(std::memory_order_acquire) == 0) {
    if (handoff.futex_free) {
      futex_wait(handoff.ready, 0);
    } else {
      cpu_relax();
    }
  }

  // The supervisor answers trapped calls now.
  ::execvp(argv[0], argv.data());
  const int err = errno;
  const bool not_found = err == ENOENT || err == ENOTDIR;
  const bool searched = command.front().find('/') == std::string::npos;
  if (not_found && searched) {
    failure.fail(kExitNotFound, "exec `" + command.front() + "`: executable file not found in $PATH");
  }
  fail_errno(failure, not_found ? kExitNotFound : kExitNotExecutable, err, "exec `" + command.front() + "`");
}

}  // namespace sysvisor::agent
