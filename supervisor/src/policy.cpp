// Policy v1: YAML text -> validated Policy -> decisions.
//
// The reader walks the YAML tree along the format's schema (never recursing on the input's own
// shape), collects every error it finds with its file:line:column, and only hands out a Policy
// when there were none. yaml-cpp throws on malformed input and on deep nesting; those exceptions
// stop at parse_policy() and come back as YamlParse errors.
#include "sysvisor/policy.hpp"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <iterator>
#include <span>
#include <sstream>
#include <system_error>
#include <utility>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::policy {
namespace {

// The syscalls policy v1 can trap, and whether the supervisor can emulate them.
// A new handler adds its row here (and to the filter's table of argument positions).
struct SyscallInfo {
  Syscall syscall;
  const char* name;
  bool has_emulator;
};

constexpr std::array kSyscalls{
    SyscallInfo{Syscall::Mknod, "mknod", true},
    SyscallInfo{Syscall::Mknodat, "mknodat", true},
};

// The kernel's dev_t split (new_encode_dev): 12 bits of major, 20 bits of minor.
constexpr std::uint32_t kMaxMajor = 4095;
constexpr std::uint32_t kMaxMinor = 1048575;

struct ErrnoInfo {
  const char* name;
  int value;
};

// Linux's errno names (asm-generic/errno-base.h and errno.h). The aliases come after the
// names they alias, so errno_name() gives the usual spelling.
// clang-format off
#define E(name) {#name, name}
constexpr ErrnoInfo kErrnos[] = {
    E(EPERM), E(ENOENT), E(ESRCH), E(EINTR), E(EIO), E(ENXIO), E(E2BIG), E(ENOEXEC), E(EBADF),
    E(ECHILD), E(EAGAIN), E(ENOMEM), E(EACCES), E(EFAULT), E(ENOTBLK), E(EBUSY), E(EEXIST),
    E(EXDEV), E(ENODEV), E(ENOTDIR), E(EISDIR), E(EINVAL), E(ENFILE), E(EMFILE), E(ENOTTY),
    E(ETXTBSY), E(EFBIG), E(ENOSPC), E(ESPIPE), E(EROFS), E(EMLINK), E(EPIPE), E(EDOM), E(ERANGE),
    E(EDEADLK), E(ENAMETOOLONG), E(ENOLCK), E(ENOSYS), E(ENOTEMPTY), E(ELOOP), E(ENOMSG), E(EIDRM),
    E(ECHRNG), E(EL2NSYNC), E(EL3HLT), E(EL3RST), E(ELNRNG), E(EUNATCH), E(ENOCSI), E(EL2HLT),
    E(EBADE), E(EBADR), E(EXFULL), E(ENOANO), E(EBADRQC), E(EBADSLT), E(EBFONT), E(ENOSTR),
    E(ENODATA), E(ETIME), E(ENOSR), E(ENONET), E(ENOPKG), E(EREMOTE), E(ENOLINK), E(EADV),
    E(ESRMNT), E(ECOMM), E(EPROTO), E(EMULTIHOP), E(EDOTDOT), E(EBADMSG), E(EOVERFLOW), E(ENOTUNIQ),
    E(EBADFD), E(EREMCHG), E(ELIBACC), E(ELIBBAD), E(ELIBSCN), E(ELIBMAX), E(ELIBEXEC), E(EILSEQ),
    E(ERESTART), E(ESTRPIPE), E(EUSERS), E(ENOTSOCK), E(EDESTADDRREQ), E(EMSGSIZE), E(EPROTOTYPE),
    E(ENOPROTOOPT), E(EPROTONOSUPPORT), E(ESOCKTNOSUPPORT), E(EOPNOTSUPP), E(EPFNOSUPPORT),
    E(EAFNOSUPPORT), E(EADDRINUSE), E(EADDRNOTAVAIL), E(ENETDOWN), E(ENETUNREACH), E(ENETRESET),
    E(ECONNABORTED), E(ECONNRESET), E(ENOBUFS), E(EISCONN), E(ENOTCONN), E(ESHUTDOWN),
    E(ETOOMANYREFS), E(ETIMEDOUT), E(ECONNREFUSED), E(EHOSTDOWN), E(EHOSTUNREACH), E(EALREADY),
    E(EINPROGRESS), E(ESTALE), E(EUCLEAN), E(ENOTNAM), E(ENAVAIL), E(EISNAM), E(EREMOTEIO),
    E(EDQUOT), E(ENOMEDIUM), E(EMEDIUMTYPE), E(ECANCELED), E(ENOKEY), E(EKEYEXPIRED),
    E(EKEYREVOKED), E(EKEYREJECTED), E(EOWNERDEAD), E(ENOTRECOVERABLE), E(ERFKILL), E(EHWPOISON),
    E(EWOULDBLOCK), E(EDEADLOCK), E(ENOTSUP),
};
#undef E
// clang-format on

constexpr std::array<std::string_view, 3> kPolicyKeys{"name", "description", "rules"};
constexpr std::array<std::string_view, 6> kRuleKeys{"name", "syscalls", "match", "action", "errno", "audit"};
constexpr std::array<std::string_view, 2> kMatchKeys{"type", "devices"};

constexpr std::array kActions{
    std::pair{"emulate", Action::Emulate},
    std::pair{"allow", Action::Allow},
    std::pair{"deny", Action::Deny},
    std::pair{"kill", Action::Kill},
};

const SyscallInfo* find_syscall(std::string_view name) {
  auto it = std::ranges::find_if(kSyscalls, [&](const SyscallInfo& info) { return info.name == name; });
  return it == kSyscalls.end() ? nullptr : &*it;
}

// Every Syscall enumerator has a row in kSyscalls.
const SyscallInfo& syscall_info(Syscall syscall) {
  auto it = std::ranges::find(kSyscalls, syscall, &SyscallInfo::syscall);
  return it == kSyscalls.end() ? kSyscalls.front() : *it;
}

std::string syscall_names() {
  std::string names;
  for (const auto& info : kSyscalls) {
    names += names.empty() ? "" : ", ";
    names += info.name;
  }
  return names;
}

std::string join(std::span<const std::string_view> words) {
  std::string joined;
  for (auto word : words) {
    joined += joined.empty() ? "" : ", ";
    joined += word;
  }
  return joined;
}

// What a node is, for "expected X, got Y" messages.
const char* kind(const YAML::Node& node) {
  switch (node.Type()) {
    case YAML::NodeType::Scalar:
      return "a string";
    case YAML::NodeType::Sequence:
      return "a list";
    case YAML::NodeType::Map:
      return "a mapping";
    case YAML::NodeType::Null:
    case YAML::NodeType::Undefined:
      break;
  }
  return "nothing";
}

bool valid_policy_name(std::string_view name) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || !lower_or_digit(name.front())) {
    return false;
  }
  return std::ranges::all_of(name,
                             [&](char c) { return lower_or_digit(c) || c == '-' || c == '_' || c == '.'; });
}

