// sysinfo emulation: the host's figures narrowed to the caller's cgroup (v1 or v2), written
// into the caller's memory (/proc/TID/mem, opened before ID_VALID) after the last ID_VALID.
// cgroupfs and procfs reads do not block on anything a container controls, so this runs in the loop.
#include "sysvisor/sysinfo.hpp"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <charconv>
#include <cstring>
#include <limits>

#include "sysvisor/emulator.hpp"

namespace sysvisor::emul::sysinfo {
namespace {

constexpr std::uint64_t kNoLimit = std::numeric_limits<std::uint64_t>::max();

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    std::size_t end = text.find(sep, at);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

std::optional<std::uint64_t> number(std::string_view s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == ' ')) s.remove_suffix(1);
  std::uint64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc{} || p != s.data() + s.size()) return std::nullopt;
  return v;
}

}  // namespace

std::optional<std::uint64_t> parse_limit(std::string_view text) {
  while (!text.empty() && (text.back() == '\n' || text.back() == ' ')) text.remove_suffix(1);
  if (text == "max") return kNoLimit;
  return number(text);
}

std::optional<std::uint64_t> stat_value(std::string_view memory_stat, std::string_view key) {
  for (std::string_view line : split(memory_stat, '\n')) {
    if (line.size() > key.size() && line.starts_with(key) && line[key.size()] == ' ') {
      return number(line.substr(key.size() + 1));
    }
  }
  return std::nullopt;
}

std::optional<std::uint64_t> parse_start_ticks(std::string_view stat) {
  // The command may hold spaces and parentheses: fields start after the last ')'.
  const auto close = stat.rfind(')');
  if (close == std::string_view::npos) return std::nullopt;
  const auto fields = split(stat.substr(close + 2), ' ');
  // fields[0] is field 3 (state); starttime is field 22.
  if (fields.size() < 20) return std::nullopt;
  return number(fields[19]);
}

struct ::sysinfo compute(const struct ::sysinfo& host, const Usage& usage) {
  struct ::sysinfo out = host;
  const std::uint64_t unit = host.mem_unit == 0 ? 1 : host.mem_unit;
  const auto bytes = [&](unsigned long v) { return static_cast<std::uint64_t>(v) * unit; };
  std::uint64_t total = bytes(host.totalram);
  std::uint64_t free = bytes(host.freeram);
  std::uint64_t shared = bytes(host.sharedram);
  std::uint64_t buffer = bytes(host.bufferram);
  std::uint64_t swap_total = bytes(host.totalswap);
  std::uint64_t swap_free = bytes(host.freeswap);
  if (usage.mem_limit && *usage.mem_limit < total) {
    total = *usage.mem_limit;
    const std::uint64_t used = std::min(usage.mem_usage.value_or(0), total);
    free = total - used;
    shared = std::min(usage.shmem.value_or(0), total);
    buffer = 0;
    if (usage.swap_limit && *usage.swap_limit != kNoLimit) {
      swap_total = std::min(*usage.swap_limit, swap_total);
      swap_free = swap_total - std::min(usage.swap_usage.value_or(0), swap_total);
    }
  }
  out.totalram = total;
  out.freeram = free;
  out.sharedram = shared;
  out.bufferram = buffer;
  out.totalswap = swap_total;
  out.freeswap = swap_free;
  out.totalhigh = 0;
  out.freehigh = 0;
  out.mem_unit = 1;
  if (usage.tasks) out.procs = static_cast<unsigned short>(std::min<std::uint64_t>(*usage.tasks, 0xffff));
  if (usage.uptime && *usage.uptime >= 0 && *usage.uptime <= host.uptime) out.uptime = *usage.uptime;
  return out;
}

