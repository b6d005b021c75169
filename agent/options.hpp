// What the command line asks for, once parsed and validated.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace sysvisor::agent {

inline constexpr const char* kDefaultRuntimeDir = "/run/sysvisor";

// Container ids 0 .. size-1 map to host ids host_id .. host_id+size-1 (same for uids and gids).
// No built-in default: --userns, or the entry /etc/subuid gives `sysvisor` or root (idmap.hpp).
struct IdMapRange {
  std::uint32_t host_id = 0;
  std::uint32_t size = 0;
};

struct CommonOptions {
  std::string runtime_dir = kDefaultRuntimeDir;
  std::string policy;
  std::string id;                    // container id; generated when empty on the command line
  bool learn = false;                // learn mode: every trapped call allowed and recorded
  unsigned preserve_fds = 0;         // --preserve-fds: fds 3..3+N-1 go to the workload
  std::vector<std::string> command;  // CMD ARGS...
};

struct RunOptions {
  CommonOptions common;
  std::string rootfs;  // absolute, resolved
  IdMapRange userns;
  std::vector<std::string> env;         // KEY=VALUE, added to the container's default environment
  std::optional<std::uint64_t> memory;  // --memory: bytes, in a cgroup of the container's own
  std::optional<std::uint64_t> pids;    // --pids
};

struct ExecOptions {
  CommonOptions common;
};

}  // namespace sysvisor::agent