// One side of "major:minor": `*` (nullopt) or a decimal number up to `max`.
bool parse_device_number(std::string_view text, std::uint32_t max, std::optional<std::uint32_t>& out) {
  if (text == "*") {
    out.reset();
    return true;
  }
  std::uint32_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc{} || ptr != end || value > max) {
    return false;
  }
  out = value;
  return true;
}

bool matches(const DevicePattern& pattern, std::uint32_t major, std::uint32_t minor) {
  return (!pattern.major || *pattern.major == major) && (!pattern.minor || *pattern.minor == minor);
}

bool matches(const Rule& rule, const MknodArgs& args) {
  if (std::ranges::find(rule.syscalls, args.syscall) == rule.syscalls.end()) {
    return false;
  }
  if (rule.type && *rule.type != args.type) {
    return false;
  }
  return rule.devices.empty() || std::ranges::any_of(rule.devices, [&](const DevicePattern& pattern) {
           return matches(pattern, args.major, args.minor);
         });
}

// Where each document of a YAML stream starts, without building nodes.
//
// yaml-cpp 0.7's LoadAll() never returns on a stray `,` at the top level (jbeder/yaml-cpp#1040):
// the parser reports an empty document without consuming the token, again and again, and LoadAll
// collects them until memory runs out. Here the count stops at the first document that starts
// where the one before it did; the caller reports that as a parse error.
class DocumentStarts : public YAML::EventHandler {
 public:
  std::vector<YAML::Mark> starts;

