// The container's uid/gid map: container ids 0..size-1 = host ids host_id..host_id+size-1.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string>
#include <string_view>
#include <vector>

#include "options.hpp"
#include "sysvisor/error.hpp"

namespace sysvisor::agent {

// Parses "HOSTID:SIZE" (decimal, SIZE >= 1, the range within valid ids).
Result<IdMapRange> parse_id_map_range(std::string_view text);

// One line of /etc/subuid or /etc/subgid: OWNER:START:COUNT (OWNER a user name or a uid).
struct SubidEntry {
  std::string owner;
  std::uint32_t start = 0;
  std::uint32_t count = 0;
};
// Blank lines and comments are skipped, and so are malformed lines (shadow's own readers do).
[[nodiscard]] std::vector<SubidEntry> parse_subid(std::string_view text);

// Where the subordinate id files are; SYSVISOR_SUBUID_FILE / SYSVISOR_SUBGID_FILE override
// them (the tests; newuidmap itself reads only the real ones).
struct SubidFiles {
  std::string subuid = "/etc/subuid";
  std::string subgid = "/etc/subgid";
  [[nodiscard]] static SubidFiles from_environment();
};

// The default id range of `run` (issue 13, finding 13): the first /etc/subuid entry of the
// first of `owners` that has one (each owner: a name and its uid), with the same range in
// /etc/subgid, and overlapping no entry of another user in either file: an id range the
// system gave someone else must never hold a container's files. As root, the owners are
// `sysvisor` and `root`; as another user, that user (newuidmap allows no other range).
// Every refusal says which file, which entry, and the fix.
struct SubidOwner {
  std::string name;
  std::string uid;  // decimal
};
[[nodiscard]] Result<IdMapRange> default_id_range(const SubidFiles& files,
                                                  const std::vector<SubidOwner>& owners);
// The same from the text of the files (unit tests).
[[nodiscard]] Result<IdMapRange> choose_id_range(std::string_view subuid, std::string_view subgid,
                                                 const SubidFiles& files,
                                                 const std::vector<SubidOwner>& owners);
// The owners to look for when the caller is `euid`.
[[nodiscard]] std::vector<SubidOwner> default_owners(uid_t euid);

// Writes the uid and gid maps of `pid`'s user namespace: directly into /proc/PID/{uid,gid}_map
// when running as root, else with newuidmap/newgidmap (which check /etc/subuid and /etc/subgid).
// Helpers run with `helper_sigmask`.
Result<void> write_id_maps(pid_t pid, const IdMapRange& range, const sigset_t& helper_sigmask);

}  // namespace sysvisor::agent
