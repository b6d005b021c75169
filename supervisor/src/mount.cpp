// mount and umount2.
//
// mount: a rule with an `fstype` matcher and `action: emulate` grants the types it names, from a
// block device the caller can open, or from an image file its `emulate: {images: [...]}` names
// (sysvisor attaches it to a free loop device, LO_FLAGS_AUTOCLEAR). Two single-threaded helpers:
//   A, the caller (its mount and user namespaces, root, cwd, ids, capabilities): resolves the
//     target and opens the source; every lookup and permission errno is the kernel's; targets on
//     procfs or sysfs are refused (EPERM). It hands both descriptors over (SCM_RIGHTS).
//   B, privileged: fsopen, fsconfig source, CMD_CREATE, fsmount with nosuid,nodev (unless the
//     rule lifts them), mount_setattr(MOUNT_ATTR_IDMAP) to the caller's user namespace, then
//     setns into the caller's mount namespace and move_mount onto A's target descriptor.
// The new mount's unique id is recorded for the session. Not emulated (left to the kernel, which
// checks the caller's own rights): MS_REMOUNT, MS_MOVE and propagation changes, MS_BIND of what the
// rule's `emulate: {bind: [...]}` does not name; under a rule without `fstype`.
//
// Filesystem options (mount's data): split at ',' as the kernel does; each must match one of
// the rule's `emulate: {options: [...]}` globs, else EINVAL (no `options`: any non-empty data is
// EINVAL). B passes each with fsconfig (FSCONFIG_SET_STRING key=value, FSCONFIG_SET_FLAG key),
// before sysvisor's own, which so win anyway; but a caller's option that contradicts a forced
// one is refused (EINVAL) rather than silently overridden: `errors=` other than remount-ro
// (forced on ext2/3/4; errors=panic would take the host down on any filesystem), `rw` under a
// forced read-only. Never passed, whatever the rule says (policy::refused_mount_option, and the
// reader refuses a glob that could match one): options naming another device or a path, which
// B would open as root in the host's namespaces (ext4 journal_path, xfs logdev/rtdev, btrfs
// device, overlay lowerdir; any value holding '/'), owners (uid, gid, resuid), security labels
// (context=, smackfs*), dax, btrfs fatal_errors, and `source`. `ro` makes the mount read-only
// (the loop device too), as MS_RDONLY does. nosuid,nodev and the idmapping are mount
// attributes, out of the options' reach.
//
// Bind mounts: MS_BIND with a source that is a host path the rule's `bind` names: B clones it
// (open_tree, not recursive), sets nosuid,nodev (unless lifted) and ro (unless `readonly: false`),
// and attaches it onto A's target, not idmapped.
//
// Who: only a caller holding CAP_SYS_ADMIN over the mount namespace the mount goes into (the
// rule is written once, in Mount::start()); every other caller gets the kernel's own answer.
//
// umount2: of a mount sysvisor made for this session (the target, resolved as the caller, is the
// root of a mount whose id was recorded), A unmounts it as the caller (such a mount is not locked:
// the caller's rights suffice) and the id is forgotten. Anything else goes to the kernel.
#include <fcntl.h>
#include <linux/limits.h>
#include <linux/loop.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <cstring>
#include <ctime>

#include "sysvisor/capable.hpp"
#include "sysvisor/emulator.hpp"
#include "sysvisor/helper.hpp"
#include "sysvisor/wire.hpp"

#ifndef STATX_ATTR_MOUNT_ROOT
#define STATX_ATTR_MOUNT_ROOT 0x00002000U
#endif
#ifndef STATX_MNT_ID_UNIQUE
#define STATX_MNT_ID_UNIQUE 0x00004000U
#endif

