// The direct mknod thread (mknod.hpp): the helpers' work without creating a process.
#include <fcntl.h>
#include <linux/capability.h>
#include <linux/magic.h>
#include <sched.h>
#include <sys/eventfd.h>
#include <sys/fsuid.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <climits>
#include <condition_variable>
#include <csignal>
#include <cstring>
#include <mutex>
#include <optional>
#include <thread>

#include "sysvisor/mknod.hpp"
#include "sysvisor/mount_api.hpp"

namespace sysvisor::mknod {
namespace {

// This thread's effective capabilities: capset on tid 0 is the calling thread only.
// `data` holds the thread's permitted and inheritable sets, read once.
bool set_effective(std::array<__user_cap_data_struct, 2> data, std::uint64_t eff) {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  data[0].effective = static_cast<std::uint32_t>(eff);
  data[1].effective = static_cast<std::uint32_t>(eff >> 32U);
  return ::syscall(SYS_capset, &hdr, data.data()) == 0;
}

std::optional<std::array<__user_cap_data_struct, 2>> own_caps() {
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  std::array<__user_cap_data_struct, 2> data{};
  if (::syscall(SYS_capget, &hdr, data.data()) != 0) return std::nullopt;
  return data;
}

// The filesystem identity the thread acts with. Set only when it changes: every change is a
// commit_creds in the kernel, the dearest step of the whole emulation.
struct FsIdentity {
  std::uint32_t uid = 0, gid = 0;
  std::vector<std::uint32_t> groups;
  bool operator==(const FsIdentity&) const = default;
};

// glibc's setgroups changes every thread; the raw call changes this one. setfsuid/setfsgid
// cannot fail while the thread holds CAP_SETUID/CAP_SETGID, which it does when called.
bool set_identity(const FsIdentity& id) {
  if (::syscall(SYS_setgroups, id.groups.size(), id.groups.data()) != 0) return false;
  ::setfsgid(id.gid);
  ::setfsuid(id.uid);
  return static_cast<std::uint32_t>(::setfsuid(static_cast<uid_t>(-1))) == id.uid;
}

std::string why(const char* what, int err) {
  return std::string(what) + ": " + std::strerror(err);
}

}  // namespace

struct DirectWorker::Shared {
  std::mutex m;
  std::condition_variable cv;
  std::shared_ptr<DirectRequest> next;
  bool busy = false;
  bool broken = false;
  bool stop = false;
  UniqueFd store_dir;  // our own: the thread may outlive the store at shutdown
  UniqueFd home_ns;    // the daemon's mount namespace, where the store's nodes can be cloned
  UniqueFd home_root;  // the daemon's root directory
  std::uint64_t counter = 0;
  // The thread's state between requests (it alone touches these).
  std::array<__user_cap_data_struct, 2> caps{};  // as the thread started: full
  std::uint64_t all_caps = 0;
  std::optional<FsIdentity> identity;  // unknown until first set
  mode_t umask_now = 022;
  // A device node and its detached clone, made after a request while nobody waits, for the
  // next request of the same device (owner and mode are set when it is used).
  struct Node {
    std::string name;
    UniqueFd tree;
    mode_t type = 0;
    std::uint32_t dev = 0;
  };
  std::optional<Node> spare;

  void drop(std::optional<Node>& node) const {
    if (node) ::unlinkat(store_dir.get(), node->name.c_str(), 0);
    node.reset();
  }

  // Back in the daemon's mount namespace and root after every request, whatever its outcome:
  // between requests the thread pins no container's mount namespace, root or cwd (an exited
  // container's mounts, a tmpfs full of its files, would otherwise live on through it).
  [[nodiscard]] bool go_home() const {
    return ::setns(home_ns.get(), CLONE_NEWNS) == 0 && ::fchdir(home_root.get()) == 0 && ::chroot(".") == 0;
  }

