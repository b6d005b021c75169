// setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr, fremovexattr.
//
// A rule that names attributes (`match: {xattr: ["trusted.overlay.*"]}`) and says `emulate`
// grants them: the privileged helper sets them, after checking what the kernel would check for
// a user namespace that owned the attribute (inode_owner_or_capable): the caller owns the file
// (its fsuid) or holds CAP_FOWNER in its user namespace and the owner is mapped there.
// The file is resolved by a helper that is the caller (its root, cwd, user namespace, ids,
// capabilities), so symlinks and `..` cannot leave the container and every errno of the lookup
// is the kernel's; the privileged side acts on the descriptor it hands over (/proc/self/fd/N).
// Never granted: security.capability (it would be a file capability on the host) and system.*
// (ACLs hold ids); a symlink's own attributes (lsetxattr on a link).
// Under a rule without an `xattr` matcher, and for names never granted, the helper makes the
// call as the caller on the copied name and value: the kernel's own answer, with no re-read.
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <limits>

#include "sysvisor/emulator.hpp"
#include "sysvisor/helper.hpp"
#include "sysvisor/wire.hpp"

#ifndef PIDFD_THREAD
#define PIDFD_THREAD O_EXCL
#endif

namespace sysvisor::emul::xattr {
namespace {

constexpr std::size_t kMaxValue = 65536;  // XATTR_SIZE_MAX
constexpr std::size_t kMaxRanges = 64;
constexpr int kCapFowner = 3;

struct Params {
  helper::Caller caller;
  std::array<char, PATH_MAX + 1> path{};
  std::array<char, XATTR_NAME_MAX + 1> name{};
  std::array<char, kMaxValue> value{};
  std::size_t size = 0;
  int flags = 0;
  bool remove = false;
  bool follow = true;
  bool by_fd = false;
  int file_fd = -1;  // the caller's descriptor (pidfd_getfd), for the f* calls
  bool privileged = false;
  bool cap_fowner = false;
  std::array<task::IdRange, kMaxRanges> uid_map{};
  std::size_t uid_ranges = 0;
};

bool mapped(const Params& p, std::uint32_t host_uid) {
  for (std::size_t i = 0; i < p.uid_ranges; ++i) {
    const auto& r = p.uid_map[i];
    if (host_uid >= r.outside && host_uid - r.outside < r.count) return true;
  }
  return false;
}

int act_path(const Params& p, const char* path, bool follow) {
  long rc = 0;
  if (p.remove) {
    rc = follow ? ::removexattr(path, p.name.data()) : ::lremovexattr(path, p.name.data());
  } else {
    rc = follow ? ::setxattr(path, p.name.data(), p.value.data(), p.size, p.flags)
                : ::lsetxattr(path, p.name.data(), p.value.data(), p.size, p.flags);
  }
  return rc == 0 ? 0 : errno;
}

int act_fd(const Params& p, int fd) {
  const long rc = p.remove ? ::fremovexattr(fd, p.name.data())
                           : ::fsetxattr(fd, p.name.data(), p.value.data(), p.size, p.flags);
  return rc == 0 ? 0 : errno;
}

// The caller's side: resolve (and, when nothing is granted, act) as the caller.
[[noreturn]] void as_caller(const Params& p, int sock, int diag) {
  const char* stage = nullptr;
  if (const int err = helper::become_caller(p.caller, false, &stage); err != 0) {
    helper::report(diag, stage, err);
    ::_exit(EPERM);
  }
  if (!p.privileged) ::_exit(p.by_fd ? act_fd(p, p.file_fd) : act_path(p, p.path.data(), p.follow));
  open_how how{};
  how.flags = O_PATH | O_CLOEXEC | (p.follow ? 0 : O_NOFOLLOW);
  how.resolve = RESOLVE_NO_MAGICLINKS;
  const int fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, p.path.data(), &how, sizeof how));
  if (fd < 0) ::_exit(errno);
  const char byte = 0;
  if (wire::send_with_fd(sock, &byte, 1, fd) < 0) {
    helper::report(diag, "hand the file over", errno);
    ::_exit(EPERM);
  }
  ::_exit(0);
}