std::vector<unsigned char> encode(const struct ::sysinfo& info, bool compat32) {
  if (!compat32) {
    std::vector<unsigned char> out(sizeof info);
    std::memcpy(out.data(), &info, sizeof info);
    return out;
  }
  // struct compat_sysinfo (kernel/sys.c), 64 bytes.
  struct Compat {
    std::int32_t uptime;
    std::array<std::uint32_t, 3> loads;
    std::uint32_t totalram, freeram, sharedram, bufferram, totalswap, freeswap;
    std::uint16_t procs, pad;
    std::uint32_t totalhigh, freehigh, mem_unit;
    std::array<char, 8> f;
  };
  static_assert(sizeof(Compat) == 64);
  // The kernel's scaling (kernel/sys.c do_compat_sysinfo): when a total needs more than 32
  // bits, mem_unit grows to the page size and every size shrinks by as many bits.
  std::uint64_t unit = info.mem_unit == 0 ? 1 : info.mem_unit;
  const std::array<std::uint64_t, 6> v{info.totalram,  info.freeram,   info.sharedram,
                                       info.bufferram, info.totalswap, info.freeswap};
  unsigned shift = 0;
  if (std::max(info.totalram, info.totalswap) > 0xffffffffULL) {
    while (unit < 4096) {
      unit <<= 1U;
      ++shift;
    }
  }
  Compat c{};
  c.uptime = static_cast<std::int32_t>(std::min<long>(info.uptime, std::numeric_limits<std::int32_t>::max()));
  for (std::size_t i = 0; i < 3; ++i) c.loads[i] = static_cast<std::uint32_t>(info.loads[i]);
  c.totalram = static_cast<std::uint32_t>(v[0] >> shift);
  c.freeram = static_cast<std::uint32_t>(v[1] >> shift);
  c.sharedram = static_cast<std::uint32_t>(v[2] >> shift);
  c.bufferram = static_cast<std::uint32_t>(v[3] >> shift);
  c.totalswap = static_cast<std::uint32_t>(v[4] >> shift);
  c.freeswap = static_cast<std::uint32_t>(v[5] >> shift);
  c.procs = info.procs;
  c.mem_unit = static_cast<std::uint32_t>(unit);
  std::vector<unsigned char> out(sizeof c);
  std::memcpy(out.data(), &c, sizeof c);
  return out;
}

namespace {

Result<std::string> read_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open " + path);
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read " + path);
    if (n == 0) break;
    out.append(buf.data(), static_cast<std::size_t>(n));
    if (out.size() > (1U << 20U)) break;
  }
  return out;
}

std::optional<std::uint64_t> read_limit(const std::string& path) {
  auto text = read_text(path);
  return text ? parse_limit(*text) : std::nullopt;
}

// The smallest limit in `file` from `dir` up to `top`.
std::optional<std::uint64_t> smallest_limit(const std::string& top, std::string dir, const char* file) {
  std::optional<std::uint64_t> best;
  for (;;) {
    if (auto v = read_limit(dir + "/" + file)) best = best ? std::min(*best, *v) : *v;
    if (dir.size() <= top.size()) break;
    const auto slash = dir.rfind('/');
    if (slash == std::string::npos || slash < top.size()) break;
    dir.resize(slash);
  }
  return best;
}

// The cgroup directory of `controller` (v1) or of the unified hierarchy (nullptr), if mounted.
std::optional<std::pair<std::string, std::string>> where(const CgroupMounts& mounts, const CgroupPaths& paths,
                                                         const char* controller) {
  if (controller == nullptr) {
    if (!mounts.v2 || !paths.v2) return std::nullopt;
    return std::pair{*mounts.v2, *mounts.v2 + (*paths.v2 == "/" ? "" : *paths.v2)};
  }
  auto m = mounts.v1.find(controller);
  auto p = paths.v1.find(controller);
  if (m == mounts.v1.end() || p == paths.v1.end()) return std::nullopt;
  return std::pair{m->second, m->second + (p->second == "/" ? "" : p->second)};
}

bool v2_has(const std::string& dir, std::string_view controller) {
  auto text = read_text(dir + "/cgroup.controllers");
  if (!text) return false;
  for (std::string_view c : split(*text, ' ')) {
    while (!c.empty() && c.back() == '\n') c.remove_suffix(1);
    if (c == controller) return true;
  }
  return false;
}