  // At home (open_tree clones only mounts of the current mount namespace).
  std::optional<Node> make_node(mode_t type, std::uint32_t dev, std::string& diagnostic) {
    Node node{"d." + std::to_string(++counter), UniqueFd(), type, dev};
    if (::mknodat(store_dir.get(), node.name.c_str(), type | 0, dev) != 0) {
      diagnostic = why("mknod in the device store", errno);
      return std::nullopt;
    }
    node.tree.reset(static_cast<int>(::syscall(SYS_open_tree, store_dir.get(), node.name.c_str(),
                                               OPEN_TREE_CLONE | O_CLOEXEC | AT_SYMLINK_NOFOLLOW)));
    if (!node.tree) {
      diagnostic = why("open_tree in the device store", errno);
      ::unlinkat(store_dir.get(), node.name.c_str(), 0);
      return std::nullopt;
    }
    return node;
  }

  // The caller's part, as the caller: returns the errno (0: created) and the placeholder.
  int as_caller(DirectRequest& req, UniqueFd& parent, UniqueFd& placeholder) const {
    if (req.relative) {
      if (::fchdir(req.start.get()) != 0) return errno;
      // "(unreachable)": the start directory is not below the caller's root.
      std::array<char, PATH_MAX + 32> cwd{};
      if (::syscall(SYS_getcwd, cwd.data(), cwd.size()) < 0 || cwd[0] != '/') return EPERM;
    } else if (::chdir("/") != 0) {
      return errno;
    }
    CreatedAt made;
    const int err =
        create_as_caller(req.dir.c_str(), req.base.c_str(), req.trailing_slash, req.native, req.mode, req.dev,
                         req.expect_dir ? req.expect_dir->c_str() : nullptr, made);
    parent.reset(made.parent);
    placeholder.reset(made.placeholder);
    return err;
  }

  // False when this thread can no longer be trusted with a request (it could not get its
  // capabilities back).
  bool run(DirectRequest& req) {
    const mode_t type = req.mode & S_IFMT;
    std::optional<Node> node;
    if (!req.native) {
      if (spare && spare->type == type && spare->dev == req.dev) {
        node = std::move(spare);
        spare.reset();
      } else {
        drop(spare);
        node = make_node(type, req.dev, req.diagnostic);
        if (!node) {
          req.fallback = true;
          return true;
        }
      }
    }
    // The caller's mount namespace (this also moves our root and cwd to its root), then its
    // root directory.
    if (::setns(req.mnt_ns.get(), CLONE_NEWNS) != 0 || ::fchdir(req.root.get()) != 0 || ::chroot(".") != 0) {
      req.fallback = true;
      req.diagnostic = why("enter the caller's mount namespace and root", errno);
      drop(node);
      return true;
    }
    FsIdentity wanted{req.fsuid, req.fsgid, req.groups};
    if (identity != wanted) {
      identity.reset();
      if (!set_identity(wanted)) {
        req.fallback = true;
        req.diagnostic = why("take the caller's ids", errno);
        drop(node);
        return true;
      }
      identity = std::move(wanted);
    }
    if (umask_now != req.umask) {
      ::umask(req.umask);
      umask_now = req.umask;
    }
    // The caller's part runs with no capability at all; the thread keeps the caller's ids
    // afterwards (only capabilities make it privileged again).
    UniqueFd parent;
    UniqueFd placeholder;
    int err = 0;
    if (set_effective(caps, 0)) {
      err = as_caller(req, parent, placeholder);
    } else {
      req.fallback = true;
      req.diagnostic = why("drop capabilities", errno);
    }
    if (!set_effective(caps, all_caps)) {
      // Never go on in a state we cannot account for: this thread stops here.
      req.fallback = true;
      req.diagnostic = "direct mknod thread: could not get its capabilities back";
      drop(node);
      return false;
    }
    if (req.fallback || ((err == EACCES || err == EPERM) && req.caps_may_matter)) {
      req.fallback = true;  // the caller's capabilities might have let it through
      drop(node);
      return true;
    }
    req.err = err;
    if (err != 0 || req.native) {
      drop(node);
      return true;
    }

    // The privileged part: the node gets the placeholder's owner and mode and is attached
    // onto it.
    struct stat st {};
    const char* what = nullptr;
    if (::fstat(placeholder.get(), &st) != 0) {
      what = "stat the placeholder";
    } else if (::fchownat(store_dir.get(), node->name.c_str(), st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) !=
                   0 ||
               ::fchmodat(store_dir.get(), node->name.c_str(), st.st_mode & 07777, 0) != 0) {
      what = "set the device node's owner and mode";
    } else if (::syscall(SYS_move_mount, node->tree.get(), "", placeholder.get(), "",
                         MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) != 0) {
      what = "attach the device node (move_mount)";
    }
    if (what != nullptr) {
      req.err = EPERM;
      req.diagnostic = why(what, errno);
      if (same_inode(parent.get(), req.base.c_str(), placeholder.get()))
        ::unlinkat(parent.get(), req.base.c_str(), 0);
      drop(node);
      return true;
    }
    req.node_name = node->name;
    req.mnt_id = unique_mount_id(node->tree.get());  // the tree is the attached mount now
    return true;
  }

