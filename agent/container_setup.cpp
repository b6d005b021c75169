#include "container_setup.hpp"

#include <fcntl.h>
#include <grp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <initializer_list>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::agent {
namespace {

// Opens DIR of the rootfs (the cwd) as a mount point, creating it when missing; a symlink is
// refused rather than followed.
Result<UniqueFd> open_mount_point(const std::string& rootfs, const char* dir) {
  const std::string shown = rootfs + "/" + dir;
  for (int attempt = 0;; ++attempt) {
    UniqueFd fd(::openat(AT_FDCWD, dir, O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (fd) {
      return fd;
    }
    if (errno != ENOENT || attempt > 0) {
      return sys_error("open `" + shown + "` as a mount point");
    }
    if (::mkdirat(AT_FDCWD, dir, 0755) != 0 && errno != EEXIST) {
      return sys_error("create `" + shown + "`");
    }
  }
}

// The kernel's own explanation of a failed fsconfig/fsmount, when it left one.
std::string fs_context_log(int fsfd) {
  std::array<char, 512> buf{};
  const ssize_t n = ::read(fsfd, buf.data(), buf.size() - 1);
  if (n <= 2) {
    return {};
  }
  std::string line(buf.data(), static_cast<std::size_t>(n));
  while (!line.empty() && line.back() == '\n') {
    line.pop_back();
  }
  return " (" + line.substr(2) + ")";  // drop the "e " severity prefix
}

struct FsOption {
  const char* key;
  const char* value;
};

// Mounts a fresh `fstype` on DIR of the rootfs with the new mount API: nothing is resolved by
// path after the mount point was opened.
Result<void> mount_fresh(const std::string& rootfs, const char* dir, const char* fstype,
                         std::initializer_list<FsOption> options, unsigned attrs) {
  const std::string what = std::string("mount ") + fstype + " on `" + rootfs + "/" + dir + "`";
  auto target = open_mount_point(rootfs, dir);
  if (!target) {
    return std::unexpected(target.error());
  }
  UniqueFd fs(::fsopen(fstype, FSOPEN_CLOEXEC));
  if (!fs) {
    return sys_error(what + ": fsopen");
  }
  for (const FsOption& option : options) {
    if (::fsconfig(fs.get(), FSCONFIG_SET_STRING, option.key, option.value, 0) != 0) {
      const int err = errno;
      return sys_error(err, what + ": option " + option.key + "=" + option.value + fs_context_log(fs.get()));
    }
  }
  if (::fsconfig(fs.get(), FSCONFIG_CMD_CREATE, nullptr, nullptr, 0) != 0) {
    const int err = errno;
    return sys_error(err, what + fs_context_log(fs.get()));
  }
  UniqueFd mnt(::fsmount(fs.get(), FSMOUNT_CLOEXEC, attrs));
  if (!mnt) {
    const int err = errno;
    return sys_error(err, what + fs_context_log(fs.get()));
  }
  if (::move_mount(mnt.get(), "", target->get(), "", MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH) !=
      0) {
    return sys_error(what + ": move_mount");
  }
  return {};
}

}  // namespace

// Done with the caller's host credentials: see the header.
Result<void> enter_rootfs(const std::string& rootfs) {
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    return sys_error("make `/` a private mount tree");
  }
  if (::mount(rootfs.c_str(), rootfs.c_str(), nullptr, MS_BIND | MS_REC, nullptr) != 0) {
    return sys_error("bind mount `" + rootfs + "` onto itself");
  }
  if (::chdir(rootfs.c_str()) != 0) {
    return sys_error("enter `" + rootfs + "`");
  }
  return {};
}

Result<void> become_root() {
  // EPERM when newgidmap wrote "deny" to setgroups: the host groups stay unmapped, harmless.
  if (::setgroups(0, nullptr) != 0 && errno != EPERM) {
    return sys_error("drop supplementary groups");
  }
  if (::setresgid(0, 0, 0) != 0) {
    return sys_error("setresgid(0, 0, 0) in the container's user namespace");
  }
  if (::setresuid(0, 0, 0) != 0) {
    return sys_error("setresuid(0, 0, 0) in the container's user namespace");
  }
  return {};
}

Result<void> mount_filesystems(const std::string& rootfs) {
  if (auto done = mount_fresh(rootfs, "proc", "proc", {{"source", "proc"}},
                              MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC);
      !done) {
    return done;
  }
  return mount_fresh(rootfs, "dev", "tmpfs", {{"source", "tmpfs"}, {"mode", "0755"}, {"size", "65536k"}},
                     MOUNT_ATTR_NOSUID);
}

// pivot_root(".", ".") stacks the old root on top of the new one; detaching "." removes it.
Result<void> pivot_into_cwd(const std::string& rootfs) {
  if (::syscall(SYS_pivot_root, ".", ".") != 0) {
    return sys_error("pivot_root into `" + rootfs + "`");
  }
  if (::umount2(".", MNT_DETACH) != 0) {
    return sys_error("detach the old root");
  }
  if (::chdir("/") != 0) {
    return sys_error("chdir to the new root");
  }
  return {};
}

}  // namespace sysvisor::agent
