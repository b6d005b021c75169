#include "sysvisor/decode.hpp"

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/limits.h>
#include <linux/ptrace.h>
#include <linux/sched.h>
#include <linux/xattr.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstdio>
#include <limits>
#include <utility>
#include <vector>

namespace sysvisor::decode {

using policy::normalize_path;

namespace {

// The kernel copies mount's type and source with strndup_user(.., PATH_MAX) and xattr
// names into a buffer of XATTR_NAME_MAX + 1.
constexpr std::size_t kMountString = PATH_MAX;
constexpr std::size_t kXattrName = XATTR_NAME_MAX + 1;
constexpr std::int32_t kSchedResetOnFork = 0x40000000;  // SCHED_RESET_ON_FORK, linux/sched.h

Result<std::string> readlink_at(int dir, const std::string& name) {
  std::array<char, PATH_MAX + 1> buf{};
  const ssize_t n = ::readlinkat(dir, name.c_str(), buf.data(), buf.size());
  if (n < 0) return sys_error("readlink " + name);
  if (static_cast<std::size_t>(n) >= buf.size()) return sys_error(ENAMETOOLONG, "readlink " + name);
  return std::string(buf.data(), static_cast<std::size_t>(n));
}

// The fd's file as the container sees it; EBADF when the caller has no such fd.
Result<std::string> fd_path(const task::TaskHandle& task, std::uint64_t fd_arg, const std::string& root) {
  const auto fd = static_cast<std::int32_t>(fd_arg);
  if (fd < 0) return sys_error(EBADF, "dirfd");
  auto link = readlink_at(task.proc_dir(), "fd/" + std::to_string(fd));
  if (!link) return sys_error(link.error().err == ENOENT ? EBADF : link.error().err, "dirfd");
  return container_view(root, *link);
}

std::uint64_t pointer(std::uint64_t arg) {
  return arg;  // raw_call already zero-extended the 32-bit ABI's registers
}

Result<std::string> string_arg(const task::TaskHandle& task, std::uint64_t arg, std::size_t max) {
  if (pointer(arg) == 0) return sys_error(EFAULT, "NULL string");
  return task::read_string(task.mem(), pointer(arg), max);
}

Result<void> read_bytes(const task::TaskHandle& task, std::uint64_t address, void* out, std::size_t size) {
  if (address == 0 || address > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
    return sys_error(EFAULT, "read task memory");
  }
  const ssize_t n = ::pread(task.mem(), out, size, static_cast<off_t>(address));
  if (n != static_cast<ssize_t>(size)) return sys_error(EFAULT, "read task memory");
  return {};
}

// struct sched_attr's first fields (uapi linux/sched/types.h).
struct SchedAttrHead {
  std::uint32_t size;
  std::uint32_t sched_policy;
  std::uint64_t sched_flags;
  std::int32_t sched_nice;
  std::uint32_t sched_priority;
};

// execve's argv in a record: at most this many strings of at most this many bytes each.
constexpr std::size_t kArgvMax = 32;
constexpr std::size_t kArgMax = 256;

// argv: an array of pointers (4 bytes each in the i386 ABI) ending with NULL.
void read_argv(policy::Call& call, const task::TaskHandle& task, std::uint64_t at) {
  const std::size_t width = call.compat32 ? 4 : 8;
  for (std::size_t i = 0; i <= kArgvMax; ++i) {
    std::uint64_t ptr = 0;
    if (auto ok = read_bytes(task, at + i * width, &ptr, width); !ok) {
      call.argv_error = policy::errno_name(ok.error().err);
      return;
    }
    if (ptr == 0) return;
    if (i == kArgvMax) {
      call.argv_truncated = true;
      return;
    }
    auto arg = task::read_string(task.mem(), ptr, kArgMax);
    if (!arg && arg.error().err == ENAMETOOLONG) {
      std::string head(kArgMax, '\0');
      if (read_bytes(task, ptr, head.data(), head.size())) {
        call.argv.push_back(std::move(head));
        call.argv_truncated = true;
        continue;
      }
    }
    if (!arg) {
      call.argv_error = policy::errno_name(arg.error().err);
      return;
    }
    call.argv.push_back(std::move(*arg));
  }
}

std::string number(std::uint64_t v) {
  return std::to_string(v);
}

template <std::size_t N>
std::string name_of(const std::array<std::pair<std::uint64_t, const char*>, N>& names, std::uint64_t v) {
  for (const auto& [value, name] : names) {
    if (value == v && name != nullptr) return name;
  }
  return number(v);
}

constexpr std::array<std::pair<std::uint64_t, const char*>, 27> kCloneFlags{{
    {CLONE_VM, "CLONE_VM"},
    {CLONE_FS, "CLONE_FS"},
    {CLONE_FILES, "CLONE_FILES"},
    {CLONE_SIGHAND, "CLONE_SIGHAND"},
    {CLONE_PIDFD, "CLONE_PIDFD"},
    {CLONE_PTRACE, "CLONE_PTRACE"},
    {CLONE_VFORK, "CLONE_VFORK"},
    {CLONE_PARENT, "CLONE_PARENT"},
    {CLONE_THREAD, "CLONE_THREAD"},
    {CLONE_NEWNS, "CLONE_NEWNS"},
    {CLONE_SYSVSEM, "CLONE_SYSVSEM"},
    {CLONE_SETTLS, "CLONE_SETTLS"},
    {CLONE_PARENT_SETTID, "CLONE_PARENT_SETTID"},
    {CLONE_CHILD_CLEARTID, "CLONE_CHILD_CLEARTID"},
    {CLONE_DETACHED, "CLONE_DETACHED"},
    {CLONE_UNTRACED, "CLONE_UNTRACED"},
    {CLONE_CHILD_SETTID, "CLONE_CHILD_SETTID"},
    {CLONE_NEWCGROUP, "CLONE_NEWCGROUP"},
    {CLONE_NEWUTS, "CLONE_NEWUTS"},
    {CLONE_NEWIPC, "CLONE_NEWIPC"},
    {CLONE_NEWUSER, "CLONE_NEWUSER"},
    {CLONE_NEWPID, "CLONE_NEWPID"},
    {CLONE_NEWNET, "CLONE_NEWNET"},
    {CLONE_IO, "CLONE_IO"},
    {0x80ULL /* CLONE_NEWTIME */, "CLONE_NEWTIME"},
    {0x100000000ULL /* CLONE_CLEAR_SIGHAND */, "CLONE_CLEAR_SIGHAND"},
    {0x200000000ULL /* CLONE_INTO_CGROUP */, "CLONE_INTO_CGROUP"},
}};

// Flag names joined by '|', then what no name covers in hex. `skip`: bits that are no flags
// (clone's exit signal).
std::string flag_names(std::uint64_t v, std::uint64_t skip) {
  std::string out;
  std::uint64_t rest = v & ~skip;
  for (const auto& [bit, name] : kCloneFlags) {
    if ((rest & bit) != bit) continue;
    out += (out.empty() ? "" : "|") + std::string(name);
    rest &= ~bit;
  }
  if (rest != 0) {
    std::array<char, 24> hex{};
    std::snprintf(hex.data(), hex.size(), "0x%llx", static_cast<unsigned long long>(rest));
    out += (out.empty() ? "" : "|") + std::string(hex.data());
  }
  return out.empty() ? "0" : out;
}

constexpr std::array<std::pair<std::uint64_t, const char*>, 33> kPtrace{{
    {PTRACE_TRACEME, "PTRACE_TRACEME"},
    {PTRACE_PEEKTEXT, "PTRACE_PEEKTEXT"},
    {PTRACE_PEEKDATA, "PTRACE_PEEKDATA"},
    {PTRACE_PEEKUSR, "PTRACE_PEEKUSER"},
    {PTRACE_POKETEXT, "PTRACE_POKETEXT"},
    {PTRACE_POKEDATA, "PTRACE_POKEDATA"},
    {PTRACE_POKEUSR, "PTRACE_POKEUSER"},
    {PTRACE_CONT, "PTRACE_CONT"},
    {PTRACE_KILL, "PTRACE_KILL"},
    {PTRACE_SINGLESTEP, "PTRACE_SINGLESTEP"},
    {12, "PTRACE_GETREGS"},
    {13, "PTRACE_SETREGS"},
    {14, "PTRACE_GETFPREGS"},
    {15, "PTRACE_SETFPREGS"},
    {PTRACE_ATTACH, "PTRACE_ATTACH"},
    {PTRACE_DETACH, "PTRACE_DETACH"},
    {PTRACE_SYSCALL, "PTRACE_SYSCALL"},
    {PTRACE_SETOPTIONS, "PTRACE_SETOPTIONS"},
    {PTRACE_GETEVENTMSG, "PTRACE_GETEVENTMSG"},
    {PTRACE_GETSIGINFO, "PTRACE_GETSIGINFO"},
    {PTRACE_SETSIGINFO, "PTRACE_SETSIGINFO"},
    {PTRACE_GETREGSET, "PTRACE_GETREGSET"},
    {PTRACE_SETREGSET, "PTRACE_SETREGSET"},
    {PTRACE_SEIZE, "PTRACE_SEIZE"},
    {PTRACE_INTERRUPT, "PTRACE_INTERRUPT"},
    {PTRACE_LISTEN, "PTRACE_LISTEN"},
    {PTRACE_PEEKSIGINFO, "PTRACE_PEEKSIGINFO"},
    {PTRACE_GETSIGMASK, "PTRACE_GETSIGMASK"},
    {PTRACE_SETSIGMASK, "PTRACE_SETSIGMASK"},
    {PTRACE_SECCOMP_GET_FILTER, "PTRACE_SECCOMP_GET_FILTER"},
    {PTRACE_SECCOMP_GET_METADATA, "PTRACE_SECCOMP_GET_METADATA"},
    {PTRACE_GET_SYSCALL_INFO, "PTRACE_GET_SYSCALL_INFO"},
    {0x420f, "PTRACE_GET_RSEQ_CONFIGURATION"},
}};

constexpr std::array<std::pair<std::uint64_t, const char*>, 37> kBpf{{
    {BPF_MAP_CREATE, "BPF_MAP_CREATE"},
    {BPF_MAP_LOOKUP_ELEM, "BPF_MAP_LOOKUP_ELEM"},
    {BPF_MAP_UPDATE_ELEM, "BPF_MAP_UPDATE_ELEM"},
    {BPF_MAP_DELETE_ELEM, "BPF_MAP_DELETE_ELEM"},
    {BPF_MAP_GET_NEXT_KEY, "BPF_MAP_GET_NEXT_KEY"},
    {BPF_PROG_LOAD, "BPF_PROG_LOAD"},
    {BPF_OBJ_PIN, "BPF_OBJ_PIN"},
    {BPF_OBJ_GET, "BPF_OBJ_GET"},
    {BPF_PROG_ATTACH, "BPF_PROG_ATTACH"},
    {BPF_PROG_DETACH, "BPF_PROG_DETACH"},
    {BPF_PROG_TEST_RUN, "BPF_PROG_TEST_RUN"},
    {BPF_PROG_GET_NEXT_ID, "BPF_PROG_GET_NEXT_ID"},
    {BPF_MAP_GET_NEXT_ID, "BPF_MAP_GET_NEXT_ID"},
    {BPF_PROG_GET_FD_BY_ID, "BPF_PROG_GET_FD_BY_ID"},
    {BPF_MAP_GET_FD_BY_ID, "BPF_MAP_GET_FD_BY_ID"},
    {BPF_OBJ_GET_INFO_BY_FD, "BPF_OBJ_GET_INFO_BY_FD"},
    {BPF_PROG_QUERY, "BPF_PROG_QUERY"},
    {BPF_RAW_TRACEPOINT_OPEN, "BPF_RAW_TRACEPOINT_OPEN"},
    {BPF_BTF_LOAD, "BPF_BTF_LOAD"},
    {BPF_BTF_GET_FD_BY_ID, "BPF_BTF_GET_FD_BY_ID"},
    {BPF_TASK_FD_QUERY, "BPF_TASK_FD_QUERY"},
    {BPF_MAP_LOOKUP_AND_DELETE_ELEM, "BPF_MAP_LOOKUP_AND_DELETE_ELEM"},
    {BPF_MAP_FREEZE, "BPF_MAP_FREEZE"},
    {BPF_BTF_GET_NEXT_ID, "BPF_BTF_GET_NEXT_ID"},
    {BPF_MAP_LOOKUP_BATCH, "BPF_MAP_LOOKUP_BATCH"},
    {BPF_MAP_LOOKUP_AND_DELETE_BATCH, "BPF_MAP_LOOKUP_AND_DELETE_BATCH"},
    {BPF_MAP_UPDATE_BATCH, "BPF_MAP_UPDATE_BATCH"},
    {BPF_MAP_DELETE_BATCH, "BPF_MAP_DELETE_BATCH"},
    {BPF_LINK_CREATE, "BPF_LINK_CREATE"},
    {BPF_LINK_UPDATE, "BPF_LINK_UPDATE"},
    {BPF_LINK_GET_FD_BY_ID, "BPF_LINK_GET_FD_BY_ID"},
    {BPF_LINK_GET_NEXT_ID, "BPF_LINK_GET_NEXT_ID"},
    {BPF_ENABLE_STATS, "BPF_ENABLE_STATS"},
    {BPF_ITER_CREATE, "BPF_ITER_CREATE"},
    {BPF_LINK_DETACH, "BPF_LINK_DETACH"},
    {BPF_PROG_BIND_MAP, "BPF_PROG_BIND_MAP"},
    {36, "BPF_TOKEN_CREATE"},
}};

// Every row written: a short initialiser would leave {0, nullptr} rows.
constexpr bool all_named(const auto& table) {
  return std::ranges::none_of(table, [](const auto& e) { return e.second == nullptr; });
}
static_assert(all_named(kCloneFlags) && all_named(kPtrace) && all_named(kBpf));

}  // namespace

Forensic forensic(const policy::Call& call) {
  Forensic f;
  switch (call.nr) {
    case SYS_clone:
      f.clone_flags = flag_names(call.args[0], CSIGNAL);
      break;
    case SYS_unshare:
      f.clone_flags = flag_names(call.args[0], 0);
      break;
    case SYS_setns: {
      const std::uint64_t t = static_cast<std::uint32_t>(call.args[1]);
      f.ns_type = t == 0 ? "any" : flag_names(t, 0);
      break;
    }
    case SYS_ptrace:
      f.ptrace_request = name_of(kPtrace, call.args[0]);
      f.target_pid = static_cast<std::int32_t>(call.args[1]);
      break;
    case SYS_bpf:
      f.bpf_cmd = name_of(kBpf, static_cast<std::uint32_t>(call.args[0]));
      break;
    default:
      break;
  }
  return f;
}

policy::Call raw_call(int nr, const seccomp_data& data, bool compat32) {
  policy::Call call;
  call.nr = nr;
  call.compat32 = compat32;
  for (std::size_t i = 0; i < call.args.size(); ++i) {
    call.args[i] = compat32 ? static_cast<std::uint32_t>(data.args[i]) : data.args[i];
  }
  return call;
}

void from_registers(policy::Call& call, const policy::SyscallInfo& info, std::uint32_t fields) {
  switch (info.family) {
    case policy::Family::Mknod: {
      if ((fields & policy::kFieldDevice) == 0) break;
      const std::size_t first = info.paths[0].dirfd >= 0 ? 1 : 0;  // mknodat has a dirfd first
      // mode is umode_t (16 bits), dev an unsigned int, as the kernel takes them.
      const auto mode = static_cast<mode_t>(static_cast<std::uint16_t>(call.args[first + 1]));
      if ((mode & S_IFMT) == S_IFCHR) call.type = policy::FileType::Char;
      if ((mode & S_IFMT) == S_IFBLK) call.type = policy::FileType::Block;
      const auto numbers = task::decode_dev(static_cast<std::uint32_t>(call.args[first + 2]));
      call.major = numbers.major;
      call.minor = numbers.minor;
      break;
    }
    case policy::Family::Mount:
      if ((fields & policy::kFieldFlags) != 0) call.flags = call.args[3];
      break;
    case policy::Family::Umount:
      if ((fields & policy::kFieldFlags) != 0) call.flags = static_cast<std::uint32_t>(call.args[1]);
      break;
    case policy::Family::Xattr:
      // setxattr(path|fd, name, value, size, flags): size is a size_t.
      if ((fields & policy::kFieldValueSize) != 0 && (info.fields & policy::kFieldValueSize) != 0) {
        call.value_size = call.args[3];
      }
      break;
    case policy::Family::Sched:
      if (info.name == "setpriority" && (fields & policy::kFieldSched) != 0) {
        call.nice = static_cast<std::int32_t>(call.args[2]);
      }
      if (info.name == "sched_setscheduler" && (fields & policy::kFieldSched) != 0) {
        // The kernel takes SCHED_RESET_ON_FORK off the policy before it looks at it, and so
        // must a `sched_policy` matcher (or SCHED_FIFO|SCHED_RESET_ON_FORK is no SCHED_FIFO).
        call.sched_policy = static_cast<std::int32_t>(call.args[1]) & ~kSchedResetOnFork;
      }
      break;
    case policy::Family::Sysinfo:
    case policy::Family::None:
      break;
  }
}

Result<void> from_memory(policy::Call& call, const policy::SyscallInfo& info, std::uint32_t fields,
                         const task::TaskHandle& task, std::string* raw_path) {
  // The first path argument as copied: a `target` matcher on the same argument uses this copy,
  // never a second read (another thread may have rewritten it in between).
  std::optional<std::string> first_copy;
  if ((fields & policy::kFieldPath) != 0) {
    auto root = readlink_at(task.proc_dir(), "root");
    if (!root) return std::unexpected(root.error());
    for (const policy::PathArg& p : info.paths) {
      if (p.path == policy::kNoArg) continue;
      if (p.path == policy::kPathIsFd) {
        auto path = fd_path(task, call.args[static_cast<std::size_t>(p.dirfd)], *root);
        if (!path) return std::unexpected(path.error());
        call.paths.push_back(std::move(*path));
        continue;
      }
      auto path = string_arg(task, call.args[static_cast<std::size_t>(p.path)], PATH_MAX);
      if (!path) return std::unexpected(path.error());
      if (call.paths.empty()) {
        first_copy = *path;
        if (raw_path != nullptr) *raw_path = *path;
      }
      if (path->empty()) return sys_error(ENOENT, "empty path");
      if ((*path)[0] == '/') {
        call.paths.push_back(normalize_path("/", *path));
        continue;
      }
      std::string base;
      const auto dirfd =
          static_cast<std::int32_t>(p.dirfd >= 0 ? call.args[static_cast<std::size_t>(p.dirfd)] : 0);
      if (p.dirfd < 0 || dirfd == AT_FDCWD) {
        auto cwd = readlink_at(task.proc_dir(), "cwd");
        if (!cwd) return std::unexpected(cwd.error());
        base = container_view(*root, *cwd);
      } else {
        auto dir = fd_path(task, call.args[static_cast<std::size_t>(p.dirfd)], *root);
        if (!dir) return std::unexpected(dir.error());
        base = std::move(*dir);
      }
      call.paths.push_back(normalize_path(base, *path));
    }
  }
  if (info.family == policy::Family::Mount) {
    // mount(source, target, fstype, flags, data); source and fstype may be NULL.
    if ((fields & policy::kFieldSource) != 0 && call.args[0] != 0) {
      auto s = string_arg(task, call.args[0], kMountString);
      if (!s) return std::unexpected(s.error());
      call.source = std::move(*s);
    }
    if ((fields & policy::kFieldFstype) != 0 && call.args[2] != 0) {
      auto s = string_arg(task, call.args[2], kMountString);
      if (!s) return std::unexpected(s.error());
      call.fstype = std::move(*s);
    }
  }
  if ((fields & policy::kFieldTarget) != 0) {
    // mount's target is args[1], umount2's args[0]: the table's first path.
    const std::size_t at = static_cast<std::size_t>(info.paths[0].path);
    auto s = first_copy ? Result<std::string>(*first_copy) : string_arg(task, call.args[at], PATH_MAX);
    if (!s) return std::unexpected(s.error());
    if (s->empty()) return sys_error(ENOENT, "empty target");
    if ((*s)[0] == '/') {
      call.target = normalize_path("/", *s);
    } else if (!call.paths.empty()) {
      call.target = call.paths[0];  // the same argument, already made absolute
    } else {
      auto root = readlink_at(task.proc_dir(), "root");
      auto cwd = readlink_at(task.proc_dir(), "cwd");
      if (!root || !cwd) return sys_error(root ? cwd.error().err : root.error().err, "cwd");
      call.target = normalize_path(container_view(*root, *cwd), *s);
    }
  }
  if (info.family == policy::Family::Xattr && (fields & policy::kFieldXattrName) != 0 &&
      !policy::is_xattr_list(info.nr)) {  // args[1] of listxattr is the list buffer
    auto s = string_arg(task, call.args[1], kXattrName);
    if (!s) return sys_error(s.error().err == ENAMETOOLONG ? ERANGE : s.error().err, "xattr name");
    call.xattr_name = std::move(*s);
  }
  if ((fields & info.fields & policy::kFieldArgv) != 0) {
    // For the record only: what cannot be read is said there, the call is not refused for it
    // (the kernel answers execve's own EFAULT).
    read_argv(call, task, call.nr == SYS_execveat ? call.args[2] : call.args[1]);
  }
  if (info.family == policy::Family::Sched && (fields & policy::kFieldSched) != 0) {
    if (info.name == "sched_setscheduler" || info.name == "sched_setparam") {
      std::int32_t priority = 0;
      const std::uint64_t at = info.name == "sched_setparam" ? call.args[1] : call.args[2];
      if (auto ok = read_bytes(task, at, &priority, sizeof priority); !ok) return ok;
      call.priority = priority;
    } else if (info.name == "sched_setattr") {
      SchedAttrHead head{};
      if (auto ok = read_bytes(task, call.args[1], &head, sizeof head); !ok) return ok;
      call.sched_policy = static_cast<std::int32_t>(head.sched_policy);
      call.nice = head.sched_nice;
      call.priority = head.sched_priority;
    }
  }
  return {};
}

std::string container_view(std::string_view root, std::string_view host_path) {
  if (root == "/") return std::string(host_path);
  if (host_path.starts_with(root) && (host_path.size() == root.size() || host_path[root.size()] == '/')) {
    const std::string_view rest = host_path.substr(root.size());
    return rest.empty() ? "/" : std::string(rest);
  }
  return "(unreachable)" + std::string(host_path);
}

}  // namespace sysvisor::decode
