// mknod/mknodat emulation for callers inside user namespaces.
//
// The kernel only lets init-namespace CAP_MKNOD create device nodes, and a device node on a
// filesystem mounted inside a user namespace (the tmpfs on /dev) cannot be opened anyway.
// So the emulation splits the call in two, each done by a short-lived, single-threaded
// helper process:
//   A "as the caller": chrooted to the caller's root, in its cwd (or dirfd), in its user
//     namespace with its uids, gids, groups, capabilities and umask, creates an empty
//     regular file at the path. Every errno the kernel would give (ENOENT, ENOTDIR, EEXIST,
//     EACCES, EROFS, ELOOP, ...) comes from the kernel itself; ownership, umask and setgid
//     directories are the kernel's too. A caller without CAP_MKNOD makes the real mknodat and
//     gets the kernel's own answer (EPERM).
//   B "privileged": in the caller's mount namespace, attaches (move_mount) a clone of a
//     device inode that the supervisor made on its private tmpfs, with the placeholder's
//     owner and mode, onto the placeholder. The node works wherever it lands.
// The supervisor's only privileged act is attaching a device the policy allowed onto a file
// the caller itself could create.
#pragma once

#include <sys/types.h>

#include <atomic>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/task.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::mknod {

// "a/b/c" -> dir "a/b", base "c"; trailing slashes are remembered, not part of base.
struct SplitPath {
  std::string dir;   // "." when the path has no slash, "/" for "/x"
  std::string base;  // empty for "/" ; "." or ".." kept as is
  bool trailing_slash = false;
};
[[nodiscard]] SplitPath split_path(std::string_view path);

// The caller's own part of an emulated mknod, run with the caller's identity, root and start
// directory already in place (a helper process, or the direct thread): resolves `dir` without
// magic links, then either makes the node itself (`native`: the kernel's own answer, e.g.
// EPERM without CAP_MKNOD, or a whiteout) or creates the empty placeholder. With `expect_dir`
// (a rule's `path` matcher decided on the path's text), `dir` must resolve to that directory
// (as seen from our root, the caller's), else EPERM and nothing is made: a symlink or `..`
// must not carry the grant elsewhere. Changes the cwd then. Returns the errno (0: done) and
// the fds it opened (-1 when not; the caller closes them). Raw syscalls only.
struct CreatedAt {
  int parent = -1;
  int placeholder = -1;
};
[[nodiscard]] int create_as_caller(const char* dir, const char* base, bool trailing_slash, bool native,
                                   mode_t mode, std::uint32_t dev, const char* expect_dir,
                                   CreatedAt& out) noexcept;
// `name` in `dirfd` is still the file `fd` is open on.
[[nodiscard]] bool same_inode(int dirfd, const char* name, int fd) noexcept;

// The private tmpfs that holds the device inodes bind-mounted into containers. It is mounted
// in the supervisor's own mount namespace (see main: the daemon unshares one at start), so
// the host never sees its nodes.
class DeviceStore;

// The fast way to the same result as the helpers: one long-lived thread of the daemon that
// unshared its fs_struct (so chroot, cwd, umask and setns(mnt) are its own) does A's and B's
// work itself: it enters the caller's mount namespace and root, takes the caller's
// filesystem ids and groups with no capability at all (per-thread credentials), creates the
// placeholder, restores its own credentials and attaches the node. No process is created.
// It is exact only where capabilities cannot matter: a caller whose user namespace grants it
// DAC_OVERRIDE, DAC_READ_SEARCH, FOWNER or FSETID and is refused (EACCES, EPERM) goes to the
// helpers, which act as the caller in its own user namespace; so does a set-id mode.
// A container's file system can stall the thread (FUSE): a request finds the thread busy
// and takes the helpers instead, so the daemon never waits on it.
struct DirectRequest {
  // In: everything the thread needs, owned by the request.
  UniqueFd root, start, mnt_ns;
  std::string dir, base;
  bool trailing_slash = false;
  bool relative = false;
  bool native = false;                    // no device to attach: the kernel's own answer (EPERM, a whiteout)
  std::optional<std::string> expect_dir;  // see create_as_caller
  mode_t mode = 0;
  std::uint32_t dev = 0;
  std::uint32_t fsuid = 0, fsgid = 0;  // host view
  std::vector<std::uint32_t> groups;
  mode_t umask = 022;
  bool caps_may_matter = false;  // the caller holds a capability that bypasses permissions
  std::string session;
  // Out, written by the thread before `done` is signalled.
  int err = 0;
  bool fallback = false;  // not decided here: start the helpers
  std::string diagnostic;
  std::string node_name;     // the store node attached (to remove with the session)
  std::uint64_t mnt_id = 0;  // the unique id of the mount that carries it
  UniqueFd done;             // eventfd, readable when the thread is finished with the request
};

