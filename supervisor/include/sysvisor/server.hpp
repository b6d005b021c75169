// The daemon: agent.sock intake, the sessions, signals. Single-threaded Asio loop; slow
// work (emulation helpers) is waited for asynchronously and never blocks the loop.
#pragma once

#include <linux/filter.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/signal_set.hpp>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "sysvisor/audit.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/oci_intake.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/session.hpp"

namespace sysvisor {

struct ServerConfig {
  std::filesystem::path runtime_dir = "/run/sysvisor";
  std::filesystem::path policies_dir = "/etc/sysvisor/policies.d";
  std::string audit = "-";
  std::chrono::milliseconds handshake_timeout{10000};
  std::size_t max_connections = 256;  // handshakes in progress at once
  std::string default_policy;         // OCI handoffs that name no policy; empty: refused
};

// A policy with its compiled filter, ready to hand out.
struct LoadedPolicy {
  std::shared_ptr<const policy::Policy> policy;
  std::vector<sock_filter> bpf;
};

class Server {
 public:
  // Start-up: every step that can fail throws std::runtime_error with a message for the
  // operator (caught in main). Nothing on the notification path throws.
  // `devices` and `audit` must outlive `io` (handlers still queued in it may hold sessions).
  Server(boost::asio::io_context& io, ServerConfig config,
         std::map<std::string, LoadedPolicy, std::less<>> policies, mknod::DeviceStore& devices,
         audit::Sink& audit);
  ~Server();
  Server(const Server&) = delete;
  Server& operator=(const Server&) = delete;

  void start();
  void shutdown();

  // An OCI runtime's listener (from oci.sock): a session in the container's group. Every
  // process of one container id (run, each exec) joins the same group. The error is the
  // refusal, for the intake's log line.
  [[nodiscard]] std::expected<std::string, std::string> adopt(OciHandoff handoff);

 private:
  class Connection;

  void accept_next();
  void on_session_closed(const std::string& session_id);
  void on_connection_done(Connection* conn);

  boost::asio::io_context& io_;
  ServerConfig config_;
  std::map<std::string, LoadedPolicy, std::less<>> policies_;
  mknod::DeviceStore& devices_;
  audit::Sink& audit_;
  std::filesystem::path socket_path_;
  boost::asio::posix::stream_descriptor listener_;
  boost::asio::signal_set signals_;
  std::map<Connection*, std::shared_ptr<Connection>> connections_;
  std::map<std::string, std::shared_ptr<Session>> sessions_;
  std::uint64_t next_session_ = 0;
  bool stopping_ = false;
  // OCI: container id -> its sessions (one per process); the intake of oci.sock.
  std::map<std::string, std::set<std::string>, std::less<>> oci_containers_;
  std::unique_ptr<OciIntake> oci_;
};

// Loads and compiles every policy in `dir`; all errors, formatted FILE:LINE:COL: message.
[[nodiscard]] std::expected<std::map<std::string, LoadedPolicy, std::less<>>, std::vector<std::string>>
load_policies(const std::filesystem::path& dir);

}  // namespace sysvisor
