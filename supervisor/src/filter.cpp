// Policy -> seccomp BPF, built with libseccomp and exported as raw instructions.
//
// libseccomp 2.5 has no "export to memory", so the program goes through a memfd.
#include "sysvisor/filter.hpp"

#include <linux/audit.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <exception>
#include <memory>
#include <string>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::filter {
namespace {

// The kernel marks x32 calls by this bit in the syscall number (arch stays AUDIT_ARCH_X86_64).
constexpr std::uint32_t kX32SyscallBit = 0x40000000;

// Where each trappable syscall keeps its mode argument. A new handler adds its row here.
struct Trap {
  policy::Syscall syscall;
  unsigned mode_arg;  // index of the `mode` argument (umode_t: the kernel uses its low 16 bits)
};

constexpr std::array kTraps{
    Trap{policy::Syscall::Mknod, 1},    // mknod(path, mode, dev)
    Trap{policy::Syscall::Mknodat, 2},  // mknodat(dirfd, path, mode, dev)
};

// One ABI as libseccomp names it and as the kernel reports it in seccomp_data.arch.
struct Abi {
  std::uint32_t scmp_arch;
  std::uint32_t audit_arch;
};

constexpr std::array kAbis{
    Abi{SCMP_ARCH_X86_64, AUDIT_ARCH_X86_64},  // native
    Abi{SCMP_ARCH_X86, AUDIT_ARCH_I386},       // int $0x80, 32-bit programs
    Abi{SCMP_ARCH_X32, AUDIT_ARCH_X86_64},     // told apart from x86_64 by kX32SyscallBit
};

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using Context = std::unique_ptr<void, ContextDeleter>;

// libseccomp returns -errno.
std::unexpected<SysError> scmp_error(int rc, std::string context) {
  return sys_error(-rc, "libseccomp: " + std::move(context));
}

scmp_arg_cmp masked_eq(unsigned arg, std::uint64_t mask, std::uint64_t value) {
  scmp_arg_cmp cmp{};
  cmp.arg = arg;
  cmp.op = SCMP_CMP_MASKED_EQ;
  cmp.datum_a = mask;
  cmp.datum_b = value;
  return cmp;
}

Result<Context> new_context() {
  Context ctx(seccomp_init(SCMP_ACT_ALLOW));
  if (!ctx) {
    return plain_error("libseccomp: seccomp_init failed");
  }
  if (seccomp_arch_native() != SCMP_ARCH_X86_64) {
    return plain_error("libseccomp: sysvisor filters are for x86_64 hosts only");
  }
  // The agent loads the exported program itself; libseccomp's load-time settings don't apply.
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_NNP, 0); rc < 0) {
    return scmp_error(rc, "clear SCMP_FLTATR_CTL_NNP");
  }
  // A binary tree of syscall numbers instead of a linear list: one instruction more for
  // rootless-devices (46), three fewer run by every untrapped x86_64 call (7 instead of 10).
  if (int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2); rc < 0) {
    return scmp_error(rc, "set SCMP_FLTATR_CTL_OPTIMIZE to 2");
  }
  for (const Abi& abi : kAbis) {
    if (abi.scmp_arch == SCMP_ARCH_X86_64) {
      continue;  // seccomp_init added the native ABI
    }
    if (int rc = seccomp_arch_add(ctx.get(), abi.scmp_arch); rc < 0) {
      return scmp_error(rc, "add architecture " + std::to_string(abi.scmp_arch));
    }
  }
  return ctx;
}

// The native number; libseccomp translates it for each ABI of the filter.
Result<int> resolve(const char* name) {
  int nr = seccomp_syscall_resolve_name(name);
  if (nr == __NR_SCMP_ERROR) {
    return plain_error(std::string("libseccomp: unknown syscall ") + name);
  }
  return nr;
}

// Notify on the call when (mode & S_IFMT) == file_type, on every ABI of the filter.
Result<void> trap(void* ctx, const Trap& t, mode_t file_type) {
  const char* name = policy::to_string(t.syscall);
  auto nr = resolve(name);
  if (!nr) {
    return std::unexpected(nr.error());
  }
  scmp_arg_cmp cmp = masked_eq(t.mode_arg, S_IFMT, file_type);
  if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_NOTIFY, *nr, 1, &cmp); rc < 0) {
    return scmp_error(rc, std::string("trap ") + name);
  }
  return {};
}

