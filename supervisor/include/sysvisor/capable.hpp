// The kernel's own rule for a privilege, written once: does a task hold capability `cap` in
// the user namespace that owns the object acted on? (kernel/security/commoncap.c,
// cap_capable()). Every emulator asks this before it acts for a caller; design.md, "Threat
// model": a capability in the caller's own user namespace says nothing about an object whose
// owner is an ancestor namespace (the host's mount table, a host process, a host inode).
#pragma once

#include <sys/types.h>

#include <cstdint>

#include "sysvisor/error.hpp"
#include "sysvisor/task.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::caps {

inline constexpr int kChown = 0;
inline constexpr int kDacOverride = 1;
inline constexpr int kFowner = 3;
inline constexpr int kSysAdmin = 21;
inline constexpr int kSysNice = 23;
inline constexpr int kMknod = 27;

[[nodiscard]] constexpr bool has(std::uint64_t cap_effective, int cap) {
  return (cap_effective >> static_cast<unsigned>(cap) & 1U) != 0;
}

// What cap_capable() reads of the acting task: its user namespace (an fd of /proc/TID/ns/user,
// opened before ID_VALID), its effective uid in the host's view, and its effective set.
struct Subject {
  int user_ns = -1;
  uid_t euid = 0;
  std::uint64_t cap_effective = 0;
};

// The user namespace that owns namespace `ns_fd` (NS_GET_USERNS).
[[nodiscard]] Result<UniqueFd> owner_of(int ns_fd);

// Whether `subject` holds `cap` in user namespace `target_user_ns`: the target is the
// subject's own namespace and the capability is in its effective set, or the target descends
// from the subject's namespace through a child namespace the subject's euid created. Errors
// only when a namespace cannot be inspected (the caller answers EPERM then).
[[nodiscard]] Result<bool> capable(const Subject& subject, int target_user_ns, int cap);

// The same for a namespace of any type (a mount namespace: its owner is asked).
[[nodiscard]] Result<bool> capable_over(const Subject& subject, int ns_fd, int cap);

// Whether two namespace fds name the same namespace.
[[nodiscard]] Result<bool> same_ns(int a, int b);

}  // namespace sysvisor::caps
