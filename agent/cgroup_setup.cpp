#include "cgroup_setup.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <chrono>
#include <thread>

#include "sysvisor/cgroup.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::agent {
namespace {

Result<std::string> read_text(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return sys_error("open `" + path + "`");
  std::string out;
  std::array<char, 4096> buf{};
  for (;;) {
    const ssize_t n = ::read(fd.get(), buf.data(), buf.size());
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return sys_error("read `" + path + "`");
    if (n == 0) return out;
    out.append(buf.data(), static_cast<std::size_t>(n));
  }
}

Result<void> write_text(const std::string& path, const std::string& text) {
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) return sys_error("open `" + path + "`");
  if (::write(fd.get(), text.data(), text.size()) != static_cast<ssize_t>(text.size())) {
    return sys_error("write `" + text + "` to `" + path + "`");
  }
  return {};
}

bool lists(const std::string& controllers, std::string_view name) {
  std::size_t at = 0;
  while (at < controllers.size()) {
    std::size_t end = controllers.find_first_of(" \n", at);
    if (end == std::string::npos) end = controllers.size();
    if (std::string_view(controllers).substr(at, end - at) == name) return true;
    at = end + 1;
  }
  return false;
}

std::string join(const std::string& mount, const std::string& path) {
  return path == "/" ? mount : mount + path;
}

// v2: the agent's own cgroup must offer the controllers to a child.
Result<std::string> create_v2(const cgroup::Mounts& mounts, const cgroup::Paths& paths,
                              const std::string& name, const CgroupLimits& limits) {
  if (!mounts.v2 || !paths.v2) return plain_error("no cgroup v2 hierarchy");
  const std::string parent = join(*mounts.v2, *paths.v2);
  auto offered = read_text(parent + "/cgroup.controllers");
  if (!offered) return std::unexpected(offered.error());
  if ((limits.memory && !lists(*offered, "memory")) || (limits.pids && !lists(*offered, "pids"))) {
    return plain_error("cgroup v2 at `" + parent + "` lacks the memory or pids controller");
  }
  std::string enable;
  if (limits.memory) enable += "+memory ";
  if (limits.pids) enable += "+pids";
  if (auto ok = write_text(parent + "/cgroup.subtree_control", enable); !ok)
    return std::unexpected(ok.error());
  const std::string dir = parent + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0) return sys_error("create `" + dir + "`");
  Result<void> ok{};
  if (limits.memory) ok = write_text(dir + "/memory.max", std::to_string(*limits.memory));
  if (ok && limits.memory) (void)write_text(dir + "/memory.swap.max", "0");
  if (ok && limits.pids) ok = write_text(dir + "/pids.max", std::to_string(*limits.pids));
  if (!ok) {
    ::rmdir(dir.c_str());
    return std::unexpected(ok.error());
  }
  return dir;
}

Result<std::string> create_v1(const cgroup::Mounts& mounts, const cgroup::Paths& paths,
                              const char* controller, const std::string& name) {
  const auto m = mounts.v1.find(controller);
  const auto p = paths.v1.find(controller);
  if (m == mounts.v1.end() || p == paths.v1.end()) {
    return plain_error(std::string("no cgroup v1 hierarchy with the ") + controller + " controller");
  }
  const std::string dir = join(m->second, p->second) + "/" + name;
  if (::mkdir(dir.c_str(), 0755) != 0) return sys_error("create `" + dir + "`");
  return dir;
}

}  // namespace

Result<ContainerCgroup> ContainerCgroup::create(const std::string& name, const CgroupLimits& limits) {
  ContainerCgroup cg;
  if (!limits.any()) return cg;
  auto self = read_text("/proc/self/cgroup");
  if (!self) return std::unexpected(self.error());
  auto mountinfo = read_text("/proc/self/mountinfo");
  if (!mountinfo) return std::unexpected(mountinfo.error());
  const cgroup::Paths paths = cgroup::parse_proc_cgroup(*self);
  const cgroup::Mounts mounts = cgroup::parse_cgroup_mounts(*mountinfo);
  if (auto v2 = create_v2(mounts, paths, name, limits)) {
    cg.dirs_.push_back(*v2);
    return cg;
  }
  if (limits.memory) {
    auto dir = create_v1(mounts, paths, "memory", name);
    if (!dir) return std::unexpected(dir.error());
    cg.dirs_.push_back(*dir);
    if (auto ok = write_text(*dir + "/memory.limit_in_bytes", std::to_string(*limits.memory)); !ok) {
      return std::unexpected(ok.error());
    }
    // No swap beyond the limit, where the kernel accounts swap at all.
    (void)write_text(*dir + "/memory.memsw.limit_in_bytes", std::to_string(*limits.memory));
  }
  if (limits.pids) {
    auto dir = create_v1(mounts, paths, "pids", name);
    if (!dir) return std::unexpected(dir.error());
    cg.dirs_.push_back(*dir);
    if (auto ok = write_text(*dir + "/pids.max", std::to_string(*limits.pids)); !ok) {
      return std::unexpected(ok.error());
    }
  }
  return cg;
}

Result<void> ContainerCgroup::add(pid_t pid) const {
  for (const auto& dir : dirs_) {
    if (auto ok = write_text(dir + "/cgroup.procs", std::to_string(pid)); !ok) return ok;
  }
  return {};
}

ContainerCgroup::~ContainerCgroup() {
  // The container's tasks may still be on their way out: retry for a moment.
  for (const auto& dir : dirs_) {
    for (int i = 0; i < 100 && ::rmdir(dir.c_str()) != 0 && errno == EBUSY; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
  }
}

}  // namespace sysvisor::agent
