// The compiled seccomp program, run on synthetic struct seccomp_data by a small classic-BPF
// interpreter (the subset seccomp allows), for all three x86 ABIs.
#include "sysvisor/filter.hpp"

#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/stat.h>

#include <array>
#include <cstring>
#include <initializer_list>
#include <iostream>
#include <string>

namespace sysvisor::filter {
namespace {

// --- a classic BPF interpreter -------------------------------------------------------------

// Runs `program` like the kernel's seccomp does: A and X are 32 bits, loads read 32-bit words of
// struct seccomp_data in host byte order, scratch memory has BPF_MEMWORDS words.
std::uint32_t run(const std::vector<sock_filter>& program, const seccomp_data& data) {
  std::uint32_t a = 0;
  std::uint32_t x = 0;
  std::array<std::uint32_t, BPF_MEMWORDS> mem{};
  std::size_t pc = 0;
  auto load_word = [&](std::uint32_t offset) -> std::uint32_t {
    EXPECT_EQ(offset % 4, 0u) << "unaligned load at pc " << pc;
    EXPECT_LE(offset + 4, sizeof(data)) << "load past seccomp_data at pc " << pc;
    if (offset % 4 != 0 || offset + 4 > sizeof(data)) {
      return 0;
    }
    std::uint32_t word = 0;
    std::memcpy(&word, reinterpret_cast<const char*>(&data) + offset, sizeof(word));
    return word;
  };
  auto scratch = [&](std::uint32_t k) -> std::uint32_t& {
    EXPECT_LT(k, BPF_MEMWORDS) << "scratch index at pc " << pc;
    return mem.at(k < BPF_MEMWORDS ? k : 0);
  };

  while (pc < program.size()) {
    const sock_filter insn = program[pc++];
    const std::uint32_t src = BPF_SRC(insn.code) == BPF_X ? x : insn.k;
    switch (BPF_CLASS(insn.code)) {
      case BPF_LD:
        if (insn.code == (BPF_LD | BPF_W | BPF_ABS)) {
          a = load_word(insn.k);
        } else if (insn.code == (BPF_LD | BPF_IMM)) {
          a = insn.k;
        } else if (insn.code == (BPF_LD | BPF_MEM)) {
          a = scratch(insn.k);
        } else if (insn.code == (BPF_LD | BPF_W | BPF_LEN)) {
          a = sizeof(seccomp_data);
        } else {
          ADD_FAILURE() << "unsupported load " << insn.code << " at pc " << pc - 1;
          return 0;
        }
        break;
      case BPF_LDX:
        if (insn.code == (BPF_LDX | BPF_IMM)) {
          x = insn.k;
        } else if (insn.code == (BPF_LDX | BPF_MEM)) {
          x = scratch(insn.k);
        } else if (insn.code == (BPF_LDX | BPF_W | BPF_LEN)) {
          x = sizeof(seccomp_data);
        } else {
          ADD_FAILURE() << "unsupported ldx " << insn.code << " at pc " << pc - 1;
          return 0;
        }
        break;
      case BPF_ST:
        scratch(insn.k) = a;
        break;
      case BPF_STX:
        scratch(insn.k) = x;
        break;
      case BPF_ALU:
        switch (BPF_OP(insn.code)) {
          case BPF_ADD:
            a += src;
            break;
          case BPF_SUB:
            a -= src;
            break;
          case BPF_MUL:
            a *= src;
            break;
          case BPF_DIV:
            a = src == 0 ? 0 : a / src;
            break;
          case BPF_MOD:
            a = src == 0 ? 0 : a % src;
            break;
          case BPF_AND:
            a &= src;
            break;
          case BPF_OR:
            a |= src;
            break;
          case BPF_XOR:
            a ^= src;
            break;
          case BPF_LSH:
            a = src >= 32 ? 0 : a << src;
            break;
          case BPF_RSH:
            a = src >= 32 ? 0 : a >> src;
            break;
          case BPF_NEG:
            a = 0 - a;
            break;
          default:
            ADD_FAILURE() << "unsupported alu " << insn.code << " at pc " << pc - 1;
            return 0;
        }
        break;
      case BPF_JMP: {
        if (BPF_OP(insn.code) == BPF_JA) {
          pc += insn.k;
          break;
        }
        bool taken = false;
        switch (BPF_OP(insn.code)) {
          case BPF_JEQ:
            taken = a == src;
            break;
          case BPF_JGT:
            taken = a > src;
            break;
          case BPF_JGE:
            taken = a >= src;
            break;
          case BPF_JSET:
            taken = (a & src) != 0;
            break;
          default:
            ADD_FAILURE() << "unsupported jump " << insn.code << " at pc " << pc - 1;
            return 0;
        }
        pc += taken ? insn.jt : insn.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(insn.code) == BPF_A ? a : insn.k;
      case BPF_MISC:
        if (BPF_MISCOP(insn.code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
      default:
        ADD_FAILURE() << "unsupported class " << insn.code << " at pc " << pc - 1;
        return 0;
    }
  }
  ADD_FAILURE() << "ran off the end of the program";
  return 0;
}

// --- the ABIs, as the kernel reports them ----------------------------------------------------

constexpr std::uint32_t kX32Bit = 0x40000000;

struct Abi {
  const char* name;
  std::uint32_t arch;
  int mknod;
  int mknodat;
  int seccomp;
  int getpid;
  int read;
};

// Numbers from arch/x86/entry/syscalls/syscall_{64,32}.tbl.
constexpr Abi kX86_64{"x86_64", AUDIT_ARCH_X86_64, 133, 259, 317, 39, 0};
constexpr Abi kI386{"i386", AUDIT_ARCH_I386, 14, 297, 354, 20, 3};
constexpr Abi kX32{"x32",         AUDIT_ARCH_X86_64, 133 | kX32Bit, 259 | kX32Bit,
                   317 | kX32Bit, 39 | kX32Bit,      0 | kX32Bit};
constexpr std::array kAbis{kX86_64, kI386, kX32};

seccomp_data call(const Abi& abi, int nr, std::initializer_list<std::uint64_t> args) {
  seccomp_data data{};
  data.nr = nr;
  data.arch = abi.arch;
  data.instruction_pointer = 0x401000;
  std::size_t i = 0;
  for (std::uint64_t arg : args) {
    data.args[i++] = arg;
  }
  return data;
}

seccomp_data mknod_call(const Abi& abi, std::uint64_t mode) {
  return call(abi, abi.mknod, {0x7ffd0000, mode, 0x103});
}
seccomp_data mknodat_call(const Abi& abi, std::uint64_t mode) {
  return call(abi, abi.mknodat, {0xffffff9c, 0x7ffd0000, mode, 0x103});
}

constexpr std::uint32_t kNotify = SECCOMP_RET_USER_NOTIF;
constexpr std::uint32_t kAllow = SECCOMP_RET_ALLOW;
constexpr std::uint32_t kEbusy = SECCOMP_RET_ERRNO | EBUSY;

policy::Policy parse(std::string_view yaml) {
  auto policy = policy::parse_policy(yaml, "test.yaml");
  if (!policy) {
    for (const auto& error : policy.error()) {
      ADD_FAILURE() << error.format();
    }
    return {};
  }
  const std::string name = policy->name;
  auto set = policy::resolve({std::move(*policy)});
  if (!set) {
    for (const auto& error : set.error()) ADD_FAILURE() << error.format();
    return {};
  }
  return *set->policies.at(name);
}

std::vector<sock_filter> compile_ok(const policy::Policy& policy) {
  auto program = compile(policy);
  if (!program) {
    ADD_FAILURE() << program.error().message();
    return {};
  }
  EXPECT_LE(program->size(), 4096u);
  return std::move(*program);
}

std::vector<sock_filter> shipped_program() {
  auto set =
      policy::load_policy_files({std::string(SYSVISOR_SOURCE_DIR) + "/policies/rootless-devices.yaml"});
  if (!set) {
    ADD_FAILURE() << set.error().front().format();
    return {};
  }
  return compile_ok(*set->policies.at("rootless-devices"));
}

// --- tests ------------------------------------------------------------------------------------

TEST(FilterCompile, ShippedPolicySize) {
  auto program = shipped_program();
  ASSERT_FALSE(program.empty());
  EXPECT_LE(program.size(), 4096u);
  std::cout << "rootless-devices: " << program.size() << " BPF instructions\n";
}

TEST(FilterCompile, TrapsCharAndBlockDevicesOnEveryAbi) {
  auto program = shipped_program();
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    for (std::uint64_t type : {S_IFCHR, S_IFBLK}) {
      EXPECT_EQ(run(program, mknod_call(abi, type | 0666)), kNotify);
      EXPECT_EQ(run(program, mknodat_call(abi, type | 0600)), kNotify);
      EXPECT_EQ(run(program, mknod_call(abi, type)), kNotify);
      // The kernel keeps only the low 16 bits of mode: garbage above them changes nothing.
      EXPECT_EQ(run(program, mknod_call(abi, 0xdead0000 | type | 0644)), kNotify);
      EXPECT_EQ(run(program, mknodat_call(abi, 0xdead0000 | type | 0644)), kNotify);
      if (&abi != &kAbis[1]) {  // i386 registers have no upper half
        EXPECT_EQ(run(program, mknod_call(abi, 0xffffffff00000000 | type)), kNotify);
        EXPECT_EQ(run(program, mknodat_call(abi, 0x8000000000000000 | type | 0777)), kNotify);
      }
    }
  }
}

TEST(FilterCompile, NeverTrapsOtherFileTypes) {
  auto program = shipped_program();
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    for (std::uint64_t type : {S_IFREG, S_IFIFO, S_IFSOCK, 0, S_IFDIR, S_IFLNK}) {
      EXPECT_EQ(run(program, mknod_call(abi, type | 0644)), kAllow) << type;
      EXPECT_EQ(run(program, mknodat_call(abi, type | 0644)), kAllow) << type;
      EXPECT_EQ(run(program, mknodat_call(abi, 0xdead0000 | type)), kAllow) << type;
    }
    EXPECT_EQ(run(program, call(abi, abi.getpid, {})), kAllow);
    EXPECT_EQ(run(program, call(abi, abi.read, {0, 0x1000, S_IFCHR})), kAllow);
  }
}

TEST(FilterCompile, RefusesNestedListener) {
  auto program = shipped_program();
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    auto seccomp = [&](std::uint64_t op, std::uint64_t flags) {
      return run(program, call(abi, abi.seccomp, {op, flags, 0x7ffd0000}));
    };
    EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER), kEbusy);
    EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER | SECCOMP_FILTER_FLAG_TSYNC),
              kEbusy);
    EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, 0), kAllow);
    EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_TSYNC), kAllow);
    EXPECT_EQ(seccomp(SECCOMP_SET_MODE_STRICT, SECCOMP_FILTER_FLAG_NEW_LISTENER), kAllow);
    EXPECT_EQ(seccomp(SECCOMP_GET_NOTIF_SIZES, 0), kAllow);
    if (&abi != &kAbis[1]) {
      // op and flags are unsigned int in the kernel: upper halves are ignored there, and here.
      EXPECT_EQ(seccomp(0xffffffff00000000 | SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER),
                kEbusy);
      EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, 0xffffffff00000000 | SECCOMP_FILTER_FLAG_NEW_LISTENER),
                kEbusy);
      EXPECT_EQ(seccomp(SECCOMP_SET_MODE_FILTER, 0xffffffff00000000), kAllow);
    }
  }
}

