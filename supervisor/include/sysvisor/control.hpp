// The control socket (RUNTIME_DIR/control.sock): `sysvisor status`, `containers` and `reload`
// ask the running daemon. SOCK_SEQPACKET, one control.proto Request per connection, one
// Response back. Root only by default (mode 0600); `control_group` opens it to one group.
// The daemon's side never blocks the loop: a silent client is timed out, garbage is answered
// with an Error and closed.
#pragma once

#include <sys/types.h>

#include <array>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "control.pb.h"
#include "sysvisor/config.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/stats.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::control {

namespace v1 = ::sysvisor::control::v1;

// Root always; else only a member (primary or supplementary) of `group`, when one is set.
[[nodiscard]] bool may_control(const config::Peer& peer, std::optional<gid_t> group);

// "2026-11-29T23:41:07.123Z"; empty for the epoch (no activity yet).
[[nodiscard]] std::string rfc3339(std::chrono::system_clock::time_point t);

// Notifications per second over the last 10 seconds, from a running total sampled once a
// second.
class RateWindow {
 public:
  static constexpr std::size_t kSeconds = 10;
  void sample(std::uint64_t total) noexcept;
  [[nodiscard]] double per_second() const noexcept;

 private:
  std::array<std::uint64_t, kSeconds + 1> ring_{};
  std::size_t next_ = 0;
  std::size_t filled_ = 0;
};

// One supervised session as `containers` needs it.
struct SessionStats {
  std::string container_id;
  std::string engine;
  pid_t container_pid = 0;
  std::string policy;
  std::string policy_version;
  stats::Counters counters;
  uid_t owner = 0;  // the uid the container's handoffs were charged to
};

// One entry per container (id and owner), in id order: the sessions of one container (OCI run
// and each exec) are summed; engine and policy come from the first, pid from the first that has one.
[[nodiscard]] v1::ContainersReply containers_reply(const std::vector<SessionStats>& sessions);

// The Response as `--json` prints it: protobuf's JSON mapping, snake_case field names, zero
// values included. 64-bit integers are strings there, as the mapping says.
[[nodiscard]] std::string to_json(const v1::Response& response);

class ControlServer {
 public:
  using Handler = std::function<v1::Response(const v1::Request&, const config::Peer&)>;
  struct Config {
    std::filesystem::path socket_path;
    std::optional<gid_t> group;  // control_group: mode 0660 with this group; else 0600
    int inherited_fd = -1;       // socket activation: a listening socket to take over
    std::chrono::milliseconds timeout{5000};
    std::size_t max_connections = 32;
  };

  // Binds (or takes the inherited socket): throws std::runtime_error naming the path.
  ControlServer(boost::asio::io_context& io, Config config, Handler handler);
  ~ControlServer();
  ControlServer(const ControlServer&) = delete;
  ControlServer& operator=(const ControlServer&) = delete;

  void start();
  void shutdown();
  [[nodiscard]] const std::filesystem::path& path() const noexcept { return config_.socket_path; }
  // The listening socket: an upgrade in place hands it to the new binary, backlog and all.
  [[nodiscard]] int listening_fd() noexcept { return listener_.native_handle(); }
  // A socket a previous binary of ours bound and handed over: its file is removed at the end.
  void claim_path() noexcept { owns_path_ = true; }

 private:
  class Connection;

  void accept_next();
  void on_connection_done(Connection* conn);

  boost::asio::io_context& io_;
  Config config_;
  Handler handler_;
  boost::asio::posix::stream_descriptor listener_;
  ConnectionGate gate_;  // by uid, as on agent.sock and oci.sock; before connections_
  std::map<Connection*, std::shared_ptr<Connection>> connections_;
  bool owns_path_ = true;  // not when systemd made the socket
  bool stopping_ = false;
};

// The client side, for the CLI.
struct ClientError {
  enum class Kind { Unreachable, Failed };
  Kind kind = Kind::Failed;
  int err = 0;
  std::string message;  // one line naming the socket and the reason
};

// Connects to `socket`, sends `request`, waits up to `timeout` for the Response.
[[nodiscard]] std::expected<v1::Response, ClientError> request(const std::filesystem::path& socket,
                                                               const v1::Request& request,
                                                               std::chrono::milliseconds timeout);

}  // namespace sysvisor::control
