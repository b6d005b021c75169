// The xattr family: setxattr, lsetxattr, fsetxattr, removexattr, lremovexattr, fremovexattr,
// getxattr, lgetxattr, fgetxattr, listxattr, llistxattr, flistxattr.
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
//
// Reading back (getxattr and friends, listxattr and friends). The kernel hides trusted.* from
// anyone without CAP_SYS_ADMIN in the initial user namespace (ENODATA, and listxattr leaves the
// names out), so a container could set the names a rule grants and never read them back.
//   - The caller-side helper always makes the call itself, as the caller, with a buffer of the
//     largest size (XATTR_SIZE_MAX, XATTR_LIST_MAX): the kernel's own answer, lookup errnos
//     included.
//   - getxattr of a granted name: where the caller could set it (the rule above: it owns the
//     file or holds CAP_FOWNER with the owner mapped; never on a symlink itself), the privileged
//     side reads it on the same descriptor; elsewhere the caller's own answer stands (ENODATA
//     for trusted.*). Why not "what a holder of CAP_SYS_ADMIN in the file's user namespace may
//     read", which for trusted.* is every file: the container's root also holds files the host
//     or an image put there (owned by unmapped ids, or by ids of other tenants in shared
//     lower layers), whose trusted.* (overlay redirects and origins: host paths and file
//     handles) are not the container's to see. Reading is granted only where setting would be,
//     i.e. on files whose owner is mapped in the caller's user namespace and which it may
//     change: what it can read it could have written.
//   - listxattr: under a rule with an `xattr` matcher, the caller's own list plus the granted
//     names present on the file (same permission rule; names the caller's list already has are
//     not repeated; they come after the kernel's, in the kernel's order).
//   - The kernel's sizes: size 0 returns the size needed; a buffer too small is ERANGE; above
//     XATTR_SIZE_MAX the size is clamped. The privileged helper writes the value into the
//     caller's memory through /proc/TID/mem, opened before the first ID_VALID (the same
//     address space ID_VALID vouched for), after the last one; a bad pointer is EFAULT. No
//     pointer of the caller is read twice: the name was copied once, before the decision.
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/openat2.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>

