// Policies: a pure, immutable description of what to do with trapped calls.
// No fds, no Asio, no kernel: YAML in, validated Policy out, decide() on copies of arguments.
// docs/policy.md is the reference of the format; this header is the reference of the model.
#pragma once

#include <array>
#include <cerrno>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace sysvisor::policy {

struct Position {
  std::string file;
  int line = 0;    // 1-based; 0 when unknown
  int column = 0;  // 1-based; 0 when unknown
};

enum class ErrorCode {
  Io,               // the file cannot be read
  YamlParse,        // not YAML at all
  WrongType,        // a mapping where a list belongs, a list where a string belongs, ...
  UnknownKey,       // a key the format does not have
  MissingKey,       // a required key is absent
  DuplicateKey,     // the same key twice in one mapping
  BadValue,         // a value of the right type but not allowed (bad device, empty list, ...)
  UnknownSyscall,   // a name libseccomp does not know for x86_64
  UnknownErrno,     // an errno name that does not exist
  NoEmulator,       // `emulate` for a syscall that has no emulator
  DuplicatePolicy,  // two files define the same policy name
  BadMatcher,       // a typed matcher on a syscall it does not apply to (fstype on openat, ...)
  UnsafeAllow,      // a decision on memory the container can still change would be CONTINUE
  BadInclude,       // include of an unknown policy, or an include cycle
  BadArgument,      // a raw argument condition libseccomp cannot compile (index, repeats)
};

enum class WarningCode {
  Shadowed,     // an earlier rule matches every call this rule matches: it never decides
  NeverMatch,   // the rule's own conditions contradict each other (e.g. eq 1 and eq 2)
  RecordOnly,   // allow + audit on memory: records what it matches, refuses nothing (the kernel re-reads)
  NotEmulable,  // emulate of a filesystem type with no source device (tmpfs, proc, ...): always fails
};

[[nodiscard]] const char* to_string(ErrorCode code);
[[nodiscard]] const char* to_string(WarningCode code);

struct LoadError {
  ErrorCode code = ErrorCode::BadValue;
  std::string message;
  Position pos;

  // "FILE:LINE:COL: message" (":LINE:COL" left out when unknown).
  [[nodiscard]] std::string format() const;
  // "FILE:LINE:COL: error: [code] message", as `sysvisor policy check` prints it.
  [[nodiscard]] std::string diagnostic() const;
};

struct Warning {
  WarningCode code = WarningCode::Shadowed;
  std::string message;
  Position pos;
  [[nodiscard]] std::string format() const;  // "FILE:LINE:COL: warning: message"
};

// `kill`: the calling task. `kill-container`: the container's init (with a new pid namespace,
// everything in it). `return`: the call is not made; the caller sees `value`.
enum class Action : std::uint8_t { Allow, Emulate, Deny, Return, Kill, KillContainer };
enum class FileType : std::uint8_t { Char, Block };
// enforce: the rules decide. audit: every trapped call is allowed (the kernel decides) and
// recorded with what the rules would have done. learn: the same, recorded as `learn`, for
// `sysvisor policy learn` to write a policy from.
enum class Mode : std::uint8_t { Enforce, Audit, Learn };

[[nodiscard]] const char* to_string(Action action);  // "allow", ..., "kill-container"
[[nodiscard]] const char* to_string(FileType type);  // "char" | "block"
[[nodiscard]] const char* to_string(Mode mode);      // "enforce" | "audit" | "learn"

// ---- Raw argument conditions: compiled into the BPF filter, re-checked by decide(). ----
enum class CmpOp : std::uint8_t { Eq, Ne, Lt, Le, Gt, Ge, MaskedEq };
[[nodiscard]] const char* to_string(CmpOp op);  // "eq", ..., "masked_eq"

struct ArgCondition {
  unsigned index = 0;  // 0..5
  CmpOp op = CmpOp::Eq;
  std::uint64_t value = 0;
  std::uint64_t mask = 0;  // MaskedEq only: (arg & mask) == value
  Position pos;
};

// ---- Typed matchers: evaluated in the supervisor on the safe copies. ----
// `major:minor`, either side may be `*` (nullopt).
struct DevicePattern {
  std::optional<std::uint32_t> major;
  std::optional<std::uint32_t> minor;
};