// seccomp(SECCOMP_SET_MODE_FILTER, flags with SECCOMP_FILTER_FLAG_NEW_LISTENER, ...) fails with
// EBUSY: a container that installed its own listener could answer its own calls around us.
// Both arguments are unsigned int in the kernel, so only their low 32 bits count.
Result<void> refuse_nested_listener(void* ctx) {
  auto nr = resolve("seccomp");
  if (!nr) {
    return std::unexpected(nr.error());
  }
  std::array cmps{
      masked_eq(0, 0xffffffff, SECCOMP_SET_MODE_FILTER),
      masked_eq(1, SECCOMP_FILTER_FLAG_NEW_LISTENER, SECCOMP_FILTER_FLAG_NEW_LISTENER),
  };
  if (int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EBUSY), *nr, static_cast<unsigned>(cmps.size()),
                                      cmps.data());
      rc < 0) {
    return scmp_error(rc, "refuse seccomp(SECCOMP_FILTER_FLAG_NEW_LISTENER)");
  }
  return {};
}

// The file types some rule for `syscall` can match: a rule without `type` needs both.
struct Types {
  bool chr = false;
  bool blk = false;
};

Types types_needed(const policy::Policy& policy, policy::Syscall syscall) {
  Types types;
  for (const policy::Rule& rule : policy.rules) {
    if (std::ranges::find(rule.syscalls, syscall) == rule.syscalls.end()) {
      continue;
    }
    types.chr = types.chr || !rule.type || *rule.type == policy::FileType::Char;
    types.blk = types.blk || !rule.type || *rule.type == policy::FileType::Block;
  }
  return types;
}

Result<std::vector<sock_filter>> export_program(void* ctx) {
  UniqueFd fd(memfd_create("sysvisor-bpf", MFD_CLOEXEC));
  if (!fd) {
    return sys_error("memfd_create for the BPF program");
  }
  if (int rc = seccomp_export_bpf(ctx, fd.get()); rc < 0) {
    return scmp_error(rc, "seccomp_export_bpf");
  }
  struct stat st {};
  if (fstat(fd.get(), &st) < 0) {
    return sys_error("fstat the BPF program's memfd");
  }
  const auto size = static_cast<std::size_t>(st.st_size);
  if (size == 0 || size % sizeof(sock_filter) != 0) {
    return plain_error("libseccomp exported " + std::to_string(size) + " bytes, not whole BPF instructions");
  }
  std::vector<sock_filter> program(size / sizeof(sock_filter));
  if (pread(fd.get(), program.data(), size, 0) != static_cast<ssize_t>(size)) {
    return sys_error("read the BPF program back from its memfd");
  }
  return program;
}

Result<std::vector<sock_filter>> build(const policy::Policy& policy) {
  auto ctx = new_context();
  if (!ctx) {
    return std::unexpected(ctx.error());
  }
  for (const Trap& t : kTraps) {
    const Types types = types_needed(policy, t.syscall);
    if (types.chr) {
      if (auto ok = trap(ctx->get(), t, S_IFCHR); !ok) {
        return std::unexpected(ok.error());
      }
    }
    if (types.blk) {
      if (auto ok = trap(ctx->get(), t, S_IFBLK); !ok) {
        return std::unexpected(ok.error());
      }
    }
  }
  if (auto ok = refuse_nested_listener(ctx->get()); !ok) {
    return std::unexpected(ok.error());
  }
  return export_program(ctx->get());
}

struct Known {
  std::uint32_t audit_arch = 0;  // 0: an unused slot (no kernel ABI is 0)
  int nr = 0;
  policy::Syscall syscall = policy::Syscall::Mknod;
};

using KnownTable = std::array<Known, kAbis.size() * kTraps.size()>;

// (arch, nr) of every trappable syscall on every ABI, as the kernel reports them.
KnownTable known_syscalls() {
  KnownTable known{};
  std::size_t n = 0;
  for (const Abi& abi : kAbis) {
    for (const Trap& t : kTraps) {
      int nr = seccomp_syscall_resolve_name_arch(abi.scmp_arch, policy::to_string(t.syscall));
      if (nr < 0) {
        continue;  // __NR_SCMP_ERROR, or libseccomp's pseudo-number for a call this ABI lacks
      }
      if (abi.scmp_arch == SCMP_ARCH_X32) {
        nr = static_cast<int>(static_cast<std::uint32_t>(nr) | kX32SyscallBit);
      }
      known[n++] = Known{abi.audit_arch, nr, t.syscall};
    }
  }
  return known;
}

}  // namespace

Result<std::vector<sock_filter>> compile(const policy::Policy& policy) {
  try {
    return build(policy);
  } catch (const std::exception& e) {
    return plain_error(std::string("compile the seccomp filter: ") + e.what());
  }
}

std::optional<policy::Syscall> identify(std::uint32_t arch, int nr) {
  static const KnownTable known = known_syscalls();
  for (const Known& k : known) {
    if (k.audit_arch != 0 && k.audit_arch == arch && k.nr == nr) {
      return k.syscall;
    }
  }
  return std::nullopt;
}

bool is_compat32(std::uint32_t arch) {
  return arch == AUDIT_ARCH_I386;
}

}  // namespace sysvisor::filter