#include "sysvisor/emulator.hpp"
#include "sysvisor/helper.hpp"
#include "sysvisor/pidfd.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::emul::xattr {
namespace {

constexpr std::size_t kMaxValue = 65536;  // XATTR_SIZE_MAX
constexpr std::size_t kMaxList = 65536;   // XATTR_LIST_MAX
constexpr std::size_t kMaxRanges = 64;
constexpr std::size_t kMaxGrants = 16;
constexpr std::size_t kMaxPattern = 256;
constexpr int kCapFowner = 3;

enum class Op : std::uint8_t { Set, Remove, Get, List };

// The caller-side helper's answer to a get or list, sent to the privileged side: the
// result (a length, or -errno) and the bytes.
struct Reply {
  std::int64_t result = 0;
  std::array<char, kMaxList> bytes{};
};
// In a helper child only (each has its own copy of these pages).
Reply g_reply;
std::array<char, kMaxList + sizeof(std::int64_t)> g_packet{};
std::array<char, kMaxList> g_privileged{};
std::array<char, kMaxList> g_out{};

struct Params {
  helper::Caller caller;
  std::array<char, PATH_MAX + 1> path{};
  std::array<char, XATTR_NAME_MAX + 1> name{};
  std::array<char, kMaxValue> value{};
  std::size_t size = 0;
  int flags = 0;
  Op op = Op::Set;
  bool follow = true;
  bool by_fd = false;
  int file_fd = -1;  // the caller's descriptor (pidfd_getfd), for the f* calls
  bool privileged = false;
  bool cap_fowner = false;
  std::array<task::IdRange, kMaxRanges> uid_map{};
  std::size_t uid_ranges = 0;
  // get and list: the caller's buffer and the size it passed; its memory; our result pipe.
  std::uint64_t buf_at = 0;
  std::uint64_t buf_size = 0;
  int mem_fd = -1;
  int maps_fd = -1;  // the caller's /proc/TID/maps: which of its pages it may write
  int result_fd = -1;
  // list: the rule's `xattr` patterns (one that does not fit is left out: fewer names).
  std::array<std::array<char, kMaxPattern>, kMaxGrants> grants{};
  std::size_t ngrants = 0;
};

bool never_granted(const char* name) {
  return std::strcmp(name, "security.capability") == 0 || std::strncmp(name, "system.", 7) == 0;
}

bool mapped(const Params& p, std::uint32_t host_uid) {
  for (std::size_t i = 0; i < p.uid_ranges; ++i) {
    const auto& r = p.uid_map[i];
    if (host_uid >= r.outside && host_uid - r.outside < r.count) return true;
  }
  return false;
}

int act_path(const Params& p, const char* path, bool follow) {
  long rc = 0;
  if (p.op == Op::Remove) {
    rc = follow ? ::removexattr(path, p.name.data()) : ::lremovexattr(path, p.name.data());
  } else {
    rc = follow ? ::setxattr(path, p.name.data(), p.value.data(), p.size, p.flags)
                : ::lsetxattr(path, p.name.data(), p.value.data(), p.size, p.flags);
  }
  return rc == 0 ? 0 : errno;
}

int act_fd(const Params& p, int fd) {
  const long rc = p.op == Op::Remove ? ::fremovexattr(fd, p.name.data())
                                     : ::fsetxattr(fd, p.name.data(), p.value.data(), p.size, p.flags);
  return rc == 0 ? 0 : errno;
}

// get or list on `path` (fd < 0) or `fd`, into `out` of `size` bytes: the length, or -errno.
std::int64_t read_attrs(const Params& p, const char* path, bool follow, int fd, char* out, std::size_t size) {
  ssize_t n = 0;
  if (p.op == Op::Get) {
    if (fd >= 0) {
      n = ::fgetxattr(fd, p.name.data(), out, size);
    } else {
      n = follow ? ::getxattr(path, p.name.data(), out, size) : ::lgetxattr(path, p.name.data(), out, size);
    }
  } else if (fd >= 0) {
    n = ::flistxattr(fd, out, size);
  } else {
    n = follow ? ::listxattr(path, out, size) : ::llistxattr(path, out, size);
  }
  return n < 0 ? -std::int64_t{errno} : std::int64_t{n};
}

// The caller's side: resolve (and, when nothing is granted, act) as the caller. A get or a
// list is always made as the caller too; its answer goes to the privileged side.
[[noreturn]] void as_caller(const Params& p, int sock, int diag) {
  const char* stage = nullptr;
  if (const int err = helper::become_caller(p.caller, false, &stage); err != 0) {
    helper::report(diag, stage, err);
    ::_exit(EPERM);
  }
  const bool reads = p.op == Op::Get || p.op == Op::List;
  if (!reads && !p.privileged) {
    ::_exit(p.by_fd ? act_fd(p, p.file_fd) : act_path(p, p.path.data(), p.follow));
  }
  int fd = -1;
  if (!p.by_fd && p.privileged) {
    open_how how{};
    how.flags = O_PATH | O_CLOEXEC | (p.follow ? 0 : O_NOFOLLOW);
    how.resolve = RESOLVE_NO_MAGICLINKS;
    fd = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, p.path.data(), &how, sizeof how));
    if (fd < 0 && !reads) ::_exit(errno);
  }
  if (!reads) {
    const char byte = 0;
    if (wire::send_with_fd(sock, &byte, 1, fd) < 0) {
      helper::report(diag, "hand the file over", errno);
      ::_exit(EPERM);
    }
    ::_exit(0);
  }
  const std::int64_t result = read_attrs(p, p.path.data(), p.follow, p.by_fd ? p.file_fd : -1,
                                         g_packet.data() + sizeof result, kMaxList);
  std::memcpy(g_packet.data(), &result, sizeof result);
  const std::size_t len = sizeof result + (result > 0 ? static_cast<std::size_t>(result) : 0);
  if (wire::send_with_fd(sock, g_packet.data(), len, fd) < 0) {
    helper::report(diag, "hand the answer over", errno);
    ::_exit(EPERM);
  }
  ::_exit(0);
}

