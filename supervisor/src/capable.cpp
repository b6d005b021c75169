#include "sysvisor/capable.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <sys/ioctl.h>
#include <sys/stat.h>

namespace sysvisor::caps {

Result<UniqueFd> owner_of(int ns_fd) {
  UniqueFd owner(::ioctl(ns_fd, NS_GET_USERNS));
  if (!owner) return sys_error("ioctl NS_GET_USERNS");
  return owner;
}

Result<bool> same_ns(int a, int b) {
  struct stat sa {};
  struct stat sb {};
  if (::fstat(a, &sa) != 0 || ::fstat(b, &sb) != 0) return sys_error("fstat of a namespace");
  return sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

Result<bool> capable(const Subject& subject, int target_user_ns, int cap) {
  UniqueFd walk(::fcntl(target_user_ns, F_DUPFD_CLOEXEC, 0));
  if (!walk) return sys_error("dup a user namespace fd");
  // A chain of user namespaces is at most 32 deep (the kernel's limit); 40 bounds the walk.
  for (int depth = 0; depth < 40; ++depth) {
    auto same = same_ns(walk.get(), subject.user_ns);
    if (!same) return std::unexpected(same.error());
    if (*same) return has(subject.cap_effective, cap);
    UniqueFd parent(::ioctl(walk.get(), NS_GET_PARENT));
    if (!parent) {
      // EPERM: the initial namespace (no parent visible to us): the subject is not an ancestor.
      if (errno == EPERM) return false;
      return sys_error("ioctl NS_GET_PARENT");
    }
    auto parent_is_subjects = same_ns(parent.get(), subject.user_ns);
    if (!parent_is_subjects) return std::unexpected(parent_is_subjects.error());
    if (*parent_is_subjects) {
      uid_t owner = 0;
      if (::ioctl(walk.get(), NS_GET_OWNER_UID, &owner) != 0) return sys_error("ioctl NS_GET_OWNER_UID");
      // The creator of a child namespace holds every capability in it (cap_capable()).
      if (owner == subject.euid) return true;
    }
    walk = std::move(parent);
  }
  return false;
}

Result<bool> capable_over(const Subject& subject, int ns_fd, int cap) {
  auto owner = owner_of(ns_fd);
  if (!owner) return std::unexpected(owner.error());
  return capable(subject, owner->get(), cap);
}

}  // namespace sysvisor::caps
