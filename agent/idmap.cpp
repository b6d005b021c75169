#include "idmap.hpp"

#include <fcntl.h>
#include <pwd.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <charconv>
#include <cstdint>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <optional>
#include <sstream>
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

bool owned_by(const SubidEntry& e, const SubidOwner& o) {
  return e.owner == o.name || (!o.uid.empty() && e.owner == o.uid);
}

std::string shown(const SubidEntry& e) {
  return e.owner + ":" + std::to_string(e.start) + ":" + std::to_string(e.count);
}

bool overlap(const SubidEntry& a, std::uint64_t start, std::uint64_t count) {
  return std::uint64_t{a.start} < start + count && start < std::uint64_t{a.start} + a.count;
}

std::string the_fix(const SubidFiles& files) {
  return "give root (or a user `sysvisor`) a range of its own that no other entry of " + files.subuid +
         " and " + files.subgid +
         " overlaps, e.g. `usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root` "
         "(scripts/install-deps does it when that range is free), or pass --userns HOSTID:SIZE";
}

Result<std::string> read_optional(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    if (errno == ENOENT) return std::string();
    return sys_error("read `" + path + "`");
  }
  std::ostringstream text;
  text << in.rdbuf();
  return text.str();
}

}  // namespace

std::vector<SubidEntry> parse_subid(std::string_view text) {
  std::vector<SubidEntry> out;
  while (!text.empty()) {
    const std::size_t nl = text.find('\n');
    std::string_view line = text.substr(0, nl);
    text = nl == std::string_view::npos ? std::string_view() : text.substr(nl + 1);
    while (!line.empty() && (line.back() == ' ' || line.back() == '\t' || line.back() == '\r')) {
      line.remove_suffix(1);
    }
    if (line.empty() || line.front() == '#') continue;
    const std::size_t c1 = line.find(':');
    const std::size_t c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c1 == 0 || c2 == std::string_view::npos) continue;
    SubidEntry e;
    e.owner = std::string(line.substr(0, c1));
    if (!parse_u32(line.substr(c1 + 1, c2 - c1 - 1), e.start) || !parse_u32(line.substr(c2 + 1), e.count) ||
        e.count == 0) {
      continue;
    }
    out.push_back(std::move(e));
  }
  return out;
}

SubidFiles SubidFiles::from_environment() {
  SubidFiles files;
  if (const char* p = std::getenv("SYSVISOR_SUBUID_FILE"); p != nullptr && *p != '\0') files.subuid = p;
  if (const char* p = std::getenv("SYSVISOR_SUBGID_FILE"); p != nullptr && *p != '\0') files.subgid = p;
  return files;
}

std::vector<SubidOwner> default_owners(uid_t euid) {
  std::vector<SubidOwner> owners;
  const auto add = [&owners](const std::string& name, std::optional<uid_t> uid) {
    owners.push_back({name, uid ? std::to_string(*uid) : std::string()});
  };
  if (euid == 0) {
    const passwd* pw = ::getpwnam("sysvisor");
    add("sysvisor", pw != nullptr ? std::optional<uid_t>(pw->pw_uid) : std::nullopt);
    add("root", 0);
  } else {
    const passwd* pw = ::getpwuid(euid);
    add(pw != nullptr ? pw->pw_name : std::to_string(euid), euid);
  }
  return owners;
}

Result<IdMapRange> choose_id_range(std::string_view subuid_text, std::string_view subgid_text,
                                   const SubidFiles& files, const std::vector<SubidOwner>& owners) {
  const std::vector<SubidEntry> subuid = parse_subid(subuid_text);
  const std::vector<SubidEntry> subgid = parse_subid(subgid_text);
  const SubidOwner* owner = nullptr;
  const SubidEntry* chosen = nullptr;
  for (const SubidOwner& o : owners) {
    for (const SubidEntry& e : subuid) {
      if (owned_by(e, o)) {
        owner = &o;
        chosen = &e;
        break;
      }
    }
    if (chosen != nullptr) break;
  }
  std::string names;
  for (const SubidOwner& o : owners) names += (names.empty() ? "`" : " or `") + o.name + "`";
  if (chosen == nullptr) {
    return plain_error("no default id range for the container: " + files.subuid + " has no entry for " +
                       names + "; " + the_fix(files));
  }
  const std::uint64_t start = chosen->start;
  const std::uint64_t count = chosen->count;
  if (start + count > std::numeric_limits<std::uint32_t>::max()) {
    return plain_error("the entry `" + shown(*chosen) + "` of " + files.subuid + " goes past the largest id");
  }
  bool in_subgid = false;
  for (const SubidEntry& e : subgid) {
    if (owned_by(e, *owner) && e.start <= start && start + count <= std::uint64_t{e.start} + e.count) {
      in_subgid = true;
    }
  }
  if (!in_subgid) {
    return plain_error("the entry `" + shown(*chosen) + "` of " + files.subuid + " has no match in " +
                       files.subgid + " (the container maps uids and gids to the same host range); " +
                       the_fix(files));
  }
  for (const auto& [file, entries] : {std::pair{&files.subuid, &subuid}, std::pair{&files.subgid, &subgid}}) {
    for (const SubidEntry& e : *entries) {
      if (!owned_by(e, *owner) && overlap(e, start, count)) {
        return plain_error("the id range " + std::to_string(start) + ":" + std::to_string(count) + " of `" +
                           owner->name + "` overlaps the entry `" + shown(e) + "` of " + *file +
                           ": that user could write into the container's files; " + the_fix(files));
      }
    }
  }
  return IdMapRange{static_cast<std::uint32_t>(start), static_cast<std::uint32_t>(count)};
}

Result<IdMapRange> default_id_range(const SubidFiles& files, const std::vector<SubidOwner>& owners) {
  auto subuid = read_optional(files.subuid);
  if (!subuid) return std::unexpected(subuid.error());
  auto subgid = read_optional(files.subgid);
  if (!subgid) return std::unexpected(subgid.error());
  return choose_id_range(*subuid, *subgid, files, owners);
}

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
