#include "sysvisor/listen.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <stdexcept>
#include <string>
#include <vector>

#include "sysvisor/trusted_files.hpp"

namespace sysvisor {

UniqueFd listen_unix(const std::filesystem::path& where, int type, mode_t mode, std::optional<gid_t> group) {
  const std::string path = where.string();
  const auto fail = [&](const std::string& what) {
    return std::runtime_error(what + " `" + path + "`: " + std::strerror(errno));
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  // The socket is bound in a private directory beside `where` (.sv-XXXXXX/s), given its group
  // and mode there, and renamed into place: it is never reachable with another mode, and no
  // name a user could have swapped (a symbolic link at `where`) is followed. rename(2) replaces
  // a stale socket, or a link, itself.
  const std::filesystem::path parent = where.parent_path();
  std::string private_dir = (parent / ".sv-XXXXXX").string();
  if (path.size() >= sizeof addr.sun_path || private_dir.size() + 2 >= sizeof addr.sun_path) {
    throw std::runtime_error(
        "socket path `" + path + "` is too long (a unix socket's path has at most " +
        std::to_string(sizeof addr.sun_path - 1) +
        " bytes, and it is bound first as DIR/.sv-XXXXXX/s): choose a shorter directory");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  {
    UniqueFd probe(::socket(AF_UNIX, type | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      throw std::runtime_error("another supervisor is already serving `" + path + "`");
    }
  }
  // Only root may change the directory a socket of root's is in (a user could otherwise
  // occupy the name, or swap the private directory below): the runtime dir is, and a `unix:`
  // metrics socket's directory must be too.
  if (auto trusted = trusted::check_dir(parent, "the directory of the socket"); !trusted) {
    throw std::runtime_error(trusted.error());
  }
  UniqueFd dir(::open(parent.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) throw fail("open the directory of");
  if (::mkdtemp(private_dir.data()) == nullptr) throw fail("make a private directory (mkdtemp) beside");
  const std::string private_name = std::filesystem::path(private_dir).filename().string();
  UniqueFd priv(::openat(dir.get(), private_name.c_str(), O_PATH | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  struct Cleanup {
    int dir, priv;
    const std::string& name;
    ~Cleanup() {
      if (priv >= 0) ::unlinkat(priv, "s", 0);
      ::unlinkat(dir, name.c_str(), AT_REMOVEDIR);
    }
  } cleanup{dir.get(), priv.get(), private_name};
  struct stat st {};
  if (!priv || ::fstat(priv.get(), &st) != 0 || st.st_uid != ::geteuid() || (st.st_mode & 077) != 0) {
    throw fail("the private directory `" + private_dir + "` is not ours; not binding");
  }
  // Bound through the descriptor, not the name: the directory it was checked as.
  const std::string bound = "/proc/self/fd/" + std::to_string(priv.get()) + "/s";
  sockaddr_un priv_addr{};
  priv_addr.sun_family = AF_UNIX;
  std::memcpy(priv_addr.sun_path, bound.c_str(), bound.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, type | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) throw fail("socket for");
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&priv_addr), sizeof priv_addr) != 0)
    throw fail("bind");
  // Who may connect is the socket's mode and group; what a peer may ask for is `access:`.
  if (group && ::fchownat(priv.get(), "s", 0, *group, AT_SYMLINK_NOFOLLOW) != 0) {
    throw fail("chown to group " + std::to_string(*group));
  }
  if (::fchmodat(priv.get(), "s", mode, 0) != 0) throw fail("chmod");
  if (::listen(sock.get(), 128) != 0) throw fail("listen on");
  if (::renameat(priv.get(), "s", dir.get(), where.filename().c_str()) != 0)
    throw fail("rename the socket to");
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
                    const std::function<void(UniqueFd)>& take, std::size_t batch) {
  for (std::size_t i = 0; i < batch; ++i) {
    UniqueFd sock(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!sock) {
      const int err = errno;
      if (err != EAGAIN && err != EINTR && err != ECONNABORTED) {
        // Out of fds (EMFILE) repeats at every wake-up while it lasts: once a minute is enough.
        static std::chrono::steady_clock::time_point last{};
        static std::uint64_t held_back = 0;
        const auto now = std::chrono::steady_clock::now();
        if (last == std::chrono::steady_clock::time_point{} || now - last >= std::chrono::minutes(1)) {
          spdlog::warn("accept on {}: {}{}", where.string(), std::strerror(err),
                       held_back == 0 ? std::string()
                                      : " (" + std::to_string(held_back) + " more accept errors not logged)");
          last = now;
          held_back = 0;
        } else {
          ++held_back;
        }
      }
      return;
    }
    take(std::move(sock));
  }
}

RefusalLog::RefusalLog(boost::asio::io_context& io, std::string what, Limits limits)
    : what_(std::move(what)), limits_(limits), timer_(io) {}

void RefusalLog::log(spdlog::level::level_enum level, uid_t uid, const std::string& line) {
  if (uid == 0) {
    spdlog::log(level, "{}", line);
    return;
  }
  const auto now = std::chrono::steady_clock::now();
  if (now - window_start_ >= limits_.interval) {
    flush();
    window_start_ = now;
    written_.clear();
    written_total_ = 0;
  }
  if (written_total_ < limits_.total && (written_.contains(uid) || written_.size() < limits_.uids)) {
    std::size_t& n = written_[uid];
    if (n < limits_.per_uid) {
      ++n;
      ++written_total_;
      spdlog::log(level, "{}", line);
      return;
    }
  }
  ++suppressed_window_;
  ++suppressed_ever_;
  if (suppressed_.contains(uid) || suppressed_.size() < limits_.uids) {
    ++suppressed_[uid];
  } else {
    ++suppressed_other_;
  }
  if (!armed_) {
    armed_ = true;
    timer_.expires_at(window_start_ + limits_.interval);
    timer_.async_wait([this](const boost::system::error_code& ec) {
      if (ec) return;  // cancelled: `this` may be gone
      armed_ = false;
      flush();
    });
  }
}

void RefusalLog::flush() {
  if (suppressed_window_ == 0) return;
  std::vector<std::pair<std::uint64_t, uid_t>> top;
  top.reserve(suppressed_.size());
  for (const auto& [uid, n] : suppressed_) top.emplace_back(n, uid);
  const std::size_t shown = std::min<std::size_t>(top.size(), 5);
  std::partial_sort(top.begin(), top.begin() + static_cast<std::ptrdiff_t>(shown), top.end(),
                    [](const auto& a, const auto& b) { return a.first > b.first; });
  std::string who;
  for (std::size_t i = 0; i < shown; ++i) {
    who += (i == 0 ? "" : ", ") + std::string("uid ") + std::to_string(top[i].second) + ": " +
           std::to_string(top[i].first);
  }
  const std::size_t rest = top.size() - shown + (suppressed_other_ > 0 ? 1 : 0);
  if (rest > 0) who += ", and " + std::to_string(rest) + " other uid(s)";
  spdlog::warn("{}: {} more lines about refused or failed connections not logged in the last {} s ({})",
               what_, suppressed_window_,
               std::chrono::duration_cast<std::chrono::seconds>(limits_.interval).count(), who);
  suppressed_.clear();
  suppressed_other_ = 0;
  suppressed_window_ = 0;
}

bool ConnectionGate::admit(uid_t uid) {
  std::string why;
  if (total_ >= limits_.total) {
    why = std::to_string(total_) + " connections in progress, the limit of this socket";
  } else if (uid != 0 && others_ >= limits_.others) {
    why = std::to_string(others_) + " connections of users other than root in progress, their limit";
  } else if (uid != 0 && in_progress(uid) >= limits_.per_uid) {
    why = "uid " + std::to_string(uid) + " has " + std::to_string(in_progress(uid)) +
          " connections in progress, the limit per user";
  }
  if (!why.empty()) {
    log_.warn(uid, what_ + ": connection from uid " + std::to_string(uid) + " refused: " + why);
    return false;
  }
  ++total_;
  if (uid != 0) {
    ++others_;
    ++by_uid_[uid];
  }
  return true;
}

void ConnectionGate::release(uid_t uid) {
  if (total_ > 0) --total_;
  if (uid == 0) return;
  if (others_ > 0) --others_;
  if (const auto it = by_uid_.find(uid); it != by_uid_.end() && --it->second == 0) by_uid_.erase(it);
}

std::size_t ConnectionGate::in_progress(uid_t uid) const {
  const auto it = by_uid_.find(uid);
  return it == by_uid_.end() ? 0 : it->second;
}

config::Peer peer_credentials(int fd) {
  config::Peer peer{0, 65534, 65534, {}, 65534};
  ucred cred{};
  socklen_t len = sizeof cred;
  if (::getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
    peer.pid = cred.pid;
    peer.uid = cred.uid;
    peer.gid = cred.gid;
    peer.charged = cred.uid;
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

namespace {

// Not in Debian 12's headers: asm-generic/socket.h (Linux 6.5) and linux/pidfd.h (Linux 6.11).
constexpr int kSoPeerPidfd = 77;
constexpr unsigned long kPidfdGetUserNamespace = _IO(0xFF, 9);

bool same_file(int fd, const struct stat& other) {
  struct stat st {};
  return ::fstat(fd, &st) == 0 && st.st_ino == other.st_ino && st.st_dev == other.st_dev;
}

}  // namespace

uid_t charged_uid(int fd, const config::Peer& peer) {
  if (peer.uid == 0) return 0;
  static const struct stat initial = [] {
    struct stat st {};
    ::stat("/proc/self/ns/user", &st);
    return st;
  }();
  int raw = -1;
  socklen_t len = sizeof raw;
  if (::getsockopt(fd, SOL_SOCKET, kSoPeerPidfd, &raw, &len) != 0) {
    return errno == ENOPROTOOPT ? peer.uid : kUnverifiedUid;  // an older kernel, or no peer pid
  }
  const UniqueFd pidfd(raw);
  UniqueFd ns(::ioctl(pidfd.get(), kPidfdGetUserNamespace, 0));
  if (!ns) {
    // ESRCH: the connecting process is gone; a subordinate uid's connect()-and-exit must not
    // be charged as a uid of its own. ENOTTY/EINVAL: a kernel without the ioctl.
    return errno == ENOTTY || errno == EINVAL || errno == EOPNOTSUPP ? peer.uid : kUnverifiedUid;
  }
  // Up to the namespace whose parent is the initial one; at most 32 levels (the kernel's).
  for (int depth = 0; depth < 33; ++depth) {
    if (same_file(ns.get(), initial)) return peer.uid;
    UniqueFd parent(::ioctl(ns.get(), NS_GET_PARENT));
    if (!parent) return peer.uid;
    if (same_file(parent.get(), initial)) {
      uid_t owner = 0;
      if (::ioctl(ns.get(), NS_GET_OWNER_UID, &owner) != 0 || owner == 0) return peer.uid;
      return owner;
    }
    ns = std::move(parent);
  }
  return peer.uid;
}

}  // namespace sysvisor
