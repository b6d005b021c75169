// Compiles a policy into the seccomp BPF program the agent installs.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <optional>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/policy.hpp"

namespace sysvisor::filter {

// The ABIs every filter covers: x86_64, i386 (int $0x80) and x32. A call through any of
// them is matched by the same rules, so none is a way around the policy.
//
// The program returns SECCOMP_RET_USER_NOTIF only for what the rules need: each rule that
// is not a plain `allow` traps its syscalls under its raw `args` conditions (mknod/mknodat
// also only when (mode & S_IFMT) is a device type the rule can match). ERRNO(EBUSY) for a
// nested seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER), ALLOW otherwise.
[[nodiscard]] Result<std::vector<sock_filter>> compile(const policy::Policy& policy);

// The x86_64 number of the call a notification is about: `arch` and `nr` as in struct
// seccomp_data (an x32 call arrives as AUDIT_ARCH_X86_64 with __X32_SYSCALL_BIT set in nr).
// Calls of other ABIs map by name; nullopt for one x86_64 does not have (i386 socketcall).
[[nodiscard]] std::optional<int> identify(std::uint32_t arch, int nr);

// True for the 32-bit ABIs, whose pointer and integer arguments are 32 bits wide (i386).
[[nodiscard]] bool is_compat32(std::uint32_t arch);

}  // namespace sysvisor::filter
