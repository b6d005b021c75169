#include "sysvisor/task.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <charconv>
#include <limits>

namespace sysvisor::task {
namespace {

// Splits on blanks (spaces and tabs).
std::vector<std::string_view> fields(std::string_view line) {
  std::vector<std::string_view> out;
  std::size_t i = 0;
  while (i < line.size()) {
    while (i < line.size() && (line[i] == ' ' || line[i] == '\t')) ++i;
    const std::size_t start = i;
    while (i < line.size() && line[i] != ' ' && line[i] != '\t') ++i;
    if (i > start) out.push_back(line.substr(start, i - start));
  }
  return out;
}

template <class T>
std::optional<T> number(std::string_view s, int base = 10) {
  T value{};
  const auto* end = s.data() + s.size();
  const auto [ptr, ec] = std::from_chars(s.data(), end, value, base);
  if (ec != std::errc() || ptr != end) return std::nullopt;
  return value;
}

bool parse_ids(std::string_view rest, std::array<std::uint32_t, 4>& out) {
  const auto f = fields(rest);
  if (f.size() != 4) return false;
  for (std::size_t i = 0; i < 4; ++i) {
    const auto v = number<std::uint32_t>(f[i]);
    if (!v) return false;
    out[i] = *v;
  }
  return true;
}

}  // namespace

std::optional<Credentials> parse_status(std::string_view status) {
  Credentials creds;
  bool have_uid = false;
  bool have_gid = false;
  bool have_caps = false;
  while (!status.empty()) {
    const auto nl = status.find('\n');
    const std::string_view line = status.substr(0, nl);
    status = nl == std::string_view::npos ? std::string_view{} : status.substr(nl + 1);
    const auto colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    const std::string_view key = line.substr(0, colon);
    const std::string_view rest = line.substr(colon + 1);
    if (key == "Uid") {
      have_uid = parse_ids(rest, creds.uid);
      if (!have_uid) return std::nullopt;
    } else if (key == "Gid") {
      have_gid = parse_ids(rest, creds.gid);
      if (!have_gid) return std::nullopt;
    } else if (key == "Groups") {
      for (const auto g : fields(rest)) {
        const auto v = number<std::uint32_t>(g);
        if (!v) return std::nullopt;
        creds.groups.push_back(*v);
      }
    } else if (key == "CapEff") {
      const auto f = fields(rest);
      if (f.size() != 1) return std::nullopt;
      const auto v = number<std::uint64_t>(f[0], 16);
      if (!v) return std::nullopt;
      creds.cap_effective = *v;
      have_caps = true;
    } else if (key == "Umask") {
      const auto f = fields(rest);
      if (f.size() != 1) return std::nullopt;
      const auto v = number<unsigned>(f[0], 8);
      if (!v || *v > 0777) return std::nullopt;
      creds.umask = static_cast<mode_t>(*v);
    }
  }
  if (!have_uid || !have_gid || !have_caps) return std::nullopt;
  return creds;
}

std::optional<std::vector<IdRange>> parse_id_map(std::string_view text) {
  std::vector<IdRange> out;
  while (!text.empty()) {
    const auto nl = text.find('\n');
    const std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
    const auto f = fields(line);
    if (f.empty()) continue;
    if (f.size() != 3) return std::nullopt;
    const auto inside = number<std::uint32_t>(f[0]);
    const auto outside = number<std::uint32_t>(f[1]);
    const auto count = number<std::uint32_t>(f[2]);
    if (!inside || !outside || !count) return std::nullopt;
    out.push_back({*inside, *outside, *count});
  }
  return out;
}

std::optional<std::uint32_t> to_inside(const std::vector<IdRange>& map, std::uint32_t host_id) {
  for (const auto& r : map) {
    // 64-bit arithmetic: "0 0 4294967295" must not wrap.
    const std::uint64_t first = r.outside;
    const std::uint64_t last = first + r.count;
    if (host_id >= first && host_id < last) {
      return static_cast<std::uint32_t>(r.inside + (host_id - first));
    }
  }
  return std::nullopt;
}

Result<std::string> read_string(int mem_fd, std::uint64_t address, std::size_t max) {
  constexpr std::uint64_t kPage = 4096;
  std::string out;
  std::array<char, kPage> chunk{};
  std::uint64_t at = address;
  while (out.size() < max) {
    // Never read across a page boundary in one go: the next page may be unmapped,
    // and the string may end before it.
    const std::uint64_t to_page_end = kPage - (at % kPage);
    const std::size_t want = static_cast<std::size_t>(std::min<std::uint64_t>(to_page_end, max - out.size()));
    if (at > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max())) {
      return sys_error(EFAULT, "read task memory");
    }
    const ssize_t n = ::pread(mem_fd, chunk.data(), want, static_cast<off_t>(at));
    if (n <= 0) {
      // EIO from /proc/PID/mem means an unmapped address: the kernel would say EFAULT.
      return sys_error(n == 0 || errno == EIO ? EFAULT : errno, "read task memory");
    }
    const std::string_view got(chunk.data(), static_cast<std::size_t>(n));
    const auto nul = got.find('\0');
    if (nul != std::string_view::npos) {
      out.append(got.substr(0, nul));
      return out;
    }
    out.append(got);
    at += static_cast<std::uint64_t>(n);
  }
  return sys_error(ENAMETOOLONG, "read task memory");
}

Result<std::string> read_file_at(int dir_fd, const char* name) {
  UniqueFd fd(::openat(dir_fd, name, O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error(std::string("open `") + name + "`");
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      return sys_error(std::string("read `") + name + "`");
    }
    if (n == 0) break;
    out.append(buf.data(), static_cast<std::size_t>(n));
    if (out.size() > (1U << 20U)) return sys_error(EFBIG, std::string("read `") + name + "`");
  }
  return out;
}

Result<TaskHandle> TaskHandle::open(pid_t tid) {
  TaskHandle h;
  h.tid_ = tid;
  const std::string dir = "/proc/" + std::to_string(tid);
  h.proc_.reset(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!h.proc_) return sys_error("open `" + dir + "`");
  h.mem_.reset(::openat(h.proc_.get(), "mem", O_RDONLY | O_CLOEXEC));
  if (!h.mem_) return sys_error("open `" + dir + "/mem`");
  return h;
}

Result<UniqueFd> TaskHandle::open_entry(const char* name, int flags) const {
  UniqueFd fd(::openat(proc_.get(), name, flags | O_CLOEXEC));
  if (!fd) return sys_error("open `/proc/" + std::to_string(tid_) + "/" + name + "`");
  return fd;
}

}  // namespace sysvisor::task
