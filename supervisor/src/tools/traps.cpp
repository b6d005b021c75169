// What a policy's filter traps, as argument conditions, and a BPF interpreter to check a
// compiled program against them.
#include <linux/seccomp.h>
#include <sys/stat.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <string>

#include "internal.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor::tools {
namespace {

using policy::ArgCondition;
using policy::CmpOp;

bool same(const ArgCondition& a, const ArgCondition& b) {
  return a.index == b.index && a.op == b.op && a.value == b.value &&
         (a.op != CmpOp::MaskedEq || a.mask == b.mask);
}
bool same(const Conjunction& a, const Conjunction& b) {
  return std::ranges::equal(a, b, [](const auto& x, const auto& y) { return same(x, y); });
}

std::string number(std::uint64_t v) {
  if (v < 10) return std::to_string(v);
  if (v >= 0xffffffff00000000ULL) return std::to_string(static_cast<std::int64_t>(v));  // small negatives
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(v));
  return buf;
}

const char* file_type_name(std::uint64_t v) {
  switch (v) {
    case S_IFCHR:
      return "S_IFCHR";
    case S_IFBLK:
      return "S_IFBLK";
    case S_IFIFO:
      return "S_IFIFO";
    case S_IFREG:
      return "S_IFREG";
    case S_IFSOCK:
      return "S_IFSOCK";
    case S_IFDIR:
      return "S_IFDIR";
    case S_IFLNK:
      return "S_IFLNK";
    default:
      return nullptr;
  }
}

}  // namespace

std::optional<unsigned> mknod_mode_arg(int nr) {
  const policy::SyscallInfo* info = policy::syscall_info(nr);
  if (info == nullptr || info->family != policy::Family::Mknod) return std::nullopt;
  return info->name == "mknod" ? 1U : 2U;
}

std::vector<SyscallTrap> trap_set(const policy::Policy& policy) {
  std::vector<SyscallTrap> traps;
  auto add = [&traps](int nr, Conjunction conj) {
    auto it = std::ranges::find(traps, nr, &SyscallTrap::nr);
    if (it == traps.end()) {
      traps.push_back(SyscallTrap{nr, {}});
      it = traps.end() - 1;
    }
    if (std::ranges::any_of(it->when, [](const Conjunction& c) { return c.empty(); })) return;  // always
    if (conj.empty()) {
      it->when = {Conjunction{}};
      return;
    }
    if (std::ranges::none_of(it->when, [&](const Conjunction& c) { return same(c, conj); })) {
      it->when.push_back(std::move(conj));
    }
  };
  for (const auto& rule : policy.rules) {
    if (policy.mode == policy::Mode::Enforce && rule.action == policy::Action::Allow && !rule.audit) continue;
    for (const int nr : rule.syscalls) {
      const auto mode_arg = mknod_mode_arg(nr);
      if (!mode_arg) {
        add(nr, rule.args);
        continue;
      }
      // mknod: only device nodes are the policy's business; the type as a mask on the mode.
      for (const auto type : {policy::FileType::Char, policy::FileType::Block}) {
        if (rule.match.type && *rule.match.type != type) continue;
        Conjunction conj = rule.args;
        ArgCondition c;
        c.index = *mode_arg;
        c.op = CmpOp::MaskedEq;
        c.mask = S_IFMT;
        c.value = type == policy::FileType::Char ? S_IFCHR : S_IFBLK;
        conj.push_back(c);
        add(nr, std::move(conj));
      }
    }
  }
  std::ranges::sort(traps, {}, &SyscallTrap::nr);
  return traps;
}

bool holds(const ArgCondition& c, std::uint64_t arg) {
  switch (c.op) {
    case CmpOp::Eq:
      return arg == c.value;
    case CmpOp::Ne:
      return arg != c.value;
    case CmpOp::Lt:
      return arg < c.value;
    case CmpOp::Le:
      return arg <= c.value;
    case CmpOp::Gt:
      return arg > c.value;
    case CmpOp::Ge:
      return arg >= c.value;
    case CmpOp::MaskedEq:
      return (arg & c.mask) == c.value;
  }
  return false;
}

bool holds(const Conjunction& conj, const std::array<std::uint64_t, 6>& args) {
  return std::ranges::all_of(conj,
                             [&](const ArgCondition& c) { return c.index < 6 && holds(c, args[c.index]); });
}

std::string describe(const ArgCondition& c) {
  const std::string arg = "arg" + std::to_string(c.index);
  switch (c.op) {
    case CmpOp::Eq:
      return arg + " == " + number(c.value);
    case CmpOp::Ne:
      return arg + " != " + number(c.value);
    case CmpOp::Lt:
      return arg + " < " + number(c.value);
    case CmpOp::Le:
      return arg + " <= " + number(c.value);
    case CmpOp::Gt:
      return arg + " > " + number(c.value);
    case CmpOp::Ge:
      return arg + " >= " + number(c.value);
    case CmpOp::MaskedEq:
      if (c.mask == S_IFMT && file_type_name(c.value) != nullptr) {
        return arg + " & S_IFMT == " + file_type_name(c.value);
      }
      return arg + " & " + number(c.mask) + " == " + number(c.value);
  }
  return arg;
}

