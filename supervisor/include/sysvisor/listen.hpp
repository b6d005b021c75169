// The daemon's listening sockets (agent.sock, oci.sock, control.sock), who is at the other
// end, and how many connections each peer may hold.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>

#include "sysvisor/config.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor {

// A listening unix socket at `path` (SOCK_SEQPACKET or SOCK_STREAM), non-blocking, with
// `mode` and `group`. A live socket there means another supervisor: refuse rather than steal
// it; a dead one is stale and replaced. Throws std::runtime_error naming the path.
[[nodiscard]] UniqueFd listen_unix(const std::filesystem::path& path, int type, mode_t mode,
                                   std::optional<gid_t> group);

// Socket activation: takes over `fd`, inherited from systemd under `name`, after checking it
// is a listening unix socket of `type`; made non-blocking. Throws std::runtime_error.
[[nodiscard]] UniqueFd take_listener(int fd, int type, const std::string& name);

// A service's listening socket: the one systemd passed (`inherited_fd` >= 0; taken over, set
// to -1, and `owns_path` false: the path is systemd's) or a new one bound at `path`.
[[nodiscard]] UniqueFd open_listener(int& inherited_fd, const std::filesystem::path& path, int type,
                                     mode_t mode, std::optional<gid_t> group, const std::string& name,
                                     bool& owns_path);

// SO_PEERCRED, and SO_PEERGROUPS for the supplementary groups a grant may name. A peer whose
// credentials cannot be read is uid/gid 65534 (nobody), which no default grants anything.
[[nodiscard]] config::Peer peer_credentials(int fd);

// Whose share of a socket's connections the peer of `fd` uses. A user with subordinate uids
// (/etc/subuid, newuidmap) can connect as thousands of host uids from a user namespace of its
// own: such a peer is charged to the user who made the outermost user namespace it is in
// (NS_GET_OWNER_UID below the initial one), read from the peer's pidfd (SO_PEERPIDFD), so
// no pid reuse can point elsewhere. A namespace root made (a rootful engine's) is not root's
// share: its peers are charged their own uid. A peer whose process is gone by the accept
// (its namespace cannot be read any more) could be any subordinate uid of anyone's: all such
// peers share one charge, kUnverifiedUid. `peer.uid` on a kernel without SO_PEERPIDFD (6.5)
// or PIDFD_GET_USER_NAMESPACE (6.11), where nothing better can be known.
inline constexpr uid_t kUnverifiedUid = 4294967294U;  // (uid_t)-2
[[nodiscard]] uid_t charged_uid(int fd, const config::Peer& peer);

// Accepts the connections waiting on the non-blocking `listener` (until EAGAIN, or `batch` of
// them: a flood of connects must not keep the loop from everything else) and hands each to
// `take`; accept errors other than "nothing more" are logged naming `where`, at most once a
// minute (EMFILE repeats at every wake-up while it lasts).
void accept_pending(int listener, const std::filesystem::path& where,
                    const std::function<void(UniqueFd)>& take, std::size_t batch = 64);

// Log lines about one socket's refused or failed connections, which any local user can cause
// at will: root's are all written; another uid's at most `per_uid` an interval, and at most
// `total` of all uids together. What is held back is counted and said in one line at the
// end of the interval ("N lines not logged in the last 10 s: uid 65534: 12000, ...").
class RefusalLog {
 public:
  struct Limits {
    std::chrono::steady_clock::duration interval = std::chrono::seconds(10);
    std::size_t per_uid = 10;
    std::size_t total = 50;
    std::size_t uids = 4096;  // uids counted one by one in an interval; the rest together
  };
  RefusalLog(boost::asio::io_context& io, std::string what, Limits limits);
  RefusalLog(boost::asio::io_context& io, std::string what) : RefusalLog(io, std::move(what), Limits{}) {}
  RefusalLog(const RefusalLog&) = delete;
  RefusalLog& operator=(const RefusalLog&) = delete;

  void log(spdlog::level::level_enum level, uid_t uid, const std::string& line);
  void warn(uid_t uid, const std::string& line) { log(spdlog::level::warn, uid, line); }
  [[nodiscard]] std::uint64_t suppressed_total() const noexcept { return suppressed_ever_; }

 private:
  void flush();

  std::string what_;
  Limits limits_;
  boost::asio::steady_timer timer_;
  bool armed_ = false;
  std::chrono::steady_clock::time_point window_start_{};
  std::map<uid_t, std::size_t> written_;
  std::size_t written_total_ = 0;
  std::map<uid_t, std::uint64_t> suppressed_;
  std::uint64_t suppressed_other_ = 0;  // beyond `uids` distinct uids
  std::uint64_t suppressed_window_ = 0;
  std::uint64_t suppressed_ever_ = 0;
};

// How many of one socket's connections may be in progress (handshakes) at once, by the
// peer's uid (SO_PEERCRED, host view). A uid that holds hundreds of idle connections holds
// only its own share: other users' and root's handshakes still get through. Root is never
// limited per uid (the runtime of every rootful container manager connects as root).
struct ConnectionLimits {
  std::size_t per_uid = 16;  // one non-root uid's
  std::size_t others = 256;  // all non-root uids' together: room for root stays
  std::size_t total = 1024;  // everyone's, root's too
};

// The admission of one socket's connections, and its refusal log.
class ConnectionGate {
 public:
  ConnectionGate(boost::asio::io_context& io, std::string what, ConnectionLimits limits)
      : what_(what), limits_(limits), log_(io, std::move(what)) {}

  // Whether a connection from `uid` may start now; a refusal is logged (rate-limited).
  [[nodiscard]] bool admit(uid_t uid);
  // A connection admitted for `uid` is done.
  void release(uid_t uid);
  [[nodiscard]] RefusalLog& log() noexcept { return log_; }
  [[nodiscard]] std::size_t in_progress() const noexcept { return total_; }
  [[nodiscard]] std::size_t in_progress(uid_t uid) const;
  [[nodiscard]] const ConnectionLimits& limits() const noexcept { return limits_; }

 private:
  std::string what_;
  ConnectionLimits limits_;
  RefusalLog log_;
  std::map<uid_t, std::size_t> by_uid_;
  std::size_t others_ = 0;
  std::size_t total_ = 0;
};

// The accept loop of a socket whose connections live in `connections` until they are done:
// each accepted socket becomes a Conn(owner, socket, peer), started at once, if `gate` admits
// its peer's charged uid (else it is closed, the refusal logged through the gate). The owner's
// on_connection_done must release the gate's slot (Conn::uid(): the charged uid). Stops when
// `stopping` is set.
template <class Conn, class Owner>
void accept_connections(Owner& owner, boost::asio::posix::stream_descriptor& listener,
                        const std::filesystem::path& path,
                        std::map<Conn*, std::shared_ptr<Conn>>& connections, ConnectionGate& gate,
                        const bool& stopping) {
  if (stopping) return;
  listener.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [&, path](const boost::system::error_code& ec) {
                        if (ec || stopping) return;
                        accept_pending(listener.native_handle(), path, [&](UniqueFd sock) {
                          config::Peer peer = peer_credentials(sock.get());
                          peer.charged = charged_uid(sock.get(), peer);
                          if (!gate.admit(peer.charged)) return;
                          auto conn = std::make_shared<Conn>(owner, std::move(sock), std::move(peer));
                          connections.emplace(conn.get(), conn);
                          conn->start();
                        });
                        accept_connections(owner, listener, path, connections, gate, stopping);
                      });
}

}  // namespace sysvisor
