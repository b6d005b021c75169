// `sysvisor status|containers|reload`: ask the running daemon over RUNTIME_DIR/control.sock.
#pragma once

#include <CLI/CLI.hpp>

namespace sysvisor::cmd {

// Adds the three control commands to `app`. Each runs while `app` parses and ends the parse
// with CLI::RuntimeError(exit status): 0 ok, 1 when the daemon cannot be reached, refuses, or
// (reload) keeps the old set because of errors.
void add_control_commands(CLI::App& app);

}  // namespace sysvisor::cmd
