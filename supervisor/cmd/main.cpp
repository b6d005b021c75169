// sysvisor: the supervisor daemon and its tools. Only wiring: the work is in libsysvisor.
#include <fcntl.h>
#include <sched.h>
#include <spdlog/pattern_formatter.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>
#include <sys/mount.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <systemd/sd-daemon.h>
#include <unistd.h>

#include <CLI/CLI.hpp>
#include <boost/asio/io_context.hpp>
#include <cstddef>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <memory>
#include <stdexcept>
#include <string_view>

#include "control_cmd.hpp"
#include "policy_cmd.hpp"
#include "sysvisor/audit.hpp"
#include "sysvisor/handover.hpp"
#include "sysvisor/log_escape.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/server.hpp"
#include "sysvisor/session.hpp"
#include "sysvisor/trusted_files.hpp"

namespace {

#ifndef SYSVISOR_VERSION
#define SYSVISOR_VERSION "unknown"
#endif
constexpr const char* kVersion = SYSVISOR_VERSION;

// systemd's documented check (systemd.exec(5), $JOURNAL_STREAM): stderr is the journal when
// its device and inode are the ones the variable names.
bool stderr_is_journal() {
  const char* stream = std::getenv("JOURNAL_STREAM");
  if (stream == nullptr) return false;
  unsigned long long dev = 0;
  unsigned long long ino = 0;
  if (std::sscanf(stream, "%llu:%llu", &dev, &ino) != 2) return false;
  struct stat st {};
  if (::fstat(STDERR_FILENO, &st) != 0) return false;
  return st.st_dev == dev && st.st_ino == ino;
}

// `<N>` at the start of a line: the syslog priority journald reads from a stream, spelt by
// libsystemd's SD_* prefixes (sd-daemon(3)). Not spdlog's systemd_sink: that one writes to the
// journal's socket itself, which a daemon whose stderr already is the journal does not need.
class SyslogPriority final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string_view prefix = [&] {
      switch (msg.level) {
        case spdlog::level::trace:
        case spdlog::level::debug:
          return SD_DEBUG;
        case spdlog::level::warn:
          return SD_WARNING;
        case spdlog::level::err:
          return SD_ERR;
        case spdlog::level::critical:
          return SD_CRIT;
        default:
          return SD_INFO;
      }
    }();
    dest.append(prefix.data(), prefix.data() + prefix.size());
  }
  [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<SyslogPriority>();
  }
};

// The message, escaped (log_escape.hpp): the one place where a string from a peer or a
// container is kept from forging a line or a terminal sequence, whoever logged it.
class EscapedMessage final : public spdlog::custom_flag_formatter {
 public:
  void format(const spdlog::details::log_msg& msg, const std::tm&, spdlog::memory_buf_t& dest) override {
    const std::string escaped =
        sysvisor::escape_for_log(std::string_view(msg.payload.data(), msg.payload.size()));
    dest.append(escaped.data(), escaped.data() + escaped.size());
  }
  [[nodiscard]] std::unique_ptr<custom_flag_formatter> clone() const override {
    return std::make_unique<EscapedMessage>();
  }
};

void setup_logging(const std::string& level) {
  auto logger = spdlog::stderr_logger_mt("sysvisor");
  auto formatter = std::make_unique<spdlog::pattern_formatter>();
  formatter->add_flag<EscapedMessage>('~');
  if (stderr_is_journal()) {
    // The journal stamps and labels each line itself.
    formatter->add_flag<SyslogPriority>('*').set_pattern("%*%~");
  } else {
    formatter->set_pattern("%Y-%m-%dT%H:%M:%S.%e sysvisor %l: %~");
  }
  logger->set_formatter(std::move(formatter));
  spdlog::set_default_logger(logger);
  spdlog::set_level(spdlog::level::from_str(level));
}

// The file name a unix socket is bound to ("agent.sock"), empty if none.
std::string bound_name(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0 || addr.sun_family != AF_UNIX ||
      len <= offsetof(sockaddr_un, sun_path) || addr.sun_path[0] == '\0') {
    return {};
  }
  const std::string path(addr.sun_path, strnlen(addr.sun_path, sizeof addr.sun_path));
  return std::filesystem::path(path).filename().string();
}