TEST(FilterCompile, TrapsOnlyTheTypesRulesName) {
  auto program = compile_ok(parse(R"(
name: char-only
rules:
  - syscalls: [mknod, mknodat]
    match: {type: char, devices: ["1:3"]}
    action: emulate
  - syscalls: [mknodat]
    match: {type: char}
    action: deny
)"));
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    EXPECT_EQ(run(program, mknod_call(abi, S_IFCHR)), kNotify);
    EXPECT_EQ(run(program, mknodat_call(abi, S_IFCHR)), kNotify);
    EXPECT_EQ(run(program, mknod_call(abi, S_IFBLK)), kAllow);
    EXPECT_EQ(run(program, mknodat_call(abi, S_IFBLK)), kAllow);
  }

  program = compile_ok(parse(R"(
name: mknodat-block
rules:
  - syscalls: [mknodat]
    match: {type: block}
    action: deny
)"));
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    EXPECT_EQ(run(program, mknodat_call(abi, S_IFBLK)), kNotify);
    EXPECT_EQ(run(program, mknodat_call(abi, S_IFCHR)), kAllow);
    EXPECT_EQ(run(program, mknod_call(abi, S_IFBLK)), kAllow);
    EXPECT_EQ(run(program, mknod_call(abi, S_IFCHR)), kAllow);
  }
}