struct IntRange {  // inclusive; a missing side is unbounded
  std::optional<std::int64_t> min;
  std::optional<std::int64_t> max;
};

struct FlagMatch {          // flags named by MS_* / MNT_* / UMOUNT_* names in YAML
  std::uint64_t set = 0;    // all of these must be set
  std::uint64_t clear = 0;  // none of these may be set
};

// Glob patterns use fnmatch(3) without flags: `*` also matches `/`.
struct Match {
  // mknod, mknodat
  std::optional<FileType> type;
  std::vector<DevicePattern> devices;  // empty: any
  // any syscall with a path argument (lexically normalised, absolute inside the container)
  std::vector<std::string> paths;
  // mount
  std::vector<std::string> fstypes;
  std::vector<std::string> sources;
  // mount and umount2
  std::vector<std::string> targets;
  std::optional<FlagMatch> flags;
  // the xattr family
  std::vector<std::string> xattr_names;
  std::optional<IntRange> value_size;
  // sched_setscheduler, sched_setattr, setpriority
  std::vector<int> sched_policies;   // SCHED_* values
  std::optional<IntRange> priority;  // sched_priority (real-time)
  std::optional<IntRange> nice;

  [[nodiscard]] bool empty() const;
};

// What a rule needs decoded from the call: a bit set of Field values.
enum Field : std::uint32_t {
  kFieldNone = 0,
  kFieldDevice = 1U << 0,     // type, major, minor (from registers)
  kFieldPath = 1U << 1,       // memory
  kFieldFstype = 1U << 2,     // memory
  kFieldSource = 1U << 3,     // memory
  kFieldTarget = 1U << 4,     // memory
  kFieldFlags = 1U << 5,      // registers
  kFieldXattrName = 1U << 6,  // memory
  kFieldValueSize = 1U << 7,  // registers
  kFieldSched = 1U << 8,      // sched policy (registers or memory), priority, nice
  kFieldArgv = 1U << 9,       // execve's argv (memory), for the record only: no matcher reads it
};
// The fields whose values come from the caller's memory, which another thread can change.
inline constexpr std::uint32_t kMemoryFields =
    kFieldPath | kFieldFstype | kFieldSource | kFieldTarget | kFieldXattrName | kFieldSched;

// A host directory or file a container may bind-mount (mount(2) with MS_BIND and this `host`
// path as its source).
struct BindGrant {
  std::string host;      // absolute, normalised, as the supervisor sees it
  bool readonly = true;  // default: read-only
};

// `emulate:` of a mount rule: what the emulator may grant beyond the filesystem types the rule's
// `fstype` names (docs/policy.md, "Emulators").
struct MountGrant {
  std::vector<std::string> images;  // image files (globs, absolute in the container) for loop devices
  std::vector<BindGrant> binds;     // host paths for bind mounts
  bool readonly = false;            // every mount read-only
  bool allow_suid = false;          // lift the forced nosuid
  bool allow_dev = false;           // lift the forced nodev
  // mount's data options the caller may pass (globs, one option each: `errors=*`, `discard`);
  // empty: a non-empty data string is EINVAL. See mount_option_refusal().
  std::vector<std::string> options;
};

struct Rule {
  std::string name;                // from `name:`, else "rule N" (1-based within its policy)
  std::string origin;              // the policy that wrote the rule (differs after include)
  std::vector<int> syscalls;       // x86_64 numbers (libseccomp); never empty
  std::vector<ArgCondition> args;  // all must hold
  Match match;
  std::uint32_t fields = kFieldNone;  // what `match` reads
  Action action = Action::Allow;
  int err = EPERM;         // Deny
  std::int64_t value = 0;  // Return
  bool audit = false;
  std::optional<MountGrant> mount;  // `emulate:` (mount rules with `action: emulate` only)
  Position pos;                     // of the rule's mapping
};

struct Policy {
  std::string name;
  std::string description;
  Mode mode = Mode::Enforce;
  // `audit_arguments: all`: an enforcing policy's records carry every argument sysvisor decodes
  // (as audit and learn modes do), not only those its rules read; costs a copy of the caller's
  // memory on every trapped call that has a path or argv.
  bool record_all_arguments = false;
  std::vector<std::string> includes;  // as written
  std::vector<Position> include_pos;  // where each of `includes` is written (same length)
  std::vector<Rule> own_rules;        // as written in this policy's file
  // Effective rules, in evaluation order: own rules, then each include's effective rules in
  // the order listed (a policy reached twice contributes once, at its first place).
  std::vector<Rule> rules;
  std::string version;  // 16 hex digits: a hash of the texts of this policy and its includes
  Position pos;
  std::string source;  // the file's text (for the version hash)

