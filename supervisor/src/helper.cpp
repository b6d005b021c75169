#include "sysvisor/helper.hpp"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <csignal>
#include <cstring>

#include "sysvisor/pidfd.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::emul::helper {

bool set_effective_caps(std::uint64_t wanted) noexcept {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, 2> data{};
  if (::syscall(SYS_capget, &hdr, data.data()) != 0) return false;
  const std::uint64_t permitted = data[0].permitted | (std::uint64_t{data[1].permitted} << 32U);
  const std::uint64_t eff = wanted & permitted;
  data[0].effective = static_cast<std::uint32_t>(eff);
  data[1].effective = static_cast<std::uint32_t>(eff >> 32U);
  data[0].inheritable = 0;
  data[1].inheritable = 0;
  return ::syscall(SYS_capset, &hdr, data.data()) == 0;
}

Result<Caller> caller_of(const mknod::Request& req, bool relative) {
  Caller c;
  if (relative && !req.start) return sys_error(req.start_err, "open the caller's start directory");
  c.root_fd = req.root.get();
  c.start_fd = req.start.get();
  c.user_ns_fd = req.user_ns.get();
  c.mnt_ns_fd = req.mnt_ns.get();
  c.join_user_ns = !req.same_user_ns;
  c.relative = relative;
  for (std::size_t i = 0; i < 4; ++i) {
    const auto u = task::to_inside(req.uid_map, req.creds.uid[i]);
    const auto g = task::to_inside(req.gid_map, req.creds.gid[i]);
    if (!u || !g) return sys_error(EOVERFLOW, "caller's ids are not mapped in its user namespace");
    c.uid[i] = *u;
    c.gid[i] = *g;
  }
  for (const auto host_gid : req.creds.groups) {
    if (c.ngroups == kMaxGroups) break;  // fewer groups: fewer rights, never more
    if (const auto g = task::to_inside(req.gid_map, host_gid)) c.groups[c.ngroups++] = *g;
  }
  c.caps = req.creds.cap_effective;
  c.umask = req.creds.umask;
  c.host_fsuid = req.creds.uid[3];
  c.host_fsgid = req.creds.gid[3];
  return c;
}

int become_caller(const Caller& c, bool join_mnt, const char** stage) noexcept {
  const auto failed = [&](const char* what) {
    *stage = what;
    return errno == 0 ? EPERM : errno;
  };
  // The mount namespace first: joining it resets root and cwd, which we set next.
  if (join_mnt && ::setns(c.mnt_ns_fd, CLONE_NEWNS) != 0) return failed("join the caller's mount namespace");
  if (::fchdir(c.root_fd) != 0 || ::chroot(".") != 0) return failed("chroot to the caller's root");
  if (c.relative) {
    if (::fchdir(c.start_fd) != 0) return failed("chdir to the caller's cwd or dirfd");
    // "(unreachable)" in front: the directory is not below the caller's root; we do not follow.
    std::array<char, 4200> cwd{};
    if (::syscall(SYS_getcwd, cwd.data(), cwd.size()) < 0) return failed("getcwd");
    if (cwd[0] != '/') {
      errno = EPERM;
      return failed("the caller's cwd is outside its root");
    }
  } else if (::chdir("/") != 0) {
    return failed("chdir /");
  }
  if (set_groups(0, nullptr) != 0) return failed("drop supplementary groups");
  if (c.join_user_ns && ::setns(c.user_ns_fd, CLONE_NEWUSER) != 0)
    return failed("join the caller's user namespace");
  // setgroups "deny" in the caller's namespace leaves us with none: fewer rights, never more.
  if (set_groups(c.ngroups, c.groups.data()) != 0 && !(c.join_user_ns && errno == EPERM))
    return failed("set the caller's groups");
  if (::prctl(PR_SET_KEEPCAPS, 1) != 0) return failed("keep capabilities");
  if (set_gids(c.gid[0], c.gid[1], c.gid[2]) != 0) return failed("set the caller's gids");
  if (set_uids(c.uid[0], c.uid[1], c.uid[2]) != 0) return failed("set the caller's uids");
  if (!set_effective_caps(~std::uint64_t{0})) return failed("raise capabilities");
  ::setfsgid(c.gid[3]);
  ::setfsuid(c.uid[3]);
  if (!set_effective_caps(c.caps)) return failed("set the caller's capabilities");
  ::umask(c.umask);
  return 0;
}

int set_groups(std::size_t n, const gid_t* groups) noexcept {
  return static_cast<int>(::syscall(SYS_setgroups, n, groups));
}

