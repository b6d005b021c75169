// The container's uid/gid map: container ids 0..size-1 = host ids host_id..host_id+size-1.
#pragma once

#include <signal.h>
#include <sys/types.h>

#include <string_view>

#include "options.hpp"
#include "sysvisor/error.hpp"

namespace sysvisor::agent {

// Parses "HOSTID:SIZE" (decimal, SIZE >= 1, the range within valid ids).
Result<IdMapRange> parse_id_map_range(std::string_view text);

// Writes the uid and gid maps of `pid`'s user namespace: directly into /proc/PID/{uid,gid}_map
// when running as root, else with newuidmap/newgidmap (which check /etc/subuid and /etc/subgid).
// Helpers run with `helper_sigmask`.
Result<void> write_id_maps(pid_t pid, const IdMapRange& range, const sigset_t& helper_sigmask);

}  // namespace sysvisor::agent
