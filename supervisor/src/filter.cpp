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
#include <cstdlib>
#include <exception>
#include <memory>
#include <string>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::filter {
namespace {

// The kernel marks x32 calls by this bit in the syscall number (arch stays AUDIT_ARCH_X86_64).
constexpr std::uint32_t kX32SyscallBit = 0x40000000;

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

scmp_compare to_scmp(policy::CmpOp op) {
  switch (op) {
    case policy::CmpOp::Eq:
      return SCMP_CMP_EQ;
    case policy::CmpOp::Ne:
      return SCMP_CMP_NE;
    case policy::CmpOp::Lt:
      return SCMP_CMP_LT;
    case policy::CmpOp::Le:
      return SCMP_CMP_LE;
    case policy::CmpOp::Gt:
      return SCMP_CMP_GT;
    case policy::CmpOp::Ge:
      return SCMP_CMP_GE;
    case policy::CmpOp::MaskedEq:
      return SCMP_CMP_MASKED_EQ;
  }
  return SCMP_CMP_EQ;
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

// mknod and mknodat trap only the device file types a rule can match: (mode & S_IFMT)
// compared in BPF, so regular files, FIFOs and sockets never leave the kernel.
int mode_arg(int nr) {
  if (nr == SCMP_SYS(mknod)) return 1;
  if (nr == SCMP_SYS(mknodat)) return 2;
  return -1;
}

// NOTIFY for `nr` when every condition of `rule` holds, on every ABI of the filter.
Result<void> trap_rule(void* ctx, const policy::Rule& rule, int nr) {
  std::vector<scmp_arg_cmp> cmps;
  cmps.reserve(rule.args.size() + 1);
  for (const policy::ArgCondition& c : rule.args) {
    scmp_arg_cmp cmp{};
    cmp.arg = c.index;
    cmp.op = to_scmp(c.op);
    cmp.datum_a = c.op == policy::CmpOp::MaskedEq ? c.mask : c.value;
    cmp.datum_b = c.op == policy::CmpOp::MaskedEq ? c.value : 0;
    cmps.push_back(cmp);
  }
  const int mode = mode_arg(nr);
  const bool mode_taken = std::ranges::any_of(
      rule.args, [&](const policy::ArgCondition& c) { return static_cast<int>(c.index) == mode; });
  std::vector<mode_t> types;
  if (mode >= 0 && !mode_taken) {
    // libseccomp allows one comparison per argument and rule: a rule that already compares
    // the mode traps what its own condition says; decide() checks the file type anyway.
    if (!rule.match.type || *rule.match.type == policy::FileType::Char) types.push_back(S_IFCHR);
    if (!rule.match.type || *rule.match.type == policy::FileType::Block) types.push_back(S_IFBLK);
  }
  const std::string name = policy::syscall_name(nr);
  const auto add = [&]() -> Result<void> {
    if (int rc =
            seccomp_rule_add_array(ctx, SCMP_ACT_NOTIFY, nr, static_cast<unsigned>(cmps.size()), cmps.data());
        rc < 0) {
      return scmp_error(rc, "trap " + name + " for rule `" + rule.name + "`");
    }
    return {};
  };
  if (types.empty()) return add();
  cmps.push_back(masked_eq(static_cast<unsigned>(mode), S_IFMT, 0));
  for (const mode_t type : types) {
    cmps.back().datum_b = type;
    if (auto ok = add(); !ok) return ok;
  }
  return {};
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
  // A rule that allows without auditing needs no trap of its own: a call only it matches
  // is the kernel's anyway, and a call a later rule also matches is trapped for that rule
  // and decided by first match in the supervisor. In audit and learn modes every rule traps:
  // each of its calls is recorded.
  for (const policy::Rule& rule : policy.rules) {
    if (policy.mode == policy::Mode::Enforce && rule.action == policy::Action::Allow && !rule.audit) continue;
    for (const int nr : rule.syscalls) {
      if (auto ok = trap_rule(ctx->get(), rule, nr); !ok) {
        return std::unexpected(ok.error());
      }
    }
  }
  if (auto ok = refuse_nested_listener(ctx->get()); !ok) {
    return std::unexpected(ok.error());
  }
  return export_program(ctx->get());
}

// x86_64 numbers of the calls of one other ABI, indexed by that ABI's number; -1: none.
std::vector<int> native_numbers(std::uint32_t scmp_arch, std::uint32_t offset) {
  std::vector<int> table;
  for (int nr = 0; nr < 1024; ++nr) {
    const int arch_nr = static_cast<int>(static_cast<std::uint32_t>(nr) | offset);
    char* name = seccomp_syscall_resolve_num_arch(scmp_arch, arch_nr);
    int native = -1;
    if (name != nullptr) {
      native = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, name);
      if (native < 0) native = -1;
      std::free(name);  // NOLINT(cppcoreguidelines-no-malloc): libseccomp's allocation
    }
    table.push_back(native);
  }
  while (!table.empty() && table.back() < 0) table.pop_back();
  return table;
}

}  // namespace

Result<std::vector<sock_filter>> compile(const policy::Policy& policy) {
  try {
    return build(policy);
  } catch (const std::exception& e) {
    return plain_error(std::string("compile the seccomp filter: ") + e.what());
  }
}

std::optional<int> identify(std::uint32_t arch, int nr) {
  const auto lookup = [](const std::vector<int>& table, std::uint32_t i) -> std::optional<int> {
    if (i >= table.size() || table[i] < 0) return std::nullopt;
    return table[i];
  };
  const auto unr = static_cast<std::uint32_t>(nr);
  if (arch == AUDIT_ARCH_X86_64) {
    if ((unr & kX32SyscallBit) == 0) return nr < 0 ? std::nullopt : std::optional<int>(nr);
    static const std::vector<int> x32 = native_numbers(SCMP_ARCH_X32, kX32SyscallBit);
    return lookup(x32, unr & ~kX32SyscallBit);
  }
  if (arch == AUDIT_ARCH_I386) {
    static const std::vector<int> i386 = native_numbers(SCMP_ARCH_X86, 0);
    return lookup(i386, unr);
  }
  return std::nullopt;
}

bool is_compat32(std::uint32_t arch) {
  return arch == AUDIT_ARCH_I386;
}

}  // namespace sysvisor::filter