namespace sysvisor::emul::mount {
namespace {

constexpr int kLetKernel = 254;  // B's exit code: answer CONTINUE
constexpr std::size_t kMaxImages = 16;
constexpr std::size_t kMaxPattern = 256;
constexpr std::size_t kMaxMounts = 256;
constexpr std::size_t kMaxOptions = 64;
constexpr std::size_t kMaxOption = 256;
constexpr std::uint64_t kNotEmulated =
    MS_REMOUNT | MS_BIND | MS_MOVE | MS_SHARED | MS_PRIVATE | MS_SLAVE | MS_UNBINDABLE;

struct Params {
  helper::Caller caller;
  bool umount = false;
  bool bind = false;  // source: a host path the rule grants (open_tree in B)
  std::array<char, PATH_MAX + 1> target{};
  std::array<char, PATH_MAX + 1> source{};
  std::array<char, 256> fstype{};
  bool readonly = false;
  bool ext = false;  // ext2/3/4: errors=remount-ro forced (an image may ask for errors=panic)
  std::uint64_t attrs = 0;
  std::array<std::array<char, kMaxPattern>, kMaxImages> images{};
  std::size_t nimages = 0;
  // The rule's `source` and `target` patterns (decide() matched them on the names the caller
  // wrote): B matches them again on the paths the opened descriptors have (path_in_root).
  // A pattern that does not fit is left out: fewer matches, never more.
  std::array<std::array<char, kMaxPattern>, kMaxImages> sources{};
  std::array<std::array<char, kMaxPattern>, kMaxImages> targets{};
  std::size_t nsources = 0;
  std::size_t ntargets = 0;
  bool match_sources = false;
  bool match_targets = false;
  int result_fd = -1;
  int umount_flags = 0;
  std::array<std::uint64_t, kMaxMounts> ours{};
  std::size_t nours = 0;
  // The caller's data options the rule allows, in order: key, and value after the first '='.
  std::array<std::array<char, kMaxOption>, kMaxOptions> option_keys{};
  std::array<std::array<char, kMaxOption>, kMaxOptions> option_values{};
  std::array<bool, kMaxOptions> option_has_value{};
  std::size_t noptions = 0;
};

bool on_proc_or_sys(int fd) {
  struct statfs sfs {};
  if (::fstatfs(fd, &sfs) != 0) return true;
  return sfs.f_type == PROC_SUPER_MAGIC || sfs.f_type == SYSFS_MAGIC;
}

int open_in_root(const char* path, int flags) {
  open_how how{};
  how.flags = static_cast<std::uint64_t>(flags) | O_CLOEXEC;
  how.resolve = RESOLVE_NO_MAGICLINKS;
  return static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, path, &how, sizeof how));
}

// umount2 in A, as the caller: a mount sysvisor made is not locked, so the caller's own rights
// unmount it (and a racing thread that renames the path can only make the caller unmount what
// it could unmount itself). A descriptor on the mount would keep it busy: closed first.
int umount_as_caller(const Params& p) {
  const int nofollow = (p.umount_flags & UMOUNT_NOFOLLOW) != 0 ? O_NOFOLLOW : 0;
  const int target = open_in_root(p.target.data(), O_PATH | nofollow);
  if (target < 0) return kLetKernel;  // the kernel's own errno
  struct statx stx {};
  const bool root =
      ::statx(target, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, STATX_MNT_ID_UNIQUE, &stx) == 0 &&
      (stx.stx_attributes & STATX_ATTR_MOUNT_ROOT) != 0 && (stx.stx_mask & STATX_MNT_ID_UNIQUE) != 0;
  ::close(target);
  const std::uint64_t* end = p.ours.data() + p.nours;
  if (!root || std::find(p.ours.data(), end, stx.stx_mnt_id) == end) return kLetKernel;
  if (::umount2(p.target.data(), p.umount_flags) != 0) return errno;
  [[maybe_unused]] const ssize_t w = ::write(p.result_fd, &stx.stx_mnt_id, sizeof stx.stx_mnt_id);
  return 0;
}

