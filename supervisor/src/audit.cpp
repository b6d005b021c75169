#include "sysvisor/audit.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <array>
#include <cstring>
#include <ctime>
#include <utility>

#include "sysvisor/policy.hpp"

namespace sysvisor::audit {
namespace {

// Length of the valid UTF-8 sequence starting at s[i], or 0.
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto c = static_cast<unsigned char>(s[i]);
  std::size_t len = 0;
  unsigned min = 0;
  if (c >= 0xc2 && c <= 0xdf) {
    len = 2;
    min = 0x80;
  } else if (c >= 0xe0 && c <= 0xef) {
    len = 3;
    min = 0x800;
  } else if (c >= 0xf0 && c <= 0xf4) {
    len = 4;
    min = 0x10000;
  } else {
    return 0;
  }
  if (i + len > s.size()) return 0;
  unsigned cp = c & (0xffU >> (len + 1));
  for (std::size_t k = 1; k < len; ++k) {
    const auto cc = static_cast<unsigned char>(s[i + k]);
    if ((cc & 0xc0U) != 0x80U) return 0;
    cp = (cp << 6U) | (cc & 0x3fU);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return len;
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ns / 1000000000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 64> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  std::array<char, 16> frac{};
  std::snprintf(frac.data(), frac.size(), ".%09lldZ", static_cast<long long>(ns % 1000000000));
  return std::string(buf.data(), n) + frac.data();
}

}  // namespace

std::string json_string(std::string_view s) {
  std::string out;
  out.reserve(s.size() + 2);
  out.push_back('"');
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '"' || c == '\\') {
      out.push_back('\\');
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (c < 0x20 || c == 0x7f) {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\u%04x", c);
      out += buf.data();
      ++i;
    } else if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (const std::size_t len = utf8_length(s, i); len > 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      std::array<char, 8> buf{};
      std::snprintf(buf.data(), buf.size(), "\\u%04x", c);
      out += buf.data();
      ++i;
    }
  }
  out.push_back('"');
  return out;
}

std::string to_json(const Event& e) {
  const auto hex = [](std::uint64_t v) {
    std::array<char, 24> buf{};
    std::snprintf(buf.data(), buf.size(), "0x%llx", static_cast<unsigned long long>(v));
    return std::string(buf.data());
  };
  std::string out = "{\"time\":" + json_string(rfc3339(e.time));
  out += ",\"container\":" + json_string(e.container);
  if (!e.engine.empty()) out += ",\"engine\":" + json_string(e.engine);
  out += ",\"policy\":" + json_string(e.policy);
  if (!e.policy_version.empty()) out += ",\"policy_version\":" + json_string(e.policy_version);
  out += ",\"pid\":" + std::to_string(e.pid);
  out += ",\"syscall\":" + json_string(e.syscall);
  out += ",\"arch\":" + json_string(e.arch);
  out += ",\"args\":{\"raw\":[";
  for (std::size_t i = 0; i < e.raw.size(); ++i) out += (i == 0 ? "" : ",") + json_string(hex(e.raw[i]));
  out += "]";
  if (e.path) {
    out += ",\"path\":" + json_string(*e.path);
  } else if (!e.path_error.empty()) {
    out += ",\"path\":null,\"path_error\":" + json_string(e.path_error);
  }
  if (!e.paths.empty()) {
    out += ",\"paths\":[";
    for (std::size_t i = 0; i < e.paths.size(); ++i) out += (i == 0 ? "" : ",") + json_string(e.paths[i]);
    out += "]";
  }
  if (e.device) {
    std::array<char, 16> mode{};
    std::snprintf(mode.data(), mode.size(), "0%o", static_cast<unsigned>(e.mode & 07777));
    out += ",\"type\":" + json_string(e.type);
    out += ",\"device\":" + json_string(std::to_string(e.major) + ":" + std::to_string(e.minor));
    out += ",\"mode\":" + json_string(mode.data());
  }
  const auto str = [&](const char* key, const std::optional<std::string>& v) {
    if (v) out += std::string(",\"") + key + "\":" + json_string(*v);
  };
  const auto num = [&](const char* key, const auto& v) {
    if (v) out += std::string(",\"") + key + "\":" + std::to_string(*v);
  };
  str("fstype", e.fstype);
  str("source", e.source);
  str("target", e.target);
  str("xattr", e.xattr);
  if (e.flags) out += ",\"flags\":" + json_string(hex(*e.flags));
  num("value_size", e.value_size);
  num("sched_policy", e.sched_policy);
  num("priority", e.priority);
  num("nice", e.nice);
  out += "},\"action\":" + json_string(e.action);
  out += ",\"rule\":" + json_string(e.rule);
  if (!e.rule_origin.empty() && e.rule_origin != e.policy)
    out += ",\"rule_policy\":" + json_string(e.rule_origin);
  if (e.continued) {
    out += ",\"result\":\"continue\",\"errno\":null";
  } else if (e.value) {
    out += ",\"result\":\"return\",\"value\":" + std::to_string(*e.value) + ",\"errno\":0";
  } else {
    out += ",\"result\":" + json_string(e.err == 0 ? "ok" : policy::errno_name(e.err));
    out += ",\"errno\":" + std::to_string(e.err);
  }
  out += ",\"latency_us\":" + std::to_string(e.latency_us);
  out += "}";
  return out;
}

Result<Sink> Sink::open(const std::string& where) {
  Sink sink;
  sink.where_ = where;
  if (where == "-") {
    sink.file_ = stdout;
    return sink;
  }
  const int fd = ::open(where.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0600);
  if (fd < 0) return sys_error("open audit log `" + where + "`");
  sink.file_ = ::fdopen(fd, "a");
  if (sink.file_ == nullptr) {
    ::close(fd);
    return sys_error("open audit log `" + where + "`");
  }
  sink.owned_ = true;
  return sink;
}

Sink::Sink(Sink&& other) noexcept
    : file_(std::exchange(other.file_, nullptr)),
      owned_(std::exchange(other.owned_, false)),
      where_(std::move(other.where_)) {}

Sink& Sink::operator=(Sink&& other) noexcept {
  if (this != &other) {
    if (owned_ && file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    owned_ = std::exchange(other.owned_, false);
    where_ = std::move(other.where_);
  }
  return *this;
}

Sink::~Sink() {
  if (owned_ && file_ != nullptr) std::fclose(file_);
}

Result<void> Sink::reopen() {
  if (!owned_) return {};
  auto fresh = open(where_);
  if (!fresh) return std::unexpected(fresh.error());
  *this = std::move(*fresh);
  return {};
}

void Sink::write(const Event& event) {
  if (file_ == nullptr) return;
  const std::string line = to_json(event) + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace sysvisor::audit
