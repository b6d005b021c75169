// sysvisor-agent: the command line. `run` starts a minimal rootless container, `exec` wraps a
// process in place; both get their seccomp filter from the supervisor and hand it the listener
// before the command starts.
#include <sys/stat.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <string>

#include "commands.hpp"
#include "exit_codes.hpp"
#include "failure.hpp"
#include "idmap.hpp"
#include "options.hpp"
#include "supervised_exec.hpp"
#include "sysvisor/cgroup.hpp"

#ifndef SYSVISOR_VERSION
#define SYSVISOR_VERSION "unknown"
#endif

namespace {

using namespace sysvisor::agent;

// Hostnames and log names: 1 to 64 characters of [A-Za-z0-9_.-], starting alphanumeric.
bool valid_container_id(const std::string& id) {
  if (id.empty() || id.size() > 64) {
    return false;
  }
  const auto alnum = [](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
  };
  if (!alnum(id.front())) {
    return false;
  }
  for (char c : id) {
    if (!alnum(c) && c != '_' && c != '.' && c != '-') {
      return false;
    }
  }
  return true;
}

void add_common_options(CLI::App& cmd, CommonOptions& common) {
  cmd.add_option("--runtime-dir", common.runtime_dir,
                 "Directory of the supervisor's agent.sock (default " + std::string(kDefaultRuntimeDir) + ")")
      ->type_name("DIR")
      ->envname("SYSVISOR_RUNTIME_DIR");
  cmd.add_option("--policy", common.policy, "Name of the supervisor policy to run the command under")
      ->type_name("NAME")
      ->required();
  cmd.add_option("--id", common.id,
                 "Container id, for the supervisor's logs and audit (and the hostname in `run`); "
                 "1-64 characters [A-Za-z0-9_.-]; default: sv- and 8 random hex digits. An id is its "
                 "user's while any of its processes is supervised: the supervisor refuses an id "
                 "another user's running container holds")
      ->type_name("ID");
  cmd.add_flag("--learn", common.learn,
               "Learn mode: every call the policy traps is allowed and recorded (action \"learn\"), for "
               "`sysvisor policy learn`");
  cmd.add_option("--preserve-fds", common.preserve_fds,
                 "Pass fds 3 .. 3+N-1 of the caller on to CMD; every other fd above 2 is closed when the "
                 "agent starts (none reaches the container's set-up or CMD)")
      ->type_name("N")
      ->check(CLI::Range(0U, 1U << 20U));
  cmd.add_option("CMD", common.command, "The command and its arguments, best after `--`")->required();
}

// Returns an error message, or empty when the options are usable.
std::string finish_common(CommonOptions& common) {
  if (common.id.empty()) {
    common.id = generate_container_id();
  } else if (!valid_container_id(common.id)) {
    return "--id `" + common.id +
           "`: expected 1 to 64 characters of [A-Za-z0-9_.-], starting with a letter or digit";
  }
  if (common.policy.empty()) {
    return "--policy must not be empty";
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sysvisor-agent: start a command under a seccomp filter whose notifications the sysvisor supervisor "
      "answers. The agent gets the filter from the supervisor, installs it and hands the supervisor the "
      "listener "
      "before the command starts; it never runs the command unsupervised.\n\n"
      "Exit status: the command's (128+N when killed by signal N); 125 when the agent or the supervisor "
      "failed "
      "(no supervisor, unknown policy, refusal) and the command never started; 126 when the command could "
      "not be "
      "executed; 127 when it was not found.",
      "sysvisor-agent"};
  app.set_version_flag("--version", "sysvisor-agent " SYSVISOR_VERSION);
  app.require_subcommand(1);

  RunOptions run_opts;
  std::string userns_text;
  CLI::App* run = app.add_subcommand(
      "run",
      "Run CMD in a minimal rootless container: new user, mount, pid, uts and ipc namespaces (no network "
      "namespace), ROOTFS as the root, a fresh /proc, an empty tmpfs on /dev, the id as hostname. CMD runs "
      "as "
      "the container's root (uid 0, gid 0, full capabilities in its user namespace) and as pid 1; it gets a "
      "fresh environment (PATH, HOME, HOSTNAME, TERM and --env). The agent forwards SIGTERM, SIGINT, SIGHUP, "
      "SIGQUIT, SIGUSR1 and SIGUSR2 to it (as pid 1 it only sees signals it handles) and exits with its "
      "status.");
  add_common_options(*run, run_opts.common);
  run->add_option("--rootfs", run_opts.rootfs,
                  "Root filesystem of the container, used as is (its files owned by the mapped ids); it must "
                  "hold CMD, and gets /proc and /dev mounted (created when missing)")
      ->type_name("DIR")
      ->required();
  run->add_option(
         "--userns", userns_text,
         "HOSTID:SIZE: map container uids and gids 0..SIZE-1 to host ids HOSTID..HOSTID+SIZE-1 "
         "(container root = host HOSTID). As root the agent writes the maps itself; otherwise it uses "
         "newuidmap/newgidmap, which /etc/subuid and /etc/subgid must allow. Default: the /etc/subuid "
         "entry of user `sysvisor`, else of root (as another user: that user's), when /etc/subgid has "
         "the same and no other user's entry overlaps it; none: an error")
      ->type_name("HOSTID:SIZE");
  run->add_option("-e,--env", run_opts.env,
                  "KEY=VALUE to set in the container's environment, or KEY to copy the caller's value "
                  "(repeatable)")
      ->type_name("KEY[=VALUE]")
      ->allow_extra_args(false);
  std::string memory_text;
  std::uint64_t pids_limit = 0;
  run->add_option("--memory", memory_text,
                  "Memory limit of the container (e.g. 256M, 1G), in a cgroup of its own (v2 where the "
                  "controllers are available, else v1); sysinfo and `free` inside show it when the policy "
                  "emulates sysinfo")
      ->type_name("SIZE");
  run->add_option("--pids", pids_limit, "Limit on the number of tasks of the container, in its cgroup")
      ->type_name("N")
      ->check(CLI::PositiveNumber);

  ExecOptions exec_opts;
  CLI::App* exec =
      app.add_subcommand("exec",
                         "Run CMD in place (no new namespaces), e.g. as the entrypoint inside a container of "
                         "another engine: the "
                         "agent installs the filter on itself (setting no_new_privs only when it lacks "
                         "CAP_SYS_ADMIN in its user "
                         "namespace) and execs CMD with PATH search, keeping its pid and environment.");
  add_common_options(*exec, exec_opts.common);

  for (CLI::App* cmd : {run, exec}) {
    cmd->positionals_at_end();
  }

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    if (e.get_exit_code() == 0) {
      return app.exit(e);  // --help, --version
    }
    print_error(std::string(e.what()) + " (see --help)");
    return kExitAgentFailure;
  }