  // The x86_64 numbers of every syscall some effective rule names, sorted, unique.
  [[nodiscard]] std::vector<int> syscalls() const;
  // What decide() needs decoded for this syscall: the union of the fields its rules read.
  [[nodiscard]] std::uint32_t fields_for(int nr) const;

  // decide()'s index of `rules` by syscall, built by resolve(). Whoever changes `rules` after
  // that calls build_index() again; decide() falls back to scanning every rule when the index
  // was built for a different number of rules.
  struct SyscallRules {
    int nr = -1;
    std::uint32_t first = 0;  // into rule_order
    std::uint32_t count = 0;
    std::uint32_t fields = kFieldNone;  // fields_for(nr)
  };
  std::vector<SyscallRules> by_syscall;   // sorted by nr
  std::vector<std::uint32_t> rule_order;  // indices into `rules`, grouped by syscall, in order
  std::size_t indexed_rules = 0;          // rules.size() when the index was built
  void build_index();
};

using PolicyMap = std::map<std::string, std::shared_ptr<const Policy>, std::less<>>;

// A trapped call as decide() sees it: the raw registers, and the typed fields the supervisor
// decoded from its safe copies (only those `fields_for(nr)` asks for; others stay empty).
struct Call {
  int nr = -1;                          // x86_64 number
  std::array<std::uint64_t, 6> args{};  // as the kernel takes them (compat args zero-extended)
  std::optional<FileType> type;
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
  std::vector<std::string> paths;  // 1 or 2 (rename, link, ...), absolute, normalised
  std::optional<std::string> fstype;
  std::optional<std::string> source;
  std::optional<std::string> target;
  std::optional<std::uint64_t> flags;
  std::optional<std::string> xattr_name;
  std::optional<std::uint64_t> value_size;
  std::optional<int> sched_policy;
  std::optional<std::int64_t> priority;
  std::optional<std::int64_t> nice;
  bool compat32 = false;  // the i386 ABI: 32-bit pointers in the caller's arrays
  // execve/execveat's argv for the record (audit, learn, `audit_arguments: all`), bounded:
  // `argv_truncated` when more was there; `argv_error` (an errno name) when it could not be read.
  std::vector<std::string> argv;
  bool argv_truncated = false;
  std::string argv_error;
};

struct Decision {
  Action action = Action::Allow;
  int err = 0;             // errno for Deny
  std::int64_t value = 0;  // for Return
  bool audit = false;
  int rule_index = -1;  // index into Policy::rules; -1: no rule matched (the default: allow)
  // Audit and learn modes: what the rules decided; `action` is then Allow and `audit` true.
  std::optional<Action> would;
  bool learn = false;  // learn mode: recorded as `learn`
};

// First matching rule wins; no match is Allow without audit. A rule matches when the call's
// syscall is one of its syscalls, every raw condition holds, and every typed matcher holds
// (a matcher whose field was not decoded does not hold).
// The policy's mode applies (see Mode): decide_in(policy, call, policy.mode).
[[nodiscard]] Decision decide(const Policy& policy, const Call& call);
// decide() in `mode` whatever the policy says (a container launched in learn mode).
[[nodiscard]] Decision decide_in(const Policy& policy, const Call& call, Mode mode);

// `path` made absolute against `base` (an absolute directory) and normalised lexically: no
// `.`, no `..` above `/`, no repeated or trailing `/`. What `path` matchers are given.
[[nodiscard]] std::string normalize_path(std::string_view base, std::string_view path);
// The glob of every matcher (fnmatch(3) without flags, linear time), for an emulator that
// checks a rule's patterns again on the path an opened file really has. No allocation.
[[nodiscard]] bool matches_glob(std::string_view pattern, std::string_view text) noexcept;