// Socket activation (deploy/systemd): the listening sockets systemd passed. Each is known by
// its FileDescriptorName= (agent, oci, control), or else by the file it is bound to
// (agent.sock, ...): one socket unit has one name for all of its sockets.
void take_activated_sockets(sysvisor::ServerConfig& server) {
  char** names = nullptr;
  const int n = sd_listen_fds_with_names(1, &names);
  if (n < 0) throw std::runtime_error(std::string("socket activation: ") + std::strerror(-n));
  std::string error;
  // A previous daemon's fds (systemd's file descriptor store: names sysvisor.*) and those an
  // upgrade in place handed over (SYSVISOR_HANDOVER: the same, and the activated sockets).
  server.inherited = std::make_shared<sysvisor::handover::Inherited>();
  std::vector<std::pair<std::string, int>> given_fds;
  for (int i = 0; i < n; ++i) {
    given_fds.emplace_back(names != nullptr && names[i] != nullptr ? names[i] : "", SD_LISTEN_FDS_START + i);
  }
  const std::size_t from_systemd = given_fds.size();
  for (auto& entry : sysvisor::handover::handed_over()) given_fds.push_back(std::move(entry));
  for (std::size_t i = 0; i < given_fds.size(); ++i) {
    const auto& [given, fd] = given_fds[i];
    if (sysvisor::handover::take(*server.inherited, given, fd)) continue;
    std::string name = given;
    const bool own = i >= from_systemd && name.starts_with(sysvisor::kOwnSocketPrefix);
    if (own) name.erase(0, sysvisor::kOwnSocketPrefix.size());
    if (name != "agent" && name != "oci" && name != "control") {
      const std::string file = bound_name(fd);
      name = file == "agent.sock" || file == "oci.sock" || file == "control.sock"
                 ? file.substr(0, file.size() - 5)
                 : std::string();
      if (name.empty()) {
        error = "socket activation: fd " + std::to_string(fd) + " is named `" + given + "` and bound to `" +
                file +
                "`; expected FileDescriptorName=agent, oci or control, or a socket at agent.sock, oci.sock "
                "or control.sock";
      }
    }
    if (!name.empty() && server.listen_fds.contains(name)) {
      error = "socket activation: two sockets for `" + name + "`";
      name.clear();
    }
    if (name.empty()) {
      ::close(fd);
    } else {
      server.listen_fds.emplace(name, fd);
      if (own) server.own_sockets.insert(name);
    }
  }
  if (names != nullptr) {
    for (int i = 0; i < n; ++i) std::free(names[i]);
    std::free(names);
  }
  if (server.inherited->empty() && server.inherited->problems.empty()) server.inherited.reset();
  if (!error.empty()) {
    for (const auto& [name, fd] : server.listen_fds) ::close(fd);
    throw std::runtime_error(error);
  }
}

