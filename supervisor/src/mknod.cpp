#include "sysvisor/mknod.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <linux/openat2.h>
#include <sched.h>
#include <sys/fsuid.h>
#include <sys/inotify.h>
#include <sys/ioctl.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <csignal>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>

#include "sysvisor/capable.hpp"
#include "sysvisor/helper.hpp"
#include "sysvisor/mount_api.hpp"
#include "sysvisor/pidfd.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::mknod {
namespace {

// Newer than Debian 12's headers (kernel >= 6.8 for statmount and unique mount ids, 6.12 for
// NS_GET_MNTNS_ID and statmount in another namespace).
constexpr unsigned long kNsGetMntnsId = _IOR(0xb7, 0x5, std::uint64_t);
constexpr long kSysStatmount = 457;
constexpr std::uint64_t kStatmountSbBasic = 0x1;
constexpr unsigned kStatxMntIdUnique = 0x4000U;
int own_user_ns_fd();

struct MntIdReq {
  std::uint32_t size;
  std::uint32_t spare;
  std::uint64_t mnt_id;
  std::uint64_t param;
  std::uint64_t mnt_ns_id;
};

constexpr std::size_t kMaxGroups = 256;

// Where a helper's own machinery failed; reported through the diag pipe.
enum Stage : int {
  kCloseFds = 1,
  kSocketPair,
  kForkCaller,
  kChroot,
  kChdirStart,
  kGetcwd,
  kDropGroups,
  kJoinUserNs,
  kSetGroups,
  kSetGid,
  kSetUid,
  kCapabilities,
  kSendPlaceholder,
  kStatPlaceholder,
  kOwnNode,
  kJoinMountNs,
  kMoveMount,
  kCallerDied,
};

const char* stage_name(int stage) {
  switch (stage) {
    case kCloseFds:
      return "close inherited fds";
    case kSocketPair:
      return "socketpair";
    case kForkCaller:
      return "fork the caller-side helper";
    case kChroot:
      return "chroot to the caller's root";
    case kChdirStart:
      return "chdir to the caller's cwd or dirfd";
    case kGetcwd:
      return "getcwd of the start directory";
    case kDropGroups:
      return "drop supplementary groups";
    case kJoinUserNs:
      return "join the caller's user namespace";
    case kSetGroups:
      return "set the caller's groups";
    case kSetGid:
      return "set the caller's gids";
    case kSetUid:
      return "set the caller's uids";
    case kCapabilities:
      return "set the caller's capabilities";
    case kSendPlaceholder:
      return "hand the placeholder over";
    case kStatPlaceholder:
      return "stat the placeholder";
    case kOwnNode:
      return "set the device node's owner and mode";
    case kJoinMountNs:
      return "join the caller's mount namespace";
    case kMoveMount:
      return "attach the device node (move_mount)";
    case kCallerDied:
      return "caller-side helper died";
    default:
      return "unknown stage";
  }
}

// Everything the helpers need, laid out before fork: after fork they only make syscalls
// (the daemon may have threads, so no allocation, no locks, no stdio in the children).
struct Params {
  std::array<char, PATH_MAX + 1> dir{};
  std::array<char, PATH_MAX + 1> base{};
  std::array<char, 96> node{};
  bool trailing_slash = false;
  bool relative = false;
  bool join_user_ns = false;
  bool native = false;     // the caller makes the real mknodat (no CAP_MKNOD, or a whiteout)
  bool check_dir = false;  // a path rule decided: the parent must resolve to expect_dir
  std::array<char, PATH_MAX + 1> expect_dir{};
  int root_fd = -1, start_fd = -1, user_ns_fd = -1, mnt_ns_fd = -1;
  int tree_fd = -1, devdir_fd = -1, diag_fd = -1;
  std::array<std::uint32_t, 4> uid{};
  std::array<std::uint32_t, 4> gid{};
  std::array<gid_t, kMaxGroups> groups{};
  std::size_t ngroups = 0;
  std::uint64_t caps = 0;
  mode_t umask = 022;
  mode_t mode = 0;
  std::uint32_t dev = 0;
};

struct DiagRecord {
  int stage;
  int err;
};

void report(const Params& p, int stage, int err) {
  const DiagRecord rec{stage, err};
  [[maybe_unused]] const ssize_t n = ::write(p.diag_fd, &rec, sizeof rec);
}

[[noreturn]] void fail(const Params& p, int stage) {
  const int err = errno;
  report(p, stage, err);
  // What the caller sees when our machinery fails: what the kernel would have said
  // without emulation.
  ::_exit(EPERM);
}

// Helper A: everything the caller could do itself, done as the caller.
[[noreturn]] void run_as_caller(const Params& p, int sock) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  if (::fchdir(p.root_fd) != 0 || ::chroot(".") != 0) fail(p, kChroot);
  if (p.relative) {
    if (::fchdir(p.start_fd) != 0) fail(p, kChdirStart);
    // The kernel prefixes "(unreachable)" when the directory is not below our (the
    // caller's) root: the caller is then outside its container and we do not follow.
    std::array<char, PATH_MAX + 32> cwd{};
    if (::syscall(SYS_getcwd, cwd.data(), cwd.size()) < 0) fail(p, kGetcwd);
    if (cwd[0] != '/') ::_exit(EPERM);
  } else if (::chdir("/") != 0) {
    fail(p, kChdirStart);
  }
  if (emul::helper::set_groups(0, nullptr) != 0) fail(p, kDropGroups);
  if (p.join_user_ns && ::setns(p.user_ns_fd, CLONE_NEWUSER) != 0) fail(p, kJoinUserNs);
  // A user namespace whose setgroups is "deny" keeps us at no supplementary groups:
  // fewer rights than the caller, never more.
  if (emul::helper::set_groups(p.ngroups, p.groups.data()) != 0 && !(p.join_user_ns && errno == EPERM))
    fail(p, kSetGroups);
  if (::prctl(PR_SET_KEEPCAPS, 1) != 0) fail(p, kCapabilities);
  if (emul::helper::set_gids(p.gid[0], p.gid[1], p.gid[2]) != 0) fail(p, kSetGid);
  if (emul::helper::set_uids(p.uid[0], p.uid[1], p.uid[2]) != 0) fail(p, kSetUid);
  if (!emul::helper::set_effective_caps(~std::uint64_t{0})) fail(p, kCapabilities);
  ::setfsgid(p.gid[3]);
  ::setfsuid(p.uid[3]);
  if (!emul::helper::set_effective_caps(p.caps)) fail(p, kCapabilities);
  ::umask(p.umask);

