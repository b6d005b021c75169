#include "control_cmd.hpp"

#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "sysvisor/config.hpp"
#include "sysvisor/control.hpp"

namespace sysvisor::cmd {
namespace {

namespace v1 = control::v1;

struct Options {
  bool json = false;
  std::string runtime_dir;
  std::string config_file;
  int timeout_seconds = 30;
};

[[noreturn]] void finish(int status) {
  std::fflush(stdout);
  throw CLI::RuntimeError(status);
}

// As `serve` finds it: --runtime-dir, else the configuration's runtime_dir, else /run/sysvisor.
std::filesystem::path runtime_dir(const Options& o) {
  if (!o.runtime_dir.empty()) return o.runtime_dir;
  std::filesystem::path file = o.config_file;
  if (file.empty()) {
    std::error_code ec;
    if (!std::filesystem::exists("/etc/sysvisor/sysvisor.yaml", ec)) return config::Config{}.runtime_dir;
    file = "/etc/sysvisor/sysvisor.yaml";
  }
  auto loaded = config::load_config(file);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.diagnostic().c_str());
    std::fprintf(stderr, "sysvisor: cannot read the runtime directory from `%s`: give --runtime-dir\n",
                 file.c_str());
    finish(1);
  }
  return loaded->runtime_dir;
}

// What a launcher or runtime named: shown, never interpreted by the terminal.
std::string printable(const std::string& text) {
  std::string out = text;
  for (char& c : out) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f) c = '?';
  }
  return out;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<std::size_t> width;
  for (const auto& row : rows) {
    width.resize(std::max(width.size(), row.size()));
    for (std::size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());
  }
  for (const auto& row : rows) {
    std::string line;
    for (std::size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

std::string policy_list(const v1::PolicySet& set) {
  std::string out;
  for (const auto& p : set.policies()) out += (out.empty() ? "" : ", ") + p.name() + " v" + p.version();
  return "generation " + std::to_string(set.generation()) + ": " + (out.empty() ? "no policies" : out);
}

std::string duration(double seconds) {
  auto s = static_cast<long long>(seconds);
  const long long d = s / 86400;
  const long long h = s / 3600 % 24;
  const long long m = s / 60 % 60;
  s %= 60;
  std::string out;
  if (d > 0) out += std::to_string(d) + "d ";
  if (d > 0 || h > 0) out += std::to_string(h) + "h ";
  if (d > 0 || h > 0 || m > 0) out += std::to_string(m) + "m ";
  return out + std::to_string(s) + "s";
}

// "FILE: 3 records lost, failing now (write audit log `FILE`: No space left on device); on failure: keep"
std::string audit_line(const v1::AuditStatus& a) {
  std::string out = a.sink().empty() ? std::string("-") : printable(a.sink());
  out += ": " + std::to_string(a.write_failures()) + " records lost";
  if (a.failing()) out += ", failing now (" + printable(a.last_error()) + ")";
  if (!a.failure_action().empty()) out += "; on failure: " + a.failure_action();
  return out;
}

void print_status(const v1::StatusReply& s) {
  char rate[32];
  std::snprintf(rate, sizeof rate, "%.1f", s.notifications_per_second());
  print_table({
      {"version", s.version()},
      {"pid", std::to_string(s.pid())},
      {"uptime", duration(s.uptime_seconds())},
      {"containers",
       std::to_string(s.containers()) + " (" + std::to_string(s.sessions()) + " supervised processes)"},
      {"notifications/s", std::string(rate) + " (last 10 s)"},
      {"notifications", std::to_string(s.notifications_total())},
      {"errors", std::to_string(s.errors_total())},
      {"policy set", policy_list(s.policy_set())},
      {"audit", audit_line(s.audit())},
  });
}

void print_containers(const v1::ContainersReply& reply) {
  if (reply.containers().empty()) {
    std::printf("no containers\n");
    return;
  }
  std::vector<std::vector<std::string>> rows{{"ID", "OWNER", "ENGINE", "PID", "POLICY", "EMULATED", "ALLOWED",
                                              "DENIED", "RETURNED", "KILLED", "ERRORS", "LAST ACTIVITY"}};
  for (const auto& c : reply.containers()) {
    rows.push_back({printable(c.id()), std::to_string(c.owner()), printable(c.engine()),
                    c.pid() == 0 ? "-" : std::to_string(c.pid()), c.policy() + " v" + c.policy_version(),
                    std::to_string(c.emulated()), std::to_string(c.allowed()), std::to_string(c.denied()),
                    std::to_string(c.returned()), std::to_string(c.killed()), std::to_string(c.errors()),
                    c.last_activity().empty() ? "-" : c.last_activity()});
  }
  print_table(rows);
}

// After the daemon said it re-executes: waits for the new binary to answer (status, with an
// uptime younger than the request) and says what serves now.
int upgraded(const Options& o, const std::filesystem::path& socket, const v1::UpgradeReply& reply) {
  if (!reply.ok()) {
    std::fprintf(stderr, "sysvisor: upgrade refused: %s\n", printable(reply.error()).c_str());
    return 1;
  }
  const auto asked = std::chrono::steady_clock::now();
  const auto give_up = asked + std::chrono::seconds(std::max(1, o.timeout_seconds));
  v1::Request status;
  status.mutable_status();
  while (std::chrono::steady_clock::now() < give_up) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
    auto r = control::request(socket, status, std::chrono::seconds(2));
    if (!r || !r->has_status()) continue;
    const double since = std::chrono::duration<double>(std::chrono::steady_clock::now() - asked).count();
    if (r->status().uptime_seconds() > since) continue;  // still the old binary
    if (!o.json) {
      std::printf(
          "upgraded: %s (pid %u) serves %u container(s) in %u supervised process(es), handed over %u\n",
          printable(reply.binary()).c_str(), r->status().pid(), r->status().containers(),
          r->status().sessions(), reply.sessions());
    }
    return 0;
  }
  std::fprintf(stderr,
               "sysvisor: the daemon began the upgrade to %s but did not answer within %d s; see its log\n",
               printable(reply.binary()).c_str(), o.timeout_seconds);
  return 1;
}

int command(const Options& o, const v1::Request& request) {
  const auto socket = runtime_dir(o) / "control.sock";
  auto response = control::request(socket, request, std::chrono::seconds(std::max(1, o.timeout_seconds)));
  if (!response) {
    std::fprintf(stderr, "sysvisor: %s\n", response.error().message.c_str());
    return 1;
  }
  if (o.json) std::printf("%s\n", control::to_json(*response).c_str());
  switch (response->response_case()) {
    case v1::Response::kError:
      std::fprintf(stderr, "sysvisor: the daemon at %s refused: %s\n", socket.c_str(),
                   printable(response->error().message()).c_str());
      return 1;
    case v1::Response::kStatus:
      if (!o.json) print_status(response->status());
      return request.has_status() ? 0 : 1;
    case v1::Response::kContainers:
      if (!o.json) print_containers(response->containers());
      return request.has_containers() ? 0 : 1;
    case v1::Response::kReload: {
      const auto& r = response->reload();
      if (!r.ok()) {
        for (const auto& e : r.errors()) std::fprintf(stderr, "%s\n", printable(e).c_str());
        std::fprintf(stderr, "sysvisor: reload failed with %d error(s); still in force: %s\n",
                     r.errors_size(), policy_list(r.policy_set()).c_str());
        return 1;
      }
      if (!o.json) std::printf("reloaded: %s\n", policy_list(r.policy_set()).c_str());
      return request.has_reload() ? 0 : 1;
    }
    case v1::Response::kUpgrade:
      return request.has_upgrade() ? upgraded(o, socket, response->upgrade()) : 1;
    case v1::Response::RESPONSE_NOT_SET:
      break;
  }
  return 1;
}

void add_common(CLI::App* cmd, Options& o) {
  cmd->add_flag("--json", o.json,
                "Print the daemon's answer as JSON (protobuf's JSON mapping of control.proto's Response, "
                "snake_case names; 64-bit counts are strings)");
  cmd->add_option(
      "--runtime-dir", o.runtime_dir,
      "The daemon's runtime directory, where control.sock is (default: as `serve`: runtime_dir of "
      "the configuration, /run/sysvisor)");
  cmd->add_option(
      "--config", o.config_file,
      "Configuration file to read runtime_dir from (default: /etc/sysvisor/sysvisor.yaml if it exists)");
  cmd->add_option("--timeout", o.timeout_seconds, "Seconds to wait for the answer")->capture_default_str();
}

template <class F>
void run(F&& body) {
  int status = 1;
  try {
    status = body();
  } catch (const CLI::RuntimeError&) {
    throw;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sysvisor: %s\n", e.what());
  }
  finish(status);
}

}  // namespace