// The privileged side: checks ownership and sets or removes the attribute.
int privileged(const void* arg, int diag) {
  const Params& p = *static_cast<const Params*>(arg);
  const helper::Caller& c = p.caller;
  if (!helper::close_other_fds({c.root_fd, c.start_fd, c.user_ns_fd, p.file_fd, diag})) {
    helper::report(diag, "close inherited fds", errno);
    return EPERM;
  }
  int file = p.file_fd;
  if (!p.by_fd || !p.privileged) {
    std::array<int, 2> sp{};
    if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0) {
      helper::report(diag, "socketpair", errno);
      return EPERM;
    }
    const pid_t child = helper::raw_fork();
    if (child < 0) {
      helper::report(diag, "fork the caller-side helper", errno);
      return EPERM;
    }
    if (child == 0) {
      ::close(sp[0]);
      as_caller(p, sp[1], diag);
    }
    ::close(sp[1]);
    file = helper::receive_fd(sp[0]);
    const int code = helper::wait_code(child);
    if (!p.privileged) return code;                 // the caller made the call: the kernel's answer
    if (file < 0) return code == 0 ? EPERM : code;  // the lookup's errno
  }
  struct stat st {};
  if (::fstat(file, &st) != 0) {
    // An O_PATH fd of the caller (fsetxattr on it): the kernel's EBADF.
    return errno;
  }
  if (S_ISLNK(st.st_mode)) return EPERM;  // not granted on a symlink itself
  const bool owner = st.st_uid == c.host_fsuid;
  if (!owner && !(p.cap_fowner && mapped(p, st.st_uid))) return EPERM;
  if (p.by_fd) return act_fd(p, file);
  std::array<char, 64> self{};
  std::snprintf(self.data(), self.size(), "/proc/self/fd/%d", file);
  return act_path(p, self.data(), true);
}

class XattrJob final : public Job {
 public:
  XattrJob(helper::Running run, std::unique_ptr<Params> params, mknod::Request req, UniqueFd file)
      : run_(std::move(run)), params_(std::move(params)), req_(std::move(req)), file_(std::move(file)) {}
  ~XattrJob() override {
    if (run_.pidfd) {
      helper::kill(run_);
      (void)helper::reap(run_);
    }
  }
  XattrJob(const XattrJob&) = delete;
  XattrJob& operator=(const XattrJob&) = delete;
  [[nodiscard]] int pidfd() const override { return run_.pidfd.get(); }
  void kill() override { helper::kill(run_); }
  Answer finish(SessionState& /*state*/) override {
    helper::Exit e = helper::reap(run_);
    return Answer::error(e.code, std::move(e.diagnostic));
  }

 private:
  helper::Running run_;
  std::unique_ptr<Params> params_;  // the helpers have their copy; kept for symmetry of lifetime
  mknod::Request req_;              // the fds the helpers use
  UniqueFd file_;
};

class Xattr final : public Emulation {
 public:
  Xattr(const policy::SyscallInfo& info, Result<mknod::Request> req, Result<UniqueFd> file)
      : info_(info), req_(std::move(req)), file_(std::move(file)) {}

  [[nodiscard]] std::uint32_t fields() const override { return policy::kFieldXattrName | policy::kFieldPath; }

  Result<void> copy(const task::TaskHandle& task, const policy::Call& call) override {
    remove_ = info_.name.find("remove") != std::string_view::npos;
    if (remove_) return {};
    size_ = call.args[3];
    flags_ = static_cast<int>(static_cast<std::int32_t>(call.args[4]));
    if ((static_cast<unsigned>(flags_) & ~static_cast<unsigned>(XATTR_CREATE | XATTR_REPLACE)) != 0) {
      return sys_error(EINVAL, "xattr flags");
    }
    if (size_ > kMaxValue) return sys_error(E2BIG, "xattr value size");
    value_.resize(size_);
    if (size_ == 0) return {};
    const std::uint64_t at = call.args[2];
    if (at == 0 || at > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
      return sys_error(EFAULT, "xattr value");
    }
    if (::pread(task.mem(), value_.data(), size_, static_cast<off_t>(at)) != static_cast<ssize_t>(size_)) {
      return sys_error(EFAULT, "xattr value");
    }
    return {};
  }