  CreatedAt made;
  const int err = create_as_caller(p.dir.data(), p.base.data(), p.trailing_slash, p.native, p.mode, p.dev,
                                   p.check_dir ? p.expect_dir.data() : nullptr, made);
  if (err != 0 || p.native) ::_exit(err);
  const int parent = made.parent;
  const char* base = p.base.data();
  const int placeholder = made.placeholder;

  const char byte = 0;
  int verdict = EPERM;
  if (wire::send_with_fd(sock, &byte, 1, placeholder) < 0) {
    report(p, kSendPlaceholder, errno);
  } else if (::recv(sock, &verdict, sizeof verdict, 0) != static_cast<ssize_t>(sizeof verdict)) {
    verdict = EPERM;
  }
  if (verdict != 0 && same_inode(parent, base, placeholder)) {
    ::unlinkat(parent, base, 0);
  }
  ::_exit(verdict);
}

int wait_exit_code(pid_t pid) {
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return -1;
  }
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

// Helper B: attaches the device node onto the caller's placeholder in its mount namespace.
[[noreturn]] void run_privileged(const Params& p) {
  ::prctl(PR_SET_PDEATHSIG, SIGKILL);
  // Keep only our fds: the daemon holds other containers' listeners.
  std::array<int, 7> keep{p.root_fd, p.start_fd,  p.user_ns_fd, p.mnt_ns_fd,
                          p.tree_fd, p.devdir_fd, p.diag_fd};
  std::sort(keep.begin(), keep.end());
  unsigned next = 3;
  for (const int fd : keep) {
    if (fd < 0 || static_cast<unsigned>(fd) < next) continue;
    if (static_cast<unsigned>(fd) > next && ::syscall(SYS_close_range, next, fd - 1, 0) != 0)
      fail(p, kCloseFds);
    next = static_cast<unsigned>(fd) + 1;
  }
  if (::syscall(SYS_close_range, next, ~0U, 0) != 0) fail(p, kCloseFds);

  std::array<int, 2> sp{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0) fail(p, kSocketPair);
  const pid_t caller = emul::helper::raw_fork();
  if (caller < 0) fail(p, kForkCaller);
  if (caller == 0) {
    ::close(sp[0]);
    run_as_caller(p, sp[1]);
  }
  ::close(sp[1]);

  char byte = 0;
  int placeholder = -1;
  std::size_t nfds = 0;
  int flags = 0;
  const ssize_t n = wire::receive_with_fds(sp[0], &byte, 1, &placeholder, 1, &nfds, &flags);
  if (n <= 0 || nfds != 1) {
    // The caller side finished on its own: an errno for the caller, or a native mknod.
    const int code = wait_exit_code(caller);
    if (code < 0) {
      errno = 0;
      fail(p, kCallerDied);
    }
    ::_exit(code);
  }

  int verdict = 0;
  struct stat st {};
  if (::fstat(placeholder, &st) != 0) {
    report(p, kStatPlaceholder, errno);
    verdict = EPERM;
  } else if (::fchownat(p.devdir_fd, p.node.data(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) != 0 ||
             ::fchmodat(p.devdir_fd, p.node.data(), st.st_mode & 07777, 0) != 0) {
    report(p, kOwnNode, errno);
    verdict = EPERM;
  } else if (::setns(p.mnt_ns_fd, CLONE_NEWNS) != 0) {
    report(p, kJoinMountNs, errno);
    verdict = EPERM;
  } else if (::syscall(SYS_move_mount, p.tree_fd, "", placeholder, "",
                       MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    report(p, kMoveMount, errno);
    verdict = EPERM;
  }
  [[maybe_unused]] const ssize_t sent = ::send(sp[0], &verdict, sizeof verdict, MSG_NOSIGNAL);
  const int code = wait_exit_code(caller);
  if (verdict != 0) ::_exit(verdict);
  ::_exit(code < 0 ? EPERM : code);
}

bool copy_to(std::array<char, PATH_MAX + 1>& out, const std::string& s) {
  if (s.size() >= out.size()) return false;
  std::memcpy(out.data(), s.c_str(), s.size() + 1);
  return true;
}

}  // namespace

bool same_inode(int dirfd, const char* name, int fd) noexcept {
  struct stat a {};
  struct stat b {};
  return ::fstatat(dirfd, name, &a, AT_SYMLINK_NOFOLLOW) == 0 && ::fstat(fd, &b) == 0 &&
         a.st_dev == b.st_dev && a.st_ino == b.st_ino;
}

int create_as_caller(const char* dir, const char* base, bool trailing_slash, bool native, mode_t mode,
                     std::uint32_t dev, const char* expect_dir, CreatedAt& out) noexcept {
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_NO_MAGICLINKS;
  out.parent = static_cast<int>(::syscall(SYS_openat2, AT_FDCWD, dir, &how, sizeof how));
  if (out.parent < 0) return errno;
  if (base[0] == '\0' || std::strcmp(base, ".") == 0 || std::strcmp(base, "..") == 0) return EEXIST;
  if (expect_dir != nullptr) {
    // A `path` matcher decided on the text; the node lands in the directory resolved here
    // (through symlinks, `..` and a cwd another thread may have changed). The grant holds only
    // when that is the directory the text named; otherwise the caller has no grant and gets
    // what the kernel gives it without one. getcwd is relative to our root, the caller's.
    std::array<char, PATH_MAX + 32> real{};
    if (::fchdir(out.parent) != 0) return errno;
    if (::syscall(SYS_getcwd, real.data(), real.size()) < 0 || std::strcmp(real.data(), expect_dir) != 0)
      return EPERM;
  }
  if (trailing_slash) {
    struct stat st {};
    return ::fstatat(out.parent, base, &st, AT_SYMLINK_NOFOLLOW) == 0 ? EEXIST : errno;
  }
  if (native) return ::mknodat(out.parent, base, mode, dev) == 0 ? 0 : errno;
  out.placeholder =
      ::openat(out.parent, base, O_RDONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode & 07777);
  return out.placeholder < 0 ? errno : 0;
}

SplitPath split_path(std::string_view path) {
  SplitPath out;
  std::size_t end = path.size();
  while (end > 1 && path[end - 1] == '/') --end;
  out.trailing_slash = end < path.size() && !(end == 1 && path[0] == '/');
  path = path.substr(0, end);
  if (path == "/") {
    out.dir = "/";
    return out;
  }
  const auto slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    out.dir = ".";
    out.base = std::string(path);
    return out;
  }
  out.base = std::string(path.substr(slash + 1));
  std::size_t dir_end = slash;
  while (dir_end > 0 && path[dir_end - 1] == '/') --dir_end;
  out.dir = dir_end == 0 ? "/" : std::string(path.substr(0, dir_end));
  return out;
}

