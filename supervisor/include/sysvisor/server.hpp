// The daemon: agent.sock intake, the sessions, signals. Single-threaded Asio loop; slow
// work (emulation helpers) is waited for asynchronously and never blocks the loop.
#pragma once

#include <linux/filter.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <expected>
#include <filesystem>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <utility>
#include <vector>

#include "sysvisor/audit.hpp"
#include "sysvisor/config.hpp"
#include "sysvisor/control.hpp"
#include "sysvisor/handover.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/metrics.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/oci_intake.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/registry.hpp"
#include "sysvisor/session.hpp"

namespace sysvisor {

// An upgrade in place names the sockets the daemon bound itself "own.agent", "own.oci",
// "own.control" in SYSVISOR_HANDOVER (systemd's keep their names).
inline constexpr std::string_view kOwnSocketPrefix = "own.";

struct ServerConfig {
  config::Config config;  // from the file, with the command line's overrides applied
  // Re-read on SIGHUP (empty: the built-in defaults, only policies are re-read).
  std::filesystem::path config_file;
  // Command-line values that win over the file's, at start and at every reload.
  std::optional<std::filesystem::path> policies_override;
  std::optional<std::string> audit_override;
  std::optional<std::string> audit_failure_override;  // serve --audit-failure
  std::optional<std::filesystem::path> runtime_override;
  std::optional<std::string> default_policy_override;
  std::optional<std::string> metrics_override;  // --metrics-listen
  // Socket activation: listening sockets inherited from systemd by name (agent, oci,
  // control); the Server takes them over instead of binding those paths.
  std::map<std::string, int, std::less<>> listen_fds;
  // Those of listen_fds a previous binary of ours bound itself and handed over (an upgrade in
  // place): their socket files are ours to remove at the end, as if bound here.
  std::set<std::string, std::less<>> own_sockets;
  // agent.sock: the hello comes at once after connecting (the agent sends it first thing);
  // the handoff after the agent made the container, within handshake_timeout of the hello.
  // oci.sock: the whole payload within handshake_timeout (crun connects before it creates).
  std::chrono::milliseconds hello_timeout{3000};
  std::chrono::milliseconds handshake_timeout{10000};
  // Handshakes in progress on agent.sock and on oci.sock (each its own), by the peer's uid.
  ConnectionLimits limits;
  // Restart and upgrade (handover.hpp): what a previous daemon left (null: nothing), the
  // daemon's own mount namespace (an fd main keeps open; -1: none), and how to re-execute.
  std::shared_ptr<handover::Inherited> inherited;
  int mount_ns_fd = -1;
  std::string binary;             // own_binary() at start
  std::vector<std::string> argv;  // as started
};

class Server {
 public:
  // Start-up: every step that can fail throws std::runtime_error with a message for the
  // operator (caught in main). Nothing on the notification path throws.
  // `devices` and `audit` must outlive `io` (handlers still queued in it may hold sessions).
  Server(boost::asio::io_context& io, ServerConfig config, PolicySet policies, mknod::DeviceStore& devices,
         audit::Sink& audit);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  void shutdown();
  // SIGHUP and `sysvisor reload`: re-read the configuration and the policies; all or nothing.
  // On any error the running set stays; every error is logged and returned (FILE:LINE:COL).
  std::expected<void, std::vector<std::string>> reload();

  // SIGUSR2 and `sysvisor upgrade`: stop taking calls, finish those held, save every
  // container's state and re-execute `binary` with every listener. Empty when begun (the
  // process is replaced once the calls held are answered); else why not (the daemon goes on).
  [[nodiscard]] std::string upgrade();
  // After io.run() returned: the containers were handed to a next daemon (systemd's fd store
  // keeps them): the device store must stay mounted.
  [[nodiscard]] bool handed_over() const noexcept { return handed_over_; }

  // A control.sock request (status, containers, reload) from `peer`.
  [[nodiscard]] control::v1::Response answer(const control::v1::Request& request, const config::Peer& peer);

  // An OCI runtime's listener (from oci.sock): a session in the container's group. Every
  // process of one container id (run, each exec) joins the same group. The error is the
  // refusal, for the intake's log line.
  [[nodiscard]] std::expected<OciAdopted, std::string> adopt(OciHandoff handoff);
  // The loaded policies `peer` may use, by name, for its refusals: nobody learns the others.
  [[nodiscard]] std::string usable_names(const config::Peer& peer) const;

 private:
  class Connection;

  struct Supervised {
    std::shared_ptr<Session> session;
    std::vector<sock_filter> filter;  // what its agent installed; empty when not ours
  };