// In the privileged helper: forks the caller-side helper (as_caller) on a new socket pair. Its
// pid, with our end in *ours; -1 after a report.
pid_t fork_caller_side(const Params& p, int diag, int* ours) {
  std::array<int, 2> sp{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0) {
    helper::report(diag, "socketpair", errno);
    return -1;
  }
  const pid_t child = helper::raw_fork();
  if (child < 0) {
    helper::report(diag, "fork the caller-side helper", errno);
    ::close(sp[0]);
    ::close(sp[1]);
    return -1;
  }
  if (child == 0) {
    ::close(sp[0]);
    as_caller(p, sp[1], diag);
  }
  ::close(sp[1]);
  *ours = sp[0];
  return child;
}

// The privileged side of a get or list. `file`: the caller's file (-1 when the caller's lookup
// failed: its answer stands). The result: a length, or -errno.
std::int64_t read_back(const Params& p, int file, const char** bytes) {
  const std::int64_t caller = g_reply.result;
  if (!p.privileged || file < 0 || caller == -EBADF) return caller;  // EBADF: an O_PATH fd of the caller
  struct stat st {};
  if (::fstat(file, &st) != 0 || S_ISLNK(st.st_mode)) return caller;  // never on a symlink itself
  const bool owner = st.st_uid == p.caller.host_fsuid;
  if (!owner && !(p.cap_fowner && mapped(p, st.st_uid))) return caller;
  std::array<char, 64> self{};
  std::snprintf(self.data(), self.size(), "/proc/self/fd/%d", file);
  const char* path = p.by_fd ? nullptr : self.data();
  const int fd = p.by_fd ? file : -1;
  *bytes = g_out.data();
  if (p.op == Op::Get) return read_attrs(p, path, true, fd, g_out.data(), kMaxValue);
  // list: the caller's list, then each granted name present and not listed yet.
  if (caller < 0) return caller;
  auto len = static_cast<std::size_t>(caller);  // ENODATA is not an answer of listxattr
  std::memcpy(g_out.data(), g_reply.bytes.data(), len);
  const std::int64_t all = read_attrs(p, path, true, fd, g_privileged.data(), g_privileged.size());
  if (all <= 0) return static_cast<std::int64_t>(len);
  const auto listed = [&](const char* name) {
    for (std::size_t at = 0; at < static_cast<std::size_t>(caller);) {
      const char* have = g_reply.bytes.data() + at;
      const std::size_t n = ::strnlen(have, static_cast<std::size_t>(caller) - at);
      if (n == std::strlen(name) && std::memcmp(have, name, n) == 0) return true;
      at += n + 1;
    }
    return false;
  };
  for (std::size_t at = 0; at < static_cast<std::size_t>(all);) {
    const char* name = g_privileged.data() + at;
    const std::size_t n = ::strnlen(name, static_cast<std::size_t>(all) - at);
    at += n + 1;
    if (n == 0 || name[n] != '\0' || never_granted(name) || listed(name)) continue;
    bool granted = false;
    for (std::size_t i = 0; i < p.ngrants && !granted; ++i)
      granted = policy::matches_glob(p.grants[i].data(), name);
    if (!granted) continue;
    if (len + n + 1 > kMaxList) return -E2BIG;
    std::memcpy(g_out.data() + len, name, n + 1);
    len += n + 1;
  }
  return static_cast<std::int64_t>(len);
}