  // First, before the agent opens anything: what the launcher left open is not the agent's.
  const unsigned preserve = run->parsed() ? run_opts.common.preserve_fds : exec_opts.common.preserve_fds;
  if (auto closed = close_inherited_fds(preserve); !closed) {
    print_error(closed.error().message());
    return kExitAgentFailure;
  }
  if (run->parsed()) {
    std::string problem = finish_common(run_opts.common);
    if (problem.empty()) {
      if (userns_text.empty()) {
        if (auto range = default_id_range(SubidFiles::from_environment(), default_owners(::geteuid()));
            range) {
          run_opts.userns = *range;
        } else {
          problem = range.error().message();
        }
      } else if (auto range = parse_id_map_range(userns_text); range) {
        run_opts.userns = *range;
      } else {
        problem = range.error().message();
      }
    }
    if (problem.empty() && !memory_text.empty()) {
      if (auto bytes = sysvisor::cgroup::parse_size(memory_text); bytes && *bytes > 0) {
        run_opts.memory = *bytes;
      } else {
        problem = "--memory `" + memory_text + "`: expected a size such as 256M or 1G";
      }
    }
    if (pids_limit > 0) run_opts.pids = pids_limit;
    if (problem.empty()) {
      // Absolute and without symlinks: the supervisor gets it as a label, the init binds it.
      char* resolved = ::realpath(run_opts.rootfs.c_str(), nullptr);
      if (resolved == nullptr) {
        problem = "--rootfs `" + run_opts.rootfs + "`: " + std::strerror(errno);
      } else {
        run_opts.rootfs = resolved;
        std::free(resolved);
        struct stat st {};
        if (::stat(run_opts.rootfs.c_str(), &st) != 0 || !S_ISDIR(st.st_mode)) {
          problem = "--rootfs `" + run_opts.rootfs + "`: not a directory";
        }
      }
    }
    if (!problem.empty()) {
      print_error(problem);
      return kExitAgentFailure;
    }
    return run_command(run_opts);
  }
  if (std::string problem = finish_common(exec_opts.common); !problem.empty()) {
    print_error(problem);
    return kExitAgentFailure;
  }
  return exec_command(exec_opts);
}