// The daemon runs in a mount namespace of its own: the tmpfs holding the device nodes that
// are bind-mounted into containers is invisible to the host and goes away with the daemon, or
// with the last daemon of a chain of restarts and upgrades, which all enter the first one's
// (its fd travels with the containers').
sysvisor::UniqueFd enter_private_mount_namespace(sysvisor::UniqueFd inherited) {
  if (inherited) {
    if (::setns(inherited.get(), CLONE_NEWNS) == 0) return inherited;
    spdlog::error("enter the previous daemon's mount namespace: {}; its device store is lost to this daemon",
                  std::strerror(errno));
  }
  if (::unshare(CLONE_NEWNS) != 0) {
    throw std::runtime_error(std::string("unshare a private mount namespace: ") + std::strerror(errno));
  }
  if (::mount("none", "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) {
    throw std::runtime_error(std::string("make mounts private: ") + std::strerror(errno));
  }
  sysvisor::UniqueFd own(::open("/proc/self/ns/mnt", O_RDONLY | O_CLOEXEC));
  if (!own)
    spdlog::warn("open our mount namespace: {}: a restart loses the device store", std::strerror(errno));
  return own;
}

// Each container holds a few fds here (its listener, the receiver's eventfd, its init's
// pidfd): the soft limit of 1024 would stop the daemon near 300 containers.
void raise_fd_limit() {
  rlimit lim{};
  if (::getrlimit(RLIMIT_NOFILE, &lim) == 0 && lim.rlim_cur < lim.rlim_max) {
    lim.rlim_cur = lim.rlim_max;
    if (::setrlimit(RLIMIT_NOFILE, &lim) != 0) spdlog::warn("raise RLIMIT_NOFILE: {}", std::strerror(errno));
  }
}

int serve(sysvisor::ServerConfig server) {
  // Step 1: configuration and policies. Every error, then refuse to start.
  auto loaded = sysvisor::load_all(server);
  if (!loaded) {
    for (const auto& e : loaded.error()) std::fprintf(stderr, "%s\n", e.c_str());
    std::fprintf(stderr, "sysvisor: not starting: %zu error(s) in the configuration or the policies\n",
                 loaded.error().size());
    return 1;
  }
  auto& [config, policies] = *loaded;
  server.config = config;
  sysvisor::apply_audit_failure(config);
  if (::geteuid() != 0) {
    std::fprintf(stderr,
                 "sysvisor: serve must run as root (it creates device nodes and mounts for containers)\n");
    return 1;
  }
  // Step 2: our own mount namespace, runtime dir, device store, audit sink.
  raise_fd_limit();
  const bool taken_over = server.inherited && server.inherited->mntns;
  const sysvisor::UniqueFd mount_ns = enter_private_mount_namespace(
      server.inherited ? std::move(server.inherited->mntns) : sysvisor::UniqueFd{});
  server.mount_ns_fd = mount_ns.get();
  auto runtime_dir = sysvisor::trusted::make_runtime_dir(config.runtime_dir);
  if (!runtime_dir) {
    std::fprintf(stderr, "sysvisor: not starting: %s\n", runtime_dir.error().c_str());
    return 1;
  }
  auto devices = sysvisor::Result<sysvisor::mknod::DeviceStore>(std::unexpected(sysvisor::SysError{}));
  if (taken_over) {
    devices = sysvisor::mknod::DeviceStore::reopen(runtime_dir->get(), "devices");
    if (!devices) spdlog::error("take over: {}; a new device store is made", devices.error().message());
  }
  if (!devices) devices = sysvisor::mknod::DeviceStore::create(runtime_dir->get(), "devices");
  if (!devices) throw std::runtime_error(devices.error().message());
  auto audit = sysvisor::audit::Sink::open(config.audit);
  if (!audit) throw std::runtime_error(audit.error().message());
  // Step 3: serve until SIGTERM/SIGINT; SIGHUP reloads. `io` dies before `devices` and `audit`.
  bool handed_over = false;
  {
    boost::asio::io_context io;
    sysvisor::Server daemon(io, server, std::move(policies), *devices, *audit);
    // Its handlers exist now: signals a previous binary blocked across the upgrade's execve
    // (and any that came meanwhile, pending) are delivered.
    const sigset_t handled = sysvisor::handover::daemon_signals();
    ::pthread_sigmask(SIG_UNBLOCK, &handled, nullptr);
    daemon.start();
    (void)sd_notify(0, "READY=1");
    io.run();
    (void)sd_notify(0, "STOPPING=1");
    handed_over = daemon.handed_over();
  }
  // Handed over: the next daemon enters this mount namespace and takes the store as it is.
  if (!handed_over) ::umount2((config.runtime_dir / "devices").c_str(), MNT_DETACH | UMOUNT_NOFOLLOW);
  spdlog::info("stopped");
  return 0;
}

}  // namespace

