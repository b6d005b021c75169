#include "sysvisor/listen.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

namespace sysvisor {

UniqueFd listen_unix(const std::filesystem::path& where, int type, mode_t mode, std::optional<gid_t> group) {
  const std::string path = where.string();
  const auto fail = [&](const std::string& what) {
    return std::runtime_error(what + " `" + path + "`: " + std::strerror(errno));
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw std::runtime_error("socket path `" + path + "` is longer than " +
                             std::to_string(sizeof addr.sun_path - 1) +
                             " bytes: choose a shorter runtime directory");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) throw fail("socket for");
  {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      throw std::runtime_error("another supervisor is already serving `" + path + "`");
    }
    ::unlink(path.c_str());
  }
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) throw fail("bind");
  // Who may connect is the socket's mode and group; what a peer may ask for is `access:`.
  if (group && ::chown(path.c_str(), 0, *group) != 0) throw fail("chown to group " + std::to_string(*group));
  if (::chmod(path.c_str(), mode) != 0) throw fail("chmod");
  if (::listen(sock.get(), 128) != 0) throw fail("listen on");
  return sock;
}

UniqueFd take_listener(int fd, int type, const std::string& name) {
  UniqueFd sock(fd);
  const auto fail = [&](const std::string& what) {
    return std::runtime_error("socket activation: the socket named `" + name + "` (fd " + std::to_string(fd) +
                              ") " + what);
  };
  int value = 0;
  socklen_t len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &value, &len) != 0) {
    throw fail(std::string("is not a socket: ") + std::strerror(errno));
  }
  if (value != AF_UNIX) throw fail("is not a unix socket");
  len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_TYPE, &value, &len) != 0 || value != type) {
    throw fail(
        std::string("is not of the type this socket needs (") +
        (type == SOCK_SEQPACKET ? "SOCK_SEQPACKET: ListenSequentialPacket=" : "SOCK_STREAM: ListenStream=") +
        ")");
  }
  len = sizeof value;
  if (::getsockopt(fd, SOL_SOCKET, SO_ACCEPTCONN, &value, &len) != 0 || value == 0) {
    throw fail("is not listening");
  }
  const int flags = ::fcntl(fd, F_GETFL);
  if (flags < 0 || ::fcntl(fd, F_SETFL, flags | O_NONBLOCK) != 0 || ::fcntl(fd, F_SETFD, FD_CLOEXEC) != 0) {
    throw fail(std::string("cannot be made non-blocking: ") + std::strerror(errno));
  }
  return sock;
}

UniqueFd open_listener(int& inherited_fd, const std::filesystem::path& path, int type, mode_t mode,
                       std::optional<gid_t> group, const std::string& name, bool& owns_path) {
  if (inherited_fd >= 0) {
    owns_path = false;
    UniqueFd fd = take_listener(inherited_fd, type, name);
    inherited_fd = -1;
    return fd;
  }
  owns_path = true;
  return listen_unix(path, type, mode, group);
}

void accept_pending(int listener, const std::filesystem::path& where,
                    const std::function<void(UniqueFd)>& take) {
  for (;;) {
    UniqueFd sock(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!sock) {
      if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
        spdlog::warn("accept on {}: {}", where.string(), std::strerror(errno));
      }
      return;
    }
    take(std::move(sock));
  }
}

config::Peer peer_credentials(int fd) {
  config::Peer peer{0, 65534, 65534, {}};
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
  }
  std::vector<gid_t> groups(64);
  len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) {
    len = 0;
    if (errno == ERANGE) {
      groups.resize(len / sizeof(gid_t) + 1024);
      len = static_cast<socklen_t>(groups.size() * sizeof(gid_t));
      if (::getsockopt(fd, SOL_SOCKET, SO_PEERGROUPS, groups.data(), &len) != 0) len = 0;
    }
  }
  groups.resize(len / sizeof(gid_t));
  peer.groups = std::move(groups);
  return peer;
}

}  // namespace sysvisor
