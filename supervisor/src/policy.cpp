// Policy v2: YAML text -> validated Policy -> resolved set -> decisions.
//
// parse_policy() reads one file along the format's schema (yaml_reader.hpp); resolve() flattens
// includes and checks what needs the whole set; decide() is the pure, allocation-free hot path.
#include "sysvisor/policy.hpp"

#include <fcntl.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>
#include <yaml-cpp/depthguard.h>
#include <yaml-cpp/eventhandler.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <array>
#include <cctype>
#include <cerrno>
#include <charconv>
#include <cstdlib>
#include <cstring>
#include <iterator>
#include <limits>
#include <set>
#include <span>
#include <sstream>
#include <system_error>
#include <tuple>
#include <utility>

#include "sysvisor/syscalls.hpp"
#include "sysvisor/unique_fd.hpp"
#include "yaml_reader.hpp"

namespace sysvisor::policy {

// ================================ YAML reading (yaml_reader.hpp) ================================
namespace detail {
namespace {

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

std::string io_message(const char* what, int err) {
  return std::string(what) + ": " + std::error_code(err, std::generic_category()).message();
}

}  // namespace

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

std::string join(std::span<const std::string_view> words) {
  std::string joined;
  for (auto word : words) {
    joined += joined.empty() ? "" : ", ";
    joined += word;
  }
  return joined;
}

std::string_view closest(std::string_view word, std::span<const std::string_view> candidates) {
  const auto lower = [](char c) { return static_cast<char>(std::tolower(static_cast<unsigned char>(c))); };
  // Optimal string alignment distance, three rows.
  const auto distance = [&](std::string_view a, std::string_view b) {
    std::vector<std::size_t> before(b.size() + 1), prev(b.size() + 1), cur(b.size() + 1);
    for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
    for (std::size_t i = 1; i <= a.size(); ++i) {
      cur[0] = i;
      for (std::size_t j = 1; j <= b.size(); ++j) {
        const std::size_t cost = lower(a[i - 1]) == lower(b[j - 1]) ? 0 : 1;
        cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost});
        if (i > 1 && j > 1 && lower(a[i - 1]) == lower(b[j - 2]) && lower(a[i - 2]) == lower(b[j - 1])) {
          cur[j] = std::min(cur[j], before[j - 2] + 1);
        }
      }
      before = prev;
      prev = cur;
    }
    return prev[b.size()];
  };
  if (word.empty() || word.size() > 64) return {};
  const std::size_t limit = std::max<std::size_t>(1, word.size() / 3);
  std::string_view best;
  std::size_t best_distance = limit + 1;
  bool tie = false;
  for (const std::string_view candidate : candidates) {
    const std::size_t d = distance(word, candidate);
    if (d < best_distance) {
      best = candidate;
      best_distance = d;
      tie = false;
    } else if (d == best_distance && candidate != best) {
      tie = true;
    }
  }
  return tie ? std::string_view{} : best;
}

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  const std::string_view guess = closest(word, candidates);
  return guess.empty() ? std::string() : "; did you mean `" + std::string(guess) + "`?";
}

const Entry* find(const Entries& entries, std::string_view name) {
  auto it = entries.find(name);
  return it == entries.end() ? nullptr : &it->second;
}

std::optional<ParsedInt> parse_int(std::string_view text, std::string& why) {
  ParsedInt result;
  std::string_view digits = text;
  if (!digits.empty() && digits.front() == '-') {
    result.negative = true;
    digits.remove_prefix(1);
  }
  int base = 10;
  if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'x' || digits[1] == 'X')) {
    base = 16;
    digits.remove_prefix(2);
  } else if (digits.size() > 2 && digits[0] == '0' && (digits[1] == 'o' || digits[1] == 'O')) {
    base = 8;
    digits.remove_prefix(2);
  } else if (digits.size() > 1 && digits[0] == '0') {
    why = "a leading 0 is ambiguous: write 0o" + std::string(digits.substr(1)) + " for octal";
    return std::nullopt;
  }
  if (digits.empty() || digits.front() == '-' || digits.front() == '+') {
    why = "expected an integer (decimal, 0x hexadecimal or 0o octal)";
    return std::nullopt;
  }
  const char* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, result.magnitude, base);
  if (ec == std::errc::result_out_of_range) {
    why = "does not fit in 64 bits";
    return std::nullopt;
  }
  if (ec != std::errc{} || ptr != end) {
    why = "expected an integer (decimal, 0x hexadecimal or 0o octal)";
    return std::nullopt;
  }
  return result;
}

// "the file is N bytes, more than the limit of 262144 bytes (256 KiB)"
std::string too_large(std::uint64_t size) {
  return "the file is " + std::to_string(size) + " bytes, more than the limit of " +
         std::to_string(kMaxInputBytes) + " bytes (" + std::to_string(kMaxInputBytes >> 10) + " KiB)";
}

std::optional<std::string> read_text(const std::string& path, LoadError& error) {
  const Position pos{path, 0, 0};
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK));
  if (!fd) {
    error = LoadError{ErrorCode::Io, io_message("open", errno), pos};
    return std::nullopt;
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) == 0 && !S_ISREG(st.st_mode)) {
    error = LoadError{ErrorCode::Io, S_ISDIR(st.st_mode) ? io_message("read", EISDIR) : "not a regular file",
                      pos};
    return std::nullopt;
  }
  // The size the file has, not what was read of it before the limit stopped the reading.
  if (static_cast<std::uint64_t>(st.st_size) > kMaxInputBytes) {
    error = LoadError{ErrorCode::BadValue, too_large(static_cast<std::uint64_t>(st.st_size)), pos};
    return std::nullopt;
  }
  std::string text;
  std::array<char, 16384> buffer{};
  while (text.size() <= kMaxInputBytes) {
    ssize_t n = ::read(fd.get(), buffer.data(), buffer.size());
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      error = LoadError{ErrorCode::Io, io_message("read", errno), pos};
      return std::nullopt;
    }
    if (n == 0) {
      break;
    }
    text.append(buffer.data(), static_cast<std::size_t>(n));
  }
  if (text.size() > kMaxInputBytes) {
    // Grown since fstat(): what was read is not its size.
    error = LoadError{ErrorCode::BadValue,
                      "the file grew past the limit of " + std::to_string(kMaxInputBytes) + " bytes (" +
                          std::to_string(kMaxInputBytes >> 10) + " KiB) while it was read",
                      pos};
    return std::nullopt;
  }
  return text;
}

Position YamlReader::position(const YAML::Mark& mark) const {
  // yaml-cpp counts from 0 and uses -1 for "no position".
  if (mark.line < 0 || mark.column < 0) {
    return Position{file_, 0, 0};
  }
  return Position{file_, mark.line + 1, mark.column + 1};
}

Position YamlReader::position(const YAML::Node& node) const {
  return position(node.Mark());
}

void YamlReader::fail(ErrorCode code, Position pos, std::string message) {
  if (errors_.size() > kMaxErrors) {
    return;
  }
  if (errors_.size() == kMaxErrors) {
    errors_.push_back(
        LoadError{code, "too many errors; the rest of the file was not checked", std::move(pos)});
    return;
  }
  errors_.push_back(LoadError{code, std::move(message), std::move(pos)});
}

void YamlReader::fail(ErrorCode code, const YAML::Node& at, std::string message) {
  fail(code, position(at), std::move(message));
}

void YamlReader::fail(ErrorCode code, const Entry& entry, std::string message) {
  fail(code, entry.value.IsNull() ? entry.key : entry.value, std::move(message));
}

void YamlReader::wrong_type(const Entry& entry, const char* expected) {
  fail(ErrorCode::WrongType, entry,
       "`" + entry.name + "` must be " + expected + ", got " + kind(entry.value));
}

std::optional<YAML::Node> YamlReader::document(std::string_view view, const char* what) {
  if (view.size() > kMaxInputBytes) {
    fail(ErrorCode::BadValue, Position{file_, 0, 0}, too_large(view.size()));
    return std::nullopt;
  }
  std::optional<YAML::Node> root;
  const std::size_t errors_before = errors_.size();
  const bool parsed = guarded(*this, [&] {
    const std::string text(view);
    const Documents docs = scan_documents(text);
    const std::vector<YAML::Mark>& starts = docs.starts;
    if (starts.empty()) {
      fail(ErrorCode::WrongType, Position{file_, 1, 1}, std::string("the file is empty; expected ") + what);
      return;
    }
    if (docs.stuck) {
      fail(ErrorCode::YamlParse, position(starts.back()),
           "unexpected " + describe_char(text, starts.back().pos));
      return;
    }
    for (std::size_t i = 1; i < starts.size(); ++i) {
      fail(ErrorCode::BadValue, position(starts[i]),
           std::string("a second YAML document starts here; a file holds exactly one ") + what);
    }
    // YAML::Load() makes one call to HandleNextDocument(): it cannot loop.
    root = YAML::Load(text);
  });
  if (!parsed && errors_.size() > errors_before) explain_tab(errors_.back(), view);
  return root;
}

std::optional<Entries> YamlReader::mapping(const YAML::Node& node, std::span<const std::string_view> allowed,
                                           const std::string& what) {
  if (!node.IsMap()) {
    fail(ErrorCode::WrongType, node, what + " must be a mapping, got " + kind(node));
    return std::nullopt;
  }
  Entries entries;
  for (const auto& pair : node) {
    const YAML::Node& key = pair.first;
    if (!key.IsScalar()) {
      fail(ErrorCode::WrongType, key, "keys in " + what + " must be strings, got " + kind(key));
      continue;
    }
    const std::string& name = key.Scalar();
    if (std::ranges::find(allowed, name) == allowed.end()) {
      fail(ErrorCode::UnknownKey, key,
           "unknown key `" + name + "` in " + what + did_you_mean(name, allowed) +
               "; allowed keys: " + join(allowed));
      continue;
    }
    if (const Entry* first = find(entries, name)) {
      Position at = position(first->key);
      fail(ErrorCode::DuplicateKey, key,
           "duplicate key `" + name + "` in " + what + " (first given at line " + std::to_string(at.line) +
               ", column " + std::to_string(at.column) + ")");
      continue;
    }
    entries.emplace(name, Entry{name, key, pair.second});
  }
  return entries;
}

const Entry* YamlReader::require(const Entries& entries, std::string_view name, const YAML::Node& mapping,
                                 const std::string& what) {
  const Entry* entry = find(entries, name);
  if (entry == nullptr) {
    fail(ErrorCode::MissingKey, mapping, "missing key `" + std::string(name) + "` in " + what);
  }
  return entry;
}

std::optional<std::string> YamlReader::string(const Entry& entry) {
  if (!entry.value.IsScalar()) {
    wrong_type(entry, "a string");
    return std::nullopt;
  }
  return entry.value.Scalar();
}

// YAML 1.2's core schema spellings only: `yes`, `on` and friends are strings there.
std::optional<bool> YamlReader::boolean(const Entry& entry) {
  if (entry.value.IsScalar()) {
    const std::string& text = entry.value.Scalar();
    if (text == "true" || text == "True" || text == "TRUE") {
      return true;
    }
    if (text == "false" || text == "False" || text == "FALSE") {
      return false;
    }
  }
  wrong_type(entry, "true or false");
  return std::nullopt;
}

std::optional<std::vector<std::pair<std::string, YAML::Node>>> YamlReader::string_list(const Entry& entry,
                                                                                       const char* expected) {
  if (!entry.value.IsSequence()) {
    wrong_type(entry, expected);
    return std::nullopt;
  }
  if (entry.value.size() == 0) {
    fail(ErrorCode::BadValue, entry, "`" + entry.name + "` must not be empty; leave it out instead");
    return std::nullopt;
  }
  std::vector<std::pair<std::string, YAML::Node>> items;
  bool ok = true;
  for (const auto& item : entry.value) {
    if (!item.IsScalar()) {
      fail(ErrorCode::WrongType, item,
           "each item of `" + entry.name + "` must be a string, got " + std::string(kind(item)));
      ok = false;
      continue;
    }
    items.emplace_back(item.Scalar(), item);
  }
  return ok ? std::optional(std::move(items)) : std::nullopt;
}

