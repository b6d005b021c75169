// The syscall table: where each syscall's paths are, which typed matchers apply to it, and which
// have an emulator. A new handler sets `emulator` on its row; a new matcher adds its Field bit.
#include "sysvisor/syscalls.hpp"

#include <sys/syscall.h>

#include <algorithm>

#include "sysvisor/policy.hpp"

namespace sysvisor::policy {
namespace {

constexpr std::uint32_t kDevice = kFieldDevice | kFieldPath;
constexpr std::uint32_t kXattrSet = kFieldXattrName | kFieldValueSize | kFieldPath;
constexpr std::uint32_t kXattr = kFieldXattrName | kFieldPath;
// listxattr and friends have no name: an `xattr` matcher on them names what the emulated list
// may add (is_xattr_list()), it holds for every call.
constexpr std::uint32_t kXattrList = kFieldXattrName | kFieldPath;

// A path relative to the cwd in args[path].
constexpr PathArg cwd(std::int8_t path) {
  return PathArg{kNoArg, path};
}
// A path in args[path] relative to the directory fd args[dirfd].
constexpr PathArg at(std::int8_t dirfd, std::int8_t path) {
  return PathArg{dirfd, path};
}
// The file the descriptor args[fd] refers to.
constexpr PathArg fd(std::int8_t fd) {
  return PathArg{fd, kPathIsFd};
}

constexpr SyscallInfo row(int nr, std::string_view name, Family family, std::array<PathArg, 2> paths,
                          std::uint32_t fields, bool emulator = false) {
  return SyscallInfo{nr, name, family, paths, fields, emulator};
}
// A syscall whose only typed matcher is `path`.
constexpr SyscallInfo path_row(int nr, std::string_view name, PathArg first, PathArg second = PathArg{}) {
  return SyscallInfo{nr, name, Family::None, {first, second}, kFieldPath, false};
}

constexpr std::array kTable = std::to_array<SyscallInfo>({
    path_row(SYS_open, "open", cwd(0)),
    path_row(SYS_stat, "stat", cwd(0)),
    path_row(SYS_lstat, "lstat", cwd(0)),
    path_row(SYS_access, "access", cwd(0)),
    row(SYS_execve, "execve", Family::None, {cwd(0)}, kFieldPath | kFieldArgv),
    path_row(SYS_truncate, "truncate", cwd(0)),
    path_row(SYS_chdir, "chdir", cwd(0)),
    path_row(SYS_rename, "rename", cwd(0), cwd(1)),
    path_row(SYS_mkdir, "mkdir", cwd(0)),
    path_row(SYS_rmdir, "rmdir", cwd(0)),
    path_row(SYS_creat, "creat", cwd(0)),
    path_row(SYS_link, "link", cwd(0), cwd(1)),
    path_row(SYS_unlink, "unlink", cwd(0)),
    path_row(SYS_symlink, "symlink", cwd(1)),  // args[0] is the link's content, not looked up
    path_row(SYS_readlink, "readlink", cwd(0)),
    path_row(SYS_chmod, "chmod", cwd(0)),
    path_row(SYS_chown, "chown", cwd(0)),
    path_row(SYS_lchown, "lchown", cwd(0)),
    row(SYS_sysinfo, "sysinfo", Family::Sysinfo, {}, kFieldNone, true),
    row(SYS_mknod, "mknod", Family::Mknod, {cwd(0)}, kDevice, true),
    path_row(SYS_statfs, "statfs", cwd(0)),
    row(SYS_setpriority, "setpriority", Family::Sched, {}, kFieldSched, true),
    row(SYS_sched_setparam, "sched_setparam", Family::Sched, {}, kFieldSched),
    row(SYS_sched_setscheduler, "sched_setscheduler", Family::Sched, {}, kFieldSched, true),
    path_row(SYS_pivot_root, "pivot_root", cwd(0), cwd(1)),
    path_row(SYS_chroot, "chroot", cwd(0)),
    path_row(SYS_acct, "acct", cwd(0)),
    row(SYS_mount, "mount", Family::Mount, {cwd(1)},
        kFieldSource | kFieldTarget | kFieldFstype | kFieldFlags | kFieldPath, true),
    row(SYS_umount2, "umount2", Family::Umount, {cwd(0)}, kFieldTarget | kFieldFlags | kFieldPath, true),
    path_row(SYS_swapon, "swapon", cwd(0)),
    path_row(SYS_swapoff, "swapoff", cwd(0)),
    row(SYS_setxattr, "setxattr", Family::Xattr, {cwd(0)}, kXattrSet, true),
    row(SYS_lsetxattr, "lsetxattr", Family::Xattr, {cwd(0)}, kXattrSet, true),
    row(SYS_fsetxattr, "fsetxattr", Family::Xattr, {fd(0)}, kXattrSet, true),
    row(SYS_getxattr, "getxattr", Family::Xattr, {cwd(0)}, kXattr, true),
    row(SYS_lgetxattr, "lgetxattr", Family::Xattr, {cwd(0)}, kXattr, true),
    row(SYS_fgetxattr, "fgetxattr", Family::Xattr, {fd(0)}, kXattr, true),
    row(SYS_listxattr, "listxattr", Family::Xattr, {cwd(0)}, kXattrList, true),
    row(SYS_llistxattr, "llistxattr", Family::Xattr, {cwd(0)}, kXattrList, true),
    row(SYS_flistxattr, "flistxattr", Family::Xattr, {fd(0)}, kXattrList, true),
    row(SYS_removexattr, "removexattr", Family::Xattr, {cwd(0)}, kXattr, true),
    row(SYS_lremovexattr, "lremovexattr", Family::Xattr, {cwd(0)}, kXattr, true),
    row(SYS_fremovexattr, "fremovexattr", Family::Xattr, {fd(0)}, kXattr, true),
    path_row(SYS_inotify_add_watch, "inotify_add_watch", cwd(1)),  // args[0] is the inotify fd
    path_row(SYS_openat, "openat", at(0, 1)),
    path_row(SYS_mkdirat, "mkdirat", at(0, 1)),
    row(SYS_mknodat, "mknodat", Family::Mknod, {at(0, 1)}, kDevice, true),
    path_row(SYS_fchownat, "fchownat", at(0, 1)),
    path_row(SYS_newfstatat, "newfstatat", at(0, 1)),
    path_row(SYS_unlinkat, "unlinkat", at(0, 1)),
    path_row(SYS_renameat, "renameat", at(0, 1), at(2, 3)),
    path_row(SYS_linkat, "linkat", at(0, 1), at(2, 3)),
    path_row(SYS_symlinkat, "symlinkat", at(1, 2)),
    path_row(SYS_readlinkat, "readlinkat", at(0, 1)),
    path_row(SYS_fchmodat, "fchmodat", at(0, 1)),
    path_row(SYS_faccessat, "faccessat", at(0, 1)),
    path_row(SYS_utimensat, "utimensat", at(0, 1)),
    path_row(SYS_name_to_handle_at, "name_to_handle_at", at(0, 1)),
    row(SYS_sched_setattr, "sched_setattr", Family::Sched, {}, kFieldSched, true),
    path_row(SYS_renameat2, "renameat2", at(0, 1), at(2, 3)),
    row(SYS_execveat, "execveat", Family::None, {at(0, 1)}, kFieldPath | kFieldArgv),
    path_row(SYS_statx, "statx", at(0, 1)),
    path_row(SYS_open_tree, "open_tree", at(0, 1)),
    path_row(SYS_fspick, "fspick", at(0, 1)),
    path_row(SYS_openat2, "openat2", at(0, 1)),
    path_row(SYS_faccessat2, "faccessat2", at(0, 1)),
    path_row(SYS_mount_setattr, "mount_setattr", at(0, 1)),
});

static_assert(std::ranges::is_sorted(kTable, std::ranges::less{}, &SyscallInfo::nr),
              "kTable is searched by number: keep it sorted by nr");
static_assert(std::ranges::adjacent_find(kTable, std::ranges::equal_to{}, &SyscallInfo::nr) == kTable.end(),
              "one row per syscall");

}  // namespace

bool is_xattr_list(int nr) {
  return nr == SYS_listxattr || nr == SYS_llistxattr || nr == SYS_flistxattr;
}

const SyscallInfo* syscall_info(int nr) {
  auto it = std::ranges::lower_bound(kTable, nr, {}, &SyscallInfo::nr);
  return it != kTable.end() && it->nr == nr ? &*it : nullptr;
}

}  // namespace sysvisor::policy