// Whether [at, at + len) lies in mappings the caller may write, from its /proc/TID/maps (read
// once, in the helper: no allocation). /proc/TID/mem writes through read-only pages (FOLL_FORCE),
// where the kernel's copy to the caller's buffer fails with EFAULT.
bool writable(int maps, std::uint64_t at, std::uint64_t len) {
  const std::uint64_t end = at + len;
  std::uint64_t need = at;
  std::uint64_t lo = 0;
  std::uint64_t hi = 0;
  int field = 0;  // 0: start, 1: end, 2: permissions, 3: the rest of the line
  int perm = 0;
  bool w = false;
  std::array<char, 4096> buf{};
  ssize_t n = 0;
  const auto hex = [](char c) -> std::uint64_t {
    return c >= 'a' ? static_cast<std::uint64_t>(c - 'a' + 10) : static_cast<std::uint64_t>(c - '0');
  };
  while ((n = ::read(maps, buf.data(), buf.size())) > 0) {
    for (ssize_t i = 0; i < n; ++i) {
      const char c = buf[static_cast<std::size_t>(i)];
      if (field == 0) {
        if (c == '-') {
          field = 1;
        } else {
          lo = lo * 16 + hex(c);
        }
      } else if (field == 1) {
        if (c == ' ') {
          field = 2;
          perm = 0;
        } else {
          hi = hi * 16 + hex(c);
        }
      } else if (field == 2) {
        if (c == ' ') {
          field = 3;
        } else if (perm++ == 1) {
          w = c == 'w';
        }
      } else if (c == '\n') {
        // Mappings come in address order: the range must be covered without a gap.
        if (lo <= need && need < hi) {
          if (!w) return false;
          need = hi;
          if (need >= end) return true;
        }
        lo = hi = 0;
        field = 0;
      }
    }
  }
  return need >= end;
}

// The kernel's sizes (fs/xattr.c getxattr, listxattr), then the copy to the caller's buffer.
std::int64_t answer_read(const Params& p, std::int64_t n, const char* bytes) {
  if (n < 0) return n;
  const std::uint64_t size = std::min<std::uint64_t>(p.buf_size, p.op == Op::Get ? kMaxValue : kMaxList);
  if (p.buf_size == 0) return n;
  if (static_cast<std::uint64_t>(n) > size) return p.buf_size >= kMaxValue ? -E2BIG : -ERANGE;
  if (n == 0) return 0;
  if (p.buf_at == 0 || p.buf_at > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()) - size) {
    return -EFAULT;
  }
  const auto len = static_cast<std::size_t>(n);
  if (!writable(p.maps_fd, p.buf_at, len)) return -EFAULT;
  if (::pwrite(p.mem_fd, bytes, len, static_cast<off_t>(p.buf_at)) != static_cast<ssize_t>(len))
    return -EFAULT;
  return n;
}

