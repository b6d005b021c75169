// The daemon's listening sockets (agent.sock, oci.sock) and who is at the other end.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <functional>
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

// Accepts every connection waiting on the non-blocking `listener` (until EAGAIN) and hands
// each to `take`; accept errors other than "nothing more" are logged naming `where`.
void accept_pending(int listener, const std::filesystem::path& where,
                    const std::function<void(UniqueFd)>& take);

// SO_PEERCRED, and SO_PEERGROUPS for the supplementary groups a grant may name. A peer whose
// credentials cannot be read is uid/gid 65534 (nobody), which no default grants anything.
[[nodiscard]] config::Peer peer_credentials(int fd);

}  // namespace sysvisor