int set_gids(gid_t real, gid_t effective, gid_t saved) noexcept {
  return static_cast<int>(::syscall(SYS_setresgid, real, effective, saved));
}

int set_uids(uid_t real, uid_t effective, uid_t saved) noexcept {
  return static_cast<int>(::syscall(SYS_setresuid, real, effective, saved));
}

pid_t raw_fork() noexcept {
  return static_cast<pid_t>(::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0));
}

bool close_other_fds(std::initializer_list<int> keep_list) noexcept {
  std::array<int, 16> keep{};
  std::size_t n = 0;
  for (const int fd : keep_list) {
    if (fd >= 0 && n < keep.size()) keep[n++] = fd;
  }
  std::sort(keep.begin(), keep.begin() + static_cast<std::ptrdiff_t>(n));
  unsigned next = 3;
  for (std::size_t i = 0; i < n; ++i) {
    const int fd = keep[i];
    if (static_cast<unsigned>(fd) < next) continue;
    if (static_cast<unsigned>(fd) > next && ::syscall(SYS_close_range, next, fd - 1, 0) != 0) return false;
    next = static_cast<unsigned>(fd) + 1;
  }
  return ::syscall(SYS_close_range, next, ~0U, 0) == 0;
}

namespace {
struct DiagRecord {
  std::array<char, 120> stage;
  int err;
};
}  // namespace

void report(int diag_fd, const char* stage, int err) noexcept {
  DiagRecord rec{};
  std::strncpy(rec.stage.data(), stage, rec.stage.size() - 1);
  rec.err = err;
  [[maybe_unused]] const ssize_t n = ::write(diag_fd, &rec, sizeof rec);
}

Result<Running> spawn(int (*body)(const void* arg, int diag_fd), const void* arg) {
  std::array<int, 2> diag{};
  if (::pipe2(diag.data(), O_CLOEXEC | O_NONBLOCK) != 0) return sys_error("pipe");
  UniqueFd diag_read(diag[0]);
  UniqueFd diag_write(diag[1]);
  const pid_t pid = raw_fork();
  if (pid < 0) return sys_error("fork an emulation helper");
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);
    // Slow work (a mount, a loop device) yields the CPU to the receiver threads answering
    // every other container: on two cores it otherwise sets their tail latency.
    ::setpriority(PRIO_PROCESS, 0, kHelperNice);
    ::_exit(body(arg, diag_write.get()));
  }
  Running run;
  run.pid = pid;
  run.diag = std::move(diag_read);
  run.pidfd = open_pidfd(pid);
  if (!run.pidfd) {
    auto err = sys_error("pidfd_open an emulation helper");
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    return err;
  }
  return run;
}

int wait_code(pid_t pid) noexcept {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return EPERM;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : EPERM;
}

int receive_fd(int sock) noexcept {
  char byte = 0;
  int fd = -1;
  std::size_t nfds = 0;
  int flags = 0;
  const ssize_t n = wire::receive_with_fds(sock, &byte, 1, &fd, 1, &nfds, &flags);
  return n > 0 && nfds == 1 ? fd : -1;
}

Exit wait_exit(int pidfd, const char* what) {
  Exit out;
  siginfo_t info{};
  int rc = 0;
  do {
    rc = ::waitid(static_cast<idtype_t>(P_PIDFD), static_cast<id_t>(pidfd), &info, WEXITED);
  } while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    out.code = EPERM;
    out.diagnostic = std::string("wait for the ") + what + ": " + std::strerror(errno);
  } else if (info.si_code == CLD_EXITED) {
    out.code = info.si_status;
  } else {
    out.code = EPERM;
    out.diagnostic = std::string(what) + " killed by signal " + std::to_string(info.si_status);
  }
  return out;
}

Exit reap(Running& run) {
  Exit out = wait_exit(run.pidfd.get(), "helper");
  DiagRecord rec{};
  while (run.diag && ::read(run.diag.get(), &rec, sizeof rec) == static_cast<ssize_t>(sizeof rec)) {
    rec.stage.back() = '\0';
    if (!out.diagnostic.empty()) out.diagnostic += "; ";
    out.diagnostic += std::string(rec.stage.data()) + ": " + std::strerror(rec.err);
  }
  run.pidfd.reset();
  run.diag.reset();
  return out;
}

void kill(const Running& run) {
  if (run.pidfd) ::syscall(SYS_pidfd_send_signal, run.pidfd.get(), SIGKILL, nullptr, 0);
}

}  // namespace sysvisor::emul::helper