// The privileged side: checks ownership and sets or removes the attribute.
int privileged(const void* arg, int diag) {
  const Params& p = *static_cast<const Params*>(arg);
  const helper::Caller& c = p.caller;
  if (!helper::close_other_fds(
          {c.root_fd, c.start_fd, c.user_ns_fd, p.file_fd, p.mem_fd, p.maps_fd, p.result_fd, diag})) {
    helper::report(diag, "close inherited fds", errno);
    return EPERM;
  }
  const bool reads = p.op == Op::Get || p.op == Op::List;
  int file = p.file_fd;
  if (reads) {
    int sock = -1;
    const pid_t child = fork_caller_side(p, diag, &sock);
    if (child < 0) return EPERM;
    const UniqueFd ours(sock);
    int got = -1;
    std::size_t nfds = 0;
    int mflags = 0;
    const ssize_t n = wire::receive_with_fds(sock, g_packet.data(), g_packet.size(), &got, 1, &nfds, &mflags);
    const int code = helper::wait_code(child);
    if (code != 0) return code;
    if (n < static_cast<ssize_t>(sizeof(std::int64_t)) || (mflags & MSG_TRUNC) != 0) {
      helper::report(diag, "receive the caller's answer", n < 0 ? errno : EPROTO);
      return EPERM;
    }
    std::memcpy(&g_reply.result, g_packet.data(), sizeof g_reply.result);
    const auto got_bytes = static_cast<std::size_t>(n) - sizeof(std::int64_t);
    if (g_reply.result > static_cast<std::int64_t>(got_bytes)) {
      helper::report(diag, "the caller's answer", EPROTO);
      return EPERM;
    }
    std::memcpy(g_reply.bytes.data(), g_packet.data() + sizeof(std::int64_t), got_bytes);
    if (!p.by_fd) file = nfds == 1 ? got : -1;
    const char* bytes = g_reply.bytes.data();
    const std::int64_t found = read_back(p, file, &bytes);  // may point `bytes` at its own
    const std::int64_t result = answer_read(p, found, bytes);
    if (::write(p.result_fd, &result, sizeof result) != static_cast<ssize_t>(sizeof result)) {
      helper::report(diag, "write the result", errno);
      return EPERM;
    }
    return 0;
  }
  if (!p.by_fd || !p.privileged) {
    int sock = -1;
    const pid_t child = fork_caller_side(p, diag, &sock);
    if (child < 0) return EPERM;
    const UniqueFd ours(sock);
    file = helper::receive_fd(sock);
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
  XattrJob(helper::Running run, std::unique_ptr<Params> params, mknod::Request req, UniqueFd file,
           UniqueFd mem, UniqueFd result)
      : run_(std::move(run)),
        params_(std::move(params)),
        req_(std::move(req)),
        file_(std::move(file)),
        mem_(std::move(mem)),
        result_(std::move(result)) {}
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
    if (result_ && e.code == 0) {  // a get or a list: its length, or the errno
      std::int64_t v = 0;
      if (::read(result_.get(), &v, sizeof v) != static_cast<ssize_t>(sizeof v)) {
        return Answer::error(EPERM, "xattr: no result from the helper");
      }
      return v < 0 ? Answer::error(static_cast<int>(-v)) : Answer::returning(v);
    }
    return Answer::error(e.code, std::move(e.diagnostic));
  }

 private:
  helper::Running run_;
  std::unique_ptr<Params> params_;  // the helpers have their copy; kept for symmetry of lifetime
  mknod::Request req_;              // the fds the helpers use
  UniqueFd file_;
  UniqueFd mem_;     // the caller's memory (get, list)
  UniqueFd result_;  // the helper's result (get, list)
};

class Xattr final : public Emulation {
 public:
  Xattr(const policy::SyscallInfo& info, Result<mknod::Request> req, Result<UniqueFd> file,
        Result<UniqueFd> mem, Result<UniqueFd> maps)
      : info_(info),
        req_(std::move(req)),
        file_(std::move(file)),
        mem_(std::move(mem)),
        maps_(std::move(maps)) {
    op_ = policy::is_xattr_list(info.nr)                       ? Op::List
          : info.name.find("get") != std::string_view::npos    ? Op::Get
          : info.name.find("remove") != std::string_view::npos ? Op::Remove
                                                               : Op::Set;
  }

  [[nodiscard]] std::uint32_t fields() const override {
    return policy::kFieldPath | (op_ == Op::List ? 0U : policy::kFieldXattrName);
  }

