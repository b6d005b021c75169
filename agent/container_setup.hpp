// The container init's setup of its root filesystem and identity, in the order it runs them:
// enter_rootfs, become_root, mount_filesystems, pivot_into_cwd. Each runs in the new user and
// mount namespaces, before the filter.
#pragma once

#include <string>

#include "sysvisor/error.hpp"

namespace sysvisor::agent {

// Makes the mount tree private, binds `rootfs` onto itself (pivot_root wants a mount point) and
// enters it. Run with the caller's host credentials, which may traverse directories the
// container's root may not (a rootfs under a 0700 directory of the caller).
Result<void> enter_rootfs(const std::string& rootfs);

// Becomes uid 0 / gid 0 of the user namespace without supplementary groups, keeping the
// namespace's full capability set.
Result<void> become_root();

// On the cwd (the rootfs): /proc, the new pid namespace's procfs; /dev, an empty tmpfs (0755,
// no device nodes). Mount points are created when missing; symlinks are refused.
Result<void> mount_filesystems(const std::string& rootfs);

// Makes the cwd the root (pivot_root(".", "."), then detaches the old root stacked on it).
Result<void> pivot_into_cwd(const std::string& rootfs);

}  // namespace sysvisor::agent
