// A trapped call -> policy::Call: the typed fields decide() needs, decoded from the
// registers and, after the first ID_VALID, from safe copies of the caller's memory.
// Failures carry the errno the kernel itself would have given the caller (EFAULT for a bad
// pointer, ENAMETOOLONG for an overlong path, ...): the call is answered with it and never
// handed back to the kernel, which would read the memory again.
#pragma once

#include <linux/seccomp.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "sysvisor/error.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/task.hpp"

namespace sysvisor::decode {

// The raw call: x86_64 number and the arguments as the kernel takes them (the i386 ABI's
// 32-bit registers zero-extended). `fields` then says what else to decode.
[[nodiscard]] policy::Call raw_call(int nr, const seccomp_data& data, bool compat32);

// Fields held in registers (device type and numbers, mount/umount flags, xattr value size,
// setpriority's nice): no task access.
void from_registers(policy::Call& call, const policy::SyscallInfo& info, std::uint32_t fields);

// Fields held in memory: strings, paths (made absolute inside the container and lexically
// normalised), sched_param/sched_attr. `raw_path` receives the first path argument exactly
// as the caller passed it (emulators resolve it themselves, inside the container root).
[[nodiscard]] Result<void> from_memory(policy::Call& call, const policy::SyscallInfo& info,
                                       std::uint32_t fields, const task::TaskHandle& task,
                                       std::string* raw_path);

// What a forensic record says about a call's register arguments beyond the raw values (audit
// and learn modes, `audit_arguments: all`): names, not numbers. Empty where the call has none.
struct Forensic {
  std::string clone_flags;     // clone, unshare: "CLONE_NEWUSER|CLONE_NEWNS|0x..." (unknown bits in hex)
  std::string ns_type;         // setns: "CLONE_NEWNET", or "any" for 0
  std::string ptrace_request;  // ptrace: "PTRACE_ATTACH" (or the number)
  std::optional<std::int64_t> target_pid;  // ptrace's pid
  std::string bpf_cmd;                     // bpf: "BPF_PROG_LOAD" (or the number)
};
[[nodiscard]] Forensic forensic(const policy::Call& call);

// A host-view path (readlink of /proc/TID/cwd or fd/N) as the container sees it, given the
// host view of the container's root. A path outside the root keeps the kernel's marker
// "(unreachable)" in front, so no absolute glob matches it.
[[nodiscard]] std::string container_view(std::string_view root, std::string_view host_path);

}  // namespace sysvisor::decode