  Started start(const Context& ctx) override {
    if (!ctx.call.xattr_name) return Answer::error(EFAULT);
    const std::string& name = *ctx.call.xattr_name;
    if (name.empty()) return Answer::error(ERANGE);
    const bool by_fd = info_.paths[0].path == policy::kPathIsFd;
    if (!by_fd && ctx.raw_path.empty()) return Answer::error(ENOENT);
    if (by_fd && !file_) return Answer::error(EBADF);
    if (!req_) return Answer::error(EPERM, "xattr: " + req_.error().message());
    const bool relative = !by_fd && ctx.raw_path[0] != '/';
    auto caller = helper::caller_of(*req_, relative);
    if (!caller) {
      const int err = caller.error().err;
      if (err == EBADF || err == ENOTDIR) return Answer::error(err);
      return Answer::error(EPERM, "xattr: " + caller.error().message());
    }
    auto p = std::make_unique<Params>();
    p->caller = *caller;
    if (!by_fd) {
      if (ctx.raw_path.size() >= p->path.size()) return Answer::error(ENAMETOOLONG);
      std::memcpy(p->path.data(), ctx.raw_path.c_str(), ctx.raw_path.size() + 1);
    }
    if (name.size() >= p->name.size()) return Answer::error(ERANGE);
    std::memcpy(p->name.data(), name.c_str(), name.size() + 1);
    if (!value_.empty()) std::memcpy(p->value.data(), value_.data(), value_.size());  // removexattr has none
    p->size = size_;
    p->flags = flags_;
    p->remove = remove_;
    p->follow = info_.name == "setxattr" || info_.name == "removexattr";
    p->by_fd = by_fd;
    p->file_fd = by_fd ? file_->get() : -1;
    // Granted only by a rule that names the attributes, and never the dangerous ones.
    p->privileged =
        !ctx.rule->match.xattr_names.empty() && name != "security.capability" && !name.starts_with("system.");
    p->cap_fowner = (req_->creds.cap_effective & (std::uint64_t{1} << kCapFowner)) != 0;
    for (const auto& r : req_->uid_map) {
      if (p->uid_ranges == kMaxRanges) break;
      p->uid_map[p->uid_ranges++] = r;
    }
    auto run = helper::spawn(privileged, p.get());
    if (!run) return Answer::error(EPERM, "xattr: " + run.error().message());
    return std::make_unique<XattrJob>(std::move(*run), std::move(p), std::move(*req_),
                                      by_fd ? std::move(*file_) : UniqueFd{});
  }

 private:
  const policy::SyscallInfo& info_;
  Result<mknod::Request> req_;
  Result<UniqueFd> file_;
  std::vector<char> value_;
  std::size_t size_ = 0;
  int flags_ = 0;
  bool remove_ = false;
};

// The caller's descriptor itself (same open file), for fsetxattr and fremovexattr.
Result<UniqueFd> caller_fd(const task::TaskHandle& task, std::uint64_t arg) {
  const auto fd = static_cast<std::int32_t>(arg);
  if (fd < 0) return sys_error(EBADF, "fd");
  UniqueFd pidfd(static_cast<int>(::syscall(SYS_pidfd_open, task.tid(), PIDFD_THREAD)));
  if (!pidfd) pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, task.tid(), 0)));
  if (!pidfd) return sys_error("pidfd_open");
  UniqueFd out(static_cast<int>(::syscall(SYS_pidfd_getfd, pidfd.get(), fd, 0)));
  if (!out) return sys_error(EBADF, "pidfd_getfd");
  return out;
}

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& call) {
  const bool by_fd = info.paths[0].path == policy::kPathIsFd;
  Result<UniqueFd> file = by_fd ? caller_fd(task, call.args[0]) : Result<UniqueFd>{UniqueFd{}};
  return std::make_unique<Xattr>(info, mknod::prepare(task, 0, 0, AT_FDCWD), std::move(file));
}

}  // namespace sysvisor::emul::xattr
