// `sysvisor-agent run --memory SIZE --pids N`: a cgroup of the container's own, under the
// agent's cgroup: v2 when the agent's v2 cgroup offers the controllers, else the v1 memory and
// pids hierarchies (hybrid hosts). Removed when the container has exited.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "sysvisor/error.hpp"

namespace sysvisor::agent {

struct CgroupLimits {
  std::optional<std::uint64_t> memory;  // bytes
  std::optional<std::uint64_t> pids;
  [[nodiscard]] bool any() const { return memory || pids; }
};

class ContainerCgroup {
 public:
  ContainerCgroup() = default;
  // Creates the cgroup(s) named `name` and sets the limits; nothing when no limit is asked for.
  [[nodiscard]] static Result<ContainerCgroup> create(const std::string& name, const CgroupLimits& limits);
  ~ContainerCgroup();
  ContainerCgroup(ContainerCgroup&& other) noexcept : dirs_(std::move(other.dirs_)) { other.dirs_.clear(); }
  ContainerCgroup& operator=(ContainerCgroup&&) = delete;
  ContainerCgroup(const ContainerCgroup&) = delete;
  ContainerCgroup& operator=(const ContainerCgroup&) = delete;

  // Moves `pid` (the container's init, before it runs anything) into the cgroup(s).
  [[nodiscard]] Result<void> add(pid_t pid) const;
  [[nodiscard]] const std::vector<std::string>& dirs() const { return dirs_; }

 private:
  std::vector<std::string> dirs_;
};

}  // namespace sysvisor::agent
