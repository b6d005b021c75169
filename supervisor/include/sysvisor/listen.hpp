// The daemon's listening sockets (agent.sock, oci.sock) and who is at the other end.
#pragma once

#include <spdlog/spdlog.h>
#include <sys/types.h>

#include <boost/asio/posix/stream_descriptor.hpp>
#include <cstddef>
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

// Accepts every connection waiting on the non-blocking `listener` (until EAGAIN) and hands
// each to `take`; accept errors other than "nothing more" are logged naming `where`.
void accept_pending(int listener, const std::filesystem::path& where,
                    const std::function<void(UniqueFd)>& take);

// The accept loop of a socket whose connections live in `connections` until they are done:
// each accepted socket becomes a Conn(owner, socket), started at once, unless `max` are in
// progress (then it is dropped with a log line naming `what`). Stops when `stopping` is set.
template <class Conn, class Owner>
void accept_connections(Owner& owner, boost::asio::posix::stream_descriptor& listener,
                        const std::filesystem::path& path,
                        std::map<Conn*, std::shared_ptr<Conn>>& connections, std::size_t max,
                        const char* what, const bool& stopping) {
  if (stopping) return;
  listener.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                      [&, path, max, what](const boost::system::error_code& ec) {
                        if (ec || stopping) return;
                        accept_pending(listener.native_handle(), path, [&](UniqueFd sock) {
                          if (connections.size() >= max) {
                            spdlog::warn("{}: too many connections at once ({}): connection dropped", what,
                                         connections.size());
                            return;
                          }
                          auto conn = std::make_shared<Conn>(owner, std::move(sock));
                          connections.emplace(conn.get(), conn);
                          conn->start();
                        });
                        accept_connections(owner, listener, path, connections, max, what, stopping);
                      });
}

// SO_PEERCRED, and SO_PEERGROUPS for the supplementary groups a grant may name. A peer whose
// credentials cannot be read is uid/gid 65534 (nobody), which no default grants anything.
[[nodiscard]] config::Peer peer_credentials(int fd);

}  // namespace sysvisor