std::optional<std::uint64_t> YamlReader::u64(const Entry& entry) {
  if (!entry.value.IsScalar()) {
    wrong_type(entry, "an integer");
    return std::nullopt;
  }
  std::string why;
  auto parsed = parse_int(entry.value.Scalar(), why);
  if (parsed && parsed->negative && parsed->magnitude > (std::uint64_t{1} << 63)) {
    parsed.reset();
    why = "does not fit in 64 bits";
  }
  if (!parsed) {
    fail(ErrorCode::BadValue, entry, "`" + entry.name + "`: `" + entry.value.Scalar() + "` " + why);
    return std::nullopt;
  }
  return parsed->negative ? std::uint64_t{0} - parsed->magnitude : parsed->magnitude;
}

std::optional<std::int64_t> YamlReader::i64(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    fail(ErrorCode::WrongType, node, what + " must be an integer, got " + kind(node));
    return std::nullopt;
  }
  std::string why;
  auto parsed = parse_int(node.Scalar(), why);
  constexpr std::uint64_t kMaxPositive = std::numeric_limits<std::int64_t>::max();
  if (parsed && parsed->magnitude > kMaxPositive + (parsed->negative ? 1 : 0)) {
    parsed.reset();
    why = "is out of range for a signed 64-bit integer";
  }
  if (!parsed) {
    fail(ErrorCode::BadValue, node, what + ": `" + node.Scalar() + "` " + why);
    return std::nullopt;
  }
  if (!parsed->negative) {
    return static_cast<std::int64_t>(parsed->magnitude);
  }
  // -(2^63) has no positive counterpart: negate in unsigned arithmetic.
  return static_cast<std::int64_t>(std::uint64_t{0} - parsed->magnitude);
}

std::optional<std::int64_t> YamlReader::i64(const Entry& entry) {
  if (entry.value.IsNull()) {
    wrong_type(entry, "an integer");
    return std::nullopt;
  }
  return i64(entry.value, "`" + entry.name + "`");
}

}  // namespace detail

// ======================================== tables ========================================
namespace {

using detail::Entries;
using detail::Entry;
using detail::find;
using detail::kind;

// The kernel's dev_t split (new_encode_dev): 12 bits of major, 20 bits of minor.
constexpr std::uint32_t kMaxMajor = 4095;
constexpr std::uint32_t kMaxMinor = 1048575;
// Longer lists or strings are certainly mistakes, and would slow every check down.
constexpr std::size_t kMaxRules = 4096;
constexpr std::size_t kMaxPattern = 4096;

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

std::span<const std::string_view> errno_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& e : kErrnos) out.emplace_back(e.name);
    return out;
  }();
  return names;
}

// Every syscall name libseccomp knows for x86_64.
std::span<const std::string_view> syscall_names() {
  static const std::vector<std::string> storage = [] {
    std::vector<std::string> out;
    for (int nr = 0; nr < 1024; ++nr) {
      std::string name = syscall_name(nr);
      if (!name.starts_with("syscall_")) out.push_back(std::move(name));
    }
    return out;
  }();
  static const std::vector<std::string_view> names(storage.begin(), storage.end());
  return names;
}

struct NamedValue {
  std::string_view name;
  std::uint64_t value;
};
#define N(name) NamedValue{#name, name}
// mount(2)'s flags (sys/mount.h).
constexpr std::array kMountFlags{
    N(MS_RDONLY), N(MS_NOSUID), N(MS_NODEV), N(MS_NOEXEC), N(MS_SYNCHRONOUS), N(MS_REMOUNT),
    N(MS_MANDLOCK), N(MS_DIRSYNC), N(MS_NOSYMFOLLOW), N(MS_NOATIME), N(MS_NODIRATIME), N(MS_BIND),
    N(MS_MOVE), N(MS_REC), N(MS_SILENT), N(MS_POSIXACL), N(MS_UNBINDABLE), N(MS_PRIVATE),
    N(MS_SLAVE), N(MS_SHARED), N(MS_RELATIME), N(MS_KERNMOUNT), N(MS_I_VERSION), N(MS_STRICTATIME),
    N(MS_LAZYTIME),
};
// umount2(2)'s flags.
constexpr std::array kUmountFlags{N(MNT_FORCE), N(MNT_DETACH), N(MNT_EXPIRE), N(UMOUNT_NOFOLLOW)};
constexpr std::array kSchedPolicies{
    N(SCHED_OTHER), N(SCHED_FIFO), N(SCHED_RR), N(SCHED_BATCH), N(SCHED_IDLE), N(SCHED_DEADLINE),
};
#undef N
// clang-format on

constexpr std::array<std::string_view, 6> kPolicyKeys{"name",    "description", "mode",
                                                      "include", "rules",       "audit_arguments"};
constexpr std::array<std::string_view, 9> kRuleKeys{"name",  "syscalls", "args",  "match",  "action",
                                                    "errno", "value",    "audit", "emulate"};
constexpr std::array<std::string_view, 6> kEmulateKeys{"images",     "bind",      "readonly",
                                                       "allow_suid", "allow_dev", "options"};
constexpr std::array<std::string_view, 2> kBindKeys{"host", "readonly"};
constexpr std::array<std::string_view, 4> kArgKeys{"index", "op", "value", "mask"};
constexpr std::array<std::string_view, 12> kMatchKeys{"type",       "devices",      "path",     "fstype",
                                                      "source",     "target",       "flags",    "xattr",
                                                      "value_size", "sched_policy", "priority", "nice"};
constexpr std::array<std::string_view, 2> kFlagKeys{"set", "clear"};
constexpr std::array<std::string_view, 2> kRangeKeys{"min", "max"};

constexpr std::array kActions{
    std::pair{"emulate", Action::Emulate}, std::pair{"allow", Action::Allow},
    std::pair{"deny", Action::Deny},       std::pair{"return", Action::Return},
    std::pair{"kill", Action::Kill},       std::pair{"kill-container", Action::KillContainer},
};

std::span<const std::string_view> action_names() {
  static const std::vector<std::string_view> names = [] {
    std::vector<std::string_view> out;
    for (const auto& [name, value] : kActions) out.emplace_back(name);
    return out;
  }();
  return names;
}

// The names of a table of NamedValue, for a guess at a misspelt one.
template <std::size_t Size>
std::vector<std::string_view> names_of(const std::array<NamedValue, Size>& table) {
  std::vector<std::string_view> out;
  for (const auto& entry : table) out.push_back(entry.name);
  return out;
}

constexpr std::array kOps{
    std::pair{"eq", CmpOp::Eq},
    std::pair{"ne", CmpOp::Ne},
    std::pair{"lt", CmpOp::Lt},
    std::pair{"le", CmpOp::Le},
    std::pair{"gt", CmpOp::Gt},
    std::pair{"ge", CmpOp::Ge},
    std::pair{"masked_eq", CmpOp::MaskedEq},
};

// The Field bit each `match` key reads.
std::uint32_t field_of(std::string_view key) {
  if (key == "type" || key == "devices") {
    return kFieldDevice;
  }
  if (key == "path") {
    return kFieldPath;
  }
  if (key == "fstype") {
    return kFieldFstype;
  }
  if (key == "source") {
    return kFieldSource;
  }
  if (key == "target") {
    return kFieldTarget;
  }
  if (key == "flags") {
    return kFieldFlags;
  }
  if (key == "xattr") {
    return kFieldXattrName;
  }
  if (key == "value_size") {
    return kFieldValueSize;
  }
  return kFieldSched;  // sched_policy, priority, nice
}

bool valid_policy_name(std::string_view name) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || name.size() > 255 || !lower_or_digit(name.front())) {
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
  if (text.empty() || ec != std::errc{} || ptr != end || value > max) {
    return false;
  }
  out = value;
  return true;
}

std::string format_position(const Position& pos) {
  std::string text = pos.file;
  if (pos.line > 0) {
    text += ":" + std::to_string(pos.line) + ":" + std::to_string(pos.column);
  }
  return text;
}

// ======================================== matching ========================================

// fnmatch(3) without flags, in O(pattern * text) time whatever the input: `*` matches any
// sequence (also `/` and a leading `.`), `?` any one byte, `[...]` a set (`!` or `^` negates,
// `a-z` ranges, a leading `]` is literal; an unclosed `[` is literal), `\` quotes the next byte.
// glibc's fnmatch backtracks recursively, which a container's long path could make exponential.

// The set at pattern[i] == '['; sets `end` past its ']' and returns whether `c` is in it.
// Returns nullopt when the '[' is not closed (it is then a literal).
std::optional<bool> match_set(std::string_view pattern, std::size_t i, unsigned char c, std::size_t& end) {
  std::size_t j = i + 1;
  bool negate = false;
  if (j < pattern.size() && (pattern[j] == '!' || pattern[j] == '^')) {
    negate = true;
    ++j;
  }
  bool found = false;
  bool first = true;
  while (j < pattern.size() && (first || pattern[j] != ']')) {
    first = false;
    unsigned char lo = static_cast<unsigned char>(pattern[j]);
    if (lo == '\\' && j + 1 < pattern.size()) {
      lo = static_cast<unsigned char>(pattern[++j]);
    }
    unsigned char hi = lo;
    if (j + 2 < pattern.size() && pattern[j + 1] == '-' && pattern[j + 2] != ']') {
      j += 2;
      hi = static_cast<unsigned char>(pattern[j]);
      if (hi == '\\' && j + 1 < pattern.size()) {
        hi = static_cast<unsigned char>(pattern[++j]);
      }
    }
    if (c >= lo && c <= hi) {
      found = true;
    }
    ++j;
  }
  if (j >= pattern.size()) {
    return std::nullopt;
  }
  end = j + 1;
  return found != negate;
}

// Whether pattern[p...] starts by matching the single byte `c`; `next` is the pattern position
// after that element. False for '*'.
bool match_one(std::string_view pattern, std::size_t p, unsigned char c, std::size_t& next) {
  const char pc = pattern[p];
  if (pc == '?') {
    next = p + 1;
    return true;
  }
  if (pc == '[') {
    std::size_t end = 0;
    if (auto in = match_set(pattern, p, c, end)) {
      next = end;
      return *in;
    }
    next = p + 1;
    return c == '[';
  }
  if (pc == '\\' && p + 1 < pattern.size()) {
    next = p + 2;
    return static_cast<unsigned char>(pattern[p + 1]) == c;
  }
  next = p + 1;
  return static_cast<unsigned char>(pc) == c;
}

