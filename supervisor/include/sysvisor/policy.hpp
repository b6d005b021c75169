// Policy v1: a pure, immutable description of what to do with trapped calls.
// No fds, no Asio, no kernel: YAML in, validated Policy out, decide() on copies of arguments.
#pragma once

#include <cerrno>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
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
  UnknownSyscall,   // a syscall name policy v1 cannot trap
  UnknownErrno,     // an errno name that does not exist
  NoEmulator,       // `emulate` for a syscall that has no emulator
  DuplicatePolicy,  // two files in one directory define the same policy name
};

[[nodiscard]] const char* to_string(ErrorCode code);

struct LoadError {
  ErrorCode code = ErrorCode::BadValue;
  std::string message;
  Position pos;

  // "FILE:LINE:COL: message" (":LINE:COL" left out when unknown).
  [[nodiscard]] std::string format() const;
};

enum class Action : std::uint8_t { Allow, Emulate, Deny, Kill };
enum class FileType : std::uint8_t { Char, Block };
enum class Syscall : std::uint8_t { Mknod, Mknodat };

[[nodiscard]] const char* to_string(Action action);
[[nodiscard]] const char* to_string(FileType type);
[[nodiscard]] const char* to_string(Syscall syscall);

// `major:minor`, either side may be `*` (nullopt).
struct DevicePattern {
  std::optional<std::uint32_t> major;
  std::optional<std::uint32_t> minor;
};

struct Rule {
  std::string name;                    // from `name:`, else "rule N" (1-based)
  std::vector<Syscall> syscalls;       // never empty
  std::optional<FileType> type;        // nullopt: char or block
  std::vector<DevicePattern> devices;  // empty: any device
  Action action = Action::Allow;
  int err = EPERM;  // for Deny
  bool audit = false;
  Position pos;  // of the rule's mapping
};

struct Policy {
  std::string name;
  std::string description;
  std::vector<Rule> rules;
  Position pos;
};

using PolicyMap = std::map<std::string, std::shared_ptr<const Policy>, std::less<>>;

// The numbers the supervisor decoded from a trapped mknod/mknodat (mode truncated to
// 16 bits and dev to 32 bits as the kernel does, then split with the kernel's new_decode_dev).
struct MknodArgs {
  Syscall syscall = Syscall::Mknod;
  FileType type = FileType::Char;
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
};

struct Decision {
  Action action = Action::Allow;
  int err = 0;  // errno for Deny
  bool audit = false;
  int rule_index = -1;  // index into Policy::rules; -1: no rule matched (the default: allow)
};

// First matching rule wins; no match is Allow without audit.
[[nodiscard]] Decision decide(const Policy& policy, const MknodArgs& args);

// Parses one policy document. `file` is only used in positions.
[[nodiscard]] std::expected<Policy, std::vector<LoadError>> parse_policy(std::string_view text,
                                                                         const std::string& file);
[[nodiscard]] std::expected<Policy, std::vector<LoadError>> load_policy_file(
    const std::filesystem::path& path);
// Every *.yaml and *.yml file directly in `dir`; all errors of all files are returned together.
[[nodiscard]] std::expected<PolicyMap, std::vector<LoadError>> load_policy_dir(
    const std::filesystem::path& dir);

// errno names <-> values ("EPERM" <-> 1); nullopt for unknown names.
[[nodiscard]] std::optional<int> errno_from_name(std::string_view name);
[[nodiscard]] const char* errno_name(int err);  // "E?" for unknown values

}  // namespace sysvisor::policy