  void OnDocumentStart(const YAML::Mark& mark) override { starts.push_back(mark); }
  void OnDocumentEnd() override {}
  void OnNull(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnAlias(const YAML::Mark& /*mark*/, YAML::anchor_t /*anchor*/) override {}
  void OnScalar(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                const std::string& /*value*/) override {}
  void OnSequenceStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                       YAML::EmitterStyle::value /*style*/) override {}
  void OnSequenceEnd() override {}
  void OnMapStart(const YAML::Mark& /*mark*/, const std::string& /*tag*/, YAML::anchor_t /*anchor*/,
                  YAML::EmitterStyle::value /*style*/) override {}
  void OnMapEnd() override {}
};

struct Documents {
  std::vector<YAML::Mark> starts;
  bool stuck = false;  // the parser stopped consuming input at starts.back()
};

// Throws what the parser throws (YAML::ParserException, YAML::DeepRecursion).
Documents scan_documents(const std::string& text) {
  std::istringstream in(text);
  YAML::Parser parser(in);
  DocumentStarts handler;
  Documents docs;
  while (parser.HandleNextDocument(handler)) {
    const auto& starts = handler.starts;
    if (starts.size() >= 2 && starts.back().pos == starts[starts.size() - 2].pos) {
      docs.stuck = true;
      break;
    }
  }
  docs.starts = std::move(handler.starts);
  return docs;
}

// "`,`" or "byte 0x01", for a parse error at `pos`.
std::string describe_char(const std::string& text, int pos) {
  if (pos < 0 || static_cast<std::size_t>(pos) >= text.size()) {
    return "end of input";
  }
  const auto c = static_cast<unsigned char>(text[static_cast<std::size_t>(pos)]);
  if (c >= 0x21 && c < 0x7f) {
    return std::string("`") + static_cast<char>(c) + "`";
  }
  static constexpr char kHex[] = "0123456789abcdef";
  return std::string("byte 0x") + kHex[c >> 4] + kHex[c & 0xf];
}

// One key of a mapping and its value.
struct Field {
  std::string name;
  YAML::Node key;
  YAML::Node value;
};
using Fields = std::map<std::string, Field, std::less<>>;

const Field* find(const Fields& fields, std::string_view name) {
  auto it = fields.find(name);
  return it == fields.end() ? nullptr : &it->second;
}

// Walks one document along the policy schema and collects every error on the way.
class Reader {
 public:
  explicit Reader(std::string file) : file_(std::move(file)) {}

  [[nodiscard]] Position position(const YAML::Mark& mark) const {
    // yaml-cpp counts from 0 and uses -1 for "no position".
    if (mark.line < 0 || mark.column < 0) {
      return Position{file_, 0, 0};
    }
    return Position{file_, mark.line + 1, mark.column + 1};
  }

  void fail(ErrorCode code, Position pos, std::string message) {
    errors_.push_back(LoadError{code, std::move(message), std::move(pos)});
  }

  [[nodiscard]] bool failed() const { return !errors_.empty(); }
  [[nodiscard]] std::vector<LoadError> take_errors() { return std::move(errors_); }

  std::optional<Policy> read(const std::string& text);

