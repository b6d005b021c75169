// Short-lived helper processes for emulations that touch a container's files (xattrs, mounts):
// the loop never does file system work itself (a container's FUSE mount could stall it).
// Like mknod's helpers: forked with a raw clone, single-threaded, only syscalls after fork.
//   spawn(): forks the privileged helper, which runs `body`; its exit code is the caller's errno.
//   become_caller(): in a child of it, take the caller's root, cwd, user namespace (and, for
//     mounts, mount namespace), ids, groups, capabilities and umask, so that path resolution,
//     permission checks and errnos are the kernel's own for the caller.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <string>

#include "sysvisor/error.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::emul::helper {

inline constexpr std::size_t kMaxGroups = 256;

struct Caller {
  int root_fd = -1;
  int start_fd = -1;
  int user_ns_fd = -1;
  int mnt_ns_fd = -1;
  bool join_user_ns = false;
  bool relative = false;               // chdir to start_fd (else to "/")
  std::array<std::uint32_t, 4> uid{};  // as the caller's user namespace sees them
  std::array<std::uint32_t, 4> gid{};
  std::array<gid_t, kMaxGroups> groups{};
  std::size_t ngroups = 0;
  std::uint64_t caps = 0;
  mode_t umask = 022;
  std::uint32_t host_fsuid = 0;  // host view, for ownership checks on the privileged side
  std::uint32_t host_fsgid = 0;
};

// From what mknod::prepare gathered (the caller's fds, ids and maps). EBADF/ENOTDIR when a
// relative path has no start directory; EOVERFLOW when the caller's ids are unmapped.
[[nodiscard]] Result<Caller> caller_of(const mknod::Request& req, bool relative);

// In a forked child only. 0, or the errno of the step that failed (*stage names it).
[[nodiscard]] int become_caller(const Caller& c, bool join_mnt, const char** stage) noexcept;

// fork() without libc's fork handlers (see mknod.cpp).
[[nodiscard]] pid_t raw_fork() noexcept;
// The caller's groups and ids, in a raw_fork child. Never glibc's setgroups/setresgid/setresuid
// there: they apply the change to every thread glibc believes in, and a child of raw_fork
// inherits the daemon's list. A thread the daemon was creating at the fork is marked "being
// cloned", and the child then waits for it forever (__nptl_setxid): the call hung until the
// helper's deadline and failed EPERM. The raw calls change this thread, the only one.
[[nodiscard]] int set_groups(std::size_t n, const gid_t* groups) noexcept;
[[nodiscard]] int set_gids(gid_t real, gid_t effective, gid_t saved) noexcept;
[[nodiscard]] int set_uids(uid_t real, uid_t effective, uid_t saved) noexcept;
// This thread's effective capabilities: `wanted` within the permitted set; inheritable cleared.
[[nodiscard]] bool set_effective_caps(std::uint64_t wanted) noexcept;

// Closes every fd of the calling (child) process except `keep` (unsorted, -1 ignored).
[[nodiscard]] bool close_other_fds(std::initializer_list<int> keep) noexcept;

struct Running {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd diag;  // read end of the helpers' report() records
};
// Forks the privileged helper: PR_SET_PDEATHSIG, then body(arg, diag_fd), whose result is the
// exit code. diag_fd is open in the helper and its children, for report().
// The helpers' nice value (they and their children).
inline constexpr int kHelperNice = 10;

[[nodiscard]] Result<Running> spawn(int (*body)(const void* arg, int diag_fd), const void* arg);
// In a helper: records that our machinery failed at `stage` with `err` (not the caller's error).
void report(int diag_fd, const char* stage, int err) noexcept;
// In a helper: waits for its own child; the child's exit code, or EPERM if it died otherwise.
[[nodiscard]] int wait_code(pid_t pid) noexcept;
// In a helper: one fd sent by its child over `sock` (wire::send_with_fd); -1 when none came.
[[nodiscard]] int receive_fd(int sock) noexcept;
// Reaps it (after its pidfd polled readable, or after kill): its exit code, or EPERM when it
// died by a signal; the diagnostic gathers the report() records.
struct Exit {
  int code = 0;
  std::string diagnostic;
};
[[nodiscard]] Exit reap(Running& run);
// Waits for the process behind `pidfd` (any helper, mknod's too): its exit code, or EPERM
// with a diagnostic when the wait failed or a signal ended it (`what` names it there).
[[nodiscard]] Exit wait_exit(int pidfd, const char* what);
void kill(const Running& run);

}  // namespace sysvisor::emul::helper