class DirectWorker {
 public:
  explicit DirectWorker(DeviceStore& store);
  ~DirectWorker();
  DirectWorker(const DirectWorker&) = delete;
  DirectWorker& operator=(const DirectWorker&) = delete;
  // Hands `req` to the thread; false when the thread is busy (or could not start): use the
  // helpers.
  [[nodiscard]] bool submit(const std::shared_ptr<DirectRequest>& req);

 private:
  struct Shared;
  std::shared_ptr<Shared> shared_;
};

class DeviceStore {
 public:
  // The store: a private tmpfs mounted on `name` in the directory `runtime_dir` (an fd), made
  // and opened with O_NOFOLLOW, refused unless root owns it; the mount is attached by fd.
  [[nodiscard]] static Result<DeviceStore> create(int runtime_dir, const std::string& name);
  // The store a previous daemon mounted there (its mount namespace, taken over): checked to be
  // one (a root-owned tmpfs of mode 0700, a mount root); its nodes stay.
  [[nodiscard]] static Result<DeviceStore> reopen(int runtime_dir, const std::string& name);
  DeviceStore(DeviceStore&&) noexcept;
  DeviceStore& operator=(DeviceStore&&) noexcept;
  ~DeviceStore();

  // Makes a node (mode 0, root-owned until the helper sets the placeholder's owner) and
  // returns its name and a detached mount clone of it (open_tree OPEN_TREE_CLONE).
  struct Node {
    std::string name;
    UniqueFd tree;
  };
  [[nodiscard]] Result<Node> make_node(std::string_view session, mode_t type, std::uint32_t dev);
  // Nodes still mounted in a container live on through the mount; the name goes (and the
  // watch of a released node).
  void remove_node(const std::string& name) const;
  // Takes out of the store every name not in `claimed` (at a daemon's start: what a previous
  // daemon left that no container's record names, such as the direct worker's spare node).
  // A container that mounted such a node keeps it: the mount holds the inode.
  void remove_unclaimed(const std::set<std::string, std::less<>>& claimed) const;
  // Reclaiming a node whose own mount is gone: a copy of that mount (a bind mount, another
  // mount namespace) may still hold its inode. release() takes the name out of the store and
  // watches the inode (inotify IN_DELETE_SELF: sent when its last reference goes); false when
  // no watch could be set (the name stays). alive(): the released node's inode still exists.
  [[nodiscard]] bool release(const std::string& name) const;
  [[nodiscard]] bool alive(const std::string& name) const;
  [[nodiscard]] int dir_fd() const noexcept { return dir_.get(); }
  // The highest node number in use (names are PREFIX.N): a previous daemon's nodes included.
  [[nodiscard]] std::uint64_t last_number() const noexcept { return counter_->load(); }
  // The direct thread, started on first use.
  [[nodiscard]] DirectWorker& worker();

 private:
  DeviceStore() = default;
  UniqueFd dir_;
  std::unique_ptr<std::atomic<std::uint64_t>> counter_ = std::make_unique<std::atomic<std::uint64_t>>(0);
  struct Watches;
  std::unique_ptr<Watches> watches_;
  std::unique_ptr<DirectWorker> worker_;
};

// What the dispatcher gathers from /proc/TID before the first ID_VALID, when the path is
// not copied yet: so the start directory is opened whether or not the path turns out relative.
struct Request {
  mode_t mode = 0;  // 16 bits, as the kernel takes it
  std::uint32_t dev = 0;
  UniqueFd root;              // the caller's root directory
  UniqueFd start;             // its cwd, or its dirfd's directory
  int start_err = 0;          // why `start` could not be opened: the kernel's errno for a relative path
  UniqueFd user_ns;           // /proc/TID/ns/user (opened by prepare, before ID_VALID)
  UniqueFd mnt_ns;            // /proc/TID/ns/mnt
  bool same_user_ns = false;  // the caller is in the supervisor's own user namespace
  task::Credentials creds;    // host view
  // The rest of the user namespace part (same_user_ns and the maps) is read only when needed:
  // the direct thread never needs it, the helpers always do.
  bool has_user_ns = false;
  UniqueFd proc;  // /proc/TID, kept while the user namespace part is still to read
  std::vector<task::IdRange> uid_map;
  std::vector<task::IdRange> gid_map;
  // Set by the emulation when a `path` matcher decided: the directory (inside the caller's
  // root) the node must land in (create_as_caller).
  std::optional<std::string> expect_dir;
};