// The loop reclaims; session workers may remove a node of a failed start: one lock.
struct DeviceStore::Watches {
  std::mutex m;
  UniqueFd fd;  // inotify, non-blocking
  std::map<std::string, int, std::less<>> by_name;
  std::map<int, std::string> by_wd;
  std::set<std::string, std::less<>> dead;  // released, inode gone, not yet asked about

  void drain() {
    alignas(inotify_event) std::array<char, 4096> buf{};
    for (;;) {
      const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
      if (n <= 0) return;
      for (std::size_t at = 0; at + sizeof(inotify_event) <= static_cast<std::size_t>(n);) {
        inotify_event ev{};
        std::memcpy(&ev, buf.data() + at, sizeof ev);
        at += sizeof ev + ev.len;
        if ((ev.mask & (IN_DELETE_SELF | IN_IGNORED)) == 0) continue;
        const auto it = by_wd.find(ev.wd);
        if (it == by_wd.end()) continue;
        dead.insert(it->second);
        by_name.erase(it->second);
        by_wd.erase(it);
      }
    }
  }
};

Result<DeviceStore> DeviceStore::create(int runtime_dir, const std::string& name) {
  if (::mkdirat(runtime_dir, name.c_str(), 0700) != 0 && errno != EEXIST)
    return sys_error("create `" + name + "`");
  UniqueFd dir(::openat(runtime_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return sys_error("open `" + name + "` in the runtime dir (a directory, not a link)");
  struct stat st {};
  if (::fstat(dir.get(), &st) != 0) return sys_error("stat `" + name + "`");
  if (st.st_uid != 0) return sys_error(EPERM, "`" + name + "` in the runtime dir is not root's");
  if (::fchmod(dir.get(), 0700) != 0) return sys_error("chmod `" + name + "`");
  // nodev must NOT be set: the nodes are used through their bind mounts.
  const UniqueFd fs(static_cast<int>(::syscall(SYS_fsopen, "tmpfs", FSOPEN_CLOEXEC)));
  if (!fs) return sys_error("fsopen tmpfs for the device store");
  if (::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "source", "sysvisor-dev", 0) != 0 ||
      ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "mode", "0700", 0) != 0 ||
      ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_SET_STRING, "nr_inodes", "1048576", 0) != 0 ||
      ::syscall(SYS_fsconfig, fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    return sys_error("configure the device store's tmpfs");
  }
  UniqueFd mnt(static_cast<int>(
      ::syscall(SYS_fsmount, fs.get(), FSMOUNT_CLOEXEC, MOUNT_ATTR_NOSUID | MOUNT_ATTR_NOEXEC)));
  if (!mnt) return sys_error("fsmount the device store");
  if (::syscall(SYS_move_mount, mnt.get(), "", dir.get(), "",
                MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
    return sys_error("attach the device store on `" + name + "` (move_mount)");
  }
  DeviceStore store;
  store.dir_ = std::move(mnt);  // the tmpfs's root, whatever becomes of the name
  store.watches_ = std::make_unique<Watches>();
  store.watches_->fd.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));  // none: release() keeps names
  // Started now, so its fds and thread are part of the daemon's baseline.
  store.worker_ = std::make_unique<DirectWorker>(store);
  (void)own_user_ns_fd();
  return store;
}

