// `sysvisor policy check|explain|test|oci-profile`: the policy author's commands.
#pragma once

#include <CLI/CLI.hpp>

namespace sysvisor::cmd {

// Adds the `policy` subcommand and its own subcommands to `app`. Each runs while `app` parses
// and ends the parse with CLI::RuntimeError(exit status): 0 ok, 1 errors or failed cases.
void add_policy_commands(CLI::App& app);

// The exit status for a parse that threw `e`: what app.exit() prints and returns, except that
// usage errors (unknown options, missing arguments) are 2, as for most Unix tools.
[[nodiscard]] int exit_status(const CLI::App& app, const CLI::ParseError& e);

}  // namespace sysvisor::cmd