  void loop() {
    sigset_t all;
    ::sigfillset(&all);
    ::pthread_sigmask(SIG_BLOCK, &all, nullptr);
    // chroot, cwd, umask and the mount namespace become this thread's own.
    bool usable = ::unshare(CLONE_FS) == 0;
    if (const auto own = own_caps()) {
      caps = *own;
      all_caps = caps[0].permitted | (std::uint64_t{caps[1].permitted} << 32U);
    } else {
      usable = false;
    }
    std::unique_lock lock(m);
    for (;;) {
      // An idle second: the spare node goes, so an idle daemon holds nothing for nobody.
      if (!cv.wait_for(lock, std::chrono::seconds(1), [&] { return stop || next != nullptr; })) {
        drop(spare);
        cv.wait(lock, [&] { return stop || next != nullptr; });
      }
      if (stop) break;
      std::shared_ptr<DirectRequest> req = std::move(next);
      next.reset();
      lock.unlock();
      if (usable) {
        usable = run(*req);
      } else {
        req->fallback = true;
        req->diagnostic = "direct mknod thread unavailable";
      }
      // Home before the answer, so whoever sees the answer sees the thread home. A thread that
      // cannot leave the container's namespaces serves nobody again (the helpers, which exit,
      // take its requests).
      if (!go_home()) usable = false;
      const std::uint64_t one = 1;
      [[maybe_unused]] const ssize_t n = ::write(req->done.get(), &one, sizeof one);
      const bool again = usable && !req->native && !req->fallback;
      const mode_t type = req->mode & S_IFMT;
      const std::uint32_t dev = req->dev;
      req.reset();
      lock.lock();
      busy = false;
      broken = !usable;
      if (again && !spare && !stop) {
        // While nobody waits: the next node of the same device. A request that comes
        // meanwhile is accepted and waits these few microseconds.
        lock.unlock();
        std::string ignored;
        spare = make_node(type, dev, ignored);
        lock.lock();
      }
    }
    drop(spare);
  }
};

DirectWorker::DirectWorker(DeviceStore& store) : shared_(std::make_shared<Shared>()) {
  shared_->store_dir.reset(::fcntl(store.dir_fd(), F_DUPFD_CLOEXEC, 3));
  // Its names (d.N) continue after those a previous daemon left (an upgrade, a restart): a
  // node of the same name would be removed with the session that recorded the old one.
  shared_->counter = store.last_number();
  shared_->home_ns.reset(::open("/proc/thread-self/ns/mnt", O_RDONLY | O_CLOEXEC));
  shared_->home_root.reset(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!shared_->store_dir || !shared_->home_ns || !shared_->home_root) {
    shared_->broken = true;
    return;
  }
  try {
    std::thread([s = shared_] { s->loop(); }).detach();
  } catch (const std::system_error&) {
    shared_->broken = true;
  }
}

DirectWorker::~DirectWorker() {
  // A thread stalled on a container's file system is not waited for.
  {
    const std::scoped_lock lock(shared_->m);
    shared_->stop = true;
  }
  shared_->cv.notify_one();
}

bool DirectWorker::submit(const std::shared_ptr<DirectRequest>& req) {
  {
    const std::scoped_lock lock(shared_->m);
    if (shared_->busy || shared_->broken || shared_->stop) return false;
    shared_->busy = true;
    shared_->next = req;
  }
  shared_->cv.notify_one();
  return true;
}

}  // namespace sysvisor::mknod