Result<DeviceStore> DeviceStore::reopen(int runtime_dir, const std::string& name) {
  UniqueFd dir(::openat(runtime_dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!dir) return sys_error("open the device store `" + name + "` a previous daemon left");
  struct statfs fs {};
  struct stat st {};
  struct statx mnt {};
  if (::fstatfs(dir.get(), &fs) != 0 || ::fstat(dir.get(), &st) != 0 ||
      ::statx(dir.get(), "", AT_EMPTY_PATH, STATX_BASIC_STATS, &mnt) != 0) {
    return sys_error("stat the device store `" + name + "`");
  }
  if (fs.f_type != TMPFS_MAGIC || (mnt.stx_attributes & STATX_ATTR_MOUNT_ROOT) == 0 || st.st_uid != 0 ||
      (st.st_mode & 07777) != 0700) {
    return sys_error(ENOENT,
                     "`" + name + "` is not a device store (a root-owned tmpfs of mode 0700 mounted there)");
  }
  // Node names are SESSION.N: new ones continue after the highest N found.
  std::uint64_t highest = 0;
  if (DIR* d = ::fdopendir(::fcntl(dir.get(), F_DUPFD_CLOEXEC, 0))) {
    while (const dirent* e = ::readdir(d)) {
      const std::string_view n(e->d_name);
      const auto dot = n.rfind('.');
      if (dot == std::string_view::npos || dot + 1 >= n.size()) continue;
      std::uint64_t v = 0;
      bool digits = true;
      for (const char c : n.substr(dot + 1)) {
        if (c < '0' || c > '9') {
          digits = false;
          break;
        }
        v = v * 10 + static_cast<std::uint64_t>(c - '0');
      }
      if (digits) highest = std::max(highest, v);
    }
    ::closedir(d);
  }
  DeviceStore store;
  store.dir_ = std::move(dir);
  *store.counter_ = highest;
  store.watches_ = std::make_unique<Watches>();
  store.watches_->fd.reset(::inotify_init1(IN_NONBLOCK | IN_CLOEXEC));
  store.worker_ = std::make_unique<DirectWorker>(store);
  (void)own_user_ns_fd();
  return store;
}

Result<DeviceStore::Node> DeviceStore::make_node(std::string_view session, mode_t type, std::uint32_t dev) {
  Node node;
  node.name = std::string(session) + "." + std::to_string(++*counter_);
  if (::mknodat(dir_.get(), node.name.c_str(), type | 0, dev) != 0) {
    return sys_error("mknod `" + node.name + "` in the device store");
  }
  node.tree.reset(static_cast<int>(::syscall(SYS_open_tree, dir_.get(), node.name.c_str(),
                                             OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW)));
  if (!node.tree) {
    auto err = sys_error("open_tree `" + node.name + "`");
    remove_node(node.name);
    return err;
  }
  return node;
}

bool DeviceStore::release(const std::string& name) const {
  if (!watches_ || !watches_->fd) return false;
  const std::scoped_lock lock(watches_->m);
  const std::string path = "/proc/self/fd/" + std::to_string(dir_.get()) + "/" + name;
  const int wd = ::inotify_add_watch(watches_->fd.get(), path.c_str(), IN_DELETE_SELF);
  if (wd < 0) return false;
  watches_->by_name[name] = wd;
  watches_->by_wd[wd] = name;
  ::unlinkat(dir_.get(), name.c_str(), 0);
  return true;
}

bool DeviceStore::alive(const std::string& name) const {
  if (!watches_) return false;
  const std::scoped_lock lock(watches_->m);
  watches_->drain();
  if (watches_->dead.erase(name) != 0) return false;
  return watches_->by_name.contains(name);
}

DeviceStore::DeviceStore(DeviceStore&&) noexcept = default;
DeviceStore& DeviceStore::operator=(DeviceStore&&) noexcept = default;
DeviceStore::~DeviceStore() = default;

DirectWorker& DeviceStore::worker() {
  if (!worker_) worker_ = std::make_unique<DirectWorker>(*this);
  return *worker_;
}

void DeviceStore::remove_unclaimed(const std::set<std::string, std::less<>>& claimed) const {
  std::vector<std::string> orphans;
  if (DIR* d = ::fdopendir(::fcntl(dir_.get(), F_DUPFD_CLOEXEC, 0))) {
    ::rewinddir(d);  // a dup shares the offset, which reopen() left at the end
    while (const dirent* e = ::readdir(d)) {
      const std::string_view n(e->d_name);
      if (n != "." && n != ".." && !claimed.contains(n)) orphans.emplace_back(n);
    }
    ::closedir(d);
  }
  for (const auto& name : orphans) remove_node(name);
}

void DeviceStore::remove_node(const std::string& name) const {
  ::unlinkat(dir_.get(), name.c_str(), 0);
  if (!watches_) return;
  const std::scoped_lock lock(watches_->m);
  watches_->dead.erase(name);
  if (const auto it = watches_->by_name.find(name); it != watches_->by_name.end()) {
    ::inotify_rm_watch(watches_->fd.get(), it->second);
    watches_->by_wd.erase(it->second);
    watches_->by_name.erase(it);
  }
}

namespace {

// The daemon's own user namespace never changes: stat it once.
const struct stat* own_user_ns() {
  static const struct stat mine = [] {
    struct stat st {};
    if (::stat("/proc/self/ns/user", &st) != 0) st.st_ino = 0;
    return st;
  }();
  return mine.st_ino == 0 ? nullptr : &mine;
}

// The same as an fd, for caps::capable (opened with the store, so it is part of the daemon's
// baseline of fds).
int own_user_ns_fd() {
  static const UniqueFd fd(::open("/proc/self/ns/user", O_RDONLY | O_CLOEXEC));
  return fd ? fd.get() : -1;
}

}  // namespace

Result<void> read_user_ns(Request& req, int proc_dir) {
  if (req.has_user_ns) return {};
  // Opened by prepare() before the first ID_VALID; only the maps are read now.
  if (!req.user_ns) {
    req.user_ns.reset(::openat(proc_dir, "ns/user", O_RDONLY | O_CLOEXEC));
    if (!req.user_ns) return sys_error("open the caller's ns/user");
  }
  struct stat theirs {};
  const struct stat* mine = own_user_ns();
  if (mine == nullptr || ::fstat(req.user_ns.get(), &theirs) != 0) return sys_error("stat user namespaces");
  for (auto [name, map] : {std::pair{"uid_map", &req.uid_map}, std::pair{"gid_map", &req.gid_map}}) {
    auto text = task::read_file_at(proc_dir, name);
    if (!text) return std::unexpected(text.error());
    auto parsed = task::parse_id_map(*text);
    if (!parsed) return plain_error(std::string("unparsable ") + name);
    *map = std::move(*parsed);
  }
  // The maps are those of the namespace opened before (a namespace's maps never change).
  struct stat again {};
  if (::fstatat(proc_dir, "ns/user", &again, 0) != 0 || again.st_ino != theirs.st_ino ||
      again.st_dev != theirs.st_dev) {
    return sys_error(ESRCH, "the caller changed user namespace");
  }
  req.same_user_ns = mine->st_ino == theirs.st_ino && mine->st_dev == theirs.st_dev;
  req.has_user_ns = true;
  return {};
}

std::uint64_t mount_ns_id(int ns_fd) noexcept {
  std::uint64_t id = 0;
  return ::ioctl(ns_fd, kNsGetMntnsId, &id) == 0 ? id : 0;
}

std::uint64_t unique_mount_id(int fd) noexcept {
  struct statx stx {};
  if (::statx(fd, "", AT_EMPTY_PATH | AT_SYMLINK_NOFOLLOW, kStatxMntIdUnique, &stx) != 0 ||
      (stx.stx_mask & kStatxMntIdUnique) == 0) {
    return 0;
  }
  return stx.stx_mnt_id;
}

bool still_mounted(const Attached& node) noexcept {
  if (node.mnt_id == 0 || node.ns_id == 0) return true;
  MntIdReq req{};
  req.size = sizeof req;
  req.mnt_id = node.mnt_id;
  req.param = kStatmountSbBasic;
  req.mnt_ns_id = node.ns_id;
  // struct statmount is 512 bytes with room to grow; no strings are asked for.
  alignas(8) std::array<char, 4096> buf{};
  if (::syscall(kSysStatmount, &req, buf.data(), buf.size(), 0) == 0) return true;
  // ENOENT: the mount, or its whole namespace, is gone. Any other error: keep it.
  return errno != ENOENT;
}

Result<Authority> authorize(const Request& req) {
  if (!req.user_ns || !req.mnt_ns) return plain_error("mknod: the caller's namespaces were not opened");
  const caps::Subject subject{req.user_ns.get(), static_cast<uid_t>(req.creds.uid[1]),
                              req.creds.cap_effective};
  // The node lands in the caller's mount namespace: CAP_MKNOD in the user namespace that owns
  // it, as the kernel asks CAP_SYS_ADMIN there for any other mount (never the caller's own
  // user namespace alone: under `unshare -Ur` the mount namespace is the host's).
  auto over = caps::capable_over(subject, req.mnt_ns.get(), caps::kMknod);
  if (!over) return std::unexpected(over.error());
  if (!*over) return Authority::Kernel;
  // CAP_MKNOD where the kernel itself asks for it (host root, a rootful container): the kernel
  // makes the node, and its device cgroup and LSMs decide as for any other call.
  const int own = own_user_ns_fd();
  if (own < 0) return sys_error(EBADF, "open the daemon's ns/user");
  auto real = caps::capable(subject, own, caps::kMknod);
  if (!real) return std::unexpected(real.error());
  return *real ? Authority::Kernel : Authority::Emulate;
}

Result<Request> prepare(const task::TaskHandle& task, mode_t mode, std::uint32_t dev, int dirfd,
                        bool user_ns_now) {
  Request req;
  req.mode = mode;
  req.dev = dev;
  auto root = task.open_entry("root", O_PATH | O_DIRECTORY);
  if (!root) return std::unexpected(root.error());
  req.root = std::move(*root);
  const std::string entry = dirfd == AT_FDCWD ? std::string("cwd") : "fd/" + std::to_string(dirfd);
  if (auto start = task.open_entry(entry.c_str(), O_PATH | O_DIRECTORY)) {
    req.start = std::move(*start);
  } else {
    // What the kernel says for a dirfd that is not open / not a directory.
    req.start_err =
        dirfd != AT_FDCWD && (start.error().err == ENOENT || dirfd < 0) ? EBADF : start.error().err;
  }
  auto mnt_ns = task.open_entry("ns/mnt", O_RDONLY);
  if (!mnt_ns) return std::unexpected(mnt_ns.error());
  req.mnt_ns = std::move(*mnt_ns);
  auto user_ns = task.open_entry("ns/user", O_RDONLY);
  if (!user_ns) return std::unexpected(user_ns.error());
  req.user_ns = std::move(*user_ns);

  auto status = task::read_file_at(task.proc_dir(), "status");
  if (!status) return std::unexpected(status.error());
  auto creds = task::parse_status(*status);
  if (!creds) return plain_error("unparsable /proc/" + std::to_string(task.tid()) + "/status");
  req.creds = std::move(*creds);
  if (user_ns_now) {
    if (auto done = read_user_ns(req, task.proc_dir()); !done) return std::unexpected(done.error());
  } else {
    req.proc.reset(::fcntl(task.proc_dir(), F_DUPFD_CLOEXEC, 3));
    if (!req.proc) return sys_error("dup /proc/" + std::to_string(task.tid()));
  }
  return req;
}

Result<Running> start(const Request& req, const std::string& path, DeviceStore& store,
                      std::string_view session) {
  if (!req.has_user_ns) return plain_error("mknod: the caller's user namespace was not read");
  const bool relative = !path.starts_with('/');
  if (relative && !req.start) return sys_error(req.start_err, "open the caller's start directory");
  auto p = std::make_unique<Params>();
  const SplitPath split = split_path(path);
  if (!copy_to(p->dir, split.dir) || !copy_to(p->base, split.base)) return sys_error(ENAMETOOLONG, "path");
  p->trailing_slash = split.trailing_slash;
  p->relative = relative;
  p->join_user_ns = !req.same_user_ns;
  const auto numbers = task::decode_dev(req.dev);
  const bool whiteout = (req.mode & S_IFMT) == S_IFCHR && numbers.major == 0 && numbers.minor == 0;
  const bool has_mknod = (req.creds.cap_effective & (std::uint64_t{1} << CAP_MKNOD)) != 0;
  p->native = whiteout || !has_mknod;
  if (req.expect_dir) {
    if (!copy_to(p->expect_dir, *req.expect_dir)) return sys_error(ENAMETOOLONG, "path");
    p->check_dir = true;
  }
  p->root_fd = req.root.get();
  p->start_fd = req.start.get();
  p->user_ns_fd = req.user_ns.get();
  p->mnt_ns_fd = req.mnt_ns.get();
  p->devdir_fd = store.dir_fd();
  // Ids as the caller's namespace sees them (setresuid there takes its own ids).
  // A caller in the supervisor's (initial) user namespace reads "0 0 4294967295": the identity.
  for (std::size_t i = 0; i < 4; ++i) {
    const auto u = task::to_inside(req.uid_map, req.creds.uid[i]);
    const auto g = task::to_inside(req.gid_map, req.creds.gid[i]);
    if (!u || !g) return sys_error(EOVERFLOW, "caller's ids are not mapped in its user namespace");
    p->uid[i] = *u;
    p->gid[i] = *g;
  }
  for (const auto host_gid : req.creds.groups) {
    if (p->ngroups == kMaxGroups) break;  // fewer groups: fewer rights, never more
    if (const auto g = task::to_inside(req.gid_map, host_gid)) p->groups[p->ngroups++] = *g;
  }
  p->caps = req.creds.cap_effective;
  p->umask = req.creds.umask;
  p->mode = req.mode;
  p->dev = req.dev;

  Running run;
  // On a failure before the helpers run, the node made for them goes.
  const auto forget_node = [&] {
    if (!run.node_name.empty()) store.remove_node(run.node_name);
  };
  DeviceStore::Node node;
  if (!p->native) {
    auto made = store.make_node(session, req.mode & S_IFMT, req.dev);
    if (!made) return std::unexpected(made.error());
    node = std::move(*made);
    if (node.name.size() >= p->node.size()) return sys_error(ENAMETOOLONG, "device node name");
    std::memcpy(p->node.data(), node.name.c_str(), node.name.size() + 1);
    p->tree_fd = node.tree.get();
    run.node_name = node.name;
    run.ns_id = mount_ns_id(req.mnt_ns.get());
  }
  std::array<int, 2> diag{};
  if (::pipe2(diag.data(), O_CLOEXEC | O_NONBLOCK) != 0) {
    forget_node();
    return sys_error("pipe");
  }
  UniqueFd diag_read(diag[0]);
  UniqueFd diag_write(diag[1]);
  p->diag_fd = diag_write.get();

  const pid_t pid = emul::helper::raw_fork();
  if (pid < 0) {
    forget_node();
    return sys_error("fork mknod helper");
  }
  if (pid == 0) {
    ::setpriority(PRIO_PROCESS, 0, emul::helper::kHelperNice);
    run_privileged(*p);
  }
  run.pid = pid;
  run.pidfd = open_pidfd(pid);
  if (!run.pidfd) {
    auto err = sys_error("pidfd_open mknod helper");
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
    forget_node();
    return err;
  }
  run.diag = std::move(diag_read);
  // The same open mount as the helper's: once it attached it, this fd names the mount.
  run.tree = std::move(node.tree);
  return run;
}

Outcome finish(Running& run, const DeviceStore& store) {
  const emul::helper::Exit exit = emul::helper::wait_exit(run.pidfd.get(), "mknod helper");
  Outcome out{exit.code, exit.diagnostic};
  DiagRecord rec{};
  while (::read(run.diag.get(), &rec, sizeof rec) == static_cast<ssize_t>(sizeof rec)) {
    if (!out.diagnostic.empty()) out.diagnostic += "; ";
    out.diagnostic += std::string(stage_name(rec.stage)) + ": " + std::strerror(rec.err);
  }
  if (out.err != 0 && !run.node_name.empty()) store.remove_node(run.node_name);
  run.pidfd.reset();
  run.tree.reset();
  run.diag.reset();
  return out;
}

void kill(const Running& run) {
  if (run.pidfd) ::syscall(SYS_pidfd_send_signal, run.pidfd.get(), SIGKILL, nullptr, 0);
}

}  // namespace sysvisor::mknod
