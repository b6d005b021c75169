// The two verbs of sysvisor-agent; each returns the process exit code (exec does not return on
// success: the agent becomes the workload).
#pragma once

#include <string>

#include "options.hpp"

namespace sysvisor::agent {

int run_command(const RunOptions& opts);
int exec_command(const ExecOptions& opts);

// "sv-" and 8 hex digits from getrandom().
std::string generate_container_id();

}  // namespace sysvisor::agent
