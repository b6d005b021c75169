#include "sysvisor/oci.hpp"

#include <algorithm>
#include <climits>
#include <nlohmann/json.hpp>

namespace sysvisor::oci {
namespace {

using nlohmann::json;

bool is_space(char c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r';
}

std::string_view trim(std::string_view s) {
  while (!s.empty() && is_space(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_space(s.back())) s.remove_suffix(1);
  return s;
}

// A string member, or an error naming it. Absent is fine when `required` is false.
std::expected<std::string, std::string> string_member(const json& obj, const char* key, const char* where,
                                                      bool required) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) {
    if (required) return std::unexpected(std::string("`") + where + key + "` is missing");
    return std::string();
  }
  if (!it->is_string()) return std::unexpected(std::string("`") + where + key + "` is not a string");
  return it->get<std::string>();
}

std::expected<pid_t, std::string> pid_member(const json& obj, const char* key, const char* where) {
  const auto it = obj.find(key);
  if (it == obj.end() || it->is_null()) return pid_t{0};
  if (!it->is_number_integer())
    return std::unexpected(std::string("`") + where + key + "` is not an integer");
  const auto v = it->get<std::int64_t>();
  if (v < 0 || v > INT_MAX) return std::unexpected(std::string("`") + where + key + "` is out of range");
  return static_cast<pid_t>(v);
}

}  // namespace

Scan scan_object(std::string_view bytes) {
  return ObjectScanner{}.feed(bytes);
}

Scan ObjectScanner::feed(std::string_view chunk) {
  scanned_ += chunk.size();
  if (state_ == Scan::NotAnObject) return state_;
  for (const char c : chunk) {
    if (state_ == Scan::Complete) {
      // One object; what follows may only be whitespace (crun's trailing newline).
      if (!is_space(c)) return state_ = Scan::NotAnObject;
      continue;
    }
    if (!started_) {
      if (is_space(c)) continue;
      if (c != '{') return state_ = Scan::NotAnObject;
      started_ = true;
      depth_ = 1;
      continue;
    }
    if (in_string_) {
      if (escaped_) {
        escaped_ = false;
      } else if (c == '\\') {
        escaped_ = true;
      } else if (c == '"') {
        in_string_ = false;
      }
      continue;
    }
    if (c == '"') {
      in_string_ = true;
    } else if (c == '{' || c == '[') {
      ++depth_;
    } else if (c == '}' || c == ']') {
      if (--depth_ == 0) state_ = Scan::Complete;
    }
  }
  return state_;
}

