// The policy author's tools, as a library: what `sysvisor policy check|explain|test|oci-profile`
// do, without the command line. Pure: no fds, no JSON library in this header (JSON comes out as
// text).
#pragma once

#include <linux/filter.h>

#include <array>
#include <cstdint>
#include <expected>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor::tools {

// Paths in cases are normalised as the runtime normalises a trapped call's (src/paths.cpp).
using policy::normalize_path;

// ---- Call literals: `mknodat(AT_FDCWD, "/dev/sda", S_IFBLK|0600, 8:0)` ----

struct LiteralError {
  std::string message;
  int column = 0;  // 1-based offset into the literal's text; 0 when it is about the whole
};

struct LiteralArg {
  enum class Kind : std::uint8_t { Integer, String, Null, Struct };
  Kind kind = Kind::Integer;
  std::uint64_t value = 0;  // Integer: the register value (negative numbers two's complement)
  std::string text;         // String: the bytes, escapes resolved
  std::map<std::string, std::int64_t> fields;  // Struct: `{name=value, ...}`
  int column = 0;                              // 1-based, where the argument starts
};

struct CallLiteral {
  std::string name;
  int nr = -1;  // x86_64
  std::vector<LiteralArg> args;
};

// Parses the call grammar of docs/policy-tools.md. Never throws.
[[nodiscard]] std::expected<CallLiteral, LiteralError> parse_call(std::string_view text);

// Where relative paths start: the cwd, and the directories that directory-fd arguments
// other than AT_FDCWD name (`fds: {3: /etc}`); fd-only calls (fsetxattr) find their file there.
struct CallContext {
  std::string cwd = "/";
  std::map<int, std::string> fds;
};

// A literal as the supervisor would see and decode it once trapped: registers (strings and
// structs become distinct fake pointers, NULL 0), plus the typed fields of syscall_info(nr).
[[nodiscard]] std::expected<policy::Call, LiteralError> call_from_literal(const CallLiteral& literal,
                                                                          const CallContext& context);

// The value a `maj:min` argument has: the kernel's new_encode_dev (= glibc's makedev, 32 bits).
[[nodiscard]] std::uint64_t encode_dev(std::uint32_t major, std::uint32_t minor);

// ---- Expectations: `deny EPERM audited`, `allow audited would deny EPERM rule dangerous-calls` ----
struct Verdict {
  policy::Action action = policy::Action::Allow;
  int err = 0;             // deny
  std::int64_t value = 0;  // return
};
struct Expectation {
  policy::Action action = policy::Action::Allow;
  int err = 0;
  std::int64_t value = 0;
  std::optional<bool> audit;  // checked only when written
  // `would ACTION`: what the rules decided, which audit and learn modes record as `would` (in
  // enforce mode, the action itself). Checked only when written; a call not trapped has none.
  std::optional<Verdict> would;
  // `rule NAME`: the rule that decided (its `name:`, else "rule N"); `rule none`: the call was
  // trapped and no rule matched. Checked only when written.
  std::optional<std::string> rule;
};
[[nodiscard]] std::expected<Expectation, LiteralError> parse_expectation(std::string_view text);
[[nodiscard]] std::string to_string(const Verdict& verdict);  // "deny EPERM"
[[nodiscard]] std::string to_string(const Expectation& expectation);

// ---- What the filter traps, as conditions (the same as filter::compile builds) ----

using Conjunction = std::vector<policy::ArgCondition>;  // all hold; empty: always

struct SyscallTrap {
  int nr = -1;                    // x86_64
  std::vector<Conjunction> when;  // any holds; trapped (USER_NOTIF) then
};

// NOTIFY for every rule whose action is not allow or that audits, with its raw `args`
// conditions, and for mknod/mknodat the file type the rule can match as (mode & S_IFMT) ==
// S_IFCHR / S_IFBLK (a rule without `type`: either). Sorted by nr.
[[nodiscard]] std::vector<SyscallTrap> trap_set(const policy::Policy& policy);
[[nodiscard]] bool holds(const policy::ArgCondition& condition, std::uint64_t arg);
[[nodiscard]] bool holds(const Conjunction& conjunction, const std::array<std::uint64_t, 6>& args);
// "arg1 & 0170000 == 020000", "always"
[[nodiscard]] std::string describe(const policy::ArgCondition& condition);
[[nodiscard]] std::string describe(const Conjunction& conjunction);

// A classic-BPF interpreter for seccomp programs (x86_64 seccomp_data); returns the
// SECCOMP_RET_* value. For checking what a compiled filter really does with a call.
[[nodiscard]] std::uint32_t run_bpf(const std::vector<sock_filter>& program, std::uint32_t arch, int nr,
                                    const std::array<std::uint64_t, 6>& args);

// ---- Decision cases: NAME.cases.yaml ----

struct Case {
  policy::Position pos;  // of the case in its file
  std::string call_text;
  std::string expect_text;
  policy::Call call;
  Expectation expect;
};

struct CaseFile {
  std::string file;
  std::optional<std::string> policy;  // when the file names one
  policy::Position policy_pos;        // of that name
  std::vector<Case> cases;
};

[[nodiscard]] std::expected<CaseFile, std::vector<policy::LoadError>> parse_cases(std::string_view text,
                                                                                  const std::string& file);
[[nodiscard]] std::expected<CaseFile, std::vector<policy::LoadError>> load_cases(const std::string& file);

// What happens to a call: the filter first (`program`, when given; else trap_set), then decide(),
// then what an emulator refuses before it acts (emul::sched::check_call).
struct Outcome {
  bool trapped = false;
  policy::Decision decision;   // trapped: decide(); else what the filter answered by itself
  std::string filter_verdict;  // not trapped: "not trapped", "filter: EBUSY", ...
  // `emulate`, and the emulator answers this errno from the call and the rule alone, as the
  // daemon's does (setpriority(PRIO_USER, ...): EPERM): the caller gets `deny ERRNO`.
  int emulator_err = 0;
  std::string emulator_why;  // what it does not emulate ("" when the errno is the kernel's)
};
[[nodiscard]] Outcome evaluate(const policy::Policy& policy, const std::vector<sock_filter>* program,
                               const policy::Call& call);

struct CaseFailure {
  const Case* failed = nullptr;
  Outcome got;
  std::string message;  // "FILE:LINE: CALL: expected X, got Y (rule NAME)"
};
[[nodiscard]] std::vector<CaseFailure> run_cases(const policy::Policy& policy,
                                                 const std::vector<sock_filter>* program,
                                                 const CaseFile& cases);
// "deny EPERM audited (rule other-devices)", "allow (not trapped)"
[[nodiscard]] std::string describe(const policy::Policy& policy, const Outcome& outcome);

// ---- explain ----
[[nodiscard]] std::string explain_text(const policy::Policy& policy, std::size_t bpf_instructions);
[[nodiscard]] std::string explain_json(const policy::Policy& policy, std::size_t bpf_instructions);

// ---- OCI runtime-spec linux.seccomp ----
struct OciOptions {
  std::optional<std::string> base;  // a profile's JSON text (Docker/containers-common or OCI)
  std::string listener_path = "/run/sysvisor/oci.sock";
};
struct OciProfile {
  std::string json;                   // pretty, with a trailing newline
  std::vector<std::string> warnings;  // e.g. a trapped call the base profile refused
};
[[nodiscard]] std::expected<OciProfile, std::string> oci_profile(const policy::Policy& policy,
                                                                 const OciOptions& options);

}  // namespace sysvisor::tools