Usage read_usage(const CgroupPaths& paths) {
  Usage u;
  auto mountinfo = read_text("/proc/self/mountinfo");
  if (!mountinfo) return u;
  const CgroupMounts mounts = cgroup::parse_cgroup_mounts(*mountinfo);
  const auto v2 = where(mounts, paths, nullptr);
  // A leaf's cgroup.controllers lists what its parent enabled for it.
  if (v2 && v2_has(v2->second, "memory")) {
    u.mem_limit = smallest_limit(v2->first, v2->second, "memory.max");
    u.mem_usage = read_limit(v2->second + "/memory.current");
    if (auto stat = read_text(v2->second + "/memory.stat")) u.shmem = stat_value(*stat, "shmem");
    u.swap_limit = smallest_limit(v2->first, v2->second, "memory.swap.max");
    u.swap_usage = read_limit(v2->second + "/memory.swap.current");
  } else if (const auto v1 = where(mounts, paths, "memory")) {
    u.mem_limit = smallest_limit(v1->first, v1->second, "memory.limit_in_bytes");
    u.mem_usage = read_limit(v1->second + "/memory.usage_in_bytes");
    if (auto stat = read_text(v1->second + "/memory.stat")) u.shmem = stat_value(*stat, "total_shmem");
    const auto memsw = smallest_limit(v1->first, v1->second, "memory.memsw.limit_in_bytes");
    const auto memsw_usage = read_limit(v1->second + "/memory.memsw.usage_in_bytes");
    if (memsw && u.mem_limit && *memsw != kNoLimit && *memsw >= *u.mem_limit)
      u.swap_limit = *memsw - *u.mem_limit;
    if (memsw_usage && u.mem_usage && *memsw_usage >= *u.mem_usage)
      u.swap_usage = *memsw_usage - *u.mem_usage;
  }
  if (v2 && v2_has(v2->second, "pids")) {
    u.tasks = read_limit(v2->second + "/pids.current");
  } else if (const auto v1 = where(mounts, paths, "pids")) {
    u.tasks = read_limit(v1->second + "/pids.current");
  }
  return u;
}

class Sysinfo final : public Emulation {
 public:
  Sysinfo(UniqueFd mem, CgroupPaths paths, std::optional<std::uint64_t> start_ticks)
      : mem_(std::move(mem)), paths_(std::move(paths)), start_ticks_(start_ticks) {}

  Started start(const Context& ctx) override {
    const std::uint64_t at = ctx.call.args[0];
    if (at == 0 || at > static_cast<std::uint64_t>(std::numeric_limits<off_t>::max()))
      return Answer::error(EFAULT);
    struct ::sysinfo host {};
    if (::sysinfo(&host) != 0) return Answer::error(EPERM, std::string("sysinfo: ") + std::strerror(errno));
    Usage usage = read_usage(paths_);
    std::optional<std::uint64_t> start = start_ticks_;
    if (ctx.state.container_pid > 0) {
      // The container's init: its start is the container's.
      if (auto stat = read_text("/proc/" + std::to_string(ctx.state.container_pid) + "/stat")) {
        if (auto ticks = parse_start_ticks(*stat)) start = ticks;
      }
    }
    if (start) {
      const long hz = ::sysconf(_SC_CLK_TCK);
      if (hz > 0)
        usage.uptime = host.uptime - static_cast<std::int64_t>(*start / static_cast<std::uint64_t>(hz));
    }
    const auto bytes = encode(compute(host, usage), ctx.compat32);
    const ssize_t n = ::pwrite(mem_.get(), bytes.data(), bytes.size(), static_cast<off_t>(at));
    if (n != static_cast<ssize_t>(bytes.size())) return Answer::error(EFAULT);
    return Answer::ok();
  }

 private:
  UniqueFd mem_;
  CgroupPaths paths_;
  std::optional<std::uint64_t> start_ticks_;
};

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const task::TaskHandle& task) {
  UniqueFd mem(::openat(task.proc_dir(), "mem", O_RDWR | O_CLOEXEC));
  if (!mem) return sys_error("open /proc/" + std::to_string(task.tid()) + "/mem for writing");
  auto cgroup = task::read_file_at(task.proc_dir(), "cgroup");
  if (!cgroup) return std::unexpected(cgroup.error());
  // The container's start is its init's (start() reads it when the session knows the init);
  // the caller's own start is the fallback (`exec` mode).
  std::optional<std::uint64_t> start;
  if (auto stat = task::read_file_at(task.proc_dir(), "stat")) start = parse_start_ticks(*stat);
  return std::make_unique<Sysinfo>(std::move(mem), cgroup::parse_proc_cgroup(*cgroup), start);
}

}  // namespace sysvisor::emul::sysinfo