 private:
  void fail(ErrorCode code, const YAML::Node& at, std::string message) {
    fail(code, position(at.Mark()), std::move(message));
  }
  // An empty value (`key:`) has no text of its own; yaml-cpp marks the next token, so point at
  // the key instead.
  void fail(ErrorCode code, const Field& field, std::string message) {
    fail(code, field.value.IsNull() ? field.key : field.value, std::move(message));
  }
  void wrong_type(const Field& field, const char* expected) {
    fail(ErrorCode::WrongType, field,
         "`" + field.name + "` must be " + expected + ", got " + kind(field.value));
  }

  std::optional<Fields> mapping(const YAML::Node& node, std::span<const std::string_view> allowed,
                                const std::string& what);
  const Field* require(const Fields& fields, std::string_view name, const YAML::Node& mapping,
                       const std::string& what);
  std::optional<std::string> scalar(const Field& field);
  std::optional<bool> boolean(const Field& field);
  std::optional<std::vector<Syscall>> syscalls(const Field& field);
  std::optional<FileType> file_type(const Field& field);
  std::optional<std::vector<DevicePattern>> devices(const Field& field);
  std::optional<DevicePattern> device(const YAML::Node& node);
  void match(const Field& field, Rule& rule);
  std::optional<Action> action(const Field& field);
  std::optional<int> errno_value(const Field& field);
  void check_emulators(const Field& action_field, const Rule& rule);
  std::optional<Rule> rule(const YAML::Node& node, std::size_t index);
  std::vector<Rule> rules(const Field& field);
  std::optional<Policy> policy(const YAML::Node& root);

  std::string file_;
  std::vector<LoadError> errors_;
};