  Result<void> copy(const task::TaskHandle& task, const policy::Call& call) override {
    if (op_ == Op::Get) {  // getxattr(path|fd, name, value, size): written, never read
      buf_at_ = call.args[2];
      size_ = call.args[3];
      return {};
    }
    if (op_ == Op::List) {  // listxattr(path|fd, list, size)
      buf_at_ = call.args[1];
      size_ = call.args[2];
      return {};
    }
    if (op_ == Op::Remove) return {};
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
    if (op_ != Op::List && !ctx.call.xattr_name) return Answer::error(EFAULT);
    const std::string name = op_ == Op::List ? std::string{} : *ctx.call.xattr_name;
    if (op_ != Op::List && name.empty()) return Answer::error(ERANGE);
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
    const bool reads = op_ == Op::Get || op_ == Op::List;
    if (!reads) {
      if (!value_.empty())
        std::memcpy(p->value.data(), value_.data(), value_.size());  // removexattr has none
      p->size = size_;
    }
    p->flags = flags_;
    p->op = op_;
    p->follow = !info_.name.starts_with('l');  // lsetxattr, lgetxattr, ...: not the link's target
    p->by_fd = by_fd;
    p->file_fd = by_fd ? file_->get() : -1;
    // Granted only by a rule that names the attributes, and never the dangerous ones.
    p->privileged = !ctx.rule->match.xattr_names.empty() && !never_granted(p->name.data());
    UniqueFd result_read;
    UniqueFd result_write;
    if (reads) {
      if (!mem_) return Answer::error(EPERM, "xattr: " + mem_.error().message());
      p->buf_at = buf_at_;
      p->buf_size = size_;
      p->mem_fd = mem_->get();
      if (!maps_) return Answer::error(EPERM, "xattr: " + maps_.error().message());
      p->maps_fd = maps_->get();
      for (const auto& g : ctx.rule->match.xattr_names) {
        if (p->ngrants == kMaxGrants || g.size() >= kMaxPattern) continue;
        std::memcpy(p->grants[p->ngrants++].data(), g.c_str(), g.size() + 1);
      }
      std::array<int, 2> pipe{};
      if (::pipe2(pipe.data(), O_CLOEXEC | O_NONBLOCK) != 0) return Answer::error(EPERM, "xattr: pipe");
      result_read.reset(pipe[0]);
      result_write.reset(pipe[1]);
      p->result_fd = result_write.get();
    }
    p->cap_fowner = (req_->creds.cap_effective & (std::uint64_t{1} << kCapFowner)) != 0;
    for (const auto& r : req_->uid_map) {
      if (p->uid_ranges == kMaxRanges) break;
      p->uid_map[p->uid_ranges++] = r;
    }
    auto run = helper::spawn(privileged, p.get());
    if (!run) return Answer::error(EPERM, "xattr: " + run.error().message());
    return std::make_unique<XattrJob>(std::move(*run), std::move(p), std::move(*req_),
                                      by_fd ? std::move(*file_) : UniqueFd{},
                                      reads ? std::move(*mem_) : UniqueFd{}, std::move(result_read));
  }

 private:
  const policy::SyscallInfo& info_;
  Result<mknod::Request> req_;
  Result<UniqueFd> file_;
  Result<UniqueFd> mem_;
  Result<UniqueFd> maps_;
  std::vector<char> value_;
  std::uint64_t size_ = 0;
  std::uint64_t buf_at_ = 0;
  int flags_ = 0;
  Op op_ = Op::Set;
};

// The caller's descriptor itself (same open file), for fsetxattr and fremovexattr.
Result<UniqueFd> caller_fd(const task::TaskHandle& task, std::uint64_t arg) {
  const auto fd = static_cast<std::int32_t>(arg);
  if (fd < 0) return sys_error(EBADF, "fd");
  UniqueFd pidfd = open_thread_pidfd(task.tid());
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
  // get and list write the caller's buffer: its memory, opened before ID_VALID vouches for it.
  const bool reads = info.name.find("get") != std::string_view::npos || policy::is_xattr_list(info.nr);
  Result<UniqueFd> mem = UniqueFd{};
  Result<UniqueFd> maps = UniqueFd{};
  if (reads) {
    UniqueFd fd(::openat(task.proc_dir(), "mem", O_RDWR | O_CLOEXEC));
    if (!fd) {
      mem = sys_error("open /proc/" + std::to_string(task.tid()) + "/mem for writing");
    } else {
      mem = std::move(fd);
    }
    UniqueFd m(::openat(task.proc_dir(), "maps", O_RDONLY | O_CLOEXEC));
    if (!m) {
      maps = sys_error("open /proc/" + std::to_string(task.tid()) + "/maps");
    } else {
      maps = std::move(m);
    }
  }
  return std::make_unique<Xattr>(info, mknod::prepare(task, 0, 0, AT_FDCWD), std::move(file), std::move(mem),
                                 std::move(maps));
}

}  // namespace sysvisor::emul::xattr
