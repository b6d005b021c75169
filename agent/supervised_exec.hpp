// The last step of both modes: put the calling process under the supervisor's filter and exec
// the workload, without ever running it unsupervised and without deadlocking on the filter.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "client.hpp"
#include "failure.hpp"

namespace sysvisor::agent {

// Installs `filter` on the calling thread with a new listener, hands the listener to the
// supervisor over `sock` (Handoff.pid = `pid`), and once the supervisor is ready execs `command`
// (execvp: PATH search in the current environment). Never returns: every failure goes to
// `failure` with kExitAgentFailure, or kExitNotFound / kExitNotExecutable when the exec fails.
//
// Once the filter is installed, every syscall of the calling thread may be trapped, and nobody
// answers before the supervisor holds the listener. So the handoff is done by a helper thread
// created beforehand (a filter without TSYNC applies to the calling thread only), while the
// calling thread spins without a syscall until the helper reports ready. On any failure the
// helper reports it and ends the process itself.
//
// Sets PR_SET_NO_NEW_PRIVS first when the process lacks CAP_SYS_ADMIN in its user namespace.
// The workload gets fds 0, 1, 2 and the `preserve_fds` after them (3 .. 3+preserve_fds-1), no
// other: every fd above is marked close-on-exec (close_range), the agent's own (the supervisor
// connection, the listener) and whatever the launcher left open.
[[noreturn]] void supervised_exec(int sock, const Filter& filter, std::uint32_t pid,
                                  const std::vector<std::string>& command, unsigned preserve_fds,
                                  const FailureChannel& failure) noexcept;

// Closes every fd from 3 + preserve_fds up: what the launcher left open is not the agent's, and
// must reach neither the container's set-up nor the workload. Called first thing in main().
[[nodiscard]] Result<void> close_inherited_fds(unsigned preserve_fds) noexcept;

}  // namespace sysvisor::agent
