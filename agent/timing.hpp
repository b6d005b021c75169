// Benchmark hook (docs/bench.md): with SYSVISOR_AGENT_TIMING_FD=N in the environment, the agent
// writes "WHAT NS\n" lines to fd N, NS being CLOCK_MONOTONIC in ns: "hello" just before it
// connects to the supervisor, "exec" when the supervisor's Ready has come and the workload is
// released to exec (written by the unfiltered handoff thread). Best effort: a bad or absent fd
// changes nothing.
#pragma once

namespace sysvisor::agent {

void timing_mark(const char* what) noexcept;

// The hook's fd, or -1 without the hook. close_inherited_fds() keeps it (close-on-exec: the
// workload never gets it).
[[nodiscard]] int timing_fd() noexcept;

}  // namespace sysvisor::agent
