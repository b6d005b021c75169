// The daemon's configuration file, read like a policy: every error with its position.
#include "sysvisor/config.hpp"

#include <grp.h>
#include <pwd.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <limits>

#include "yaml_reader.hpp"

namespace sysvisor::config {
namespace {

using policy::ErrorCode;
using policy::LoadError;
using policy::Position;
using policy::detail::Entries;
using policy::detail::Entry;
using policy::detail::find;
using policy::detail::kind;

constexpr std::array<std::string_view, 11> kConfigKeys{
    "policies", "runtime_dir",   "default_policy", "socket",        "audit", "audit_rate",
    "access",   "control_group", "metrics_listen", "audit_failure", "limits"};
constexpr std::array<std::string_view, 3> kAuditRateKeys{"per_second", "burst", "per_uid"};
constexpr std::array<std::string_view, 2> kLimitKeys{"sessions_per_uid", "handshakes_per_uid"};
constexpr std::array<std::string_view, 2> kSocketKeys{"mode", "group"};
constexpr std::array<std::string_view, 4> kGrantKeys{"users", "groups", "policies", "learn"};

bool valid_policy_name(std::string_view name) {
  auto lower_or_digit = [](char c) { return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9'); };
  if (name.empty() || name.size() > 255 || !lower_or_digit(name.front())) {
    return false;
  }
  return std::ranges::all_of(name,
                             [&](char c) { return lower_or_digit(c) || c == '-' || c == '_' || c == '.'; });
}

// A decimal id, below the invalid id (uid_t)-1.
std::optional<std::uint32_t> numeric_id(const std::string& text) {
  if (text.empty() || text.size() > 10 ||
      !std::ranges::all_of(text, [](char c) { return c >= '0' && c <= '9'; })) {
    return std::nullopt;
  }
  const unsigned long long value = std::stoull(text);
  if (value >= std::numeric_limits<std::uint32_t>::max()) {
    return std::nullopt;
  }
  return static_cast<std::uint32_t>(value);
}

std::optional<uid_t> user_id(const std::string& name) {
  std::vector<char> buffer(16384);
  passwd entry{};
  passwd* result = nullptr;
  if (getpwnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &result) != 0 || result == nullptr) {
    return std::nullopt;
  }
  return result->pw_uid;
}

std::optional<gid_t> group_id(const std::string& name) {
  std::vector<char> buffer(65536);
  group entry{};
  group* result = nullptr;
  if (getgrnam_r(name.c_str(), &entry, buffer.data(), buffer.size(), &result) != 0 || result == nullptr) {
    return std::nullopt;
  }
  return result->gr_gid;
}

class ConfigReader : public policy::detail::YamlReader {
 public:
  using YamlReader::YamlReader;

  std::optional<Config> config(const YAML::Node& root);

