// open, openat, openat2 and creat, opened by sysvisor as the caller so that `path` rules see
// the file the kernel would open (docs/policy.md, "Path rules on open").
//
// A helper that is the caller (its root, cwd or dirfd, user namespace, ids, groups,
// capabilities, umask; helper::become_caller) resolves the path with O_PATH, the caller's
// O_NOFOLLOW and O_DIRECTORY and openat2's RESOLVE_* flags: symlinks are followed inside the
// caller's root and every lookup errno is the kernel's. It hands the O_PATH descriptor over
// and waits. The daemon names it (readlink of /proc/self/fd/N, seen from the caller's root),
// decides on that name, and says go or stop. On go the helper opens the file it resolved,
// through its own /proc/self/fd/N (a procfs of the daemon's, opened before the chroot), with the
// caller's flags: the permission check of the final open is the kernel's for the caller, and
// nothing the decision did not see is opened. A path that does not exist yet with O_CREAT:
// the parent directory is resolved instead, the name decided as PARENT/NAME, and created with
// O_NOFOLLOW (a symlink put there after the decision is not followed: ELOOP). Nothing is
// truncated or created before the decision. The descriptor goes to the caller with
// SECCOMP_IOCTL_NOTIF_ADDFD and SECCOMP_ADDFD_FLAG_SEND (O_CLOEXEC as the caller asked).
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "sysvisor/helper.hpp"
#include "sysvisor/open_file.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::emul::open_file {

// What the helper gets (its copy, at the fork).
struct Params {
  helper::Caller caller;
  std::array<char, PATH_MAX + 1> path{};
  Request request;
  int sock = -1;
  int proc = -1;  // the daemon's /proc, opened before the chroot
};

namespace {

enum class Found : std::uint8_t { Error, Exists, Create };

// Phase 1's message from the helper (with the O_PATH fd unless Error).
struct Resolved {
  Found found = Found::Error;
  int err = 0;
  std::array<char, NAME_MAX + 1> name{};  // Create: the last component
};
// Phase 2's message: 0 and the fd, or an errno.
struct Opened {
  int err = 0;
};

// In the helper: resolve as the caller, report, wait for the verdict, open.
int as_caller(const void* arg, int diag) {
  const Params& p = *static_cast<const Params*>(arg);
  if (!helper::close_other_fds(
          {p.caller.root_fd, p.caller.start_fd, p.caller.user_ns_fd, p.sock, p.proc, diag})) {
    helper::report(diag, "close inherited fds", errno);
    return EPERM;
  }
  const char* stage = nullptr;
  if (const int err = helper::become_caller(p.caller, false, &stage); err != 0) {
    helper::report(diag, stage, err);
    return EPERM;
  }
  const int flags = p.request.flags;
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC | (flags & (O_NOFOLLOW | O_DIRECTORY));
  how.resolve = p.request.resolve;
  Resolved r;
  int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, p.path.data(), &how, sizeof how));
  if (fd >= 0) {
    r.found = Found::Exists;
  } else if (errno == ENOENT && (flags & O_CREAT) != 0 && (flags & O_TMPFILE) != O_TMPFILE) {
    // The file is to be made: its directory is resolved, the name decided beside it.
    const char* path = p.path.data();
    const char* slash = std::strrchr(path, '/');
    const char* name = slash == nullptr ? path : slash + 1;
    const std::size_t len = std::strlen(name);
    std::array<char, PATH_MAX + 1> dir{};
    if (slash == nullptr) {
      dir[0] = '.';
    } else if (slash == path) {
      dir[0] = '/';
    } else {
      std::memcpy(dir.data(), path, static_cast<std::size_t>(slash - path));
    }
    if (len == 0 || len > NAME_MAX || std::strcmp(name, ".") == 0 || std::strcmp(name, "..") == 0) {
      r.err = len == 0 ? EISDIR : ENOENT;
    } else {
      open_how up{};
      up.flags = O_PATH | O_CLOEXEC | O_DIRECTORY;
      up.resolve = p.request.resolve;
      fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, dir.data(), &up, sizeof up));
      if (fd >= 0) {
        r.found = Found::Create;
        std::memcpy(r.name.data(), name, len + 1);
      } else {
        r.err = errno;
      }
    }
  } else {
    r.err = errno;
  }
  if (wire::send_with_fd(p.sock, &r, sizeof r, fd) < 0) return EPERM;
  char verdict = 0;
  if (::recv(p.sock, &verdict, 1, 0) != 1 || verdict != 'y') return 0;  // refused (or the daemon went)
  Opened o;
  int out = -1;
  const int wanted = (flags & ~(O_CREAT | O_EXCL | O_NOFOLLOW)) | O_CLOEXEC;
  if (r.found == Found::Exists) {
    if ((flags & (O_CREAT | O_EXCL)) == (O_CREAT | O_EXCL)) {
      o.err = EEXIST;
    } else {
      std::array<char, 32> self{};
      std::snprintf(self.data(), self.size(), "self/fd/%d", fd);
      out = ::openat(p.proc, self.data(), wanted, p.request.mode);
      if (out < 0) o.err = errno;
    }
  } else {
    out = ::openat(fd, r.name.data(), flags | O_NOFOLLOW | O_CLOEXEC, p.request.mode);
    if (out < 0) o.err = errno;
  }
  if (wire::send_with_fd(p.sock, &o, sizeof o, out) < 0) return EPERM;
  return 0;
}

