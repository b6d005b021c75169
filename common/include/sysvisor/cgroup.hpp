// Where a task's cgroups are: pure parsers of /proc/PID/cgroup and of the cgroup mounts in
// /proc/self/mountinfo, for a host with cgroup v1, v2 or (as on these machines) both.
// The agent uses them to create a container's cgroup, the supervisor to read its limits.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace sysvisor::cgroup {

// /proc/PID/cgroup: the unified (v2) path and each v1 controller's path ("memory" -> "/a/b").
// A v1 line lists its controllers comma-separated ("cpu,cpuacct"); named hierarchies
// ("name=systemd") are kept by name.
struct Paths {
  std::optional<std::string> v2;
  std::map<std::string, std::string, std::less<>> v1;
};
[[nodiscard]] Paths parse_proc_cgroup(std::string_view text);

// The cgroup mounts of a mountinfo: where the v2 hierarchy is, and where each v1 controller is.
// Only mounts of a hierarchy's root count (not binds of a subtree).
struct Mounts {
  std::optional<std::string> v2;
  std::map<std::string, std::string, std::less<>> v1;
};
[[nodiscard]] Mounts parse_cgroup_mounts(std::string_view mountinfo);

// "256M", "256MiB", "1g", "4096": bytes (binary units K, M, G, T, with optional "i"/"iB"/"B").
[[nodiscard]] std::optional<std::uint64_t> parse_size(std::string_view text);

}  // namespace sysvisor::cgroup