// A: the caller's side.
[[noreturn]] void as_caller(const Params& p, int sock, int diag) {
  const char* stage = nullptr;
  if (const int err = helper::become_caller(p.caller, true, &stage); err != 0) {
    helper::report(diag, stage, err);
    ::_exit(EPERM);
  }
  const char byte = 0;
  if (p.umount) ::_exit(umount_as_caller(p));
  const int target = open_in_root(p.target.data(), O_PATH);
  if (target < 0) ::_exit(errno);
  if (on_proc_or_sys(target)) ::_exit(EPERM);
  if (p.bind) {
    if (wire::send_with_fd(sock, &byte, 1, target) < 0) ::_exit(EPERM);
    ::_exit(0);
  }
  struct stat st {};
  if (::fstat(target, &st) != 0) ::_exit(errno);
  if (!S_ISDIR(st.st_mode)) ::_exit(ENOTDIR);
  const int source = open_in_root(p.source.data(), (p.readonly ? O_RDONLY : O_RDWR) | O_NOCTTY);
  if (source < 0) ::_exit(errno);
  if (wire::send_with_fd(sock, &byte, 1, target) < 0 || wire::send_with_fd(sock, &byte, 1, source) < 0) {
    helper::report(diag, "hand the target and source over", errno);
    ::_exit(EPERM);
  }
  ::_exit(0);
}

using Path = std::array<char, PATH_MAX + 1>;

// What /proc/self/fd/FD names (this helper's own /proc, before it joins the caller's mount
// namespace): the kernel's d_path of the open file. Its length, or -1.
ssize_t fd_path(int fd, Path& out) {
  std::array<char, 64> self{};
  std::snprintf(self.data(), self.size(), "/proc/self/fd/%d", fd);
  const ssize_t n = ::readlink(self.data(), out.data(), out.size() - 1);
  if (n <= 0 || static_cast<std::size_t>(n) >= out.size() - 1) return -1;
  out[static_cast<std::size_t>(n)] = '\0';
  return n;
}

// Check and act on the same objects (issue 13, finding 2). The caller's root and cwd were
// opened once, before ID_VALID; A chrooted to that root descriptor and resolved the source
// and target there into descriptors; B mounts those descriptors. So every allow-list (the
// rule's `images`, `source` and `target` patterns) is decided on the same descriptors too:
// the path, inside the root descriptor, of the file `fd` is open on. It is the file's d_path
// less the root's, and it counts only when resolving it again from the root descriptor,
// without symlinks, reaches that very file (device, inode, mount). A name read twice (the
// caller's /proc/TID/root as a string, which a second thread can chroot between two reads)
// decides nothing. False when the file has no such path (outside the root, deleted, renamed).
bool path_in_root(int root, int fd, Path& inside) {
  Path root_path{};
  Path path{};
  const ssize_t nr = fd_path(root, root_path);
  const ssize_t n = fd_path(fd, path);
  if (nr <= 0 || n <= 0) return false;
  const auto rlen = static_cast<std::size_t>(nr);
  const char* rest = path.data();
  if (!(rlen == 1 && root_path[0] == '/')) {
    if (static_cast<std::size_t>(n) < rlen || std::memcmp(path.data(), root_path.data(), rlen) != 0 ||
        (path[rlen] != '\0' && path[rlen] != '/'))
      return false;
    rest = path[rlen] == '\0' ? "/" : path.data() + rlen;
  }
  std::memmove(inside.data(), rest, std::strlen(rest) + 1);
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  const int again = static_cast<int>(::syscall(SYS_openat2, root, inside.data(), &how, sizeof how));
  if (again < 0) return false;
  struct statx a {};
  struct statx b {};
  const unsigned mask = STATX_INO | STATX_MNT_ID_UNIQUE;
  const bool same = ::statx(again, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask, &a) == 0 &&
                    ::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, mask, &b) == 0 &&
                    (a.stx_mask & b.stx_mask & STATX_MNT_ID_UNIQUE) != 0 && a.stx_mnt_id == b.stx_mnt_id &&
                    a.stx_dev_major == b.stx_dev_major && a.stx_dev_minor == b.stx_dev_minor &&
                    a.stx_ino == b.stx_ino;
  ::close(again);
  return same;
}

template <std::size_t N>
bool any_of(const std::array<std::array<char, kMaxPattern>, N>& patterns, std::size_t n, const char* text) {
  for (std::size_t i = 0; i < n; ++i) {
    if (policy::matches_glob(patterns[i].data(), text)) return true;
  }
  return false;
}

// The target: the rule's `target` patterns, on the path the target descriptor has.
bool allowed_target(const Params& p, int target) {
  if (!p.match_targets) return true;
  Path inside{};
  return path_in_root(p.caller.root_fd, target, inside) && any_of(p.targets, p.ntargets, inside.data());
}