std::string describe(const Conjunction& conj) {
  if (conj.empty()) return "always";
  std::string out;
  for (const auto& c : conj) out += (out.empty() ? "" : " && ") + describe(c);
  return out;
}

std::uint32_t run_bpf(const std::vector<sock_filter>& program, std::uint32_t arch, int nr,
                      const std::array<std::uint64_t, 6>& args) {
  // struct seccomp_data, as the kernel lays it out (little endian).
  std::array<std::uint32_t, 16> data{};
  data[0] = static_cast<std::uint32_t>(nr);
  data[1] = arch;
  for (std::size_t i = 0; i < 6; ++i) {
    data[4 + 2 * i] = static_cast<std::uint32_t>(args[i] & 0xffffffffU);
    data[5 + 2 * i] = static_cast<std::uint32_t>(args[i] >> 32);
  }
  std::uint32_t a = 0;
  std::uint32_t x = 0;
  std::array<std::uint32_t, BPF_MEMWORDS> mem{};
  for (std::size_t pc = 0; pc < program.size(); ++pc) {
    const sock_filter& in = program[pc];
    const std::uint32_t k = in.k;
    switch (BPF_CLASS(in.code)) {
      case BPF_LD:
        if (BPF_MODE(in.code) == BPF_ABS && k % 4 == 0 && k / 4 < data.size()) {
          a = data[k / 4];
        } else if (BPF_MODE(in.code) == BPF_IMM) {
          a = k;
        } else if (BPF_MODE(in.code) == BPF_MEM && k < mem.size()) {
          a = mem[k];
        } else if (BPF_MODE(in.code) == BPF_LEN) {
          a = sizeof data;
        } else {
          return SECCOMP_RET_KILL_PROCESS;  // the kernel would have refused the program
        }
        break;
      case BPF_LDX:
        if (BPF_MODE(in.code) == BPF_IMM) {
          x = k;
        } else if (BPF_MODE(in.code) == BPF_MEM && k < mem.size()) {
          x = mem[k];
        } else if (BPF_MODE(in.code) == BPF_LEN) {
          x = sizeof data;
        } else {
          return SECCOMP_RET_KILL_PROCESS;
        }
        break;
      case BPF_ST:
        if (k >= mem.size()) return SECCOMP_RET_KILL_PROCESS;
        mem[k] = a;
        break;
      case BPF_STX:
        if (k >= mem.size()) return SECCOMP_RET_KILL_PROCESS;
        mem[k] = x;
        break;
      case BPF_ALU: {
        const std::uint32_t operand = BPF_SRC(in.code) == BPF_X ? x : k;
        switch (BPF_OP(in.code)) {
          case BPF_ADD:
            a += operand;
            break;
          case BPF_SUB:
            a -= operand;
            break;
          case BPF_MUL:
            a *= operand;
            break;
          case BPF_DIV:
            if (operand == 0) return SECCOMP_RET_KILL_PROCESS;
            a /= operand;
            break;
          case BPF_MOD:
            if (operand == 0) return SECCOMP_RET_KILL_PROCESS;
            a %= operand;
            break;
          case BPF_OR:
            a |= operand;
            break;
          case BPF_AND:
            a &= operand;
            break;
          case BPF_XOR:
            a ^= operand;
            break;
          case BPF_LSH:
            a = operand < 32 ? a << operand : 0;
            break;
          case BPF_RSH:
            a = operand < 32 ? a >> operand : 0;
            break;
          case BPF_NEG:
            a = ~a + 1;
            break;
          default:
            return SECCOMP_RET_KILL_PROCESS;
        }
        break;
      }
      case BPF_JMP: {
        if (BPF_OP(in.code) == BPF_JA) {
          pc += k;
          break;
        }
        const std::uint32_t operand = BPF_SRC(in.code) == BPF_X ? x : k;
        bool taken = false;
        switch (BPF_OP(in.code)) {
          case BPF_JEQ:
            taken = a == operand;
            break;
          case BPF_JGT:
            taken = a > operand;
            break;
          case BPF_JGE:
            taken = a >= operand;
            break;
          case BPF_JSET:
            taken = (a & operand) != 0;
            break;
          default:
            return SECCOMP_RET_KILL_PROCESS;
        }
        pc += taken ? in.jt : in.jf;
        break;
      }
      case BPF_RET:
        return BPF_RVAL(in.code) == BPF_A ? a : k;
      case BPF_MISC:
        if (BPF_MISCOP(in.code) == BPF_TAX) {
          x = a;
        } else {
          a = x;
        }
        break;
      default:
        return SECCOMP_RET_KILL_PROCESS;
    }
  }
  return SECCOMP_RET_KILL_PROCESS;  // fell off the end: the kernel refuses such programs
}

}  // namespace sysvisor::tools