// Waits until `sock` is readable, up to `deadline`.
bool readable(int sock, std::chrono::steady_clock::time_point deadline) {
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) return false;
    pollfd pfd{sock, POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n > 0) return true;
    if (n < 0 && errno != EINTR) return false;
  }
}

// The name of `fd` (ours) as the caller sees it from `root` (ours too: the helper's root).
Result<std::string> name_of(int fd, int root) {
  std::array<char, 64> link{};
  std::array<char, PATH_MAX + 1> target{};
  std::array<char, PATH_MAX + 1> base{};
  std::snprintf(link.data(), link.size(), "/proc/self/fd/%d", root);
  const ssize_t b = ::readlink(link.data(), base.data(), base.size() - 1);
  std::snprintf(link.data(), link.size(), "/proc/self/fd/%d", fd);
  const ssize_t t = ::readlink(link.data(), target.data(), target.size() - 1);
  if (b < 0 || t < 0) return sys_error("name the file the caller resolved");
  const std::string_view root_path(base.data(), static_cast<std::size_t>(b));
  const std::string_view path(target.data(), static_cast<std::size_t>(t));
  if (root_path == "/") return std::string(path);
  if (path.starts_with(root_path) && (path.size() == root_path.size() || path[root_path.size()] == '/')) {
    const std::string_view rest = path.substr(root_path.size());
    return rest.empty() ? std::string("/") : std::string(rest);
  }
  return "(unreachable)" + std::string(path);  // matches no absolute glob
}

}  // namespace

Result<Request> request_of(const policy::Call& call, int nr_open, int nr_openat, int nr_creat) {
  Request r;
  if (call.nr == nr_open) {
    r.flags = static_cast<int>(static_cast<std::uint32_t>(call.args[1]));
    r.mode = static_cast<mode_t>(call.args[2] & 07777);
  } else if (call.nr == nr_openat) {
    r.flags = static_cast<int>(static_cast<std::uint32_t>(call.args[2]));
    r.mode = static_cast<mode_t>(call.args[3] & 07777);
  } else if (call.nr == nr_creat) {
    r.flags = O_CREAT | O_WRONLY | O_TRUNC;
    r.mode = static_cast<mode_t>(call.args[1] & 07777);
  } else {
    return sys_error(EINVAL, "not an open call");
  }
  if ((r.flags & (O_CREAT | O_TMPFILE)) == 0) r.mode = 0;  // the kernel ignores it
  return r;
}

