#include "idmap.hpp"

#include <fcntl.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <limits>
#include <string>
#include <vector>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::agent {
namespace {

bool parse_u32(std::string_view text, std::uint32_t& out) {
  if (text.empty()) {
    return false;
  }
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), out);
  return ec == std::errc() && end == text.data() + text.size();
}

Result<void> write_map_file(pid_t pid, const char* file, const std::string& line) {
  const std::string path = "/proc/" + std::to_string(pid) + "/" + file;
  const std::string shown = line.substr(0, line.size() - 1);
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CLOEXEC));
  if (!fd) {
    return sys_error("open `" + path + "`");
  }
  // The kernel takes a map in a single write.
  const ssize_t n = ::write(fd.get(), line.data(), line.size());
  if (n < 0) {
    return sys_error("write `" + shown + "` to `" + path + "`");
  }
  if (static_cast<std::size_t>(n) != line.size()) {
    return plain_error("short write of `" + shown + "` to `" + path + "`");
  }
  return {};
}

Result<void> run_map_helper(const char* helper, pid_t pid, const IdMapRange& range, const sigset_t& sigmask) {
  std::vector<std::string> args{helper, std::to_string(pid), "0", std::to_string(range.host_id),
                                std::to_string(range.size)};
  std::string shown;
  std::vector<char*> argv;
  for (std::string& arg : args) {
    shown += (shown.empty() ? "" : " ") + arg;
    argv.push_back(arg.data());
  }
  argv.push_back(nullptr);
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  posix_spawnattr_setsigmask(&attr, &sigmask);
  posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGMASK);
  pid_t child = -1;
  const int err = ::posix_spawnp(&child, helper, nullptr, &attr, argv.data(), environ);
  posix_spawnattr_destroy(&attr);
  if (err != 0) {
    return sys_error(err, "run `" + shown + "` (is the uidmap package installed?)");
  }
  int status = 0;
  while (::waitpid(child, &status, 0) < 0) {
    if (errno != EINTR) {
      return sys_error("wait for `" + shown + "`");
    }
  }
  if (WIFEXITED(status) && WEXITSTATUS(status) == 0) {
    return {};
  }
  const std::string how = WIFEXITED(status) ? "exited with status " + std::to_string(WEXITSTATUS(status))
                                            : "was killed by signal " + std::to_string(WTERMSIG(status));
  return plain_error("`" + shown + "` " + how + " (does /etc/subuid or /etc/subgid grant that range?)");
}

}  // namespace

Result<IdMapRange> parse_id_map_range(std::string_view text) {
  const std::size_t colon = text.find(':');
  IdMapRange range;
  if (colon == std::string_view::npos || !parse_u32(text.substr(0, colon), range.host_id) ||
      !parse_u32(text.substr(colon + 1), range.size)) {
    return plain_error("--userns `" + std::string(text) + "`: expected HOSTID:SIZE, two decimal numbers");
  }
  if (range.size == 0) {
    return plain_error("--userns `" + std::string(text) + "`: SIZE must be at least 1");
  }
  // (uid_t)-1 is not a valid id.
  constexpr std::uint64_t kIdLimit = std::numeric_limits<std::uint32_t>::max();
  if (std::uint64_t{range.host_id} + range.size > kIdLimit) {
    return plain_error("--userns `" + std::string(text) + "`: the range goes past the largest host id");
  }
  return range;
}

Result<void> write_id_maps(pid_t pid, const IdMapRange& range, const sigset_t& helper_sigmask) {
  if (::geteuid() != 0) {
    if (auto done = run_map_helper("newuidmap", pid, range, helper_sigmask); !done) {
      return done;
    }
    return run_map_helper("newgidmap", pid, range, helper_sigmask);
  }
  // Root holds CAP_SETUID/CAP_SETGID over the new namespace: no setgroups "deny" needed.
  const std::string line = "0 " + std::to_string(range.host_id) + " " + std::to_string(range.size) + "\n";
  if (auto done = write_map_file(pid, "uid_map", line); !done) {
    return done;
  }
  return write_map_file(pid, "gid_map", line);
}

}  // namespace sysvisor::agent