 private:
  std::optional<std::filesystem::path> absolute_path(const Entry& entry);
  void socket(const Entry& entry, Config& config);
  void audit_rate(const Entry& entry, Config& config);
  void limits(const Entry& entry, Config& config);
  std::optional<std::uint32_t> count(const Entry& e, const std::string& what, std::uint32_t max);
  std::optional<mode_t> mode(const Entry& entry);
  std::optional<gid_t> group(const YAML::Node& node, const std::string& what);
  std::optional<Grant> grant(const YAML::Node& node, std::size_t index);
  void learn(const Entry& entry, Grant& result);
};

std::optional<std::filesystem::path> ConfigReader::absolute_path(const Entry& entry) {
  auto text = string(entry);
  if (!text) {
    return std::nullopt;
  }
  if (text->empty() || text->front() != '/' || text->find('\0') != std::string::npos) {
    fail(ErrorCode::BadValue, entry, "`" + entry.name + "` must be an absolute path, got `" + *text + "`");
    return std::nullopt;
  }
  return std::filesystem::path(*text);
}

// "0660" / "0o660" (octal) or a decimal number; at most 0777.
std::optional<mode_t> ConfigReader::mode(const Entry& entry) {
  if (!entry.value.IsScalar()) {
    wrong_type(entry, "an octal string such as \"0660\"");
    return std::nullopt;
  }
  std::string text = entry.value.Scalar();
  int base = 10;
  if (text.size() > 2 && text[0] == '0' && (text[1] == 'o' || text[1] == 'O')) {
    text = text.substr(2);
    base = 8;
  } else if (text.size() > 1 && text[0] == '0') {
    base = 8;
  }
  unsigned value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value, base);
  if (text.empty() || ec != std::errc{} || ptr != end || value > 0777) {
    fail(ErrorCode::BadValue, entry,
         "`mode` must be a permission mode from \"0000\" to \"0777\" written in octal (such as \"0660\"), "
         "got `" +
             entry.value.Scalar() + "`");
    return std::nullopt;
  }
  return static_cast<mode_t>(value);
}

std::optional<gid_t> ConfigReader::group(const YAML::Node& node, const std::string& what) {
  if (!node.IsScalar()) {
    fail(ErrorCode::WrongType, node, what + " must be a group name or number, got " + kind(node));
    return std::nullopt;
  }
  const std::string& text = node.Scalar();
  if (auto number = numeric_id(text)) {
    return *number;
  }
  if (auto gid = group_id(text)) {
    return *gid;
  }
  fail(ErrorCode::BadValue, node, what + ": no group named `" + text + "` on this host");
  return std::nullopt;
}

// A whole number from 0 to `max`, or an error naming `what` and the key.
std::optional<std::uint32_t> ConfigReader::count(const Entry& e, const std::string& what, std::uint32_t max) {
  std::uint32_t value = 0;
  const std::string text = e.value.IsScalar() ? e.value.Scalar() : "";
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (text.empty() || ec != std::errc{} || ptr != end || value > max) {
    fail(ErrorCode::BadValue, e,
         what + ": `" + e.key.Scalar() + "` must be a whole number from 0 to " + std::to_string(max));
    return std::nullopt;
  }
  return value;
}

// `limits: {sessions_per_uid: N, handshakes_per_uid: N}`.
void ConfigReader::limits(const Entry& entry, Config& config) {
  auto entries = mapping(entry.value, kLimitKeys, "`limits`");
  if (!entries) {
    return;
  }
  if (const Entry* e = find(*entries, "sessions_per_uid")) {
    config.limits.sessions_per_uid = count(*e, "`limits`", 1000000).value_or(config.limits.sessions_per_uid);
  }
  if (const Entry* e = find(*entries, "handshakes_per_uid")) {
    const auto value = count(*e, "`limits`", 4096);
    if (value == 0U) {
      fail(ErrorCode::BadValue, *e, "`limits`: `handshakes_per_uid` must be at least 1");
    } else if (value) {
      config.limits.handshakes_per_uid = *value;
    }
  }
}

void ConfigReader::audit_rate(const Entry& entry, Config& config) {
  auto entries = mapping(entry.value, kAuditRateKeys, "`audit_rate`");
  if (!entries) {
    return;
  }
  const auto count = [&](const Entry& e) { return this->count(e, "`audit_rate`", 1000000); };
  if (const Entry* e = find(*entries, "per_second")) {
    config.audit_rate.per_second = count(*e).value_or(config.audit_rate.per_second);
  }
  if (const Entry* e = find(*entries, "burst")) {
    config.audit_rate.burst = count(*e).value_or(config.audit_rate.burst);
  }
  if (const Entry* e = find(*entries, "per_uid")) {
    config.audit_rate.per_uid = count(*e).value_or(config.audit_rate.per_uid);
  }
  if (config.audit_rate.per_second > 0 && config.audit_rate.burst == 0) {
    fail(ErrorCode::BadValue, entry, "`audit_rate`: `burst` must be at least 1 when `per_second` limits");
  }
}

void ConfigReader::socket(const Entry& entry, Config& config) {
  auto entries = mapping(entry.value, kSocketKeys, "`socket`");
  if (!entries) {
    return;
  }
  if (const Entry* mode_entry = find(*entries, "mode")) {
    if (auto value = mode(*mode_entry)) {
      config.socket_mode = *value;
    }
  }
  if (const Entry* group_entry = find(*entries, "group")) {
    if (group_entry->value.IsNull()) {
      wrong_type(*group_entry, "a group name or number");
    } else {
      config.socket_group = group(group_entry->value, "`group`");
    }
  }
}

std::optional<Grant> ConfigReader::grant(const YAML::Node& node, std::size_t index) {
  const std::string what = "access entry " + std::to_string(index + 1);
  auto entries = mapping(node, kGrantKeys, what);
  if (!entries) {
    return std::nullopt;
  }
  const std::size_t before = error_count();
  Grant result;
  result.pos = position(node);
  const Entry* users = find(*entries, "users");
  const Entry* groups = find(*entries, "groups");
  if (users == nullptr && groups == nullptr) {
    fail(ErrorCode::MissingKey, node, "missing key `users` (or `groups`) in " + what);
  }
  if (users != nullptr) {
    if (auto items = string_list(*users, "a list of user names or numbers")) {
      for (const auto& [text, item] : *items) {
        if (text == "*") {
          result.any_user = true;
        } else if (auto number = numeric_id(text)) {
          result.uids.push_back(*number);
        } else if (auto uid = user_id(text)) {
          result.uids.push_back(*uid);
        } else {
          fail(ErrorCode::BadValue, item, "`users`: no user named `" + text + "` on this host");
        }
      }
    }
  }
  if (groups != nullptr) {
    if (auto items = string_list(*groups, "a list of group names or numbers")) {
      for (const auto& [text, item] : *items) {
        if (auto gid = group(item, "`groups`")) {
          result.gids.push_back(*gid);
        }
      }
    }
  }
  if (const Entry* policies = require(*entries, "policies", node, what)) {
    if (auto items = string_list(*policies, "a list of policy names (or \"*\")")) {
      for (const auto& [text, item] : *items) {
        if (text != "*" && !valid_policy_name(text)) {
          fail(ErrorCode::BadValue, item, "`policies`: `" + text + "` is not a policy name (nor \"*\")");
        } else {
          result.policies.push_back(text);
        }
      }
    }
  }
  if (const Entry* learn = find(*entries, "learn")) {
    this->learn(*learn, result);
  }
  if (error_count() != before) {
    return std::nullopt;
  }
  return result;
}

// `learn: true | false | [NAME, ...]`: which of the entry's own policies may run in learn
// mode at launch. A name the entry does not grant would grant nothing: an error, not a no-op.
void ConfigReader::learn(const Entry& entry, Grant& result) {
  if (entry.value.IsScalar()) {
    if (auto on = boolean(entry)) {
      if (*on) result.learn.emplace_back("*");
    }
    return;
  }
  auto items = string_list(entry, "true, false or a list of policy names");
  if (!items) {
    return;
  }
  const bool every = std::ranges::find(result.policies, "*") != result.policies.end();
  for (const auto& [text, item] : *items) {
    if (text != "*" && !valid_policy_name(text)) {
      fail(ErrorCode::BadValue, item, "`learn`: `" + text + "` is not a policy name (nor \"*\")");
    } else if (text != "*" && !every && std::ranges::find(result.policies, text) == result.policies.end()) {
      fail(ErrorCode::BadValue, item,
           "`learn`: policy `" + text + "` is not among this entry's `policies`, so it grants nothing");
    } else {
      result.learn.push_back(text);
    }
  }
}

std::optional<Config> ConfigReader::config(const YAML::Node& root) {
  auto entries = mapping(root, kConfigKeys, "the configuration");
  if (!entries) {
    return std::nullopt;
  }
  Config result;
  if (const Entry* entry = find(*entries, "policies")) {
    result.policies_dir = absolute_path(*entry).value_or(result.policies_dir);
  }
  if (const Entry* entry = find(*entries, "runtime_dir")) {
    result.runtime_dir = absolute_path(*entry).value_or(result.runtime_dir);
  }
  if (const Entry* entry = find(*entries, "default_policy")) {
    if (auto name = string(*entry)) {
      if (valid_policy_name(*name)) {
        result.default_policy = *name;
      } else {
        fail(ErrorCode::BadValue, *entry, "`default_policy`: `" + *name + "` is not a policy name");
      }
    }
  }
  if (const Entry* entry = find(*entries, "socket")) {
    socket(*entry, result);
  }
  if (const Entry* entry = find(*entries, "audit")) {
    if (auto sink = string(*entry)) {
      if (*sink == "-" || *sink == "syslog" ||
          (!sink->empty() && sink->front() == '/' && sink->find('\0') == std::string::npos)) {
        result.audit = *sink;
      } else {
        fail(ErrorCode::BadValue, *entry,
             "`audit` must be \"-\" (standard output), \"syslog\" or an absolute file path");
      }
    }
  }
  if (const Entry* entry = find(*entries, "audit_rate")) {
    audit_rate(*entry, result);
  }
  if (const Entry* entry = find(*entries, "limits")) {
    limits(*entry, result);
  }
  if (const Entry* entry = find(*entries, "audit_failure")) {
    if (auto text = string(*entry)) {
      if (*text == "keep" || *text == "refuse") {
        result.audit_failure = *text;
      } else {
        fail(ErrorCode::BadValue, *entry,
             "`audit_failure` must be keep (answer calls whose record is lost) or refuse (refuse them "
             "with EPERM), got `" +
                 *text + "`");
      }
    }
  }
  if (const Entry* entry = find(*entries, "control_group")) {
    result.control_group = group(entry->value, "`control_group`");
  }
  if (const Entry* entry = find(*entries, "metrics_listen")) {
    // The address itself is checked when the daemon binds it.
    if (auto text = string(*entry)) {
      if (text->find(':') == std::string::npos) {
        fail(ErrorCode::BadValue, *entry,
             "`metrics_listen` must be ADDRESS:PORT such as 127.0.0.1:9464, or unix:PATH, got `" + *text +
                 "`");
      } else {
        result.metrics_listen = *text;
      }
    }
  }
  if (const Entry* entry = find(*entries, "access")) {
    if (!entry->value.IsSequence()) {
      wrong_type(*entry, "a list of {users, groups, policies, learn}");
    } else {
      result.access.clear();
      std::size_t index = 0;
      for (const auto& item : entry->value) {
        if (auto parsed = grant(item, index)) {
          result.access.push_back(std::move(*parsed));
        }
        ++index;
      }
    }
  }
  if (failed()) {
    return std::nullopt;
  }
  return result;
}

// A policy name as the peer sent it, made safe for one log line.
std::string quoted(std::string_view name) {
  std::string text = "\"";
  for (std::size_t i = 0; i < name.size() && i < 64; ++i) {
    const auto c = static_cast<unsigned char>(name[i]);
    if (c >= 0x20 && c < 0x7f && c != '"' && c != '\\') {
      text += static_cast<char>(c);
    } else {
      static constexpr char kHex[] = "0123456789abcdef";
      text += std::string("\\x") + kHex[c >> 4] + kHex[c & 0xf];
    }
  }
  return text + (name.size() > 64 ? "...\"" : "\"");
}

bool grant_matches(const Grant& grant, const Peer& peer) {
  if (grant.any_user || std::ranges::find(grant.uids, peer.uid) != grant.uids.end()) {
    return true;
  }
  return std::ranges::any_of(grant.gids, [&](gid_t gid) {
    return gid == peer.gid || std::ranges::find(peer.groups, gid) != peer.groups.end();
  });
}

}  // namespace

