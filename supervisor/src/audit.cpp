#include "sysvisor/audit.hpp"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <syslog.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <charconv>
#include <cstring>
#include <filesystem>
#include <mutex>
#include <utility>
#include <vector>

#include "sysvisor/unique_fd.hpp"
#include "sysvisor/utf8.hpp"

namespace sysvisor::audit {

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

std::string to_json(const Daemon& record) {
  return print(record);
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

bool Bucket::ready(std::chrono::steady_clock::time_point now) {
  if (rate_.unlimited()) return true;
  if (!started_) {
    started_ = true;
    last_ = now;
  }
  // A clock read before another thread's later one (two sessions share a bucket) adds nothing.
  if (now > last_) {
    const double elapsed = std::chrono::duration<double>(now - last_).count();
    last_ = now;
    tokens_ = std::min(rate_.burst, tokens_ + elapsed * rate_.per_second);
  }
  return tokens_ >= 1.0;
}

bool Bucket::admit(std::chrono::steady_clock::time_point now) {
  if (!ready(now)) return false;
  take();
  return true;
}

namespace {

// The process-wide state behind health(): records go through the loop, status and metrics
// read from it too; a mutex keeps the strings whole.
struct State {
  std::mutex m;
  Health health;
  std::uint64_t unreported = 0;  // failures since the last log line
  std::chrono::steady_clock::time_point last_log{};
  bool logged_once = false;
};
State& state() {
  static State s;
  return s;
}
std::atomic<FailureAction> g_action{FailureAction::Keep};

constexpr auto kLogEvery = std::chrono::seconds(10);

void note_sink(const std::string& where) {
  State& s = state();
  const std::lock_guard lock(s.m);
  s.health.sink = where;
}

void note_failure(const std::string& where, int err, const char* what) {
  State& s = state();
  const std::lock_guard lock(s.m);
  ++s.health.write_failures;
  ++s.unreported;
  s.health.failing = true;
  s.health.last_error = std::string(what) + " `" + where + "`: " + std::strerror(err);
  const auto now = std::chrono::steady_clock::now();
  if (s.logged_once && now - s.last_log < kLogEvery) return;
  s.logged_once = true;
  s.last_log = now;
  spdlog::error("audit: {}: {} record(s) lost ({} since the start); calls are {} while the audit log fails",
                s.health.last_error, s.unreported, s.health.write_failures,
                g_action.load() == FailureAction::Refuse ? "refused" : "answered");
  s.unreported = 0;
}

void note_success(const std::string& where) {
  State& s = state();
  {
    // Cheap when nothing failed: one uncontended lock.
    const std::lock_guard lock(s.m);
    if (!s.health.failing) return;
    s.health.failing = false;
    spdlog::warn("audit: writing to `{}` again; {} record(s) lost since the start ({} not reported before)",
                 where, s.health.write_failures, s.unreported);
    s.unreported = 0;
  }
}

std::string octal(mode_t mode) {
  std::array<char, 8> buf{};
  std::snprintf(buf.data(), buf.size(), "%04o", static_cast<unsigned>(mode & 07777));
  return buf.data();
}

// The directory `dirfd` (reached as `shown`) as the audit file's directory (`last`) or one above.
Result<void> check_directory(int dirfd, const std::string& shown, bool last, const std::string& where) {
  struct stat st {};
  if (::fstat(dirfd, &st) != 0) return sys_error("audit log `" + where + "`: stat `" + shown + "`");
  const std::string refused = "audit log `" + where + "`: refused: directory `" + shown + "` ";
  if (st.st_uid != 0) {
    return sys_error(EPERM, refused + "is owned by uid " + std::to_string(st.st_uid) +
                                ", not root (the audit log's directories must be root's alone)");
  }
  const bool writable = (st.st_mode & (S_IWGRP | S_IWOTH)) != 0;
  // Above the file's own directory, a sticky directory (/tmp) is safe: no one else can rename
  // or remove root's entries in it.
  if (writable && (last || (st.st_mode & S_ISVTX) == 0)) {
    return sys_error(EPERM, refused + "is writable by group or others (mode " + octal(st.st_mode) +
                                "; the audit log's directories must be root's alone)");
  }
  return {};
}

// Opens the audit file's directory, checking every directory on the way.
Result<UniqueFd> open_directory(const std::filesystem::path& dir, const std::string& where) {
  UniqueFd fd(::open("/", O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!fd) return sys_error("audit log `" + where + "`: open `/`");
  std::filesystem::path shown = "/";
  std::vector<std::string> parts;
  for (const auto& part : dir.relative_path()) {
    if (!part.empty() && part != ".") parts.push_back(part.string());
  }
  if (auto ok = check_directory(fd.get(), "/", parts.empty(), where); !ok) return std::unexpected(ok.error());
  for (std::size_t i = 0; i < parts.size(); ++i) {
    const std::string& part = parts[i];
    shown /= part;
    struct stat link {};
    if (::fstatat(fd.get(), part.c_str(), &link, AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("audit log `" + where + "`: directory `" + shown.string() + "`");
    // The directory holding the link was checked: only root can change a link root owns there.
    if (S_ISLNK(link.st_mode) && link.st_uid != 0) {
      return sys_error(EPERM, "audit log `" + where + "`: refused: `" + shown.string() +
                                  "` is a symbolic link owned by uid " + std::to_string(link.st_uid) +
                                  ", not root");
    }
    UniqueFd next(::openat(fd.get(), part.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!next) return sys_error("audit log `" + where + "`: directory `" + shown.string() + "`");
    if (auto ok = check_directory(next.get(), shown.string(), i + 1 == parts.size(), where); !ok)
      return std::unexpected(ok.error());
    fd = std::move(next);
  }
  return fd;
}

// Opens (or creates, 0600) the audit file under the rules in audit.hpp.
Result<UniqueFd> open_file(const std::string& where) {
  const std::filesystem::path path = std::filesystem::path(where).lexically_normal();
  if (!path.is_absolute() || !path.has_filename())
    return sys_error(EINVAL, "audit log `" + where + "`: not an absolute file path");
  auto dir = open_directory(path.parent_path(), where);
  if (!dir) return std::unexpected(dir.error());
  const std::string name = path.filename().string();
  // O_NONBLOCK: a FIFO put there must not hang the daemon in open(); cleared below.
  UniqueFd fd(::openat(dir->get(), name.c_str(),
                       O_WRONLY | O_APPEND | O_CREAT | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY, 0600));
  if (!fd) {
    if (errno == ELOOP) return sys_error(ELOOP, "audit log `" + where + "`: refused: it is a symbolic link");
    return sys_error("open audit log `" + where + "`");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return sys_error("audit log `" + where + "`: stat");
  const std::string refused = "audit log `" + where + "`: refused: ";
  if (!S_ISREG(st.st_mode)) return sys_error(EPERM, refused + "not a regular file");
  if (st.st_uid != 0) {
    return sys_error(EPERM, refused + "owned by uid " + std::to_string(st.st_uid) +
                                ", not root (remove it, or chown root and chmod 0600 it)");
  }
  if ((st.st_mode & 077) != 0) {
    return sys_error(EPERM, refused + "mode " + octal(st.st_mode) +
                                " lets others than root read or write it (chmod 0600 it)");
  }
  if (st.st_nlink != 1) {
    return sys_error(EPERM,
                     refused + "it has " + std::to_string(st.st_nlink) + " links (a hard link elsewhere)");
  }
  const int flags = ::fcntl(fd.get(), F_GETFL);
  if (flags < 0 || ::fcntl(fd.get(), F_SETFL, flags & ~O_NONBLOCK) != 0)
    return sys_error("audit log `" + where + "`: fcntl");
  return fd;
}

}  // namespace

std::string_view to_string(FailureAction action) noexcept {
  return action == FailureAction::Refuse ? "refuse" : "keep";
}

std::optional<FailureAction> parse_failure_action(std::string_view text) noexcept {
  if (text == "keep") return FailureAction::Keep;
  if (text == "refuse") return FailureAction::Refuse;
  return std::nullopt;
}

Health health() {
  State& s = state();
  const std::lock_guard lock(s.m);
  Health h = s.health;
  h.action = g_action.load();
  return h;
}

void Sink::set_failure_action(FailureAction action) noexcept {
  g_action.store(action);
}

FailureAction Sink::failure_action() noexcept {
  return g_action.load();
}

namespace {
// 0 when a datagram or stream socket connects to /dev/log (as openlog() tries them), or the errno.
int syslog_reachable() {
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, "/dev/log", sizeof "/dev/log");
  int err = 0;
  for (const int type : {SOCK_DGRAM, SOCK_STREAM}) {
    const UniqueFd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (sock && ::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) return 0;
    err = errno;
  }
  return err;
}
}  // namespace

Result<Sink> Sink::open(const std::string& where) {
  if (where != "-" && where != "syslog" && !where.starts_with('/')) {
    return sys_error(EINVAL, "audit file `" + where +
                                 "`: not an absolute path (`-` for standard output, `syslog`, or /PATH)");
  }
  Sink sink;
  sink.where_ = where;
  if (where == "-") {
    sink.fd_ = STDOUT_FILENO;
    note_sink(where);
    return sink;
  }
  if (where == "syslog") {
    // openlog() says nothing when nobody listens: every record would vanish. Refuse to start.
    if (const int err = syslog_reachable(); err != 0) {
      return sys_error(err,
                       "audit sink `syslog`: nothing listens on /dev/log; start a syslog daemon "
                       "(rsyslog, systemd-journald) or audit to a file");
    }
    // LOG_NDELAY: connect now, before the daemon enters namespaces where /dev/log differs.
    ::openlog("sysvisor-audit", LOG_NDELAY, LOG_AUTHPRIV);
    sink.syslog_ = true;
    note_sink(where);
    return sink;
  }
  auto fd = open_file(where);
  if (!fd) return std::unexpected(fd.error());
  sink.fd_ = fd->release();
  sink.owned_ = true;
  note_sink(where);
  return sink;
}

void Sink::close_fd() noexcept {
  if (owned_ && fd_ >= 0) ::close(fd_);
  fd_ = -1;
  owned_ = false;
}

Sink::Sink(Sink&& other) noexcept
    : fd_(std::exchange(other.fd_, -1)),
      owned_(std::exchange(other.owned_, false)),
      syslog_(std::exchange(other.syslog_, false)),
      torn_(std::exchange(other.torn_, false)),
      where_(std::move(other.where_)) {}

Sink& Sink::operator=(Sink&& other) noexcept {
  if (this != &other) {
    close_fd();
    fd_ = std::exchange(other.fd_, -1);
    owned_ = std::exchange(other.owned_, false);
    syslog_ = std::exchange(other.syslog_, false);
    torn_ = std::exchange(other.torn_, false);
    where_ = std::move(other.where_);
  }
  return *this;
}

Sink::~Sink() {
  close_fd();
}

Result<void> Sink::reopen() {
  if (!owned_) return {};
  auto fresh = open(where_);
  if (!fresh) {
    // The old file stays in use: its records are not lost, and they stay root's.
    spdlog::error("audit: {}; records keep going to the file opened before", fresh.error().message());
    return std::unexpected(fresh.error());
  }
  *this = std::move(*fresh);
  return {};
}

bool Sink::write(const Event& event) {
  return write_line(to_json(event));
}

bool Sink::write(const Suppressed& summary) {
  return write_line(to_json(summary));
}

bool Sink::write(const Daemon& record) {
  return write_line(to_json(record));
}

bool Sink::write_line(const std::string& json) {
  if (syslog_) {
    ::syslog(LOG_AUTHPRIV | LOG_INFO, "%s", json.c_str());
    return true;
  }
  if (fd_ < 0) {
    note_failure(where_, EBADF, "write audit log");
    return false;
  }
  std::string line;
  line.reserve(json.size() + 2);
  if (torn_) line.push_back('\n');  // the torn line before ends here, alone
  line += json;
  line.push_back('\n');
  // Where the file ended before this record: a record written in part is cut back to it.
  // (One writer: the daemon's loop. A pipe or terminal has no end to cut back to.)
  const off_t before = owned_ ? ::lseek(fd_, 0, SEEK_END) : -1;
  std::size_t done = 0;
  int err = 0;
  while (done < line.size()) {
    const ssize_t n = ::write(fd_, line.data() + done, line.size() - done);
    if (n > 0) {
      done += static_cast<std::size_t>(n);
    } else if (n < 0 && errno == EINTR) {
      continue;
    } else {
      err = n < 0 ? errno : EIO;
      break;
    }
  }
  if (done == line.size()) {
    torn_ = false;
    note_success(where_);
    return true;
  }
  if (done > 0) {
    // Part of the line went out (ENOSPC half-way, EFBIG): cut it off, so the file holds whole
    // records only. If that fails too, the next record starts on a line of its own.
    torn_ = before < 0 || ::ftruncate(fd_, before) != 0;
  }
  note_failure(where_, err, "write audit log");
  return false;
}

}  // namespace sysvisor::audit