// The keys of a mapping, checked against the keys the format allows: not a mapping, a key
// that is not a string, an unknown key and a key given twice are errors. yaml-cpp keeps
// duplicate keys (and lookups see only the first), so they are found here by walking the pairs.
std::optional<Fields> Reader::mapping(const YAML::Node& node, std::span<const std::string_view> allowed,
                                      const std::string& what) {
  if (!node.IsMap()) {
    fail(ErrorCode::WrongType, node, what + " must be a mapping, got " + kind(node));
    return std::nullopt;
  }
  Fields fields;
  for (const auto& pair : node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) {
      fail(ErrorCode::WrongType, key, "keys in " + what + " must be strings, got " + kind(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (std::ranges::find(allowed, name) == allowed.end()) {
      fail(ErrorCode::UnknownKey, key,
           "unknown key `" + name + "` in " + what + "; allowed keys: " + join(allowed));
      continue;
    }
    if (const Field* first = find(fields, name)) {
      Position at = position(first->key.Mark());
      fail(ErrorCode::DuplicateKey, key,
           "duplicate key `" + name + "` in " + what + " (first given at line " + std::to_string(at.line) +
               ", column " + std::to_string(at.column) + ")");
      continue;
    }
    fields.emplace(name, Field{name, key, pair.second});
  }
  return fields;
}

const Field* Reader::require(const Fields& fields, std::string_view name, const YAML::Node& mapping,
                             const std::string& what) {
  const Field* field = find(fields, name);
  if (field == nullptr) {
    fail(ErrorCode::MissingKey, mapping, "missing key `" + std::string(name) + "` in " + what);
  }
  return field;
}

std::optional<std::string> Reader::scalar(const Field& field) {
  if (!field.value.IsScalar()) {
    wrong_type(field, "a string");
    return std::nullopt;
  }
  return field.value.Scalar();
}

// YAML 1.2's core schema spellings only: `yes`, `on` and friends are strings there.
std::optional<bool> Reader::boolean(const Field& field) {
  if (field.value.IsScalar()) {
    const std::string& text = field.value.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") {
      return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      return false;
    }
  }
  wrong_type(field, "true or false");
  return std::nullopt;
}

std::optional<std::vector<Syscall>> Reader::syscalls(const Field& field) {
  if (!field.value.IsSequence()) {
    wrong_type(field, "a list of syscall names");
    return std::nullopt;
  }
  if (field.value.size() == 0) {
    fail(ErrorCode::BadValue, field, "`syscalls` must not be empty");
    return std::nullopt;
  }
  std::vector<Syscall> result;
  bool ok = true;
  for (const auto& item : field.value) {
    if (!item.IsScalar()) {
      fail(ErrorCode::WrongType, item, std::string("a syscall name must be a string, got ") + kind(item));
      ok = false;
      continue;
    }
    const SyscallInfo* info = find_syscall(item.Scalar());
    if (info == nullptr) {
      fail(ErrorCode::UnknownSyscall, item,
           "unknown syscall `" + item.Scalar() + "`; policy v1 can trap: " + syscall_names());
      ok = false;
      continue;
    }
    if (std::ranges::find(result, info->syscall) == result.end()) {
      result.push_back(info->syscall);
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

std::optional<FileType> Reader::file_type(const Field& field) {
  auto text = scalar(field);
  if (!text) {
    return std::nullopt;
  }
  if (*text == "char") {
    return FileType::Char;
  }
  if (*text == "block") {
    return FileType::Block;
  }
  fail(ErrorCode::BadValue, field, "unknown file type `" + *text + "`; expected char or block");
  return std::nullopt;
}

std::optional<DevicePattern> Reader::device(const YAML::Node& node) {
  if (!node.IsScalar()) {
    fail(ErrorCode::WrongType, node,
         std::string("a device must be a \"major:minor\" string, got ") + kind(node));
    return std::nullopt;
  }
  const std::string& text = node.Scalar();
  auto colon = text.find(':');
  if (colon == std::string::npos) {
    fail(ErrorCode::BadValue, node, "device `" + text + "` must be \"major:minor\" (either side may be *)");
    return std::nullopt;
  }
  DevicePattern pattern;
  std::string_view view(text);
  if (!parse_device_number(view.substr(0, colon), kMaxMajor, pattern.major)) {
    fail(ErrorCode::BadValue, node,
         "device `" + text + "`: the major must be * or a number from 0 to " + std::to_string(kMaxMajor));
    return std::nullopt;
  }
  if (!parse_device_number(view.substr(colon + 1), kMaxMinor, pattern.minor)) {
    fail(ErrorCode::BadValue, node,
         "device `" + text + "`: the minor must be * or a number from 0 to " + std::to_string(kMaxMinor));
    return std::nullopt;
  }
  return pattern;
}

std::optional<std::vector<DevicePattern>> Reader::devices(const Field& field) {
  if (!field.value.IsSequence()) {
    wrong_type(field, "a list of \"major:minor\" strings");
    return std::nullopt;
  }
  if (field.value.size() == 0) {
    fail(ErrorCode::BadValue, field, "`devices` must not be empty; leave it out to match any device");
    return std::nullopt;
  }
  std::vector<DevicePattern> result;
  bool ok = true;
  for (const auto& item : field.value) {
    if (auto pattern = device(item)) {
      result.push_back(*pattern);
    } else {
      ok = false;
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

void Reader::match(const Field& field, Rule& rule) {
  if (!field.value.IsMap()) {
    wrong_type(field, "a mapping (type, devices)");
    return;
  }
  auto fields = mapping(field.value, kMatchKeys, "`match`");
  if (!fields) {
    return;
  }
  if (const Field* type = find(*fields, "type")) {
    rule.type = file_type(*type);
  }
  if (const Field* devs = find(*fields, "devices")) {
    if (auto patterns = devices(*devs)) {
      rule.devices = std::move(*patterns);
    }
  }
}

std::optional<Action> Reader::action(const Field& field) {
  auto text = scalar(field);
  if (!text) {
    return std::nullopt;
  }
  for (const auto& [name, value] : kActions) {
    if (*text == name) {
      return value;
    }
  }
  fail(ErrorCode::BadValue, field, "unknown action `" + *text + "`; expected emulate, allow, deny or kill");
  return std::nullopt;
}

std::optional<int> Reader::errno_value(const Field& field) {
  auto text = scalar(field);
  if (!text) {
    return std::nullopt;
  }
  auto value = errno_from_name(*text);
  if (!value) {
    fail(ErrorCode::UnknownErrno, field,
         "unknown errno name `" + *text + "` (expected a name such as EPERM)");
  }
  return value;
}

void Reader::check_emulators(const Field& action_field, const Rule& rule) {
  for (Syscall syscall : rule.syscalls) {
    if (!syscall_info(syscall).has_emulator) {
      fail(ErrorCode::NoEmulator, action_field,
           std::string("`emulate` is not available for ") + to_string(syscall) +
               ": sysvisor has no emulator for it; use allow, deny or kill");
    }
  }
}

std::optional<Rule> Reader::rule(const YAML::Node& node, std::size_t index) {
  const std::string what = "rule " + std::to_string(index + 1);
  auto fields = mapping(node, kRuleKeys, what);
  if (!fields) {
    return std::nullopt;
  }
  const std::size_t errors_before = errors_.size();
  Rule rule;
  rule.name = what;
  rule.pos = position(node.Mark());
  if (const Field* name = find(*fields, "name")) {
    rule.name = scalar(*name).value_or(what);
  }
  if (const Field* calls = require(*fields, "syscalls", node, what)) {
    rule.syscalls = syscalls(*calls).value_or(std::vector<Syscall>{});
  }
  if (const Field* match_field = find(*fields, "match")) {
    match(*match_field, rule);
  }
  if (const Field* audit = find(*fields, "audit")) {
    rule.audit = boolean(*audit).value_or(false);
  }
  const Field* action_field = require(*fields, "action", node, what);
  std::optional<Action> parsed_action = action_field ? action(*action_field) : std::nullopt;
  if (parsed_action) {
    rule.action = *parsed_action;
    if (rule.action == Action::Emulate) {
      check_emulators(*action_field, rule);
    }
  }
  if (const Field* errno_field = find(*fields, "errno")) {
    if (parsed_action && *parsed_action != Action::Deny) {
      fail(ErrorCode::BadValue, errno_field->key,
           std::string("`errno` only goes with `action: deny`, this rule's action is ") +
               to_string(*parsed_action));
    } else if (auto value = errno_value(*errno_field)) {
      rule.err = *value;
    }
  }
  if (errors_.size() != errors_before) {
    return std::nullopt;
  }
  return rule;
}

std::vector<Rule> Reader::rules(const Field& field) {
  std::vector<Rule> result;
  if (!field.value.IsSequence()) {
    wrong_type(field, "a list of rules");
    return result;
  }
  std::size_t index = 0;
  for (const auto& item : field.value) {
    if (auto parsed = rule(item, index)) {
      result.push_back(std::move(*parsed));
    }
    ++index;
  }
  return result;
}

std::optional<Policy> Reader::read(const std::string& text) {
  const Documents docs = scan_documents(text);
  const std::vector<YAML::Mark>& starts = docs.starts;
  if (starts.empty()) {
    fail(ErrorCode::WrongType, Position{file_, 1, 1},
         "the file is empty; a policy is a mapping with name and rules");
    return std::nullopt;
  }
  if (docs.stuck) {
    fail(ErrorCode::YamlParse, position(starts.back()),
         "unexpected " + describe_char(text, starts.back().pos));
    return std::nullopt;
  }
  for (std::size_t i = 1; i < starts.size(); ++i) {
    fail(ErrorCode::BadValue, position(starts[i]),
         "a second YAML document starts here; a file holds exactly one policy");
  }
  // YAML::Load() makes one call to HandleNextDocument(): it cannot loop.
  return policy(YAML::Load(text));
}

std::optional<Policy> Reader::policy(const YAML::Node& root) {
  auto fields = mapping(root, kPolicyKeys, "the policy");
  if (!fields) {
    return std::nullopt;
  }
  Policy result;
  result.pos = position(root.Mark());
  if (const Field* name = require(*fields, "name", root, "the policy")) {
    // The name is what identifies a policy, so a policy's position is that of its name.
    result.pos = position(name->key.Mark());
    if (auto text = scalar(*name)) {
      if (valid_policy_name(*text)) {
        result.name = *text;
      } else {
        fail(ErrorCode::BadValue, *name,
             "policy name `" + *text + "` must match [a-z0-9][a-z0-9-_.]* (lower case, digits, - _ .)");
      }
    }
  }
  if (const Field* description = find(*fields, "description")) {
    result.description = scalar(*description).value_or("");
  }
  if (const Field* rule_list = require(*fields, "rules", root, "the policy")) {
    result.rules = rules(*rule_list);
  }
  if (failed()) {
    return std::nullopt;
  }
  return result;
}

std::string io_message(const char* what, int err) {
  return std::string(what) + ": " + std::error_code(err, std::generic_category()).message();
}

// The whole file, or an Io error. A directory fails in read() with EISDIR.
std::expected<std::string, LoadError> read_file(const std::filesystem::path& path) {
  const Position pos{path.string(), 0, 0};
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY));
  if (!fd) {
    return std::unexpected(LoadError{ErrorCode::Io, io_message("open", errno), pos});
  }
  std::string text;
  std::array<char, 16384> buffer{};
  for (;;) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return std::unexpected(LoadError{ErrorCode::Io, io_message("read", errno), pos});
    }
    if (n == 0) {
      return text;
    }
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
}

bool is_policy_file(const std::filesystem::directory_entry& entry) {
  std::error_code ec;
  const auto ext = entry.path().extension();
  return (ext == ".yaml" || ext == ".yml") && entry.is_regular_file(ec);
}

// The policy files directly in `dir`, sorted by name.
std::expected<std::vector<std::filesystem::path>, LoadError> policy_files(const std::filesystem::path& dir) {
  std::vector<std::filesystem::path> files;
  std::error_code ec;
  std::filesystem::directory_iterator it(dir, ec);
  for (; !ec && it != std::filesystem::directory_iterator(); it.increment(ec)) {
    if (is_policy_file(*it)) {
      files.push_back(it->path());
    }
  }
  if (ec) {
    return std::unexpected(
        LoadError{ErrorCode::Io, "read directory: " + ec.message(), Position{dir.string(), 0, 0}});
  }
  std::ranges::sort(files, {}, [](const std::filesystem::path& path) { return path.filename(); });
  return files;
}

std::string format_position(const Position& pos) {
  std::string text = pos.file;
  if (pos.line > 0) {
    text += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  }
  return text;
}

}  // namespace

const char* to_string(ErrorCode code) {
  switch (code) {
    case ErrorCode::Io:
      return "io";
    case ErrorCode::YamlParse:
      return "yaml-parse";
    case ErrorCode::WrongType:
      return "wrong-type";
    case ErrorCode::UnknownKey:
      return "unknown-key";
    case ErrorCode::MissingKey:
      return "missing-key";
    case ErrorCode::DuplicateKey:
      return "duplicate-key";
    case ErrorCode::BadValue:
      return "bad-value";
    case ErrorCode::UnknownSyscall:
      return "unknown-syscall";
    case ErrorCode::UnknownErrno:
      return "unknown-errno";
    case ErrorCode::NoEmulator:
      return "no-emulator";
    case ErrorCode::DuplicatePolicy:
      return "duplicate-policy";
  }
  return "unknown-error";
}

std::string LoadError::format() const {
  std::string where = format_position(pos);
  return where.empty() ? message : where + ": " + message;
}

const char* to_string(Action action) {
  switch (action) {
    case Action::Allow:
      return "allow";
    case Action::Emulate:
      return "emulate";
    case Action::Deny:
      return "deny";
    case Action::Kill:
      return "kill";
  }
  return "?";
}

const char* to_string(FileType type) {
  switch (type) {
    case FileType::Char:
      return "char";
    case FileType::Block:
      return "block";
  }
  return "?";
}

const char* to_string(Syscall syscall) {
  return syscall_info(syscall).name;
}

Decision decide(const Policy& policy, const MknodArgs& args) {
  for (std::size_t i = 0; i < policy.rules.size(); ++i) {
    const Rule& rule = policy.rules[i];
    if (matches(rule, args)) {
      return Decision{
          .action = rule.action,
          .err = rule.action == Action::Deny ? rule.err : 0,
          .audit = rule.audit,
          .rule_index = static_cast<int>(i),
      };
    }
  }
  return Decision{};
}

std::expected<Policy, std::vector<LoadError>> parse_policy(std::string_view text, const std::string& file) {
  Reader reader(file);
  std::optional<Policy> policy;
  try {
    policy = reader.read(std::string(text));
  } catch (const YAML::DeepRecursion& e) {
    // Its own message says "bad file".
    reader.fail(ErrorCode::YamlParse, reader.position(e.mark), "YAML nested too deeply");
  } catch (const YAML::Exception& e) {
    reader.fail(ErrorCode::YamlParse, reader.position(e.mark), e.msg);
  } catch (const std::exception& e) {
    reader.fail(ErrorCode::YamlParse, Position{file, 0, 0}, e.what());
  }
  if (reader.failed() || !policy) {
    return std::unexpected(reader.take_errors());
  }
  return std::move(*policy);
}

std::expected<Policy, std::vector<LoadError>> load_policy_file(const std::filesystem::path& path) {
  try {
    auto text = read_file(path);
    if (!text) {
      return std::unexpected(std::vector{std::move(text.error())});
    }
    return parse_policy(*text, path.string());
  } catch (const std::exception& e) {
    return std::unexpected(std::vector{LoadError{ErrorCode::Io, e.what(), Position{path.string(), 0, 0}}});
  }
}

std::expected<PolicyMap, std::vector<LoadError>> load_policy_dir(const std::filesystem::path& dir) {
  try {
    auto files = policy_files(dir);
    if (!files) {
      return std::unexpected(std::vector{std::move(files.error())});
    }
    std::vector<LoadError> errors;
    PolicyMap policies;
    for (const auto& path : *files) {
      auto loaded = load_policy_file(path);
      if (!loaded) {
        std::ranges::move(loaded.error(), std::back_inserter(errors));
        continue;
      }
      auto policy = std::make_shared<const Policy>(std::move(*loaded));
      auto [it, inserted] = policies.try_emplace(policy->name, policy);
      if (!inserted) {
        errors.push_back(LoadError{
            ErrorCode::DuplicatePolicy,
            "policy `" + policy->name + "` is already defined at " + format_position(it->second->pos),
            policy->pos});
      }
    }
    if (!errors.empty()) {
      return std::unexpected(std::move(errors));
    }
    return policies;
  } catch (const std::exception& e) {
    return std::unexpected(std::vector{LoadError{ErrorCode::Io, e.what(), Position{dir.string(), 0, 0}}});
  }
}

std::optional<int> errno_from_name(std::string_view name) {
  auto it = std::ranges::find_if(kErrnos, [&](const ErrnoInfo& info) { return info.name == name; });
  if (it == std::ranges::end(kErrnos)) {
    return std::nullopt;
  }
  return it->value;
}

const char* errno_name(int err) {
  auto it = std::ranges::find(kErrnos, err, &ErrnoInfo::value);
  return it == std::ranges::end(kErrnos) ? "E?" : it->name;
}

}  // namespace sysvisor::policy
