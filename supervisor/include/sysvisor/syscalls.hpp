// What sysvisor knows about individual syscalls beyond their numbers: where their paths are,
// which typed matchers apply to them, and which have an emulator. Pure data.
#pragma once

#include <array>
#include <cstdint>
#include <string_view>

namespace sysvisor::policy {

enum class Family : std::uint8_t { None, Mknod, Mount, Umount, Xattr, Sched, Sysinfo };

// A path argument: the string at args[path], relative to the directory fd args[dirfd]
// (dirfd < 0: relative to the cwd). path == kPathIsFd: no string; the path is that of the
// file args[dirfd] refers to (fsetxattr and friends).
inline constexpr std::int8_t kNoArg = -1;
inline constexpr std::int8_t kPathIsFd = -2;
struct PathArg {
  std::int8_t dirfd = kNoArg;
  std::int8_t path = kNoArg;  // kNoArg: this slot is unused
};

struct SyscallInfo {
  int nr = -1;  // x86_64
  std::string_view name;
  Family family = Family::None;
  std::array<PathArg, 2> paths{};  // what a `path` matcher sees
  std::uint32_t fields = 0;        // policy::Field bits a typed matcher may use on it
  bool emulator = false;           // `action: emulate` is allowed
};

// nullptr for a syscall with no typed matcher (only raw `args` conditions apply to it).
[[nodiscard]] const SyscallInfo* syscall_info(int nr);
// listxattr, llistxattr, flistxattr: no attribute name in the call; an `xattr` matcher on them
// names the attributes the emulated list may add, and holds for every call.
[[nodiscard]] bool is_xattr_list(int nr);

}  // namespace sysvisor::policy
