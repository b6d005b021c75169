#include "sysvisor/audit.hpp"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <utility>
#include <vector>

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

}  // namespace

std::string utf8(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c < 0x80) {
      out.push_back(static_cast<char>(c));
      ++i;
    } else if (const std::size_t len = utf8_length(s, i); len > 0) {
      out.append(s.substr(i, len));
      i += len;
    } else {
      out.push_back(static_cast<char>(0xc0U | (c >> 6U)));
      out.push_back(static_cast<char>(0x80U | (c & 0x3fU)));
      ++i;
    }
  }
  return out;
}

void set_time(google::protobuf::Timestamp& out, std::chrono::system_clock::time_point t) {
  const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(t.time_since_epoch()).count();
  out.set_seconds(ns / 1000000000);
  out.set_nanos(static_cast<std::int32_t>(ns % 1000000000));
}

namespace {

std::string print(const google::protobuf::Message& m) {
  google::protobuf::util::JsonPrintOptions options;
  // The keys are the fields' json_name (snake_case, as the field names, and "errno").
  options.always_print_primitive_fields = true;
  std::string out;
  if (const auto status = google::protobuf::util::MessageToJsonString(m, &out, options); !status.ok()) {
    // Only a string that is not UTF-8 can fail, and every string from the container passed
    // through utf8(): say so rather than lose the record silently.
    return R"({"event":"error","error":"audit record not printable"})";
  }
  return out;
}

std::string read_small(const std::string& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return {};
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fd, buf.data(), buf.size());
    if (n <= 0 || out.size() > 65536) break;
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

// The value of `key:` in a /proc/PID/status text, whitespace-separated fields.
std::vector<long long> status_field(std::string_view status, std::string_view key) {
  std::vector<long long> out;
  std::size_t at = 0;
  while (at < status.size()) {
    const std::size_t eol = std::min(status.find('\n', at), status.size());
    const std::string_view line = status.substr(at, eol - at);
    at = eol + 1;
    if (line.size() <= key.size() || line.substr(0, key.size()) != key || line[key.size()] != ':') continue;
    std::string_view rest = line.substr(key.size() + 1);
    while (!rest.empty()) {
      const std::size_t b = rest.find_first_not_of(" \t");
      if (b == std::string_view::npos) break;
      rest.remove_prefix(b);
      long long v = 0;
      const auto [p, ec] = std::from_chars(rest.data(), rest.data() + rest.size(), v);
      if (ec != std::errc{}) break;
      out.push_back(v);
      rest.remove_prefix(static_cast<std::size_t>(p - rest.data()));
    }
    break;
  }
  return out;
}

}  // namespace

std::string to_json(const Event& event) {
  return print(event);
}

std::string to_json(const Suppressed& summary) {
  return print(summary);
}

std::optional<uid_t> map_uid(std::string_view uid_map, uid_t host_uid) {
  std::size_t at = 0;
  while (at < uid_map.size()) {
    const std::size_t eol = std::min(uid_map.find('\n', at), uid_map.size());
    std::string_view line = uid_map.substr(at, eol - at);
    at = eol + 1;
    std::array<unsigned long long, 3> v{};
    std::size_t k = 0;
    while (k < v.size()) {
      const std::size_t b = line.find_first_not_of(" \t");
      if (b == std::string_view::npos) break;
      line.remove_prefix(b);
      const auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v[k]);
      if (ec != std::errc{}) break;
      line.remove_prefix(static_cast<std::size_t>(p - line.data()));
      ++k;
    }
    if (k != v.size()) continue;
    const auto [inside, outside, count] = v;
    if (host_uid >= outside && host_uid - outside < count)
      return static_cast<uid_t>(inside + (host_uid - outside));
  }
  return std::nullopt;
}

Process describe(pid_t tid) {
  Process out;
  const std::string dir = "/proc/" + std::to_string(tid);
  const std::string status = read_small(dir + "/status");
  if (const auto tgid = status_field(status, "Tgid"); !tgid.empty())
    out.host_pid = static_cast<pid_t>(tgid[0]);
  // NSpid: the id in each pid namespace, outermost first; the container's is the last.
  if (const auto ns = status_field(status, "NSpid"); !ns.empty())
    out.container_tid = static_cast<pid_t>(ns.back());
  if (out.host_pid == tid) {
    out.container_pid = out.container_tid;
  } else if (out.host_pid > 0) {
    const std::string leader = read_small("/proc/" + std::to_string(out.host_pid) + "/status");
    if (const auto ns = status_field(leader, "NSpid"); !ns.empty())
      out.container_pid = static_cast<pid_t>(ns.back());
  }
  if (const auto uid = status_field(status, "Uid"); !uid.empty()) {
    out.host_uid = static_cast<uid_t>(uid[0]);
    out.container_uid = map_uid(read_small(dir + "/uid_map"), *out.host_uid);
  }
  out.comm = read_small(dir + "/comm");
  if (!out.comm.empty() && out.comm.back() == '\n') out.comm.pop_back();
  std::array<char, 4096> buf{};
  const ssize_t n = ::readlink((dir + "/exe").c_str(), buf.data(), buf.size());
  if (n > 0) out.exe.assign(buf.data(), static_cast<std::size_t>(n));
  return out;
}

bool Bucket::admit(std::chrono::steady_clock::time_point now) {
  if (rate_.unlimited()) return true;
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  const double elapsed = std::chrono::duration<double>(now - last_).count();
  last_ = now;
  tokens_ = std::min(rate_.burst, tokens_ + elapsed * rate_.per_second);
  if (tokens_ < 1.0) return false;
  tokens_ -= 1.0;
  return true;
}

Result<Sink> Sink::open(const std::string& where) {
  Sink sink;
  sink.where_ = where;
  if (where == "-") {
    sink.file_ = stdout;
    return sink;
  }
  if (where == "syslog") {
    // LOG_NDELAY: connect now, before the daemon enters namespaces where /dev/log differs.
    ::openlog("sysvisor-audit", LOG_NDELAY, LOG_AUTHPRIV);
    sink.syslog_ = true;
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
      syslog_(std::exchange(other.syslog_, false)),
      where_(std::move(other.where_)) {}

Sink& Sink::operator=(Sink&& other) noexcept {
  if (this != &other) {
    if (owned_ && file_ != nullptr) std::fclose(file_);
    file_ = std::exchange(other.file_, nullptr);
    owned_ = std::exchange(other.owned_, false);
    syslog_ = std::exchange(other.syslog_, false);
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
  write_line(to_json(event));
}

void Sink::write(const Suppressed& summary) {
  write_line(to_json(summary));
}

void Sink::write_line(const std::string& json) {
  if (syslog_) {
    ::syslog(LOG_AUTHPRIV | LOG_INFO, "%s", json.c_str());
    return;
  }
  if (file_ == nullptr) return;
  const std::string line = json + "\n";
  std::fwrite(line.data(), 1, line.size(), file_);
  std::fflush(file_);
}

}  // namespace sysvisor::audit