std::expected<ProcessState, std::string> parse_process_state(std::string_view bytes) {
  if (bytes.size() > kMaxPayloadBytes) {
    return std::unexpected("payload of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                           std::to_string(kMaxPayloadBytes));
  }
  json doc;
  try {
    doc = json::parse(bytes);
  } catch (const json::exception& e) {
    // nlohmann's message carries the line and column; the exception ends here.
    return std::unexpected(std::string("malformed JSON: ") + e.what());
  }
  if (!doc.is_object()) return std::unexpected("the payload is not a JSON object");

  ProcessState ps;
  ps.pretty = trim(bytes).find('\n') != std::string_view::npos;
  auto version = string_member(doc, "ociVersion", "", false);
  if (!version) return std::unexpected(version.error());
  ps.oci_version = std::move(*version);
  auto metadata = string_member(doc, "metadata", "", false);
  if (!metadata) return std::unexpected(metadata.error());
  ps.metadata = std::move(*metadata);
  auto pid = pid_member(doc, "pid", "");
  if (!pid) return std::unexpected(pid.error());
  ps.pid = *pid;
  if (const auto fds = doc.find("fds"); fds != doc.end() && !fds->is_null()) {
    if (!fds->is_array()) return std::unexpected("`fds` is not an array");
    for (const auto& name : *fds) {
      if (!name.is_string()) return std::unexpected("`fds` holds something other than a string");
      ps.fds.push_back(name.get<std::string>());
    }
  }

  const auto st = doc.find("state");
  if (st == doc.end() || !st->is_object()) return std::unexpected("`state` is missing or not an object");
  auto id = string_member(*st, "id", "state.", true);
  if (!id) return std::unexpected(id.error());
  ps.state.id = std::move(*id);
  if (!valid_container_id(ps.state.id)) {
    return std::unexpected(
        "`state.id` is not a valid container id (1 to 128 printable characters, no spaces)");
  }
  for (auto [key, out] : {std::pair{"ociVersion", &ps.state.oci_version},
                          std::pair{"status", &ps.state.status}, std::pair{"bundle", &ps.state.bundle}}) {
    auto v = string_member(*st, key, "state.", false);
    if (!v) return std::unexpected(v.error());
    *out = std::move(*v);
  }
  auto state_pid = pid_member(*st, "pid", "state.");
  if (!state_pid) return std::unexpected(state_pid.error());
  ps.state.pid = *state_pid;
  if (const auto ann = st->find("annotations"); ann != st->end() && !ann->is_null()) {
    if (!ann->is_object()) return std::unexpected("`state.annotations` is not an object");
    for (const auto& [key, value] : ann->items()) {
      if (!value.is_string()) return std::unexpected("annotation `" + key + "` is not a string");
      ps.state.annotations.emplace(key, value.get<std::string>());
    }
  }
  return ps;
}

pid_t live_pid(const ProcessState& ps) {
  return ps.pid != 0 ? ps.pid : ps.state.pid;
}

std::expected<std::size_t, std::string> listener_index(const ProcessState& ps) {
  if (ps.fds.empty()) return std::size_t{0};
  const auto it = std::find(ps.fds.begin(), ps.fds.end(), kSeccompFdName);
  if (it == ps.fds.end()) return std::unexpected("`fds` does not name a \"seccompFd\"");
  return static_cast<std::size_t>(it - ps.fds.begin());
}

Metadata parse_metadata(std::string_view metadata) {
  Metadata out;
  while (!metadata.empty()) {
    const auto nl = metadata.find('\n');
    const std::string_view line = trim(metadata.substr(0, nl));
    metadata = nl == std::string_view::npos ? std::string_view() : metadata.substr(nl + 1);
    if (line.empty()) continue;
    const auto eq = line.find('=');
    if (eq == std::string_view::npos || trim(line.substr(0, eq)).empty()) {
      out.ignored.emplace_back(line);
      continue;
    }
    const std::string key(trim(line.substr(0, eq)));
    const std::string value(trim(line.substr(eq + 1)));
    if (key == "policy") {
      out.policy = value;
    } else {
      out.labels.insert_or_assign(key, value);
    }
  }
  return out;
}

const char* to_string(PolicySource source) {
  switch (source) {
    case PolicySource::Metadata:
      return "listenerMetadata";
    case PolicySource::Annotation:
      return "annotation io.sysvisor.policy";
    case PolicySource::Default:
      return "default policy";
  }
  return "?";
}

std::expected<PolicyChoice, std::string> select_policy(const ProcessState& ps, const Metadata& metadata,
                                                       std::string_view default_policy) {
  if (!metadata.policy.empty()) return PolicyChoice{metadata.policy, PolicySource::Metadata};
  if (const auto it = ps.state.annotations.find(kPolicyAnnotation);
      it != ps.state.annotations.end() && !trim(it->second).empty()) {
    return PolicyChoice{std::string(trim(it->second)), PolicySource::Annotation};
  }
  if (!default_policy.empty()) return PolicyChoice{std::string(default_policy), PolicySource::Default};
  return std::unexpected(
      "no policy named: set `policy=NAME` in linux.seccomp.listenerMetadata, or the annotation "
      "io.sysvisor.policy, or a default policy in the supervisor");
}

std::string guess_engine(const ProcessState& ps) {
  const auto& ann = ps.state.annotations;
  const auto manager = ann.find("io.container.manager");
  const bool podman = manager != ann.end() && manager->second == "libpod";
  std::string runtime;
  if (!ps.pretty && ps.oci_version.starts_with("1.")) {
    runtime = "runc";  // runc 1.1 sends compact JSON with its spec version (1.0.2-dev)
  } else if (ps.pretty && ps.oci_version == "0.2.0") {
    runtime = "crun";  // crun 1.x pretty-prints with the seccomp state version 0.2.0
  }
  if (podman) return runtime.empty() ? "podman" : "podman/" + runtime;
  return runtime.empty() ? "oci" : runtime;
}

bool valid_container_id(std::string_view id) {
  if (id.empty() || id.size() > 128) return false;
  return std::all_of(id.begin(), id.end(), [](char c) {
    const auto u = static_cast<unsigned char>(c);
    return u > 0x20 && u < 0x7f;
  });
}

}  // namespace sysvisor::oci