// Gathers a Request for `tid`. `dirfd` is the caller's dirfd argument (AT_FDCWD for mknod).
// Without `user_ns_now`, read_user_ns() must come before start().
[[nodiscard]] Result<Request> prepare(const task::TaskHandle& task, mode_t mode, std::uint32_t dev, int dirfd,
                                      bool user_ns_now = true);
// The user namespace part of `req`, later: while the caller still waits for the answer (its
// notification is pending, so it cannot have moved), and checked to be one namespace.
[[nodiscard]] Result<void> read_user_ns(Request& req, int proc_dir);

// A running emulation: wait until `pidfd` is readable, then call finish().
struct Running {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd diag;  // read end: {stage, errno} records from the helpers
  std::string node_name;
  UniqueFd tree;            // the node's mount, attached by the helper on success
  std::uint64_t ns_id = 0;  // the caller's mount namespace
};

// A device node attached for a container: its store name, and the mount that carries it (the
// unique mount id, STATX_MNT_ID_UNIQUE, in the mount namespace with id `ns_id`). Its store
// node is reclaimed once that mount is gone (umount, or the namespace's end), not only when
// the container's session ends.
struct Attached {
  std::string name;
  std::uint64_t mnt_id = 0;  // 0: unknown (kept until the session ends)
  std::uint64_t ns_id = 0;
  bool released = false;  // the mount is gone, the name too; the inode may live on in copies
};
// The most emulated nodes one container may hold at once (mounted, copies included);
// beyond it the caller gets ENOSPC, as from a full file system. The store (one tmpfs of about
// a million inodes) is shared by every container.
inline constexpr std::size_t kMaxNodesPerContainer = 1024;
// The mount namespace id of `ns_fd` (NS_GET_MNTNS_ID); 0 when unknown.
[[nodiscard]] std::uint64_t mount_ns_id(int ns_fd) noexcept;
// The unique id of the mount `fd` is on (STATX_MNT_ID_UNIQUE); 0 when unknown.
[[nodiscard]] std::uint64_t unique_mount_id(int fd) noexcept;
// Whether the mount is still there (statmount in its namespace). Unknown ids count as there.
[[nodiscard]] bool still_mounted(const Attached& node) noexcept;

// Who makes a device node for this caller (design.md, "Threat model": the capability counts in
// the user namespace that owns the object acted on, here the mount namespace the node lands in):
//   Kernel:  the caller lacks CAP_MKNOD there (a host user, `unshare -Ur` whose mount namespace
//            is the host's, a container user without it): the kernel answers with the caller's
//            own rights (CONTINUE), EPERM or an earlier errno, and nothing is made for it; or
//            it holds CAP_MKNOD where the kernel asks for it (host root): the kernel acts.
//   Emulate: CAP_MKNOD in the user namespace owning its mount namespace, not in the initial
//            one (a rootless container, `unshare -Urm`, rootless podman without CAP_SYS_ADMIN).
enum class Authority : std::uint8_t { Kernel, Emulate };
[[nodiscard]] Result<Authority> authorize(const Request& req);

// Starts the helpers for `path`, the safe copy of the caller's path. Fails with the kernel's
// errno (EBADF, ENOTDIR, ...) when a relative path has no start directory.
[[nodiscard]] Result<Running> start(const Request& req, const std::string& path, DeviceStore& store,
                                    std::string_view session);

struct Outcome {
  int err = 0;             // what the caller gets: 0 or an errno
  std::string diagnostic;  // non-empty when the machinery failed (not the caller's error)
};
// Reaps the helper. Must be called exactly once per Running, after the pidfd polls readable
// (or after kill() when giving up).
[[nodiscard]] Outcome finish(Running& run, const DeviceStore& store);
void kill(const Running& run);

}  // namespace sysvisor::mknod