  enum class Handover : std::uint8_t { Upgrade, Stop };
  // Quiesces every session, then (once all are quiet or the emulation timeout passed) saves
  // their state and upgrades or stops.
  void begin_handover(Handover why);
  void wait_quiet(Handover why, std::chrono::steady_clock::time_point give_up);
  void finish_handover(Handover why);
  void adopt_inherited();
  // Every new session: its state memfd, its fds in systemd's store, then start().
  void launch(const std::shared_ptr<Session>& session, bool oci, const std::vector<sock_filter>& filter);
  void accept_next();
  void wait_for_hangup();
  void wait_for_upgrade();
  void bind_socket();
  void on_session_closed(const std::string& session_id);
  void on_connection_done(Connection* conn);
  // What a new session of `container_id`, owned by `owner`, gets: its audit budgets included.
  [[nodiscard]] SessionServices services(uid_t owner, const std::string& container_id);
  // Empty when `owner` may start a session of `container_id` with `listener` (-1: not known
  // yet) now; else the refusal, for the peer and the log. Refused: an id another uid's live
  // session holds, a listener a live session already supervises (kcmp KCMP_FILE), a uid at
  // limits.sessions_per_uid (root never is).
  [[nodiscard]] std::string admission(uid_t owner, const std::string& container_id, int listener) const;
  void tick();
  [[nodiscard]] std::uint64_t notifications_total() const;
  [[nodiscard]] std::size_t container_count() const;
  [[nodiscard]] control::v1::PolicySet policy_set() const;

  boost::asio::io_context& io_;
  ServerConfig config_;
  PolicyRegistry registry_;
  mknod::DeviceStore& devices_;
  audit::Sink& audit_;
  std::filesystem::path socket_path_;
  boost::asio::posix::stream_descriptor listener_;
  boost::asio::signal_set signals_;
  boost::asio::signal_set hangups_;
  boost::asio::signal_set upgrades_;  // SIGUSR2
  handover::FdStore fdstore_;
  bool handing_over_ = false;
  bool handed_over_ = false;
  boost::asio::steady_timer quiet_timer_;
  ConnectionGate agent_gate_;  // before connections_: outlives them
  std::map<Connection*, std::shared_ptr<Connection>> connections_;
  HangupWatch listener_hangups_;  // before sessions_: outlives them
  std::map<std::string, Supervised> sessions_;
  std::uint64_t next_session_ = 0;
  bool stopping_ = false;
  // OCI: container id -> its sessions (one per process); the intake of oci.sock.
  std::map<std::string, std::set<std::string>, std::less<>> oci_containers_;
  std::unique_ptr<OciIntake> oci_;
  // The audit budgets (session.hpp, AuditBudget): per container (owner, id) while a session
  // holds it, per non-root owner uid for the daemon's life.
  std::map<std::pair<uid_t, std::string>, std::weak_ptr<AuditBudget>> container_budgets_;
  std::map<uid_t, std::shared_ptr<AuditBudget>> uid_budgets_;
  // Control and metrics. Closed sessions' counts stay in the totals.
  std::chrono::steady_clock::time_point started_ = std::chrono::steady_clock::now();
  std::uint64_t closed_notifications_ = 0;
  std::uint64_t closed_errors_ = 0;
  control::RateWindow rate_;
  boost::asio::steady_timer ticker_;
  bool agent_activated_ = false;  // agent.sock is systemd's: not ours to unlink
  std::unique_ptr<control::ControlServer> control_;
  std::unique_ptr<metrics::Metrics> metrics_;  // only with metrics_listen
  std::unique_ptr<metrics::HttpServer> metrics_http_;
};

// Loads and compiles every policy in `dir`; all errors, formatted FILE:LINE:COL: error: [code]
// message. Warnings are logged. `in_force`: the running set's files, so that a name taken twice
// is blamed on the file that is not in force.
[[nodiscard]] std::expected<PolicySet, std::vector<std::string>> load_policies(
    const std::filesystem::path& dir, const policy::InForce& in_force = {});

// The file each policy of `set` was loaded from, by name.
[[nodiscard]] policy::InForce files_of(const PolicySet& set);

// The configuration's audit_failure (keep | refuse) made the sink's, at start and at reload.
void apply_audit_failure(const config::Config& cfg);

// The configuration as `serve` starts with it: the file (if any) and the overrides, checked
// against the loaded policies (the default policy must exist).
[[nodiscard]] std::expected<std::pair<config::Config, PolicySet>, std::vector<std::string>> load_all(
    const ServerConfig& server, const policy::InForce& in_force = {});

}  // namespace sysvisor