int main(int argc, char** argv) {
  CLI::App app{
      "sysvisor: a seccomp user-notification supervisor for containers.\n"
      "Answers the calls a container's filter traps according to declarative policies:\n"
      "emulate them on its behalf, let the kernel decide, fail them, or kill the caller."};
  app.set_version_flag("--version", std::string("sysvisor ") + kVersion);
  app.require_subcommand(1);
  std::string log_level = "info";
  app.add_option("--log-level", log_level, "trace, debug, info, warn, error or off")
      ->check(CLI::IsMember({"trace", "debug", "info", "warn", "error", "critical", "off"}))
      ->capture_default_str();

  sysvisor::ServerConfig server;
  std::string config_file;
  std::string runtime_dir;
  std::string policies_dir;
  std::string audit_to;
  auto* serve_cmd = app.add_subcommand(
      "serve",
      "Run the daemon: accept agents on RUNTIME_DIR/agent.sock and OCI runtimes (runc, crun, podman) on "
      "RUNTIME_DIR/oci.sock, and answer their containers' trapped "
      "calls. SIGHUP reloads the configuration and the policies (all or nothing); SIGUSR2 (or "
      "`sysvisor upgrade`) re-executes its binary as it is on disk now, handing every container over; "
      "SIGTERM or SIGINT stop it cleanly (under systemd the containers' listeners stay in the service's "
      "file descriptor store, so a restart takes them back). --log-level LEVEL may come before or after "
      "`serve`.");
  // Options of the top level (--log-level) are accepted after the subcommand too.
  serve_cmd->fallthrough();
  serve_cmd->add_option("--config", config_file,
                        "Configuration file (default: /etc/sysvisor/sysvisor.yaml if it exists, else "
                        "built-in defaults: root may use every policy, nobody else any)");
  serve_cmd->add_option("--runtime-dir", runtime_dir,
                        "Directory for agent.sock and private state (default: runtime_dir of the "
                        "configuration, /run/sysvisor)");
  serve_cmd->add_option("--policies", policies_dir,
                        "Directory of policy files, *.yaml and *.yml (default: policies of the "
                        "configuration, /etc/sysvisor/policies.d)");
  serve_cmd->add_option("--audit", audit_to,
                        "Audit log: a file to append JSON lines to (reopened on SIGHUP), - for stdout, or "
                        "syslog (default: audit of the configuration, -)");
  std::string audit_failure;
  serve_cmd
      ->add_option("--audit-failure", audit_failure,
                   "While audit records cannot be written: keep answering calls as decided (keep; each "
                   "lost record is counted and logged), or refuse the calls whose record is lost (refuse) "
                   "(default: keep)")
      ->check(CLI::IsMember({"keep", "refuse"}));
  std::string default_policy;
  serve_cmd->add_option("--default-policy", default_policy,
                        "Policy for OCI runtimes (oci.sock) whose profile names none (default: "
                        "default_policy of the configuration; none: such handoffs are refused)");
  std::string metrics_listen;
  serve_cmd->add_option(
      "--metrics-listen", metrics_listen,
      "Serve Prometheus metrics at http://ADDRESS:PORT/metrics, e.g. 127.0.0.1:9464, or on a unix "
      "socket, unix:/run/sysvisor/metrics.sock (mode 0600, root only; ?group=GROUP for 0660) "
      "(default: metrics_listen of the configuration; none). Anyone who can connect can "
      "read them (container ids, per-syscall counts): prefer the unix socket");
  std::uint32_t emulation_timeout_ms = 0;
  serve_cmd
      ->add_option("--emulation-timeout-ms", emulation_timeout_ms,
                   "How long one trapped call may take (reading the caller's memory, an emulation's "
                   "helper) before it is answered with an errno (default: 10000)")
      ->check(CLI::Range(1U, 3600U * 1000U));

  sysvisor::cmd::add_policy_commands(app);
  sysvisor::cmd::add_control_commands(app);

  try {
    app.parse(argc, argv);
  } catch (const CLI::ParseError& e) {
    return sysvisor::cmd::exit_status(app, e);  // also how the policy commands end
  }
  setup_logging(log_level);
  try {
    if (*serve_cmd) {
      if (!config_file.empty()) {
        if (!std::filesystem::exists(config_file)) {
          std::fprintf(stderr, "sysvisor: configuration file `%s` does not exist\n", config_file.c_str());
          return 1;
        }
        server.config_file = config_file;
      } else if (std::filesystem::exists("/etc/sysvisor/sysvisor.yaml")) {
        server.config_file = "/etc/sysvisor/sysvisor.yaml";
      }
      if (!policies_dir.empty()) server.policies_override = policies_dir;
      if (!audit_to.empty()) server.audit_override = audit_to;
      if (!audit_failure.empty()) server.audit_failure_override = audit_failure;
      if (!runtime_dir.empty()) server.runtime_override = runtime_dir;
      if (!default_policy.empty()) server.default_policy_override = default_policy;
      if (!metrics_listen.empty()) server.metrics_override = metrics_listen;
      if (emulation_timeout_ms != 0)
        sysvisor::set_default_emulation_timeout(std::chrono::milliseconds(emulation_timeout_ms));
      take_activated_sockets(server);
      server.binary = sysvisor::handover::own_binary();
      server.argv.assign(argv, argv + argc);
      return serve(server);
    }
  } catch (const std::exception& e) {
    std::fprintf(stderr, "sysvisor: %s\n", e.what());
    return 1;
  }
  return 0;
}