TEST(FilterCompile, EmptyPolicyStillRefusesNestedListener) {
  auto program = compile_ok(parse("name: empty\nrules: []\n"));
  ASSERT_FALSE(program.empty());
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    EXPECT_EQ(run(program, mknod_call(abi, S_IFCHR)), kAllow);
    EXPECT_EQ(
        run(program, call(abi, abi.seccomp, {SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER})),
        kEbusy);
  }
}

TEST(FilterCompile, ForeignArchitectureIsNotAllowed) {
  auto program = shipped_program();
  ASSERT_FALSE(program.empty());
  seccomp_data data = mknod_call(kX86_64, S_IFREG);
  data.arch = AUDIT_ARCH_AARCH64;
  std::uint32_t action = run(program, data) & SECCOMP_RET_ACTION_FULL;
  EXPECT_TRUE(action == SECCOMP_RET_KILL_PROCESS || action == SECCOMP_RET_KILL_THREAD) << std::hex << action;
}

TEST(FilterIdentify, AllAbisMapToX86_64Numbers) {
  for (const Abi& abi : kAbis) {
    SCOPED_TRACE(abi.name);
    EXPECT_EQ(identify(abi.arch, abi.mknod), 133);
    EXPECT_EQ(identify(abi.arch, abi.mknodat), 259);
    EXPECT_EQ(identify(abi.arch, abi.seccomp), 317);
    EXPECT_EQ(identify(abi.arch, abi.getpid), 39);
    EXPECT_EQ(identify(abi.arch, abi.read), 0);
  }
  // The i386 numbers mean something else on x86_64, and the other way round.
  EXPECT_EQ(identify(AUDIT_ARCH_X86_64, 14), 14);  // rt_sigprocmask
  EXPECT_EQ(identify(AUDIT_ARCH_I386, 133), 81);   // fchdir
  EXPECT_EQ(identify(AUDIT_ARCH_I386, 87), 167);   // swapon
  // i386 calls x86_64 does not have: no name to decide by.
  EXPECT_FALSE(identify(AUDIT_ARCH_I386, 102).has_value());  // socketcall
  EXPECT_FALSE(identify(AUDIT_ARCH_I386, 133 | kX32Bit).has_value());
  // libseccomp's own x32 token is never what the kernel reports.
  EXPECT_FALSE(identify(SCMP_ARCH_X32, 133 | kX32Bit).has_value());
  EXPECT_FALSE(identify(AUDIT_ARCH_AARCH64, 33).has_value());  // mknodat on arm64
  EXPECT_FALSE(identify(AUDIT_ARCH_X86_64, -1).has_value());
  EXPECT_FALSE(identify(AUDIT_ARCH_X86_64, 100000 | kX32Bit).has_value());
  EXPECT_FALSE(identify(0, 0).has_value());
}