void add_control_commands(CLI::App& app) {
  const std::string access =
      " Talks to RUNTIME_DIR/control.sock: root only, unless the configuration's control_group names a "
      "group. Exit 1 when the daemon cannot be reached or refuses.";
  auto status_options = std::make_shared<Options>();
  auto* status = app.add_subcommand(
      "status",
      "Show the running daemon: version, uptime, containers, notifications per second (last 10 s), "
      "errors and the policy set in force." +
          access);
  add_common(status, *status_options);
  status->callback([status_options] {
    run([&] {
      v1::Request r;
      r.mutable_status();
      return command(*status_options, r);
    });
  });

  auto containers_options = std::make_shared<Options>();
  auto* containers = app.add_subcommand(
      "containers",
      "List the supervised containers: id, engine, pid, policy and version, counts of emulated, allowed, "
      "denied, "
      "returned and killed calls, errors, last activity (UTC). The processes of one container (OCI run and "
      "exec) are summed." +
          access);
  add_common(containers, *containers_options);
  containers->callback([containers_options] {
    run([&] {
      v1::Request r;
      r.mutable_containers();
      return command(*containers_options, r);
    });
  });

  auto reload_options = std::make_shared<Options>();
  auto* reload = app.add_subcommand(
      "reload",
      "Re-read the configuration and the policies, as SIGHUP does: all or nothing. On errors they are "
      "printed (FILE:LINE:COL: message), the running set stays in force, and the exit status is 1." +
          access);
  add_common(reload, *reload_options);
  reload->callback([reload_options] {
    run([&] {
      v1::Request r;
      r.mutable_reload();
      return command(*reload_options, r);
    });
  });

  auto upgrade_options = std::make_shared<Options>();
  auto* upgrade = app.add_subcommand(
      "upgrade",
      "Replace the running daemon with its binary as it is on disk now (after a package upgrade), "
      "without breaking a running container: it stops taking calls (they wait in the kernel), finishes "
      "those it holds, and re-executes itself in place, handing every container's listener and state to "
      "the new binary, which answers the calls that waited. SIGUSR2 does the same. Waits until the new "
      "binary serves. Root only." +
          access);
  add_common(upgrade, *upgrade_options);
  upgrade->callback([upgrade_options] {
    run([&] {
      v1::Request r;
      r.mutable_upgrade();
      return command(*upgrade_options, r);
    });
  });
}

}  // namespace sysvisor::cmd