std::expected<Config, std::vector<LoadError>> parse_config(std::string_view text, const std::string& file) {
  ConfigReader reader(file);
  std::optional<Config> config;
  policy::detail::guarded(reader, [&] {
    if (auto root = reader.document(text, "configuration (a mapping)")) {
      config = reader.config(*root);
    }
  });
  if (reader.failed() || !config) {
    auto errors = reader.take_errors();
    if (errors.empty()) {
      errors.push_back(LoadError{ErrorCode::YamlParse, "not a configuration", Position{file, 0, 0}});
    }
    return std::unexpected(std::move(errors));
  }
  config->file = file;
  return std::move(*config);
}

std::expected<Config, std::vector<LoadError>> load_config(const std::filesystem::path& path) {
  try {
    LoadError error;
    auto text = policy::detail::read_text(path.string(), error);
    if (!text) {
      return std::unexpected(std::vector{std::move(error)});
    }
    return parse_config(*text, path.string());
  } catch (const std::exception& e) {
    return std::unexpected(std::vector{LoadError{ErrorCode::Io, e.what(), Position{path.string(), 0, 0}}});
  }
}

std::string refusal(const Config& config, const Peer& peer, std::string_view policy_name) {
  const std::string source = config.file.empty() ? "the built-in configuration" : config.file.string();
  std::vector<std::string> allowed;
  for (const Grant& grant : config.access) {
    if (!grant_matches(grant, peer)) {
      continue;
    }
    for (const std::string& name : grant.policies) {
      if (name == "*" || name == policy_name) {
        return {};
      }
      if (std::ranges::find(allowed, name) == allowed.end()) {
        allowed.push_back(name);
      }
    }
  }
  const std::string who = "uid " + std::to_string(peer.uid);
  if (allowed.empty()) {
    return who + " is not granted any policy by " + source;
  }
  std::string list;
  for (const std::string& name : allowed) {
    list += (list.empty() ? "" : ", ") + name;
  }
  return who + " may not use policy " + quoted(policy_name) + " (allowed: " + list + "; see " + source + ")";
}

}  // namespace sysvisor::config

namespace sysvisor::config {

std::string learn_refusal(const Config& config, const Peer& peer, std::string_view policy_name) {
  const auto names = [&](const std::vector<std::string>& list) {
    return std::ranges::any_of(list,
                               [&](const std::string& name) { return name == "*" || name == policy_name; });
  };
  for (const Grant& grant : config.access) {
    if (grant_matches(grant, peer) && names(grant.policies) && names(grant.learn)) {
      return {};
    }
  }
  const std::string source = config.file.empty() ? "the built-in configuration" : config.file.string();
  return "uid " + std::to_string(peer.uid) + " may not run policy " + quoted(policy_name) +
         " in learn mode (no `learn:` for it in the `access:` entries of " + source + ")";
}

}  // namespace sysvisor::config