bool glob_match(std::string_view pattern, std::string_view text) {
  std::size_t p = 0;
  std::size_t t = 0;
  std::size_t star_p = std::string_view::npos;  // the pattern after the last '*'
  std::size_t star_t = 0;                       // where that '*' started to match
  while (t < text.size()) {
    std::size_t next = 0;
    if (p < pattern.size() && pattern[p] == '*') {
      star_p = ++p;
      star_t = t;
    } else if (p < pattern.size() && match_one(pattern, p, static_cast<unsigned char>(text[t]), next)) {
      p = next;
      ++t;
    } else if (star_p != std::string_view::npos) {
      p = star_p;
      t = ++star_t;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') {
    ++p;
  }
  return p == pattern.size();
}

bool any_glob(const std::vector<std::string>& patterns, std::string_view text) {
  return std::ranges::any_of(patterns, [&](const std::string& pattern) { return glob_match(pattern, text); });
}

bool any_glob_of(const std::vector<std::string>& patterns, const std::optional<std::string>& text) {
  return text && any_glob(patterns, *text);
}

bool in_range(const IntRange& range, std::int64_t value) {
  return (!range.min || value >= *range.min) && (!range.max || value <= *range.max);
}

bool in_range(const IntRange& range, std::uint64_t value) {
  if (value > static_cast<std::uint64_t>(std::numeric_limits<std::int64_t>::max())) {
    return !range.max;  // above every bound that fits in an int64
  }
  return in_range(range, static_cast<std::int64_t>(value));
}

bool holds(const ArgCondition& cond, const std::array<std::uint64_t, 6>& args) {
  const std::uint64_t arg = args[cond.index < 6 ? cond.index : 0];
  switch (cond.op) {
    case CmpOp::Eq:
      return arg == cond.value;
    case CmpOp::Ne:
      return arg != cond.value;
    case CmpOp::Lt:
      return arg < cond.value;
    case CmpOp::Le:
      return arg <= cond.value;
    case CmpOp::Gt:
      return arg > cond.value;
    case CmpOp::Ge:
      return arg >= cond.value;
    case CmpOp::MaskedEq:
      return (arg & cond.mask) == cond.value;
  }
  return false;
}

bool matches(const DevicePattern& pattern, std::uint32_t major, std::uint32_t minor) {
  return (!pattern.major || *pattern.major == major) && (!pattern.minor || *pattern.minor == minor);
}

bool holds(const Match& m, const Call& call) {
  if (m.type && call.type != m.type) {
    return false;
  }
  if (!m.devices.empty() && (!call.type || std::ranges::none_of(m.devices, [&](const DevicePattern& d) {
        return matches(d, call.major, call.minor);
      }))) {
    return false;
  }
  if (!m.paths.empty() &&
      std::ranges::none_of(call.paths, [&](const std::string& path) { return any_glob(m.paths, path); })) {
    return false;
  }
  if (!m.fstypes.empty() && !any_glob_of(m.fstypes, call.fstype)) {
    return false;
  }
  if (!m.sources.empty() && !any_glob_of(m.sources, call.source)) {
    return false;
  }
  if (!m.targets.empty() && !any_glob_of(m.targets, call.target)) {
    return false;
  }
  if (m.flags &&
      (!call.flags || (*call.flags & m.flags->set) != m.flags->set || (*call.flags & m.flags->clear) != 0)) {
    return false;
  }
  // On listxattr and friends the names are what the emulated list may add: no filter.
  if (!m.xattr_names.empty() && !is_xattr_list(call.nr) && !any_glob_of(m.xattr_names, call.xattr_name)) {
    return false;
  }
  if (m.value_size && (!call.value_size || !in_range(*m.value_size, *call.value_size))) {
    return false;
  }
  if (!m.sched_policies.empty() &&
      (!call.sched_policy ||
       std::ranges::find(m.sched_policies, *call.sched_policy) == m.sched_policies.end())) {
    return false;
  }
  if (m.priority && (!call.priority || !in_range(*m.priority, *call.priority))) {
    return false;
  }
  if (m.nice && (!call.nice || !in_range(*m.nice, *call.nice))) {
    return false;
  }
  return true;
}

// The syscall is already known to be one of the rule's.
bool rule_holds(const Rule& rule, const Call& call) {
  return std::ranges::all_of(rule.args, [&](const ArgCondition& c) { return holds(c, call.args); }) &&
         (rule.fields == kFieldNone || holds(rule.match, call));
}

Decision decision_of(const Rule& rule, std::size_t index) {
  return Decision{
      .action = rule.action,
      .err = rule.action == Action::Deny ? rule.err : 0,
      .value = rule.action == Action::Return ? rule.value : 0,
      .audit = rule.audit,
      .rule_index = static_cast<int>(index),
      .would = std::nullopt,
      .learn = false,
  };
}

bool names(const Rule& rule, int nr) {
  return std::ranges::find(rule.syscalls, nr) != rule.syscalls.end();
}

// ======================================== reading ========================================

// Walks one policy document along the schema.
class PolicyReader : public detail::YamlReader {
 public:
  using YamlReader::YamlReader;

  std::optional<Policy> policy(const YAML::Node& root);

 private:
  std::optional<std::vector<int>> syscalls(const Entry& entry);
  std::optional<std::vector<ArgCondition>> args(const Entry& entry);
  std::optional<ArgCondition> arg(const YAML::Node& node, std::size_t index);
  void match(const Entry& entry, Rule& rule, bool syscalls_known);
  std::optional<FileType> file_type(const Entry& entry);
  std::optional<std::vector<DevicePattern>> devices(const Entry& entry);
  std::optional<DevicePattern> device(const YAML::Node& node);
  std::optional<std::vector<std::string>> globs(const Entry& entry, bool absolute, const char* what);
  std::optional<FlagMatch> flags(const Entry& entry, const Rule& rule, bool syscalls_known);
  std::optional<std::uint64_t> flag_list(const Entry& entry, const Rule& rule, bool syscalls_known);
  std::optional<IntRange> range(const Entry& entry);
  std::optional<std::vector<int>> sched_policies(const Entry& entry);
  std::optional<Action> action(const Entry& entry);
  std::optional<int> errno_value(const Entry& entry);
  std::optional<Rule> rule(const YAML::Node& node, std::size_t index);
  std::optional<MountGrant> mount_grant(const Entry& entry);
  std::vector<std::string> mount_options(const Entry& entry);
  std::vector<Rule> rules(const Entry& entry);
  void includes(const Entry& entry, Policy& policy);
};

std::optional<std::vector<int>> PolicyReader::syscalls(const Entry& entry) {
  if (!entry.value.IsSequence()) {
    wrong_type(entry, "a list of syscall names");
    return std::nullopt;
  }
  if (entry.value.size() == 0) {
    fail(ErrorCode::BadValue, entry, "`syscalls` must not be empty");
    return std::nullopt;
  }
  std::vector<int> result;
  bool ok = true;
  for (const auto& item : entry.value) {
    if (!item.IsScalar()) {
      fail(ErrorCode::WrongType, item, std::string("a syscall name must be a string, got ") + kind(item));
      ok = false;
      continue;
    }
    auto nr = syscall_from_name(item.Scalar());
    if (!nr) {
      fail(ErrorCode::UnknownSyscall, item,
           "unknown syscall `" + item.Scalar() + "`: libseccomp knows no x86_64 syscall of that name" +
               detail::did_you_mean(item.Scalar(), syscall_names()));
      ok = false;
      continue;
    }
    if (std::ranges::find(result, *nr) == result.end()) {
      result.push_back(*nr);
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

std::optional<ArgCondition> PolicyReader::arg(const YAML::Node& node, std::size_t index) {
  const std::string what = "argument condition " + std::to_string(index + 1);
  auto entries = mapping(node, kArgKeys, what);
  if (!entries) {
    return std::nullopt;
  }
  const std::size_t before = error_count();
  ArgCondition cond;
  cond.pos = position(node);
  if (const Entry* idx = require(*entries, "index", node, what)) {
    if (auto value = u64(*idx)) {
      if (*value > 5) {
        fail(ErrorCode::BadArgument, *idx,
             "`index` must be 0 to 5 (a syscall has six arguments), got " + idx->value.Scalar());
      } else {
        cond.index = static_cast<unsigned>(*value);
      }
    }
  }
  std::optional<CmpOp> op;
  if (const Entry* op_entry = require(*entries, "op", node, what)) {
    if (auto text = string(*op_entry)) {
      for (const auto& [name, value] : kOps) {
        if (*text == name) {
          op = value;
        }
      }
      if (!op) {
        static const std::vector<std::string_view> ops = [] {
          std::vector<std::string_view> out;
          for (const auto& [name, value] : kOps) out.emplace_back(name);
          return out;
        }();
        fail(ErrorCode::BadValue, *op_entry,
             "unknown op `" + *text + "`" + detail::did_you_mean(*text, ops) +
                 "; expected eq, ne, lt, le, gt, ge or masked_eq");
      }
    }
  }
  if (op) {
    cond.op = *op;
  }
  if (const Entry* value = require(*entries, "value", node, what)) {
    cond.value = u64(*value).value_or(0);
  }
  const Entry* mask = find(*entries, "mask");
  if (op == CmpOp::MaskedEq) {
    if (mask == nullptr) {
      fail(ErrorCode::MissingKey, node, "missing key `mask` in " + what + " (`op: masked_eq` needs it)");
    } else {
      cond.mask = u64(*mask).value_or(0);
    }
  } else if (op && mask != nullptr) {
    fail(ErrorCode::BadValue, mask->key,
         std::string("`mask` only goes with `op: masked_eq`, this condition's op is ") + to_string(*op));
  }
  if (error_count() != before) {
    return std::nullopt;
  }
  return cond;
}

std::optional<std::vector<ArgCondition>> PolicyReader::args(const Entry& entry) {
  if (!entry.value.IsSequence()) {
    wrong_type(entry, "a list of conditions ({index, op, value})");
    return std::nullopt;
  }
  std::vector<ArgCondition> result;
  bool ok = true;
  std::size_t i = 0;
  for (const auto& item : entry.value) {
    auto cond = arg(item, i++);
    if (!cond) {
      ok = false;
      continue;
    }
    // libseccomp 2.5 compiles at most one comparison per argument in a rule (EINVAL otherwise).
    auto same = std::ranges::find(result, cond->index, &ArgCondition::index);
    if (same != result.end()) {
      fail(ErrorCode::BadArgument, item,
           "a second condition on argument " + std::to_string(cond->index) + " (the first is at line " +
               std::to_string(same->pos.line) +
               "); a rule can compare each argument once: split it into two rules or use masked_eq");
      ok = false;
      continue;
    }
    result.push_back(*cond);
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

std::optional<FileType> PolicyReader::file_type(const Entry& entry) {
  auto text = string(entry);
  if (!text) {
    return std::nullopt;
  }
  if (*text == "char") {
    return FileType::Char;
  }
  if (*text == "block") {
    return FileType::Block;
  }
  constexpr std::array<std::string_view, 2> kTypes{"char", "block"};
  fail(
      ErrorCode::BadValue, entry,
      "unknown file type `" + *text + "`" + detail::did_you_mean(*text, kTypes) + "; expected char or block");
  return std::nullopt;
}

std::optional<DevicePattern> PolicyReader::device(const YAML::Node& node) {
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
  // Unquoted, 1:3 is a string to yaml-cpp but the number 63 to a YAML 1.1 reader (PyYAML, the
  // schema check policies/schema.json, most editors' tooling): one file, two meanings. Refused
  // exactly when a YAML 1.1 reader makes a number of it (its base-60 integer,
  // [1-9][0-9_]*(:[0-5]?[0-9])+), so that the loader and the schema accept and refuse the same
  // files: 0:3 and 1:75 are strings to both; quotes make any device one meaning.
  const auto sexagesimal = [](std::string_view major, std::string_view minor) {
    const auto digit = [](char c) { return c >= '0' && c <= '9'; };
    return !major.empty() && major.front() != '0' && std::ranges::all_of(major, digit) && !minor.empty() &&
           minor.size() <= 2 && std::ranges::all_of(minor, digit) &&
           (minor.size() == 1 || minor.front() <= '5');
  };
  if (node.Tag() == "?" && sexagesimal(view.substr(0, colon), view.substr(colon + 1))) {
    fail(ErrorCode::BadValue, node,
         "device " + text + " must be quoted (\"" + text +
             "\"): unquoted, YAML 1.1 readers such as the schema check read it as a base-60 number "
             "(1:3 as 63)");
    return std::nullopt;
  }
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

std::optional<std::vector<DevicePattern>> PolicyReader::devices(const Entry& entry) {
  if (!entry.value.IsSequence()) {
    wrong_type(entry, "a list of \"major:minor\" strings");
    return std::nullopt;
  }
  if (entry.value.size() == 0) {
    fail(ErrorCode::BadValue, entry, "`devices` must not be empty; leave it out to match any device");
    return std::nullopt;
  }
  std::vector<DevicePattern> result;
  bool ok = true;
  for (const auto& item : entry.value) {
    if (auto pattern = device(item)) {
      result.push_back(*pattern);
    } else {
      ok = false;
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

std::optional<std::vector<std::string>> PolicyReader::globs(const Entry& entry, bool absolute,
                                                            const char* what) {
  auto items = string_list(entry, what);
  if (!items) {
    return std::nullopt;
  }
  std::vector<std::string> result;
  bool ok = true;
  for (auto& [text, node] : *items) {
    if (text.empty() || text.size() > kMaxPattern || text.find('\0') != std::string::npos) {
      fail(ErrorCode::BadValue, node,
           "`" + entry.name + "`: a pattern must be 1 to " + std::to_string(kMaxPattern) +
               " bytes without NUL");
      ok = false;
    } else if (text.find("[:") != std::string::npos) {
      fail(ErrorCode::BadValue, node,
           "`" + entry.name + "`: `" + text +
               "`: character classes such as [[:alpha:]] are not supported; list the characters");
      ok = false;
    } else if (absolute && text.front() != '/') {
      fail(ErrorCode::BadValue, node,
           "`" + entry.name + "`: `" + text +
               "` must be an absolute pattern (start with /): paths are "
               "matched absolute, inside the container's root");
      ok = false;
    } else {
      result.push_back(std::move(text));
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

std::optional<std::uint64_t> PolicyReader::flag_list(const Entry& entry, const Rule& rule,
                                                     bool syscalls_known) {
  if (!entry.value.IsSequence()) {
    wrong_type(entry, "a list of flag names");
    return std::nullopt;
  }
  // The tables that apply: a name must be valid for every syscall of the rule.
  bool need_mount = false;
  bool need_umount = false;
  if (syscalls_known) {
    for (int nr : rule.syscalls) {
      const SyscallInfo* info = syscall_info(nr);
      need_mount = need_mount || (info != nullptr && info->family == Family::Mount);
      need_umount = need_umount || (info != nullptr && info->family == Family::Umount);
    }
  }
  std::uint64_t bits = 0;
  bool ok = true;
  for (const auto& item : entry.value) {
    if (!item.IsScalar()) {
      fail(ErrorCode::WrongType, item, std::string("a flag name must be a string, got ") + kind(item));
      ok = false;
      continue;
    }
    const std::string& name = item.Scalar();
    auto mount = std::ranges::find(kMountFlags, name, &NamedValue::name);
    auto umount = std::ranges::find(kUmountFlags, name, &NamedValue::name);
    const bool is_mount = mount != kMountFlags.end();
    const bool is_umount = umount != kUmountFlags.end();
    if (!is_mount && !is_umount) {
      static const std::vector<std::string_view> flag_names = [] {
        std::vector<std::string_view> out = names_of(kMountFlags);
        std::ranges::copy(names_of(kUmountFlags), std::back_inserter(out));
        return out;
      }();
      fail(ErrorCode::BadValue, item,
           "unknown flag `" + name + "`" + detail::did_you_mean(name, flag_names) +
               "; expected MS_* names (mount) or MNT_FORCE, MNT_DETACH, MNT_EXPIRE, "
               "UMOUNT_NOFOLLOW (umount2)");
      ok = false;
    } else if ((need_mount && !is_mount) || (need_umount && !is_umount)) {
      fail(ErrorCode::BadValue, item,
           "flag `" + name + "` is a " + (is_mount ? "mount" : "umount2") +
               " flag, but this rule also names " + (is_mount ? "umount2" : "mount") +
               "; write one rule per syscall");
      ok = false;
    } else {
      bits |= is_mount ? mount->value : umount->value;
    }
  }
  return ok ? std::optional(bits) : std::nullopt;
}

std::optional<FlagMatch> PolicyReader::flags(const Entry& entry, const Rule& rule, bool syscalls_known) {
  if (!entry.value.IsMap()) {
    wrong_type(entry, "a mapping ({set: [...], clear: [...]})");
    return std::nullopt;
  }
  auto entries = mapping(entry.value, kFlagKeys, "`flags`");
  if (!entries) {
    return std::nullopt;
  }
  if (entries->empty() && entry.value.size() == 0) {
    fail(ErrorCode::MissingKey, entry.value, "`flags` needs `set`, `clear` or both");
    return std::nullopt;
  }
  FlagMatch result;
  bool ok = true;
  if (const Entry* set = find(*entries, "set")) {
    auto bits = flag_list(*set, rule, syscalls_known);
    ok = ok && bits;
    result.set = bits.value_or(0);
  }
  if (const Entry* clear = find(*entries, "clear")) {
    auto bits = flag_list(*clear, rule, syscalls_known);
    ok = ok && bits;
    result.clear = bits.value_or(0);
  }
  return ok ? std::optional(result) : std::nullopt;
}

std::optional<IntRange> PolicyReader::range(const Entry& entry) {
  if (!entry.value.IsMap()) {
    wrong_type(entry, "a mapping ({min: N, max: N})");
    return std::nullopt;
  }
  auto entries = mapping(entry.value, kRangeKeys, "`" + entry.name + "`");
  if (!entries) {
    return std::nullopt;
  }
  if (entries->empty() && entry.value.size() == 0) {
    fail(ErrorCode::MissingKey, entry.value, "`" + entry.name + "` needs `min`, `max` or both");
    return std::nullopt;
  }
  IntRange result;
  bool ok = true;
  if (const Entry* min = find(*entries, "min")) {
    result.min = i64(*min);
    ok = ok && result.min;
  }
  if (const Entry* max = find(*entries, "max")) {
    result.max = i64(*max);
    ok = ok && result.max;
  }
  return ok ? std::optional(result) : std::nullopt;
}

std::optional<std::vector<int>> PolicyReader::sched_policies(const Entry& entry) {
  auto items = string_list(entry, "a list of SCHED_* names");
  if (!items) {
    return std::nullopt;
  }
  std::vector<int> result;
  bool ok = true;
  for (const auto& [name, node] : *items) {
    auto it = std::ranges::find(kSchedPolicies, name, &NamedValue::name);
    if (it == kSchedPolicies.end()) {
      static const std::vector<std::string_view> sched_names = names_of(kSchedPolicies);
      fail(ErrorCode::BadValue, node,
           "unknown scheduling policy `" + name + "`" + detail::did_you_mean(name, sched_names) +
               "; expected SCHED_OTHER, SCHED_FIFO, SCHED_RR, SCHED_BATCH, SCHED_IDLE or SCHED_DEADLINE");
      ok = false;
    } else if (std::ranges::find(result, static_cast<int>(it->value)) == result.end()) {
      result.push_back(static_cast<int>(it->value));
    }
  }
  return ok ? std::optional(std::move(result)) : std::nullopt;
}

// The syscalls of `rule` a matcher reading `field` cannot apply to, for BadMatcher.
std::string unsupported(const Rule& rule, std::uint32_t field) {
  std::string names;
  for (int nr : rule.syscalls) {
    const SyscallInfo* info = syscall_info(nr);
    if (info == nullptr || (info->fields & field) == 0) {
      names += names.empty() ? "" : ", ";
      names += syscall_name(nr);
    }
  }
  return names;
}

// The syscalls a matcher reading `field` applies to (the first few), for BadMatcher.
std::string supported(std::uint32_t field) {
  std::string names;
  int count = 0;
  for (int nr = 0; nr < 1024; ++nr) {
    const SyscallInfo* info = syscall_info(nr);
    if (info != nullptr && (info->fields & field) != 0) {
      if (++count > 8) {
        return names + ", ...";
      }
      names += names.empty() ? "" : ", ";
      names += info->name;
    }
  }
  return names;
}

void PolicyReader::match(const Entry& entry, Rule& rule, bool syscalls_known) {
  if (entry.value.IsNull()) {
    return;  // `match:` with nothing: no typed matcher, as in v1
  }
  if (!entry.value.IsMap()) {
    wrong_type(entry, "a mapping (type, devices, path, ...)");
    return;
  }
  auto entries = mapping(entry.value, kMatchKeys, "`match`");
  if (!entries) {
    return;
  }
  Match& m = rule.match;
  for (const auto& [name, key] : *entries) {
    const std::uint32_t field = field_of(name);
    rule.fields |= field;
    if (syscalls_known) {
      if (std::string bad = unsupported(rule, field); !bad.empty()) {
        fail(ErrorCode::BadMatcher, key.key,
             "`" + name + "` does not apply to " + bad + "; it matches calls of " + supported(field));
        continue;
      }
    }
    if (name == "type") {
      m.type = file_type(key);
    } else if (name == "devices") {
      m.devices = devices(key).value_or(std::vector<DevicePattern>{});
    } else if (name == "path") {
      m.paths = globs(key, true, "a list of absolute path patterns").value_or(std::vector<std::string>{});
    } else if (name == "fstype") {
      m.fstypes = globs(key, false, "a list of filesystem types").value_or(std::vector<std::string>{});
    } else if (name == "source") {
      m.sources = globs(key, false, "a list of source patterns").value_or(std::vector<std::string>{});
    } else if (name == "target") {
      m.targets = globs(key, true, "a list of absolute target patterns").value_or(std::vector<std::string>{});
    } else if (name == "flags") {
      m.flags = flags(key, rule, syscalls_known);
    } else if (name == "xattr") {
      m.xattr_names =
          globs(key, false, "a list of attribute name patterns").value_or(std::vector<std::string>{});
    } else if (name == "value_size") {
      m.value_size = range(key);
    } else if (name == "sched_policy") {
      m.sched_policies = sched_policies(key).value_or(std::vector<int>{});
    } else if (name == "priority") {
      m.priority = range(key);
    } else if (name == "nice") {
      m.nice = range(key);
    }
  }
}

std::optional<Action> PolicyReader::action(const Entry& entry) {
  auto text = string(entry);
  if (!text) {
    return std::nullopt;
  }
  for (const auto& [name, value] : kActions) {
    if (*text == name) {
      return value;
    }
  }
  fail(ErrorCode::BadValue, entry,
       "unknown action `" + *text + "`" + detail::did_you_mean(*text, action_names()) +
           "; expected emulate, allow, deny, return, kill or kill-container");
  return std::nullopt;
}

std::optional<int> PolicyReader::errno_value(const Entry& entry) {
  auto text = string(entry);
  if (!text) {
    return std::nullopt;
  }
  auto value = errno_from_name(*text);
  if (!value) {
    fail(ErrorCode::UnknownErrno, entry,
         "unknown errno name `" + *text + "`" + detail::did_you_mean(*text, errno_names()) +
             " (expected a name such as EPERM)");
  }
  return value;
}

std::optional<Rule> PolicyReader::rule(const YAML::Node& node, std::size_t index) {
  const std::string what = "rule " + std::to_string(index + 1);
  auto entries = mapping(node, kRuleKeys, what);
  if (!entries) {
    return std::nullopt;
  }
  const std::size_t errors_before = error_count();
  Rule rule;
  rule.name = what;
  rule.pos = position(node);
  if (const Entry* name = find(*entries, "name")) {
    rule.name = string(*name).value_or(what);
  }
  bool syscalls_known = false;
  if (const Entry* calls = require(*entries, "syscalls", node, what)) {
    if (auto parsed = syscalls(*calls)) {
      rule.syscalls = std::move(*parsed);
      syscalls_known = true;
    }
  }
  if (const Entry* conditions = find(*entries, "args")) {
    rule.args = args(*conditions).value_or(std::vector<ArgCondition>{});
  }
  const Entry* match_entry = find(*entries, "match");
  if (match_entry != nullptr) {
    match(*match_entry, rule, syscalls_known);
  }
  if (const Entry* audit = find(*entries, "audit")) {
    rule.audit = boolean(*audit).value_or(false);
  }
  // Without a valid action, errno and value are only checked on their own.
  const Entry* action_entry = require(*entries, "action", node, what);
  const std::optional<Action> parsed_action = action_entry ? action(*action_entry) : std::nullopt;
  const bool known = parsed_action.has_value();
  rule.action = parsed_action.value_or(Action::Allow);
  if (const Entry* errno_entry = find(*entries, "errno")) {
    if (known && rule.action != Action::Deny) {
      fail(ErrorCode::BadValue, errno_entry->key,
           std::string("`errno` only goes with `action: deny`, this rule's action is ") +
               to_string(rule.action));
    } else if (auto value = errno_value(*errno_entry)) {
      rule.err = *value;
    }
  }
  const Entry* value = find(*entries, "value");
  if (known && rule.action == Action::Return && value == nullptr) {
    fail(ErrorCode::MissingKey, node, "missing key `value` in " + what + " (`action: return` needs it)");
  } else if (known && rule.action != Action::Return && value != nullptr) {
    fail(ErrorCode::BadValue, value->key,
         std::string("`value` only goes with `action: return`, this rule's action is ") +
             to_string(rule.action));
  } else if (value != nullptr) {
    rule.value = i64(*value).value_or(0);
  }
  if (known && rule.action != Action::Emulate && match_entry != nullptr && !rule.match.xattr_names.empty() &&
      std::ranges::any_of(rule.syscalls, is_xattr_list)) {
    // On a list call the names are a grant to the emulated list, not a filter: elsewhere they
    // would match every call, which is not what a reader of the rule would think.
    fail(ErrorCode::BadMatcher, match_entry->key,
         "`xattr` on listxattr, llistxattr or flistxattr names what the emulated list may add: it "
         "goes with `action: emulate` only");
  }
  if (const Entry* grant = find(*entries, "emulate")) {
    const int mount_nr = syscall_from_name("mount").value_or(-1);
    if (known && rule.action != Action::Emulate) {
      fail(ErrorCode::BadValue, grant->key,
           std::string("`emulate` only goes with `action: emulate`, this rule's action is ") +
               to_string(rule.action));
    } else if (syscalls_known && (rule.syscalls.size() != 1 || rule.syscalls[0] != mount_nr)) {
      fail(ErrorCode::BadMatcher, grant->key, "`emulate` options apply to a rule for mount alone");
    } else {
      rule.mount = mount_grant(*grant);
    }
  }
  if (error_count() != errors_before) {
    return std::nullopt;
  }
  return rule;
}

// `options`: one glob per data option, never one that could grant a refused name.
std::vector<std::string> PolicyReader::mount_options(const Entry& entry) {
  std::vector<std::string> out;
  if (!entry.value.IsSequence() || entry.value.size() == 0) {
    wrong_type(entry, "a non-empty list of option patterns (`discard`, `commit=*`)");
    return out;
  }
  for (const auto& item : entry.value) {
    const Entry one{entry.name, item, item};
    auto text = string(one);
    if (!text) continue;
    if (text->empty() || text->size() > 255 ||
        text->find_first_of(std::string_view(",\0", 2)) != std::string::npos) {
      fail(ErrorCode::BadValue, item, "an option pattern is 1 to 255 characters, one option (no `,`)");
      continue;
    }
    if (const std::string bad = glob_grants_refused_option(*text); !bad.empty()) {
      fail(ErrorCode::BadValue, item,
           "`" + *text + "` would grant `" + bad +
               "`, which sysvisor never passes (another device, a host path, owners, security "
               "labels, or a panic): name the options");
      continue;
    }
    out.push_back(*text);
  }
  return out;
}

std::optional<MountGrant> PolicyReader::mount_grant(const Entry& entry) {
  if (!entry.value.IsMap()) {
    wrong_type(entry, "a mapping (images, bind, readonly, allow_suid, allow_dev, options)");
    return std::nullopt;
  }
  auto entries = mapping(entry.value, kEmulateKeys, "`emulate`");
  if (!entries) {
    return std::nullopt;
  }
  MountGrant grant;
  if (const Entry* images = find(*entries, "images")) {
    grant.images =
        globs(*images, true, "a list of absolute image path patterns").value_or(std::vector<std::string>{});
  }
  if (const Entry* binds = find(*entries, "bind")) {
    if (!binds->value.IsSequence()) {
      wrong_type(*binds, "a list of {host, readonly}");
    } else {
      std::size_t i = 0;
      for (const auto& item : binds->value) {
        const std::string what = "`bind` entry " + std::to_string(++i);
        auto fields = mapping(item, kBindKeys, what);
        if (!fields) continue;
        BindGrant bind;
        if (const Entry* host = require(*fields, "host", item, what)) {
          const std::string text = string(*host).value_or("");
          if (text.empty() || text.front() != '/' || text.size() > kMaxPattern ||
              text.find('\0') != std::string::npos) {
            fail(ErrorCode::BadValue, *host, "`host` must be an absolute path on the host");
            continue;
          }
          bind.host = normalize_path("/", text);
        } else {
          continue;
        }
        if (const Entry* ro = find(*fields, "readonly")) bind.readonly = boolean(*ro).value_or(true);
        grant.binds.push_back(std::move(bind));
      }
    }
  }
  if (const Entry* e = find(*entries, "readonly")) grant.readonly = boolean(*e).value_or(false);
  if (const Entry* e = find(*entries, "allow_suid")) grant.allow_suid = boolean(*e).value_or(false);
  if (const Entry* e = find(*entries, "allow_dev")) grant.allow_dev = boolean(*e).value_or(false);
  if (const Entry* e = find(*entries, "options")) grant.options = mount_options(*e);
  return grant;
}

std::vector<Rule> PolicyReader::rules(const Entry& entry) {
  std::vector<Rule> result;
  if (!entry.value.IsSequence()) {
    wrong_type(entry, "a list of rules");
    return result;
  }
  if (entry.value.size() > kMaxRules) {
    fail(ErrorCode::BadValue, entry, "more than " + std::to_string(kMaxRules) + " rules in one policy");
    return result;
  }
  std::size_t index = 0;
  for (const auto& item : entry.value) {
    if (auto parsed = rule(item, index)) {
      result.push_back(std::move(*parsed));
    }
    ++index;
  }
  return result;
}

void PolicyReader::includes(const Entry& entry, Policy& policy) {
  if (entry.value.IsSequence() && entry.value.size() == 0) {
    return;  // `include: []`
  }
  auto items = string_list(entry, "a list of policy names");
  if (!items) {
    return;
  }
  for (const auto& [name, node] : *items) {
    if (!valid_policy_name(name)) {
      fail(ErrorCode::BadValue, node, "`" + name + "` is not a policy name ([a-z0-9][a-z0-9-_.]*)");
      continue;
    }
    policy.includes.push_back(name);
    policy.include_pos.push_back(position(node));
  }
}

std::optional<Policy> PolicyReader::policy(const YAML::Node& root) {
  auto entries = mapping(root, kPolicyKeys, "the policy");
  if (!entries) {
    return std::nullopt;
  }
  Policy result;
  result.pos = position(root);
  if (const Entry* name = require(*entries, "name", root, "the policy")) {
    // The name is what identifies a policy, so a policy's position is that of its name.
    result.pos = position(name->key);
    if (auto text = string(*name)) {
      if (valid_policy_name(*text)) {
        result.name = *text;
      } else {
        fail(ErrorCode::BadValue, *name,
             "policy name `" + *text + "` must match [a-z0-9][a-z0-9-_.]* (lower case, digits, - _ .)");
      }
    }
  }
  if (const Entry* description = find(*entries, "description")) {
    result.description = string(*description).value_or("");
  }
  if (const Entry* mode = find(*entries, "mode")) {
    if (auto text = string(*mode)) {
      if (*text == "enforce") {
        result.mode = Mode::Enforce;
      } else if (*text == "audit") {
        result.mode = Mode::Audit;
      } else if (*text == "learn") {
        result.mode = Mode::Learn;
      } else {
        fail(ErrorCode::BadValue, *mode, "`mode` must be enforce, audit or learn, not `" + *text + "`");
      }
    }
  }
  if (const Entry* what = find(*entries, "audit_arguments")) {
    if (auto text = string(*what)) {
      if (*text == "all" || *text == "matched") {
        result.record_all_arguments = *text == "all";
      } else {
        fail(ErrorCode::BadValue, *what, "`audit_arguments` must be all or matched, not `" + *text + "`");
      }
    }
  }
  if (const Entry* include = find(*entries, "include")) {
    includes(*include, result);
  }
  if (const Entry* rule_list = require(*entries, "rules", root, "the policy")) {
    result.own_rules = rules(*rule_list);
  }
  for (Rule& rule : result.own_rules) {
    rule.origin = result.name;
  }
  if (failed()) {
    return std::nullopt;
  }
  return result;
}

// ======================================== resolving ========================================

std::uint64_t fnv1a(std::uint64_t hash, std::string_view bytes) {
  for (char c : bytes) {
    hash ^= static_cast<unsigned char>(c);
    hash *= 0x100000001b3ULL;
  }
  return hash;
}

std::string hex16(std::uint64_t value) {
  static constexpr char kHex[] = "0123456789abcdef";
  std::string text(16, '0');
  for (int i = 15; i >= 0; --i) {
    text[static_cast<std::size_t>(i)] = kHex[value & 0xf];
    value >>= 4;
  }
  return text;
}

bool same_devices(const std::vector<DevicePattern>& a, const std::vector<DevicePattern>& b) {
  return std::ranges::equal(a, b, [](const DevicePattern& x, const DevicePattern& y) {
    return x.major == y.major && x.minor == y.minor;
  });
}

bool same_range(const std::optional<IntRange>& a, const std::optional<IntRange>& b) {
  return a.has_value() == b.has_value() && (!a || (a->min == b->min && a->max == b->max));
}

bool same_match(const Match& a, const Match& b) {
  const bool same_flags = a.flags.has_value() == b.flags.has_value() &&
                          (!a.flags || (a.flags->set == b.flags->set && a.flags->clear == b.flags->clear));
  return a.type == b.type && same_devices(a.devices, b.devices) && a.paths == b.paths &&
         a.fstypes == b.fstypes && a.sources == b.sources && a.targets == b.targets && same_flags &&
         a.xattr_names == b.xattr_names && same_range(a.value_size, b.value_size) &&
         a.sched_policies == b.sched_policies && same_range(a.priority, b.priority) &&
         same_range(a.nice, b.nice);
}

bool same_args(const std::vector<ArgCondition>& a, const std::vector<ArgCondition>& b) {
  auto key = [](const ArgCondition& c) { return std::tuple(c.index, c.op, c.value, c.mask); };
  if (a.size() != b.size()) {
    return false;
  }
  return std::ranges::all_of(a, [&](const ArgCondition& x) {
    return std::ranges::any_of(b, [&](const ArgCondition& y) { return key(x) == key(y); });
  });
}

// No condition at all: the rule decides every call of its syscalls.
bool unconditional(const Rule& rule) {
  return rule.args.empty() && rule.match.empty();
}

// `earlier` decides every call `later` would match.
bool covers(const Rule& earlier, const Rule& later) {
  return std::ranges::all_of(later.syscalls, [&](int nr) { return names(earlier, nr); }) &&
         (earlier.args.empty() || same_args(earlier.args, later.args)) &&
         (earlier.match.empty() || same_match(earlier.match, later.match));
}

std::string describe_rule(const Rule& rule) {
  return "rule `" + rule.name + "` of policy " + rule.origin + " (" + format_position(rule.pos) + ")";
}

// Why `rule` can match no call, or empty.
std::string contradiction(const Rule& rule) {
  for (const ArgCondition& c : rule.args) {
    const std::string arg = "argument " + std::to_string(c.index);
    if (c.op == CmpOp::MaskedEq && (c.value & ~c.mask) != 0) {
      return arg + ": masked_eq value has bits outside its mask, so (arg & mask) never equals it";
    }
    if (c.op == CmpOp::Lt && c.value == 0) {
      return arg + ": no unsigned value is lt 0";
    }
    if (c.op == CmpOp::Gt && c.value == std::numeric_limits<std::uint64_t>::max()) {
      return arg + ": no 64-bit value is gt 0xffffffffffffffff";
    }
  }
  const Match& m = rule.match;
  for (const auto& [name, range] : {std::pair{"value_size", &m.value_size},
                                    std::pair{"priority", &m.priority}, std::pair{"nice", &m.nice}}) {
    if (*range && (*range)->min && (*range)->max && *(*range)->min > *(*range)->max) {
      return std::string("`") + name + "`: min is greater than max";
    }
  }
  if (m.value_size && m.value_size->max && *m.value_size->max < 0) {
    return "`value_size`: a size is never negative";
  }
  if (m.flags && (m.flags->set & m.flags->clear) != 0) {
    return "`flags`: a flag is both in `set` and in `clear`";
  }
  // `type` against a raw condition that pins the file type in the mode argument of mknod(at).
  if (m.type) {
    const std::uint64_t want = *m.type == FileType::Char ? S_IFCHR : S_IFBLK;
    bool every_call_excluded = !rule.syscalls.empty();
    for (int nr : rule.syscalls) {
      const SyscallInfo* info = syscall_info(nr);
      const unsigned mode_index =
          info != nullptr && info->family == Family::Mknod ? (nr == SYS_mknod ? 1U : 2U) : 6U;
      bool excluded = false;
      for (const ArgCondition& c : rule.args) {
        if (c.index != mode_index) {
          continue;
        }
        if (c.op == CmpOp::MaskedEq && c.mask == S_IFMT && c.value != want) {
          excluded = true;
        }
        if (c.op == CmpOp::Eq && (c.value & S_IFMT) != want) {
          excluded = true;
        }
      }
      every_call_excluded = every_call_excluded && excluded;
    }
    if (every_call_excluded) {
      return std::string("`type: ") + to_string(*m.type) +
             "` contradicts the file type the mode condition requires";
    }
  }
  return {};
}

// Collects errors and warnings without repeating one (a policy's rules are checked again in
// every policy that includes it).
struct Findings {
  std::vector<LoadError> errors;
  std::vector<Warning> warnings;
  std::set<std::tuple<int, std::string, int, int, std::string>> seen;

  void error(ErrorCode code, const Position& pos, std::string message) {
    if (seen.emplace(static_cast<int>(code), pos.file, pos.line, pos.column, message).second) {
      errors.push_back(LoadError{code, std::move(message), pos});
    }
  }
  void warning(WarningCode code, const Position& pos, std::string message) {
    if (seen.emplace(100 + static_cast<int>(code), pos.file, pos.line, pos.column, message).second) {
      warnings.push_back(Warning{code, std::move(message), pos});
    }
  }
};

// Checks of one policy's own rules.
void check_own_rules(const Policy& policy, Findings& found) {
  for (const Rule& rule : policy.own_rules) {
    if (rule.action == Action::Emulate) {
      for (int nr : rule.syscalls) {
        const SyscallInfo* info = syscall_info(nr);
        if (info == nullptr || !info->emulator) {
          found.error(ErrorCode::NoEmulator, rule.pos,
                      "rule `" + rule.name + "`: `emulate` is not available for " + syscall_name(nr) +
                          ": sysvisor has no emulator for it; use allow, deny, return or kill");
        }
      }
    }
    // In audit and learn modes nothing is granted, so a decision on memory is only a record. So
    // is an enforcing `allow` + `audit: true` on memory when every call of its syscalls ends in
    // allow anyway (check_record_only, on the effective rules).
    if (policy.mode == Mode::Enforce && rule.action == Action::Allow && !rule.audit &&
        (rule.fields & kMemoryFields) != 0) {
      found.error(ErrorCode::UnsafeAllow, rule.pos,
                  "rule `" + rule.name +
                      "` allows a call on what it read from the caller's memory, but the kernel reads that "
                      "memory again after the check (another thread can change it): a rule that matches a "
                      "path, a name or scheduling parameters must deny, kill, emulate or return (or, to "
                      "record the calls it matches and refuse nothing, add `audit: true`)");
    }
    if (std::string why = contradiction(rule); !why.empty()) {
      found.warning(WarningCode::NeverMatch, rule.pos, "rule `" + rule.name + "` never matches: " + why);
    }
    // The mount emulator mounts a filesystem from a block device or an image file: a type that
    // has neither (the kernel makes it from nothing, and lets a user namespace do so itself) is
    // answered ENOENT or ENOTBLK by it, whatever the source.
    if (rule.action == Action::Emulate) {
      static constexpr std::array<std::string_view, 12> kNoDevice{"tmpfs",   "ramfs",  "proc",   "sysfs",
                                                                  "devpts",  "mqueue", "cgroup", "cgroup2",
                                                                  "overlay", "fuse",   "binder", "devtmpfs"};
      for (const std::string& type : rule.match.fstypes) {
        if (std::ranges::find(kNoDevice, type) == kNoDevice.end() && !type.starts_with("fuse.")) continue;
        found.warning(
            WarningCode::NotEmulable, rule.pos,
            "rule `" + rule.name + "`: `emulate` cannot mount `" + type +
                "`: the mount emulator mounts filesystems from a block device or an image, and " + type +
                " has neither (its mount fails); a user namespace mounts it itself: allow the mount by "
                "its flags (`match: {flags: {clear: [MS_BIND, MS_MOVE, MS_REMOUNT]}}`, action allow), "
                "or leave mount untrapped");
      }
    }
  }
}

// An enforcing `allow` + `audit: true` rule on memory records the calls it matches and refuses
// nothing: the kernel decides, reading the memory again. That is safe only where whatever the
// rule matches, the call ends in allow: no later rule for the same syscall may refuse it (a
// thread of the caller could steer a call into this rule with one path and the kernel would then
// open another, which the later rule refuses). Said as a warning where it holds, so `check`
// tells the author the rule is a record, not enforcement; an error where it does not.
void check_record_only(const Policy& policy, Findings& found) {
  if (policy.mode != Mode::Enforce) return;
  const std::vector<Rule>& rules = policy.rules;
  const std::string context = " (in policy " + policy.name + ")";
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    if (rule.action != Action::Allow || !rule.audit || (rule.fields & kMemoryFields) == 0) continue;
    const std::string where = rule.origin == policy.name ? "" : context;
    const Rule* refusing = nullptr;
    int refused_nr = -1;
    for (int nr : rule.syscalls) {
      for (std::size_t j = i + 1; j < rules.size() && refusing == nullptr; ++j) {
        if (names(rules[j], nr) && rules[j].action != Action::Allow) {
          refusing = &rules[j];
          refused_nr = nr;
        }
      }
      if (refusing != nullptr) break;
    }
    if (refusing != nullptr) {
      found.error(ErrorCode::UnsafeAllow, rule.pos,
                  "rule `" + rule.name + "` records calls it matches on memory and lets the kernel decide" +
                      where + ", but " + describe_rule(*refusing) + " after it refuses calls of " +
                      syscall_name(refused_nr) +
                      ": a thread of the caller could steer a call into this rule with one path while the "
                      "kernel acts on another, which that rule refuses; put the recording rule after the "
                      "rules that refuse " +
                      syscall_name(refused_nr) + ", or make it deny, return, kill or emulate");
    } else {
      found.warning(
          WarningCode::RecordOnly, rule.pos,
          "rule `" + rule.name + "` only records" + where +
              ": it refuses nothing, the kernel decides and reads the caller's memory again, so the "
              "record shows sysvisor's copy (`memory_reread` in the record), which another thread "
              "of the caller may have changed; to enforce, deny with a catch-all, or emulate");
    }
  }
}

// Shadowed rules among a policy's effective rules (its own, then its includes').
void check_shadowing(const Policy& policy, Findings& found) {
  const std::vector<Rule>& rules = policy.rules;
  const std::string context = " (in policy " + policy.name + ")";
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    for (std::size_t j = 0; j < i; ++j) {
      if (covers(rules[j], rule)) {
        found.warning(WarningCode::Shadowed, rule.pos,
                      "rule `" + rule.name + "` never decides a call" +
                          (rules[j].origin == rule.origin ? "" : context) + ": " + describe_rule(rules[j]) +
                          " comes first and matches every call it matches");
        break;
      }
    }
  }
}

// A rule that decides on memory, and where calls of `nr` it does not match end: in an allow
// rule, or (allow == nullptr) in the default allow.
struct FallThrough {
  std::size_t policy;  // whose effective rules
  const Rule* rule;
  int nr;
  const Rule* allow;
};

// Memory-dependent refusals must not fall through to CONTINUE: after each deny, return or kill
// rule that reads memory, a catch-all for the same syscall (no match; no args, or the rule's
// own args, so that it decides every call that got past the rule's registers) must come, with
// no allow rule for that syscall before it. `emulate` is exempt: it acts on the supervisor's
// copy, and a call that a racing thread steers past it to CONTINUE gets only what the kernel
// grants the caller anyway, which the emulation rule never took away.
void find_fall_throughs(const Policy& policy, std::size_t index, std::vector<FallThrough>& out) {
  if (policy.mode != Mode::Enforce) return;  // nothing is granted: every call goes to the kernel
  const std::vector<Rule>& rules = policy.rules;
  for (std::size_t i = 0; i < rules.size(); ++i) {
    const Rule& rule = rules[i];
    if ((rule.fields & kMemoryFields) == 0 || rule.action == Action::Allow ||
        rule.action == Action::Emulate) {
      continue;  // an allow on memory is reported by check_own_rules
    }
    for (int nr : rule.syscalls) {
      const bool dead =
          std::any_of(rules.begin(), rules.begin() + static_cast<std::ptrdiff_t>(i),
                      [&](const Rule& earlier) { return names(earlier, nr) && unconditional(earlier); });
      if (dead) {
        continue;  // an earlier rule decides every call of nr
      }
      const Rule* catch_all = nullptr;
      const Rule* allow = nullptr;
      for (std::size_t j = i + 1; j < rules.size() && catch_all == nullptr && allow == nullptr; ++j) {
        if (!names(rules[j], nr)) {
          continue;
        }
        if (rules[j].action == Action::Allow) {
          allow = &rules[j];
        } else if (rules[j].match.empty() && (rules[j].args.empty() || same_args(rules[j].args, rule.args))) {
          catch_all = &rules[j];  // decides every call that passed `rule`'s registers
        }
      }
      if (catch_all == nullptr) {
        out.push_back(FallThrough{index, &rule, nr, allow});
      }
    }
  }
}

// Reports each fall-through once: in the policy that wrote the rule when it is unsafe there
// already, else in each including policy that makes it unsafe.
void report_fall_throughs(const std::vector<Policy>& parsed, const std::vector<FallThrough>& falls,
                          Findings& found) {
  using Key = std::tuple<std::string, std::string, int, int, int>;
  auto key = [](const FallThrough& f) {
    return Key{f.rule->origin, f.rule->pos.file, f.rule->pos.line, f.rule->pos.column, f.nr};
  };
  std::set<Key> in_origin;
  for (const FallThrough& f : falls) {
    if (parsed[f.policy].name == f.rule->origin) {
      in_origin.insert(key(f));
    }
  }
  for (const FallThrough& f : falls) {
    const Policy& policy = parsed[f.policy];
    const bool own = policy.name == f.rule->origin;
    if (!own && in_origin.contains(key(f))) {
      continue;
    }
    const std::string context = own ? "" : " (in policy " + policy.name + ")";
    const std::string call = syscall_name(f.nr);
    const Rule& rule = *f.rule;
    if (f.allow != nullptr) {
      found.error(ErrorCode::UnsafeAllow, rule.pos,
                  "rule `" + rule.name + "` decides on memory the caller can still change" + context +
                      ", and calls of " + call + " that it does not match go on to allow at " +
                      describe_rule(*f.allow) +
                      ", where the kernel re-reads the path: put a catch-all rule for " + call +
                      " with deny/kill/emulate/return before that one");
    } else {
      found.error(ErrorCode::UnsafeAllow, rule.pos,
                  "rule `" + rule.name + "` decides on memory the caller can still change" + context +
                      ", and calls of " + call +
                      " that match no rule fall through to allow, where the kernel re-reads the path: add a "
                      "catch-all rule for " +
                      call + " with deny/kill/emulate/return (no match, no args) after it");
    }
  }
}

struct ResolveOptions {
  bool report_unknown_includes = true;
  const InForce* in_force = nullptr;  // a duplicate name is blamed on the file not in force
};

std::expected<LoadResult, std::vector<LoadError>> resolve_set(std::vector<Policy> parsed,
                                                              ResolveOptions options) {
  Findings found;
  // Names.
  std::map<std::string, std::size_t, std::less<>> by_name;
  std::vector<bool> duplicate(parsed.size(), false);
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    auto [it, inserted] = by_name.try_emplace(parsed[i].name, i);
    if (!inserted) {
      // The later file is blamed, unless it is the one the running policy came from: then the
      // file that takes its name is (sorted first, it was met first).
      std::size_t blamed = i;
      std::size_t kept = it->second;
      bool kept_in_force = false;
      if (options.in_force != nullptr) {
        const auto running = options.in_force->find(parsed[i].name);
        if (running != options.in_force->end()) {
          if (running->second == parsed[i].pos.file && running->second != parsed[kept].pos.file) {
            std::swap(blamed, kept);
            it->second = kept;
          }
          kept_in_force = running->second == parsed[kept].pos.file;
        }
      }
      duplicate[blamed] = true;
      found.error(ErrorCode::DuplicatePolicy, parsed[blamed].pos,
                  "policy `" + parsed[blamed].name + "` is defined twice: in `" + parsed[blamed].pos.file +
                      "` and in `" + parsed[kept].pos.file + "` (" + format_position(parsed[kept].pos) + ")" +
                      (kept_in_force ? ", whose policy is in force" : "") +
                      "; a policy name must be unique: rename one");
    }
  }
  // The include graph.
  bool graph_broken = false;  // an unknown include or a cycle
  std::vector<std::vector<std::size_t>> edges(parsed.size());
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    if (duplicate[i]) {
      continue;
    }
    const Policy& policy = parsed[i];
    for (std::size_t k = 0; k < policy.includes.size(); ++k) {
      auto it = by_name.find(policy.includes[k]);
      const Position& pos = k < policy.include_pos.size() ? policy.include_pos[k] : policy.pos;
      if (it == by_name.end()) {
        graph_broken = true;
        if (options.report_unknown_includes) {
          found.error(ErrorCode::BadInclude, pos,
                      "policy `" + policy.name + "` includes `" + policy.includes[k] +
                          "`, but no policy of that name is loaded");
        }
        continue;
      }
      const Policy& included = parsed[it->second];
      if (policy.mode == Mode::Enforce && included.mode != Mode::Enforce) {
        // Its rules were never checked as decisions (nothing is granted in its own mode).
        found.error(ErrorCode::BadInclude, pos,
                    "policy `" + policy.name + "` enforces its rules but includes `" + included.name +
                        "`, whose mode is " + to_string(included.mode) + ": include only enforce policies");
      }
      edges[i].push_back(it->second);
    }
  }
  // Cycles: an iterative depth-first search (the set can be large; no recursion on input).
  enum Colour : std::uint8_t { White, Grey, Black };
  std::vector<Colour> colour(parsed.size(), White);
  for (std::size_t root = 0; root < parsed.size(); ++root) {
    if (colour[root] != White) {
      continue;
    }
    std::vector<std::pair<std::size_t, std::size_t>> stack{{root, 0}};  // node, next edge
    colour[root] = Grey;
    while (!stack.empty()) {
      auto& [node, next] = stack.back();
      if (next == edges[node].size()) {
        colour[node] = Black;
        stack.pop_back();
        continue;
      }
      const std::size_t edge = next++;
      const std::size_t target = edges[node][edge];
      if (colour[target] == Grey) {
        graph_broken = true;
        // Find the include entry of this edge for its position.
        const Policy& from = parsed[node];
        Position pos = from.pos;
        for (std::size_t k = 0, seen_edges = 0; k < from.includes.size(); ++k) {
          if (by_name.contains(from.includes[k])) {
            if (seen_edges++ == edge) {
              pos = k < from.include_pos.size() ? from.include_pos[k] : from.pos;
              break;
            }
          }
        }
        found.error(ErrorCode::BadInclude, pos,
                    target == node ? "include cycle: policy `" + from.name + "` includes itself"
                                   : "include cycle: policy `" + from.name + "` includes `" +
                                         parsed[target].name + "`, which includes `" + from.name +
                                         "` again (directly or through "
                                         "other policies)");
      } else if (colour[target] == White) {
        colour[target] = Grey;
        stack.emplace_back(target, 0);  // invalidates node/next: they are not used again
      }
    }
  }
  // Flatten: own rules, then each include's effective rules, depth first, each policy once.
  std::vector<std::size_t> visited(parsed.size(), 0);  // == i + 1: visited while flattening i
  for (std::size_t i = 0; i < parsed.size() && !graph_broken; ++i) {
    std::vector<std::size_t> order;
    std::vector<std::size_t> stack{i};
    while (!stack.empty()) {
      const std::size_t p = stack.back();
      stack.pop_back();
      if (visited[p] == i + 1) {
        continue;
      }
      visited[p] = i + 1;
      order.push_back(p);
      for (auto it = edges[p].rbegin(); it != edges[p].rend(); ++it) {
        if (visited[*it] != i + 1) {
          stack.push_back(*it);
        }
      }
    }
    Policy& policy = parsed[i];
    policy.rules.clear();
    std::uint64_t hash = 0xcbf29ce484222325ULL;
    for (std::size_t p : order) {
      const Policy& part = parsed[p];
      policy.rules.insert(policy.rules.end(), part.own_rules.begin(), part.own_rules.end());
      // Each text is preceded by its length, so that moving bytes between texts changes the hash.
      const std::string length = std::to_string(part.source.size()) + ":";
      hash = fnv1a(fnv1a(hash, length), part.source);
    }
    policy.version = hex16(hash);
  }
  for (const Policy& policy : parsed) {
    check_own_rules(policy, found);
  }
  // With a missing include or a cycle the effective rules are not known: checking them would
  // only add confusing errors to the one that matters.
  std::vector<FallThrough> falls;
  for (std::size_t i = 0; i < parsed.size() && !graph_broken; ++i) {
    check_shadowing(parsed[i], found);
    check_record_only(parsed[i], found);
    find_fall_throughs(parsed[i], i, falls);
  }
  report_fall_throughs(parsed, falls, found);
  if (!found.errors.empty()) {
    return std::unexpected(std::move(found.errors));
  }
  LoadResult result;
  for (std::size_t i = 0; i < parsed.size(); ++i) {
    Policy& policy = parsed[i];
    policy.build_index();
    std::string name = policy.name;
    result.policies.emplace(std::move(name), std::make_shared<const Policy>(std::move(policy)));
  }
  result.warnings = std::move(found.warnings);
  return result;
}

// ======================================== files ========================================

bool ends_with(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

bool is_policy_file(const std::filesystem::directory_entry& entry) {
  std::error_code ec;
  const std::string name = entry.path().filename().string();
  if (ends_with(name, ".cases.yaml") || ends_with(name, ".cases.yml")) {
    return false;  // decision cases for `sysvisor policy test`, not policies
  }
  const auto ext = entry.path().extension();
  return (ext == ".yaml" || ext == ".yml") && entry.is_regular_file(ec);
}

template <typename T>
std::expected<T, std::vector<LoadError>> io_failure(const std::exception& e,
                                                    const std::filesystem::path& where) {
  return std::unexpected(std::vector{LoadError{ErrorCode::Io, e.what(), Position{where.string(), 0, 0}}});
}

}  // namespace

// ======================================== public API ========================================

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

std::vector<std::string_view> split_mount_options(std::string_view data) {
  std::vector<std::string_view> out;
  while (!data.empty()) {
    const auto comma = data.find(',');
    const std::string_view option = data.substr(0, comma);
    if (!option.empty()) out.push_back(option);
    if (comma == std::string_view::npos) break;
    data.remove_prefix(comma + 1);
  }
  return out;
}

namespace {

// ext4: journal_path, journal_dev (another block device), resuid/resgid (reserved blocks for a
// host id), dax, test_dummy_encryption; xfs: logdev, rtdev, dax; btrfs: device (scans another
// block device), user_subvol_rm_allowed, fatal_errors (=panic); vfat and others: uid, gid,
// forceuid, forcegid; fuse: fd, user_id, group_id; overlay: lowerdir, upperdir, workdir,
// datadir (host paths); LSMs: context, fscontext, defcontext, rootcontext, seclabel, smackfs*;
// every filesystem: source.
constexpr std::array<std::string_view, 31> kRefusedOptions{"source",
                                                           "journal_path",
                                                           "journal_dev",
                                                           "resuid",
                                                           "resgid",
                                                           "dax",
                                                           "test_dummy_encryption",
                                                           "logdev",
                                                           "rtdev",
                                                           "device",
                                                           "user_subvol_rm_allowed",
                                                           "fatal_errors",
                                                           "uid",
                                                           "gid",
                                                           "forceuid",
                                                           "forcegid",
                                                           "fd",
                                                           "user_id",
                                                           "group_id",
                                                           "lowerdir",
                                                           "upperdir",
                                                           "workdir",
                                                           "datadir",
                                                           "context",
                                                           "fscontext",
                                                           "defcontext",
                                                           "rootcontext",
                                                           "seclabel",
                                                           "smackfsdef",
                                                           "smackfsroot",
                                                           "smackfstransmute"};

std::string_view option_key(std::string_view option) {
  return option.substr(0, option.find('='));
}

}  // namespace

bool refused_mount_option(std::string_view key) {
  return key.starts_with("smackfs") || std::ranges::find(kRefusedOptions, key) != kRefusedOptions.end();
}

std::string glob_grants_refused_option(std::string_view glob) {
  for (const std::string_view key : kRefusedOptions) {
    const std::string k(key);
    if (matches_glob(glob, k) || matches_glob(glob, k + "=x") || matches_glob(glob, k + "=/")) return k;
  }
  if (matches_glob(glob, "smackfsfloor") || matches_glob(glob, "smackfsfloor=x")) return "smackfsfloor";
  return {};
}

std::string mount_option_refusal(std::string_view option, const std::vector<std::string>& globs,
                                 bool readonly) {
  const std::string_view key = option_key(option);
  const bool has_value = key.size() < option.size();
  const std::string_view value = has_value ? option.substr(key.size() + 1) : std::string_view{};
  if (refused_mount_option(key)) return "`" + std::string(key) + "` is never passed";
  if (value.find('/') != std::string_view::npos) return "a value naming a path is never passed";
  if (key == "errors" && value != "remount-ro") return "errors= other than remount-ro";
  if (option == "rw" && readonly) return "rw on a read-only mount";
  if (std::ranges::none_of(globs, [&](const std::string& g) { return matches_glob(g, option); }))
    return "not among the rule's options";
  return {};
}

bool matches_glob(std::string_view pattern, std::string_view text) noexcept {
  return glob_match(pattern, text);
}

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
    case ErrorCode::BadMatcher:
      return "bad-matcher";
    case ErrorCode::UnsafeAllow:
      return "unsafe-allow";
    case ErrorCode::BadInclude:
      return "bad-include";
    case ErrorCode::BadArgument:
      return "bad-argument";
  }
  return "unknown-error";
}

const char* to_string(WarningCode code) {
  switch (code) {
    case WarningCode::Shadowed:
      return "shadowed";
    case WarningCode::NeverMatch:
      return "never-match";
    case WarningCode::RecordOnly:
      return "record-only";
    case WarningCode::NotEmulable:
      return "not-emulable";
  }
  return "unknown-warning";
}

std::string LoadError::format() const {
  std::string where = format_position(pos);
  return where.empty() ? message : where + ": " + message;
}

std::string LoadError::diagnostic() const {
  std::string where = format_position(pos);
  return (where.empty() ? "" : where + ": ") + "error: [" + to_string(code) + "] " + message;
}

std::string Warning::format() const {
  std::string where = format_position(pos);
  return (where.empty() ? "" : where + ": ") + "warning: " + message;
}

const char* to_string(Action action) {
  switch (action) {
    case Action::Allow:
      return "allow";
    case Action::Emulate:
      return "emulate";
    case Action::Deny:
      return "deny";
    case Action::Return:
      return "return";
    case Action::Kill:
      return "kill";
    case Action::KillContainer:
      return "kill-container";
  }
  return "?";
}

const char* to_string(Mode mode) {
  switch (mode) {
    case Mode::Enforce:
      return "enforce";
    case Mode::Audit:
      return "audit";
    case Mode::Learn:
      return "learn";
  }
  return "enforce";
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

const char* to_string(CmpOp op) {
  for (const auto& [name, value] : kOps) {
    if (value == op) {
      return name;
    }
  }
  return "?";
}

bool Match::empty() const {
  return !type && devices.empty() && paths.empty() && fstypes.empty() && sources.empty() && targets.empty() &&
         !flags && xattr_names.empty() && !value_size && sched_policies.empty() && !priority && !nice;
}

std::vector<int> Policy::syscalls() const {
  std::vector<int> result;
  for (const Rule& rule : rules) {
    result.insert(result.end(), rule.syscalls.begin(), rule.syscalls.end());
  }
  std::ranges::sort(result);
  auto [first, last] = std::ranges::unique(result);
  result.erase(first, last);
  return result;
}

std::uint32_t Policy::fields_for(int nr) const {
  if (indexed_rules == rules.size()) {
    auto it = std::ranges::lower_bound(by_syscall, nr, {}, &SyscallRules::nr);
    return it != by_syscall.end() && it->nr == nr ? it->fields : kFieldNone;
  }
  std::uint32_t fields = kFieldNone;
  for (const Rule& rule : rules) {
    if (names(rule, nr)) {
      fields |= rule.fields;
    }
  }
  return fields;
}

void Policy::build_index() {
  by_syscall.clear();
  rule_order.clear();
  for (int nr : syscalls()) {
    SyscallRules entry{nr, static_cast<std::uint32_t>(rule_order.size()), 0, kFieldNone};
    for (std::size_t i = 0; i < rules.size(); ++i) {
      if (names(rules[i], nr)) {
        rule_order.push_back(static_cast<std::uint32_t>(i));
        entry.fields |= rules[i].fields;
        ++entry.count;
      }
    }
    by_syscall.push_back(entry);
  }
  indexed_rules = rules.size();
}

static Decision decide_rules(const Policy& policy, const Call& call);

Decision decide(const Policy& policy, const Call& call) {
  return decide_in(policy, call, policy.mode);
}

Decision decide_in(const Policy& policy, const Call& call, Mode mode) {
  Decision d = decide_rules(policy, call);
  if (mode == Mode::Enforce) return d;
  // Nothing is granted: the kernel decides with the caller's own privileges.
  d.would = d.action;
  d.action = Action::Allow;
  d.audit = true;
  d.learn = mode == Mode::Learn;
  return d;
}

static Decision decide_rules(const Policy& policy, const Call& call) {
  if (policy.indexed_rules == policy.rules.size()) {
    auto it = std::ranges::lower_bound(policy.by_syscall, call.nr, {}, &Policy::SyscallRules::nr);
    if (it == policy.by_syscall.end() || it->nr != call.nr) {
      return Decision{};
    }
    for (std::uint32_t k = it->first; k < it->first + it->count && k < policy.rule_order.size(); ++k) {
      const std::uint32_t i = policy.rule_order[k];
      if (i < policy.rules.size() && rule_holds(policy.rules[i], call)) {
        return decision_of(policy.rules[i], i);
      }
    }
    return Decision{};
  }
  for (std::size_t i = 0; i < policy.rules.size(); ++i) {
    const Rule& rule = policy.rules[i];
    if (names(rule, call.nr) && rule_holds(rule, call)) {
      return decision_of(rule, i);
    }
  }
  return Decision{};
}

std::expected<Policy, std::vector<LoadError>> parse_policy(std::string_view text, const std::string& file) {
  PolicyReader reader(file);
  std::optional<Policy> policy;
  detail::guarded(reader, [&] {
    if (auto root = reader.document(text, "policy (a mapping with name and rules)")) {
      policy = reader.policy(*root);
    }
  });
  if (reader.failed() || !policy) {
    auto errors = reader.take_errors();
    if (errors.empty()) {
      errors.push_back(LoadError{ErrorCode::YamlParse, "not a policy", Position{file, 0, 0}});
    }
    return std::unexpected(std::move(errors));
  }
  policy->source = std::string(text);
  return std::move(*policy);
}

std::expected<Policy, std::vector<LoadError>> load_policy_file(const std::filesystem::path& path) {
  try {
    LoadError error;
    auto text = detail::read_text(path.string(), error);
    if (!text) {
      return std::unexpected(std::vector{std::move(error)});
    }
    return parse_policy(*text, path.string());
  } catch (const std::exception& e) {
    return io_failure<Policy>(e, path);
  }
}

std::expected<LoadResult, std::vector<LoadError>> resolve(std::vector<Policy> parsed) {
  try {
    return resolve_set(std::move(parsed), ResolveOptions{});
  } catch (const std::exception& e) {
    return io_failure<LoadResult>(e, "resolve");
  }
}

std::expected<LoadResult, std::vector<LoadError>> load_policy_dir(const std::filesystem::path& dir,
                                                                  const InForce& in_force) {
  try {
    auto files = policy_files(dir);
    if (!files) {
      return std::unexpected(std::vector{std::move(files.error())});
    }
    std::vector<LoadError> errors;
    std::vector<Policy> parsed;
    for (const auto& path : *files) {
      auto loaded = load_policy_file(path);
      if (!loaded) {
        std::ranges::move(loaded.error(), std::back_inserter(errors));
        continue;
      }
      parsed.push_back(std::move(*loaded));
    }
    // A policy whose file failed to load may be what an include names: say nothing about that.
    auto resolved = resolve_set(
        std::move(parsed), ResolveOptions{.report_unknown_includes = errors.empty(), .in_force = &in_force});
    if (!resolved) {
      std::ranges::move(resolved.error(), std::back_inserter(errors));
    }
    if (!errors.empty()) {
      return std::unexpected(std::move(errors));
    }
    return std::move(*resolved);
  } catch (const std::exception& e) {
    return io_failure<LoadResult>(e, dir);
  }
}

std::expected<LoadResult, std::vector<LoadError>> load_policy_files(
    const std::vector<std::filesystem::path>& files) {
  try {
    std::vector<LoadError> errors;
    std::vector<Policy> set;       // what resolve() gets
    std::set<std::string> in_set;  // the files in `set`, by path
    std::set<std::string, std::less<>> names_in_set;
    // Per directory: the siblings parsed so far, by policy name (lazily, only to find includes).
    std::map<std::string, std::map<std::string, std::pair<std::string, Policy>, std::less<>>> siblings;
    std::map<std::string, std::set<std::string>> tried;  // per directory: files parsed or failed
    std::vector<std::tuple<std::filesystem::path, std::string, Position>> checked;  // the files given

    auto add = [&](Policy policy, const std::string& path) {
      in_set.insert(path);
      names_in_set.insert(policy.name);
      set.push_back(std::move(policy));
    };
    for (const auto& file : files) {
      auto loaded = load_policy_file(file);
      if (!loaded) {
        std::ranges::move(loaded.error(), std::back_inserter(errors));
        continue;
      }
      if (in_set.contains(file.string())) {
        continue;
      }
      checked.emplace_back(file, loaded->name, loaded->pos);
      add(std::move(*loaded), file.string());
    }
    // Find each include among the siblings of the file that names it.
    for (std::size_t i = 0; i < set.size(); ++i) {  // `set` grows as includes are found
      const std::filesystem::path dir = std::filesystem::path(set[i].pos.file).parent_path();
      const std::string dir_key = dir.string();
      const std::vector<std::string> wanted = set[i].includes;
      for (const std::string& name : wanted) {
        if (names_in_set.contains(name)) {
          continue;
        }
        auto& known = siblings[dir_key];
        auto& done = tried[dir_key];
        auto try_file = [&](const std::filesystem::path& path, bool report) {
          if (!done.insert(path.string()).second) {
            return;
          }
          std::error_code ec;
          if (!std::filesystem::is_regular_file(path, ec)) {
            return;
          }
          auto loaded = load_policy_file(path);
          if (!loaded) {
            if (report) {  // NAME.yaml is surely the include: its errors matter
              std::ranges::move(loaded.error(), std::back_inserter(errors));
            }
            return;
          }
          std::string policy_name = loaded->name;
          known.try_emplace(policy_name, path.string(), std::move(*loaded));
        };
        // NAME.yaml and NAME.yml first; then any other file of the directory, in name order.
        for (const char* ext : {".yaml", ".yml"}) {
          if (!known.contains(name)) {
            try_file(dir / (name + ext), true);
          }
        }
        if (!known.contains(name)) {
          auto all = policy_files(dir.empty() ? std::filesystem::path(".") : dir);
          if (all) {
            for (const auto& path : *all) {
              const std::filesystem::path candidate = dir.empty() ? path.filename() : path;
              if (known.contains(name)) {
                break;
              }
              try_file(candidate, false);
            }
          }
        }
        auto it = known.find(name);
        if (it != known.end() && !in_set.contains(it->second.first)) {
          add(it->second.second, it->second.first);
        }
      }
    }
    // A name a given file shares with another file of its directory: the daemon, which loads
    // the whole directory, would refuse the set; say it now, naming both.
    for (const auto& [file, name, pos] : checked) {
      const std::filesystem::path dir = file.parent_path();
      auto all = policy_files(dir.empty() ? std::filesystem::path(".") : dir);
      if (!all) continue;
      for (const auto& path : *all) {
        std::error_code ec;
        if (std::filesystem::equivalent(path, file, ec) || in_set.contains(path.string())) continue;
        auto sibling = load_policy_file(path);
        if (sibling && sibling->name == name) {
          errors.push_back(LoadError{ErrorCode::DuplicatePolicy,
                                     "policy `" + name + "` is also defined in `" + path.string() +
                                         "`: the daemon loads every policy of this directory and refuses a "
                                         "name given twice; rename one",
                                     pos});
        }
      }
    }
    auto resolved = resolve_set(std::move(set), ResolveOptions{});
    if (!resolved) {
      std::ranges::move(resolved.error(), std::back_inserter(errors));
    }
    if (!errors.empty()) {
      return std::unexpected(std::move(errors));
    }
    return std::move(*resolved);
  } catch (const std::exception& e) {
    return io_failure<LoadResult>(e, files.empty() ? std::filesystem::path() : files.front());
  }
}

std::optional<int> errno_from_name(std::string_view name) {
  auto it = std::ranges::find_if(kErrnos, [&](const ErrnoInfo& info) { return info.name == name; });
  if (it == std::ranges::end(kErrnos)) {
    return std::nullopt;
  }
  return it->value;
}

std::string sched_policy_name(int policy) {
  const auto it = std::ranges::find(kSchedPolicies, static_cast<std::uint64_t>(policy), &NamedValue::value);
  return it == kSchedPolicies.end() ? std::to_string(policy) : std::string(it->name);
}

const char* errno_name(int err) {
  auto it = std::ranges::find(kErrnos, err, &ErrnoInfo::value);
  return it == std::ranges::end(kErrnos) ? "E?" : it->name;
}

std::expected<std::string, LoadError> read_input(const std::string& path) {
  LoadError error;
  auto text = detail::read_text(path, error);
  if (!text) return std::unexpected(std::move(error));
  return std::move(*text);
}

void explain_tab(LoadError& error, std::string_view text) {
  // Only the parser's errors, which have a position: a tab after it is not their cause.
  if (error.code != ErrorCode::YamlParse || error.pos.line <= 0) return;
  // The parser's words for a tab in the indentation ("illegal block entry", "end of sequence
  // not found", at some later token) do not say what to fix: the first line indented with a
  // tab, at or before the error, is what to fix.
  int line = 1;
  int column = 1;
  bool indent = true;
  for (const char c : text) {
    if (line > error.pos.line) return;
    if (c == '\n') {
      ++line;
      column = 1;
      indent = true;
      continue;
    }
    if (indent && c == '\t') {
      error.message =
          "tabs are not allowed for indentation in YAML: use spaces (the parser: " + error.message +
          " at line " + std::to_string(error.pos.line) + ")";
      error.pos.line = line;
      error.pos.column = column;
      return;
    }
    if (c != ' ') indent = false;
    ++column;
  }
}

std::string did_you_mean_syscall(std::string_view name) {
  return detail::did_you_mean(name, syscall_names());
}

std::string did_you_mean_errno(std::string_view name) {
  return detail::did_you_mean(name, errno_names());
}

std::string did_you_mean(std::string_view word, std::span<const std::string_view> candidates) {
  return detail::did_you_mean(word, candidates);
}

std::optional<int> syscall_from_name(std::string_view name) {
  if (name.empty() || name.size() > 64 || name.find('\0') != std::string_view::npos) {
    return std::nullopt;
  }
  const std::string text(name);
  const int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_X86_64, text.c_str());
  // Negative: unknown (__NR_SCMP_ERROR) or a pseudo number for a call x86_64 does not have.
  return nr >= 0 ? std::optional(nr) : std::nullopt;
}

std::string syscall_name(int nr) {
  if (nr >= 0) {
    if (char* name = seccomp_syscall_resolve_num_arch(SCMP_ARCH_X86_64, nr)) {
      std::string result(name);
      std::free(name);  // NOLINT(cppcoreguidelines-no-malloc): libseccomp's allocation
      return result;
    }
  }
  return "syscall_" + std::to_string(nr);
}

}  // namespace sysvisor::policy
