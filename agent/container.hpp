// `sysvisor-agent run`: a minimal rootless container around a supervised workload.
#pragma once

#include <string>
#include <vector>

#include "client.hpp"
#include "options.hpp"
#include "sysvisor/error.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::agent {

// Starts the container init in new user, mount, pid, uts and ipc namespaces, maps its ids, lets
// it set up its root and hostname, hand its listener over `sock` and exec the command; then
// forwards signals to it and waits. Returns the agent's exit code: the workload's status
// (128+N when killed by signal N), or the code of a failure the init reported (already printed).
// Errors before the init exists are returned.
Result<int> run_container(const RunOptions& opts, UniqueFd sock, const Filter& filter);

// The workload's environment: PATH, HOME, HOSTNAME, TERM (when the caller has one), then `extra`
// (KEY=VALUE, or KEY to copy the caller's value), later entries replacing earlier ones.
std::vector<std::string> container_environment(const std::string& hostname,
                                               const std::vector<std::string>& extra);

}  // namespace sysvisor::agent