Result<Request> request_of_openat2(const open_how& how) {
  if ((how.flags & ~std::uint64_t{0xffffffff}) != 0 || (how.mode & ~std::uint64_t{07777}) != 0) {
    return sys_error(EINVAL, "open_how");
  }
  if ((how.flags & (O_CREAT | O_TMPFILE)) == 0 && how.mode != 0) return sys_error(EINVAL, "open_how mode");
  Request r;
  r.flags = static_cast<int>(how.flags);
  r.mode = static_cast<mode_t>(how.mode);
  r.resolve = how.resolve;
  return r;
}

Result<Opener> Opener::start(const mknod::Request& req, const std::string& path, const Request& request) {
  if (path.empty()) return sys_error(ENOENT, "empty path");
  const bool relative = path[0] != '/';
  auto caller = helper::caller_of(req, relative);
  if (!caller) return std::unexpected(caller.error());
  Opener o;
  o.params_ = std::make_unique<Params>();
  Params& p = *o.params_;
  p.caller = *caller;
  if (path.size() >= p.path.size()) return sys_error(ENAMETOOLONG, "path");
  std::memcpy(p.path.data(), path.c_str(), path.size() + 1);
  p.request = request;
  std::array<int, 2> sp{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0) return sys_error("socketpair");
  o.sock_.reset(sp[0]);
  UniqueFd theirs(sp[1]);
  UniqueFd proc(::open("/proc", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!proc) return sys_error("open /proc");
  p.sock = theirs.get();
  p.proc = proc.get();
  o.root_ = req.root.get();
  auto run = helper::spawn(as_caller, &p);
  if (!run) return std::unexpected(run.error());
  o.run_ = std::move(*run);
  return o;
}

Opener::Opener(Opener&&) noexcept = default;
Opener& Opener::operator=(Opener&&) noexcept = default;

Opener::~Opener() {
  if (run_.pidfd) {
    helper::kill(run_);
    (void)helper::reap(run_);
  }
}

Result<Opener::Where> Opener::resolve(std::chrono::steady_clock::time_point deadline) {
  if (!readable(sock_.get(), deadline)) return sys_error(EINTR, "the caller-side open helper did not answer");
  Resolved r;
  int fd = -1;
  std::size_t nfds = 0;
  int mflags = 0;
  const ssize_t n = wire::receive_with_fds(sock_.get(), &r, sizeof r, &fd, 1, &nfds, &mflags);
  UniqueFd got(nfds == 1 ? fd : -1);
  if (n != static_cast<ssize_t>(sizeof r) || (mflags & MSG_TRUNC) != 0) {
    helper::kill(run_);
    return sys_error(EPROTO, "the caller-side open helper: " + helper::reap(run_).diagnostic);
  }
  Where w;
  if (r.found == Found::Error || !got) {
    w.err = r.err != 0 ? r.err : EPERM;
    return w;
  }
  auto name = name_of(got.get(), root_);
  if (!name) return std::unexpected(name.error());
  if (r.found == Found::Create) {
    r.name.back() = '\0';
    *name += (name->ends_with('/') ? "" : "/") + std::string(r.name.data());
  }
  w.path = std::move(*name);
  return w;
}

Result<Opener::Got> Opener::open(std::chrono::steady_clock::time_point deadline) {
  const char go = 'y';
  if (::send(sock_.get(), &go, 1, MSG_NOSIGNAL) != 1) return sys_error("tell the open helper to go on");
  if (!readable(sock_.get(), deadline)) return sys_error(EINTR, "the caller-side open helper did not answer");
  Opened o;
  int fd = -1;
  std::size_t nfds = 0;
  int mflags = 0;
  const ssize_t n = wire::receive_with_fds(sock_.get(), &o, sizeof o, &fd, 1, &nfds, &mflags);
  Got g;
  g.fd.reset(nfds == 1 ? fd : -1);
  if (n != static_cast<ssize_t>(sizeof o) || (mflags & MSG_TRUNC) != 0) {
    return sys_error(EPROTO, "the caller-side open helper's answer");
  }
  g.err = g.fd ? 0 : (o.err != 0 ? o.err : EPERM);
  return g;
}

}  // namespace sysvisor::emul::open_file