// The source descriptor (an image file when `image`, else a block device): the rule's `images`
// (images only) and `source` patterns, on the path it has.
bool allowed_source(const Params& p, int source, bool image) {
  if (!image && !p.match_sources) return true;
  Path inside{};
  if (!path_in_root(p.caller.root_fd, source, inside)) return false;
  if (image && !any_of(p.images, p.nimages, inside.data())) return false;
  return !p.match_sources || any_of(p.sources, p.nsources, inside.data());
}

// A free loop device backed by `backing`; its path in `out`, its fd returned (or -errno).
int attach_loop(const Params& p, int backing, std::array<char, 64>& out, int diag) {
  const int ctl = ::open("/dev/loop-control", O_RDWR | O_CLOEXEC);
  if (ctl < 0) {
    helper::report(diag, "open /dev/loop-control", errno);
    return -EPERM;
  }
  for (int attempt = 0; attempt < 16; ++attempt) {
    const int n = ::ioctl(ctl, LOOP_CTL_GET_FREE);
    if (n < 0) {
      helper::report(diag, "LOOP_CTL_GET_FREE", errno);
      return -EPERM;
    }
    std::snprintf(out.data(), out.size(), "/dev/loop%d", n);
    const int loop = ::open(out.data(), O_RDWR | O_CLOEXEC);
    if (loop < 0) {
      // A device LOOP_CTL_GET_FREE just created: devtmpfs adds its node a moment later.
      const timespec pause{0, 20'000'000};
      ::nanosleep(&pause, nullptr);
      continue;
    }
    loop_config cfg{};
    cfg.fd = static_cast<std::uint32_t>(backing);
    cfg.info.lo_flags = static_cast<std::uint32_t>(LO_FLAGS_AUTOCLEAR) |
                        (p.readonly ? static_cast<std::uint32_t>(LO_FLAGS_READ_ONLY) : 0U);
    if (::ioctl(loop, LOOP_CONFIGURE, &cfg) == 0) {
      ::close(ctl);
      return loop;
    }
    const int err = errno;
    ::close(loop);
    if (err != EBUSY) {
      helper::report(diag, "LOOP_CONFIGURE", err);
      return -EPERM;
    }
  }
  helper::report(diag, "no free loop device", EBUSY);
  return -EPERM;
}

int fail_with(int diag, const char* stage, int err) {
  helper::report(diag, stage, err);
  return EPERM;
}

