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

#include <cstdint>
#include <filesystem>
#include <optional>
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

// The private tmpfs that holds the device inodes bind-mounted into containers. It is mounted
// in the supervisor's own mount namespace (see main: the daemon unshares one at start), so
// the host never sees its nodes.
class DeviceStore {
 public:
  [[nodiscard]] static Result<DeviceStore> create(const std::filesystem::path& dir);

  // Makes a node (mode 0, root-owned until the helper sets the placeholder's owner) and
  // returns its name and a detached mount clone of it (open_tree OPEN_TREE_CLONE).
  struct Node {
    std::string name;
    UniqueFd tree;
  };
  [[nodiscard]] Result<Node> make_node(std::string_view session, mode_t type, std::uint32_t dev);
  // Nodes still mounted in a container live on through the mount; the name goes.
  void remove_node(const std::string& name) const;
  [[nodiscard]] int dir_fd() const noexcept { return dir_.get(); }

 private:
  UniqueFd dir_;
  std::uint64_t counter_ = 0;
};

// What the dispatcher gathers from /proc/TID before the first ID_VALID, when the path is
// not copied yet: so the start directory is opened whether or not the path turns out relative.
struct Request {
  mode_t mode = 0;  // 16 bits, as the kernel takes it
  std::uint32_t dev = 0;
  UniqueFd root;              // the caller's root directory
  UniqueFd start;             // its cwd, or its dirfd's directory
  int start_err = 0;          // why `start` could not be opened: the kernel's errno for a relative path
  UniqueFd user_ns;           // /proc/TID/ns/user
  UniqueFd mnt_ns;            // /proc/TID/ns/mnt
  bool same_user_ns = false;  // the caller is in the supervisor's own user namespace
  task::Credentials creds;    // host view
  std::vector<task::IdRange> uid_map;
  std::vector<task::IdRange> gid_map;
};

// Gathers a Request for `tid`. `dirfd` is the caller's dirfd argument (AT_FDCWD for mknod).
[[nodiscard]] Result<Request> prepare(const task::TaskHandle& task, mode_t mode, std::uint32_t dev,
                                      int dirfd);

// A running emulation: wait until `pidfd` is readable, then call finish().
struct Running {
  pid_t pid = -1;
  UniqueFd pidfd;
  UniqueFd diag;  // read end: {stage, errno} records from the helpers
  std::string node_name;
};

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