// ---- mount's data options (`emulate: {options: [...]}`, docs/policy.md "Emulators") ----
// The options of mount's data string as the kernel splits them (generic_parse_monolithic: at
// each ','; empty ones skipped).
[[nodiscard]] std::vector<std::string_view> split_mount_options(std::string_view data);
// Option names sysvisor never passes, whatever a rule says: they name another device or a
// path (resolved by the privileged helper, in the host's namespaces), owners or security
// labels, or take the host down (journal_path, device, logdev, uid, context, fatal_errors,
// ...); and `source`, which would replace the source sysvisor opened.
[[nodiscard]] bool refused_mount_option(std::string_view key);
// For the policy reader: a refused option name that `glob` could grant ("" if none).
[[nodiscard]] std::string glob_grants_refused_option(std::string_view glob);
// Why the caller's `option` is refused (for the log), or "" when `globs` allow it: a refused
// name; a value naming a path ('/'); `errors=` other than remount-ro (sysvisor's own forced
// value on ext2/3/4: a caller's errors=continue is refused rather than silently overridden,
// and errors=panic would take the host down); `rw` under a forced read-only; no glob matches.
[[nodiscard]] std::string mount_option_refusal(std::string_view option, const std::vector<std::string>& globs,
                                               bool readonly);

// ---- Loading ----
// One document, without resolving includes (rules is empty until resolve()).
[[nodiscard]] std::expected<Policy, std::vector<LoadError>> parse_policy(std::string_view text,
                                                                         const std::string& file);
[[nodiscard]] std::expected<Policy, std::vector<LoadError>> load_policy_file(
    const std::filesystem::path& path);

struct LoadResult {
  PolicyMap policies;  // resolved: rules, version set
  std::vector<Warning> warnings;
};
// Resolves includes among `parsed`, fills `rules` and `version`, checks what needs the whole
// set (include cycles, unsafe allows, emulators), and computes warnings.
[[nodiscard]] std::expected<LoadResult, std::vector<LoadError>> resolve(std::vector<Policy> parsed);
// The policy files directly in `dir`, sorted by name: every *.yaml and *.yml file (files
// ending in .cases.yaml are decision cases, not policies, and are skipped).
[[nodiscard]] std::expected<std::vector<std::filesystem::path>, LoadError> policy_files(
    const std::filesystem::path& dir);
// The file each policy in force was loaded from, by policy name (a daemon's running set).
using InForce = std::map<std::string, std::string, std::less<>>;
// Every file of policy_files(dir); all errors of all files are returned together. A name two
// files define is an error at the one that is not `in_force`'s file for that name (the file an
// author just added, at a reload), else at the later file; its message names both files.
[[nodiscard]] std::expected<LoadResult, std::vector<LoadError>> load_policy_dir(
    const std::filesystem::path& dir, const InForce& in_force = {});
// `files`, resolving includes against the other policies in each file's directory.
[[nodiscard]] std::expected<LoadResult, std::vector<LoadError>> load_policy_files(
    const std::vector<std::filesystem::path>& files);

// errno names <-> values ("EPERM" <-> 1); nullopt for unknown names.
[[nodiscard]] std::optional<int> errno_from_name(std::string_view name);
[[nodiscard]] const char* errno_name(int err);  // "E?" for unknown values
// "SCHED_FIFO" for 1; the number as text for a value without a name.
[[nodiscard]] std::string sched_policy_name(int policy);

// A file the loader reads (a policy, the configuration, a case file): a regular file of at most
// 256 KiB; else an `io` error, or `bad-value` with its real size and the limit.
[[nodiscard]] std::expected<std::string, LoadError> read_input(const std::string& path);

// A YAML parse error about `text` made plain when a tab indents a line at or before it: the
// error moves to that tab and says "tabs are not allowed for indentation in YAML: use spaces".
// Other errors are left as they are.
void explain_tab(LoadError& error, std::string_view text);

// "; did you mean `X`?" for the known name nearest to a misspelt one (edit distance, a swap of
// two neighbours counting one, case ignored), or "" when none is near or two are as near.
[[nodiscard]] std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates);
[[nodiscard]] std::string did_you_mean_syscall(std::string_view name);  // `opne` -> open
[[nodiscard]] std::string did_you_mean_errno(std::string_view name);    // `EACCESS` -> EACCES

// Syscall names <-> x86_64 numbers, as libseccomp knows them.
[[nodiscard]] std::optional<int> syscall_from_name(std::string_view name);
[[nodiscard]] std::string syscall_name(int nr);  // "syscall_N" for unknown numbers

}  // namespace sysvisor::policy
