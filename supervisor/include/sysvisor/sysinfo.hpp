// sysinfo(2) as a container should see it: its cgroup's memory limit and usage, its task count,
// its own uptime. The parsers and the computation are pure (unit-tested); emulators.cpp-style
// glue in supervisor/src/sysinfo.cpp reads the files and writes the caller's memory.
#pragma once

#include <sys/sysinfo.h>

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/cgroup.hpp"

namespace sysvisor::emul::sysinfo {

using CgroupPaths = cgroup::Paths;
using CgroupMounts = cgroup::Mounts;

// A limit file: a number, or "max" (v2) -> nullopt-free UINT64_MAX. nullopt: not a limit.
[[nodiscard]] std::optional<std::uint64_t> parse_limit(std::string_view text);
// One "key value" line of memory.stat.
[[nodiscard]] std::optional<std::uint64_t> stat_value(std::string_view memory_stat, std::string_view key);

// What the container's cgroups say, in bytes (UINT64_MAX or absent: no limit / unknown).
struct Usage {
  std::optional<std::uint64_t> mem_limit;  // the smallest along the cgroup's ancestors
  std::optional<std::uint64_t> mem_usage;
  std::optional<std::uint64_t> shmem;
  std::optional<std::uint64_t> swap_limit;  // swap alone (v1: memsw minus memory)
  std::optional<std::uint64_t> swap_usage;
  std::optional<std::uint64_t> tasks;
  std::optional<std::int64_t> uptime;  // seconds since the container started
};

// The host's sysinfo narrowed to the container: totals never above the host's, frees never
// negative; bufferram 0 (no per-cgroup figure); mem_unit 1. Loads stay the host's.
[[nodiscard]] struct ::sysinfo compute(const struct ::sysinfo& host, const Usage& usage);

// The bytes of the structure as the caller's ABI lays it out: the native one (x86_64, x32),
// or the i386 compat_sysinfo, with values scaled into 32 bits by mem_unit as the kernel does.
[[nodiscard]] std::vector<unsigned char> encode(const struct ::sysinfo& info, bool compat32);

// Field 22 (starttime, clock ticks since boot) of /proc/PID/stat.
[[nodiscard]] std::optional<std::uint64_t> parse_start_ticks(std::string_view stat);

}  // namespace sysvisor::emul::sysinfo
