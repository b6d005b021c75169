// Exit codes of the agent itself, as `docker run` uses them; anything else is the workload's.
#pragma once

namespace sysvisor::agent {

inline constexpr int kExitAgentFailure = 125;   // the agent or the supervisor failed: CMD never started
inline constexpr int kExitNotExecutable = 126;  // CMD was found but could not be executed
inline constexpr int kExitNotFound = 127;       // CMD was not found
inline constexpr int kExitSignalBase = 128;     // the workload was killed by signal N: 128 + N

}  // namespace sysvisor::agent