// Numbers of umask and swapon per ABI.
struct Generic {
  const Abi* abi;
  int umask;
  int swapon;
};
constexpr std::array kGeneric{
    Generic{&kX86_64, 95, 167}, Generic{&kI386, 60, 87},
    Generic{&kX32, 95 | static_cast<int>(kX32Bit), 167 | static_cast<int>(kX32Bit)}};

TEST(FilterCompile, RawConditionsDecideWhatTrapsOnEveryAbi) {
  auto program = compile_ok(parse(R"(
name: raw
rules:
  - syscalls: [umask]
    args: [{index: 0, op: masked_eq, mask: 0o700, value: 0o700}]
    action: deny
  - syscalls: [swapon]
    args: [{index: 1, op: gt, value: 5}, {index: 0, op: ne, value: 0}]
    action: return
    value: 0
)"));
  ASSERT_FALSE(program.empty());
  for (const Generic& g : kGeneric) {
    SCOPED_TRACE(g.abi->name);
    EXPECT_EQ(run(program, call(*g.abi, g.umask, {0777})), kNotify);
    EXPECT_EQ(run(program, call(*g.abi, g.umask, {0700})), kNotify);
    EXPECT_EQ(run(program, call(*g.abi, g.umask, {0077})), kAllow);
    EXPECT_EQ(run(program, call(*g.abi, g.swapon, {0x1000, 6})), kNotify);
    EXPECT_EQ(run(program, call(*g.abi, g.swapon, {0x1000, 5})), kAllow);
    EXPECT_EQ(run(program, call(*g.abi, g.swapon, {0, 6})), kAllow);
    EXPECT_EQ(run(program, call(*g.abi, g.abi->getpid, {})), kAllow);
  }
}

TEST(FilterCompile, PlainAllowRulesTrapNothingOfTheirOwn) {
  auto program = compile_ok(parse(R"(
name: allows
rules:
  - syscalls: [umask]
    action: allow
  - syscalls: [swapon]
    action: allow
    audit: true
)"));
  ASSERT_FALSE(program.empty());
  for (const Generic& g : kGeneric) {
    SCOPED_TRACE(g.abi->name);
    EXPECT_EQ(run(program, call(*g.abi, g.umask, {0777})), kAllow);
    EXPECT_EQ(run(program, call(*g.abi, g.swapon, {0x1000, 0})), kNotify) << "audited: trapped";
  }
}

TEST(FilterCompile, AMknodRuleComparingTheModeItselfKeepsItsOwnCondition) {
  // libseccomp takes one comparison per argument and rule: the rule's own wins.
  auto program = compile_ok(parse(R"(
name: fifo-watch
rules:
  - syscalls: [mknod]
    args: [{index: 1, op: masked_eq, mask: 0o170000, value: 0o010000}]
    action: deny
)"));
  ASSERT_FALSE(program.empty());
  EXPECT_EQ(run(program, mknod_call(kX86_64, S_IFIFO | 0600)), kNotify);
  EXPECT_EQ(run(program, mknod_call(kX86_64, S_IFCHR | 0600)), kAllow);
}

TEST(FilterIdentify, Compat32) {
  EXPECT_TRUE(is_compat32(AUDIT_ARCH_I386));
  EXPECT_FALSE(is_compat32(AUDIT_ARCH_X86_64));
  EXPECT_FALSE(is_compat32(0));
}

}  // namespace
}  // namespace sysvisor::filter