// Attaches the detached mount `mnt` onto `target` in the caller's mount namespace; records its id.
int attach(const Params& p, int mnt, int target, int diag) {
  struct statx stx {};
  if (::statx(mnt, "", AT_EMPTY_PATH, STATX_MNT_ID_UNIQUE, &stx) != 0 ||
      (stx.stx_mask & STATX_MNT_ID_UNIQUE) == 0)
    return fail_with(diag, "the mount's id (statx)", errno);
  if (::setns(p.caller.mnt_ns_fd, CLONE_NEWNS) != 0)
    return fail_with(diag, "join the caller's mount namespace", errno);
  if (::syscall(SYS_move_mount, mnt, "", target, "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) !=
      0) {
    const int err = errno;
    if (err == ENOTDIR || err == EISDIR) return err;  // a file onto a directory, or the reverse
    return fail_with(diag, "attach the mount (move_mount)", err);
  }
  [[maybe_unused]] const ssize_t w = ::write(p.result_fd, &stx.stx_mnt_id, sizeof stx.stx_mnt_id);
  return 0;
}

// A bind mount of the host path the rule grants: a clone of it (not recursive), with the
// forced attributes, not idmapped (host owners stay as the kernel maps them: unmapped owners
// show as nobody, and the container writes only what its own ids may).
int do_bind(const Params& p, int target, int diag) {
  const int tree = static_cast<int>(
      ::syscall(SYS_open_tree, AT_FDCWD, p.source.data(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC));
  if (tree < 0) return fail_with(diag, "open_tree the host path", errno);
  mount_attr attr{};
  attr.attr_set = p.attrs;
  if (::syscall(SYS_mount_setattr, tree, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
    return fail_with(diag, "set the bind mount's attributes", errno);
  return attach(p, tree, target, diag);
}

int do_mount(const Params& p, int target, int source, int diag) {
  struct stat st {};
  if (::fstat(source, &st) != 0) return fail_with(diag, "stat the source", errno);
  std::array<char, 64> src{};
  int loop = -1;
  if (S_ISBLK(st.st_mode)) {
    if (!allowed_source(p, source, false)) return EPERM;
    std::snprintf(src.data(), src.size(), "/proc/self/fd/%d", source);
  } else if (S_ISREG(st.st_mode)) {
    if (!allowed_source(p, source, true)) return EPERM;
    loop = attach_loop(p, source, src, diag);
    if (loop < 0) return -loop;
  } else {
    return ENOTBLK;
  }
  const int fs = static_cast<int>(::syscall(SYS_fsopen, p.fstype.data(), FSOPEN_CLOEXEC));
  if (fs < 0) return errno;  // ENODEV: no such filesystem type
  if (::syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "source", src.data(), 0) != 0) return errno;
  for (std::size_t i = 0; i < p.noptions; ++i) {  // the caller's, then ours: ours win
    const long rc = p.option_has_value[i]
                        ? ::syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, p.option_keys[i].data(),
                                    p.option_values[i].data(), 0)
                        : ::syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, p.option_keys[i].data(), nullptr, 0);
    if (rc != 0) return errno;  // the filesystem's own answer (EINVAL for an unknown option or value)
  }
  if (p.readonly && ::syscall(SYS_fsconfig, fs, FSCONFIG_SET_FLAG, "ro", nullptr, 0) != 0) return errno;
  if (p.ext && ::syscall(SYS_fsconfig, fs, FSCONFIG_SET_STRING, "errors", "remount-ro", 0) != 0) return errno;
  if (::syscall(SYS_fsconfig, fs, FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) return errno;
  const int mnt = static_cast<int>(::syscall(SYS_fsmount, fs, FSMOUNT_CLOEXEC, p.attrs));
  if (mnt < 0) return fail_with(diag, "fsmount", errno);
  if (loop >= 0) ::close(loop);  // the superblock holds the device; AUTOCLEAR frees it at umount
  if (p.caller.join_user_ns) {
    mount_attr attr{};
    attr.attr_set = MOUNT_ATTR_IDMAP;
    attr.userns_fd = static_cast<std::uint64_t>(p.caller.user_ns_fd);
    if (::syscall(SYS_mount_setattr, mnt, "", AT_EMPTY_PATH, &attr, sizeof attr) != 0)
      return fail_with(diag, "idmap the mount (mount_setattr)", errno);
  }
  return attach(p, mnt, target, diag);
}

// B: the privileged side.
int privileged(const void* arg, int diag) {
  const Params& p = *static_cast<const Params*>(arg);
  const helper::Caller& c = p.caller;
  if (!helper::close_other_fds({c.root_fd, c.start_fd, c.user_ns_fd, c.mnt_ns_fd, p.result_fd, diag}))
    return fail_with(diag, "close inherited fds", errno);
  std::array<int, 2> sp{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0)
    return fail_with(diag, "socketpair", errno);
  const pid_t child = helper::raw_fork();
  if (child < 0) return fail_with(diag, "fork the caller-side helper", errno);
  if (child == 0) {
    ::close(sp[0]);
    as_caller(p, sp[1], diag);
  }
  ::close(sp[1]);
  if (p.umount) return helper::wait_code(child);  // done by the caller itself
  const int target = helper::receive_fd(sp[0]);
  const int source = target < 0 || p.bind ? -1 : helper::receive_fd(sp[0]);
  const int code = helper::wait_code(child);
  if (code != 0) return code;  // the caller's errno (ENOENT, EACCES, ENOTDIR, EPERM, ...)
  if (target < 0 || (!p.bind && source < 0)) return fail_with(diag, "receive the descriptors", EPROTO);
  if (!allowed_target(p, target)) return EPERM;
  return p.bind ? do_bind(p, target, diag) : do_mount(p, target, source, diag);
}

class MountJob final : public Job {
 public:
  MountJob(helper::Running run, std::unique_ptr<Params> params, mknod::Request req, UniqueFd result,
           bool umount)
      : run_(std::move(run)),
        params_(std::move(params)),
        req_(std::move(req)),
        result_(std::move(result)),
        umount_(umount) {}
  ~MountJob() override {
    if (run_.pidfd) {
      helper::kill(run_);
      (void)helper::reap(run_);
    }
  }
  MountJob(const MountJob&) = delete;
  MountJob& operator=(const MountJob&) = delete;
  [[nodiscard]] int pidfd() const override { return run_.pidfd.get(); }
  void kill() override { helper::kill(run_); }
  Answer finish(SessionState& state) override {
    helper::Exit e = helper::reap(run_);
    std::uint64_t id = 0;
    if (::read(result_.get(), &id, sizeof id) == static_cast<ssize_t>(sizeof id)) {
      if (umount_) {
        std::erase(state.mounts, id);
      } else {
        state.mounts.push_back(id);
      }
    }
    if (e.code == kLetKernel) return Answer::let_kernel_decide();
    return Answer::error(e.code, std::move(e.diagnostic));
  }

 private:
  helper::Running run_;
  std::unique_ptr<Params> params_;
  mknod::Request req_;
  UniqueFd result_;
  bool umount_ = false;
};

bool under(const std::string& path, std::string_view dir) {
  return path == dir || (path.starts_with(dir) && path.size() > dir.size() && path[dir.size()] == '/');
}

class Mount final : public Emulation {
 public:
  Mount(const policy::SyscallInfo& info, Result<mknod::Request> req)
      : umount_(info.family == policy::Family::Umount), req_(std::move(req)) {}

  [[nodiscard]] std::uint32_t fields() const override {
    return policy::kFieldTarget | policy::kFieldPath |
           (umount_ ? 0U : policy::kFieldSource | policy::kFieldFstype);
  }

  Result<void> copy(const task::TaskHandle& task, const policy::Call& call) override {
    if (umount_ || call.args[4] == 0 || (call.args[3] & kNotEmulated) != 0) return {};
    // mount's data (filesystem options): the kernel copies up to a page.
    auto data = task::read_string(task.mem(), call.args[4], 4096);
    if (!data) {
      if (data.error().err == ENAMETOOLONG) {  // no NUL within a page: options, not empty
        data_empty_ = false;
        data_too_long_ = true;
        return {};
      }
      return std::unexpected(data.error());
    }
    data_empty_ = data->empty();
    data_ = std::move(*data);
    return {};
  }

  Started start(const Context& ctx) override {
    const std::uint64_t flags = ctx.call.args[umount_ ? 1 : 3];
    const policy::MountGrant grant = ctx.rule->mount.value_or(policy::MountGrant{});
    const policy::BindGrant* bind = nullptr;
    if (!umount_ && (flags & MS_BIND) != 0 && (flags & (MS_REMOUNT | MS_MOVE)) == 0 && ctx.call.source &&
        !ctx.call.source->empty() && ctx.call.source->front() == '/') {
      const std::string host = policy::normalize_path("/", *ctx.call.source);
      for (const auto& b : grant.binds) {
        if (b.host == host) bind = &b;
      }
    }
    if (!umount_ && bind == nullptr) {
      // What a user namespace may do itself, and what the rule does not grant: the kernel's.
      if ((flags & kNotEmulated) != 0 || ctx.rule->match.fstypes.empty()) return Answer::let_kernel_decide();
      // A NULL source (or type): the kernel says EINVAL ("no source specified"); bad pointers
      // were answered EFAULT when copied.
      if (!ctx.call.fstype || !ctx.call.source) return Answer::error(EINVAL);
      if (ctx.call.args[4] != 0 && !data_empty_) {
        // Every option must be one the rule allows (policy::mount_option_refusal): EINVAL, as
        // the kernel answers an option it does not know.
        if (data_too_long_) return Answer::error(EINVAL);
        const bool forced_ro = (flags & MS_RDONLY) != 0 || grant.readonly;
        for (const std::string_view option : policy::split_mount_options(data_)) {
          if (!policy::mount_option_refusal(option, grant.options, forced_ro).empty())
            return Answer::error(EINVAL);
        }
      }
    }
    if (ctx.raw_path.empty() || !ctx.call.target) return Answer::error(ENOENT);
    if (!req_) return Answer::error(EPERM, "mount: " + req_.error().message());
    // THE RULE, the kernel's own (fs/namespace.c, may_mount()): mount and umount2 need
    // CAP_SYS_ADMIN over the mount namespace the mount goes into, i.e. in the user namespace
    // that owns it; CAP_SYS_ADMIN in the caller's own user namespace says nothing about the
    // host's mount table (`unshare -Ur` has every capability there and no mount namespace of
    // its own). Asked of what prepare() opened before ID_VALID: the caller's ns/user, ns/mnt
    // and host-view euid and CapEff; the helpers join exactly that ns/mnt.
    //   - A caller in our own (the initial) user namespace: the kernel alone decides (CONTINUE):
    //     host root has the real privilege, anyone else gets the kernel's EPERM.
    //   - A caller not capable over its mount namespace: the kernel's own answer (CONTINUE:
    //     it re-checks with the caller's credentials, so it grants nothing).
    //   - Only a caller capable there is emulated, and only into that namespace.
    if (req_->same_user_ns) return Answer::let_kernel_decide();
    const caps::Subject subject{req_->user_ns.get(), req_->creds.uid[1], req_->creds.cap_effective};
    const auto capable = caps::capable_over(subject, req_->mnt_ns.get(), caps::kSysAdmin);
    if (!capable) return Answer::error(EPERM, "mount: " + capable.error().message());
    if (!*capable) return Answer::let_kernel_decide();
    if (!umount_ && (under(*ctx.call.target, "/proc") || under(*ctx.call.target, "/sys")))
      return Answer::error(EPERM);
    const bool relative =
        ctx.raw_path[0] != '/' || (!umount_ && bind == nullptr && !ctx.call.source->starts_with('/'));
    auto caller = helper::caller_of(*req_, relative);
    if (!caller) {
      const int err = caller.error().err;
      if (err == EBADF || err == ENOTDIR || err == ENOENT) return Answer::error(err);
      return Answer::error(EPERM, "mount: " + caller.error().message());
    }
    auto p = std::make_unique<Params>();
    p->caller = *caller;
    p->umount = umount_;
    if (ctx.raw_path.size() >= p->target.size()) return Answer::error(ENAMETOOLONG);
    std::memcpy(p->target.data(), ctx.raw_path.c_str(), ctx.raw_path.size() + 1);
    if (!umount_) {  // umount2 acts with the caller's own rights (umount_as_caller)
      const auto& targets = ctx.rule->match.targets;
      p->match_targets = !targets.empty();
      for (const auto& g : targets) {
        if (p->ntargets == p->targets.size() || g.size() >= kMaxPattern) continue;
        std::memcpy(p->targets[p->ntargets++].data(), g.c_str(), g.size() + 1);
      }
    }
    if (umount_) {
      p->umount_flags = static_cast<int>(flags);
      for (const std::uint64_t id : ctx.state.mounts) {
        if (p->nours == kMaxMounts) break;
        p->ours[p->nours++] = id;
      }
      if (p->nours == 0) return Answer::let_kernel_decide();
    } else if (ctx.state.mounts.size() >= kMaxMounts) {
      // The container's own limit, as a full mount table would answer (the umount2 emulation
      // can name only this many as its own).
      return Answer::error(ENOSPC);
    } else if (bind != nullptr) {
      p->bind = true;
      if (bind->host.size() >= p->source.size()) return Answer::error(ENAMETOOLONG);
      std::memcpy(p->source.data(), bind->host.c_str(), bind->host.size() + 1);
      p->readonly = bind->readonly || grant.readonly || (flags & MS_RDONLY) != 0;
      p->attrs = (grant.allow_suid ? 0U : MOUNT_ATTR_NOSUID) | (grant.allow_dev ? 0U : MOUNT_ATTR_NODEV) |
                 (p->readonly ? MOUNT_ATTR_RDONLY : 0U) |
                 ((flags & MS_NOSUID) != 0 ? MOUNT_ATTR_NOSUID : 0U) |
                 ((flags & MS_NODEV) != 0 ? MOUNT_ATTR_NODEV : 0U) |
                 ((flags & MS_NOEXEC) != 0 ? MOUNT_ATTR_NOEXEC : 0U);
    } else {
      const std::string& source = *ctx.call.source;
      const std::string& fstype = *ctx.call.fstype;
      if (source.empty()) return Answer::error(ENOENT);
      if (source.size() >= p->source.size() || fstype.size() >= p->fstype.size())
        return Answer::error(ENAMETOOLONG);
      std::memcpy(p->source.data(), source.c_str(), source.size() + 1);
      std::memcpy(p->fstype.data(), fstype.c_str(), fstype.size() + 1);
      p->readonly = (flags & MS_RDONLY) != 0 || grant.readonly;
      p->ext = fstype == "ext2" || fstype == "ext3" || fstype == "ext4";
      // The options start() checked above; `ro` and `rw` are the mount's read-only state.
      for (const std::string_view option :
           policy::split_mount_options(data_empty_ ? std::string_view{} : data_)) {
        if (option == "ro") {
          p->readonly = true;
          continue;
        }
        if (option == "rw") continue;
        const auto eq = option.find('=');
        const std::string_view key = option.substr(0, eq);
        const std::string_view value =
            eq == std::string_view::npos ? std::string_view{} : option.substr(eq + 1);
        if (p->noptions == kMaxOptions || key.size() >= kMaxOption || value.size() >= kMaxOption)
          return Answer::error(EINVAL);
        // (A flag option's value is an empty view with no data: memcpy must not see it.)
        if (!key.empty()) std::memcpy(p->option_keys[p->noptions].data(), key.data(), key.size());
        if (!value.empty()) std::memcpy(p->option_values[p->noptions].data(), value.data(), value.size());
        p->option_has_value[p->noptions] = eq != std::string_view::npos;
        ++p->noptions;
      }
      p->attrs = (grant.allow_suid ? 0U : MOUNT_ATTR_NOSUID) | (grant.allow_dev ? 0U : MOUNT_ATTR_NODEV) |
                 (p->readonly ? MOUNT_ATTR_RDONLY : 0U) |
                 ((flags & MS_NOEXEC) != 0 ? MOUNT_ATTR_NOEXEC : 0U) |
                 ((flags & MS_NOSUID) != 0 ? MOUNT_ATTR_NOSUID : 0U) |
                 ((flags & MS_NODEV) != 0 ? MOUNT_ATTR_NODEV : 0U) |
                 ((flags & MS_NOATIME) != 0 ? MOUNT_ATTR_NOATIME : 0U) |
                 ((flags & MS_NODIRATIME) != 0 ? MOUNT_ATTR_NODIRATIME : 0U);
      for (const auto& g : grant.images) {
        if (p->nimages == kMaxImages || g.size() >= kMaxPattern) continue;
        std::memcpy(p->images[p->nimages++].data(), g.c_str(), g.size() + 1);
      }
      const auto& sources = ctx.rule->match.sources;
      p->match_sources = !sources.empty();
      for (const auto& g : sources) {
        if (p->nsources == p->sources.size() || g.size() >= kMaxPattern) continue;
        std::memcpy(p->sources[p->nsources++].data(), g.c_str(), g.size() + 1);
      }
    }
    std::array<int, 2> result{};
    if (::pipe2(result.data(), O_CLOEXEC | O_NONBLOCK) != 0) return Answer::error(EPERM, "mount: pipe");
    UniqueFd result_read(result[0]);
    UniqueFd result_write(result[1]);
    p->result_fd = result_write.get();
    auto run = helper::spawn(privileged, p.get());
    if (!run) return Answer::error(EPERM, "mount: " + run.error().message());
    return std::make_unique<MountJob>(std::move(*run), std::move(p), std::move(*req_), std::move(result_read),
                                      umount_);
  }

 private:
  bool umount_ = false;
  bool data_empty_ = true;
  bool data_too_long_ = false;
  std::string data_;  // mount's data, copied once (copy())
  Result<mknod::Request> req_;
};

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& /*call*/) {
  // The caller's root, cwd and namespaces, opened once: every check and every act uses these.
  return std::make_unique<Mount>(info, mknod::prepare(task, 0, 0, AT_FDCWD));
}

}  // namespace sysvisor::emul::mount
