#include "sysvisor/oci_intake.hpp"

#include <fcntl.h>
#include <linux/nsfs.h>
#include <signal.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <unistd.h>

#include <array>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <vector>

#include "sysvisor/listen.hpp"
#include "sysvisor/pidfd.hpp"
#include "sysvisor/task.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor {
namespace {

constexpr std::size_t kReadChunk = 64 * 1024;
constexpr std::size_t kMaxFds = 8;  // more than one is refused; these are only counted and closed

std::string errno_text(int err) {
  return std::strerror(err);
}

std::string join_keys(const std::map<std::string, std::string, std::less<>>& m) {
  std::string out;
  for (const auto& [k, v] : m) out += (out.empty() ? "" : ",") + k + "=" + v;
  return out;
}

}  // namespace

std::expected<LiveProcess, std::string> read_live_process(pid_t pid) {
  const std::string where = "/proc/" + std::to_string(pid);
  // Pinned first: if the process is still alive after the reads, they were about it.
  UniqueFd pidfd = open_pidfd(pid);
  if (!pidfd) return std::unexpected("process " + std::to_string(pid) + ": " + errno_text(errno));
  UniqueFd dir(::open(where.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return std::unexpected("open `" + where + "`: " + errno_text(errno));
  LiveProcess out;
  out.pid = pid;
  auto status = task::read_file_at(dir.get(), "status");
  if (!status) return std::unexpected(status.error().message());
  const auto creds = task::parse_status(*status);
  if (!creds) return std::unexpected("`" + where + "/status`: no Uid/Gid lines");
  out.uid = creds->uid[0];
  // A listener exists only for a process under a seccomp filter (mode 2).
  if (status->find("\nSeccomp:\t2\n") == std::string::npos) {
    return std::unexpected("process " + std::to_string(pid) + " is not under a seccomp filter");
  }
  auto uid_map = task::read_file_at(dir.get(), "uid_map");
  if (!uid_map) return std::unexpected(uid_map.error().message());
  auto gid_map = task::read_file_at(dir.get(), "gid_map");
  if (!gid_map) return std::unexpected(gid_map.error().message());
  out.uid_map = std::move(*uid_map);
  out.gid_map = std::move(*gid_map);
  UniqueFd ns(::openat(dir.get(), "ns/user", O_RDONLY | O_CLOEXEC));
  if (!ns) return std::unexpected("open `" + where + "/ns/user`: " + errno_text(errno));
  struct stat theirs {};
  struct stat mine {};
  if (::fstat(ns.get(), &theirs) != 0 || ::stat("/proc/self/ns/user", &mine) != 0) {
    return std::unexpected("stat user namespaces: " + errno_text(errno));
  }
  out.user_ns = theirs.st_ino;
  out.own_user_ns = theirs.st_ino != mine.st_ino || theirs.st_dev != mine.st_dev;
  uid_t owner = 0;
  if (::ioctl(ns.get(), NS_GET_OWNER_UID, &owner) != 0) {
    return std::unexpected("NS_GET_OWNER_UID on `" + where + "/ns/user`: " + errno_text(errno));
  }
  out.user_ns_owner = owner;
  if (::syscall(SYS_pidfd_send_signal, pidfd.get(), 0, nullptr, 0) != 0) {
    return std::unexpected("process " + std::to_string(pid) + " exited during the handoff");
  }
  return out;
}

std::expected<pid_t, std::string> filtered_child(pid_t parent) {
  const std::string tasks = "/proc/" + std::to_string(parent) + "/task";
  std::vector<pid_t> found;
  std::error_code ec;
  for (std::filesystem::directory_iterator it(tasks, ec), end; !ec && it != end; it.increment(ec)) {
    UniqueFd dir(::open(it->path().c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    auto children = dir ? task::read_file_at(dir.get(), "children") : Result<std::string>(std::string());
    if (!children) continue;
    std::size_t pos = 0;
    while (pos < children->size()) {
      const std::size_t end_of = children->find(' ', pos);
      const std::string word = children->substr(pos, end_of - pos);
      pos = end_of == std::string::npos ? children->size() : end_of + 1;
      if (word.empty()) continue;
      const pid_t child = static_cast<pid_t>(std::strtol(word.c_str(), nullptr, 10));
      UniqueFd cdir(::open(("/proc/" + word).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      auto status = cdir ? task::read_file_at(cdir.get(), "status") : Result<std::string>(std::string());
      if (child > 0 && status && status->find("\nSeccomp:\t2\n") != std::string::npos) found.push_back(child);
    }
  }
  if (found.size() != 1) {
    return std::unexpected("the payload names no process (pid 0) and the runtime (pid " +
                           std::to_string(parent) + ") has " + std::to_string(found.size()) +
                           " children under a seccomp filter, not one");
  }
  return found.front();
}

std::expected<void, std::string> check_peer_owns(const Peer& peer, const LiveProcess& process) {
  if (peer.uid == 0) return {};
  if (process.uid == peer.uid) return {};
  if (process.own_user_ns && process.user_ns_owner == peer.uid) return {};
  return std::unexpected("process " + std::to_string(process.pid) + " (uid " + std::to_string(process.uid) +
                         ", user namespace owned by uid " + std::to_string(process.user_ns_owner) +
                         ") does not belong to the connecting uid " + std::to_string(peer.uid));
}

// One runtime connection: bytes and fds until the payload is one whole JSON object, then the
// handoff, then close. runc never closes its side, so completeness is ours to judge.
class OciIntake::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(OciIntake& intake, UniqueFd sock, Peer peer)
      : intake_(intake),
        sock_(std::move(sock)),
        readable_(intake.io_, sock_.get()),
        deadline_(intake.io_),
        peer_(std::move(peer)) {}
  ~Connection() {
    boost::system::error_code ec;
    readable_.cancel(ec);
    [[maybe_unused]] const int fd = readable_.release();  // sock_ owns it
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() {
    deadline_.expires_after(intake_.config_.timeout);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      self->refuse("no complete payload within " + std::to_string(self->intake_.config_.timeout.count()) +
                   " ms");
    });
    wait();
  }

  void refuse(const std::string& why) {
    if (done_) return;
    intake_.gate_.log().warn(
        peer_.charged,
        fmt::format("oci: {}refused{}: {}{}", who(), id_.empty() ? "" : " container `" + id_ + "`", why,
                    fds_.empty() ? ""
                                 : "; the listener is closed, so the calls the runtime's filter traps in "
                                   "this process now fail with ENOSYS (Function not implemented)"));
    finish();
  }

  [[nodiscard]] uid_t uid() const noexcept { return peer_.charged; }

 private:
  [[nodiscard]] std::string who() const {
    return "connection (pid " + std::to_string(peer_.pid) + " uid " + std::to_string(peer_.uid) + ") ";
  }

  void wait() {
    readable_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [self = shared_from_this()](const boost::system::error_code& ec) {
                           if (ec || self->done_) return;
                           self->on_readable();
                         });
  }

  void finish() {
    done_ = true;
    fds_.clear();  // closes every fd not handed over
    intake_.give_back_buffer(peer_.charged, held_);
    held_ = 0;
    std::string().swap(bytes_);
    deadline_.cancel();
    boost::system::error_code ec;
    readable_.cancel(ec);
    boost::asio::post(intake_.io_,
                      [self = shared_from_this()] { self->intake_.on_connection_done(self.get()); });
  }

  void on_readable() {
    // Read into one buffer of the loop's; only what came is kept, and only while its owner's
    // share of the daemon's memory has room for it.
    static std::array<char, kReadChunk> chunk;
    const std::size_t room = intake_.config_.max_bytes + 1 - bytes_.size();
    std::array<int, kMaxFds> raw{};
    std::size_t nfds = 0;
    int flags = 0;
    const ssize_t n = wire::receive_with_fds(sock_.get(), chunk.data(), std::min(room, chunk.size()),
                                             raw.data(), raw.size(), &nfds, &flags, true);
    const int err = errno;
    for (std::size_t i = 0; i < std::min(nfds, raw.size()); ++i) fds_.emplace_back(raw[i]);
    if (n < 0) {
      if (err == EAGAIN || err == EINTR) {
        wait();
        return;
      }
      refuse("receive: " + errno_text(err));
      return;
    }
    if (nfds > raw.size() || (flags & MSG_CTRUNC) != 0 || fds_.size() > 1) {
      refuse("expected one file descriptor, got " + std::to_string(std::max(nfds, fds_.size())) +
             (fds_.size() > 1 ? "" : " or more") + " (all closed)");
      return;
    }
    if (n == 0) {
      on_eof();
      return;
    }
    const auto got = static_cast<std::size_t>(n);
    if (bytes_.size() + got > intake_.config_.max_bytes) {
      refuse("payload larger than " + std::to_string(intake_.config_.max_bytes) + " bytes");
      return;
    }
    if (!intake_.take_buffer(peer_.charged, got)) {
      refuse("uid " + std::to_string(peer_.charged) +
             " has too many bytes of unfinished payloads held by the supervisor (" +
             std::to_string(intake_.config_.max_buffered_per_uid) + " per user)");
      return;
    }
    held_ += got;
    const std::string_view fresh(chunk.data(), got);
    bytes_.append(fresh);
    switch (scanner_.feed(fresh)) {
      case oci::Scan::Incomplete:
        wait();
        return;
      case oci::Scan::NotAnObject:
        refuse("malformed payload: not one JSON object (" + std::to_string(bytes_.size()) + " bytes so far)");
        return;
      case oci::Scan::Complete:
        on_payload();
        return;
    }
  }

  void on_eof() {
    if (bytes_.empty() && fds_.empty()) {
      // crun connects before it creates the container and closes without a word when
      // creation fails: not an error of ours.
      intake_.gate_.log().log(
          spdlog::level::info, peer_.charged,
          "oci: " + who() +
              "closed without a payload (crun does this when the container could not be created)");
      done_ = true;
      finish();
      return;
    }
    if (scanner_.state() == oci::Scan::Complete) {
      on_payload();
      return;
    }
    refuse("the runtime closed the connection before a complete payload (" + std::to_string(bytes_.size()) +
           " bytes)");
  }

  void on_payload() {
    auto ps = oci::parse_process_state(bytes_);
    if (!ps) {
      refuse(ps.error());
      return;
    }
    id_ = ps->state.id;
    const std::string prefix = "[c=" + id_ + "] ";
    if (fds_.empty()) {
      refuse("the payload came without a file descriptor (SCM_RIGHTS)");
      return;
    }
    const auto index = oci::listener_index(*ps);
    if (!index) {
      refuse(index.error());
      return;
    }
    if (*index >= fds_.size()) {
      refuse("`fds` names \"seccompFd\" at position " + std::to_string(*index) + " but " +
             std::to_string(fds_.size()) + " fd came");
      return;
    }
    if (!notify::is_listener(fds_[*index].get())) {
      refuse("the file descriptor is not a seccomp listener");
      return;
    }
    pid_t pid = oci::live_pid(*ps);
    if (pid == 0) {
      // crun exec names no process at all; the process is the runtime's child under a filter.
      auto found = filtered_child(peer_.pid);
      if (!found) {
        refuse(found.error());
        return;
      }
      pid = *found;
    }
    auto live = read_live_process(pid);
    if (!live) {
      refuse(live.error());
      return;
    }
    if (auto owns = check_peer_owns(peer_, *live); !owns) {
      refuse(owns.error());
      return;
    }
    const auto metadata = oci::parse_metadata(ps->metadata);
    for (const auto& line : metadata.ignored) {
      spdlog::warn("oci: {}listenerMetadata line `{}` is not key=value: ignored", prefix, line);
    }
    auto choice = oci::select_policy(*ps, metadata, intake_.config_.default_policy);
    if (!choice) {
      refuse(choice.error());
      return;
    }

    // kill-container kills the init: the payload's state.pid, believed only when it is live
    // and the runtime's own, like the caller's process.
    pid_t init_pid = ps->pid != 0 && ps->pid == ps->state.pid ? pid : 0;
    if (init_pid == 0 && ps->state.pid > 0) {
      auto init = read_live_process(ps->state.pid);
      if (init && check_peer_owns(peer_, *init)) init_pid = ps->state.pid;
    }
    OciHandoff handoff{
        ContainerIdentity{ps->state.id, ps->state.bundle, ps->state.status, oci::guess_engine(*ps),
                          ps->state.annotations, ps->pid != 0 && ps->pid != ps->state.pid},
        choice->name,
        choice->source,
        metadata.labels,
        notify::NotifyFd(std::move(fds_[*index])),
        pid,
        init_pid,
        std::move(*live),
        peer_};
    const std::string engine = handoff.identity.engine;
    const bool exec = handoff.identity.exec || ps->pid == 0;
    const std::string labels = join_keys(handoff.labels);
    auto adopted = intake_.adopt_(std::move(handoff));
    if (!adopted) {
      refuse(adopted.error());
      return;
    }
    spdlog::info(
        "{}supervised with policy `{}` (from {}; session {}, mode {}, {} process pid {}, engine {}, "
        "bundle `{}`, runtime pid {} uid {}{}{})",
        prefix, choice->name, oci::to_string(choice->source), adopted->session_id, adopted->mode,
        exec ? "exec" : "init", pid, engine, ps->state.bundle, peer_.pid, peer_.uid,
        labels.empty() ? "" : ", labels ", labels);
    finish();
  }

  OciIntake& intake_;
  UniqueFd sock_;
  boost::asio::posix::stream_descriptor readable_;
  boost::asio::steady_timer deadline_;
  Peer peer_;
  std::string bytes_;
  oci::ObjectScanner scanner_;  // of bytes_, fed as they come
  std::size_t held_ = 0;        // bytes taken from the intake's buffer budget
  std::vector<UniqueFd> fds_;
  std::string id_;
  bool done_ = false;
};

OciIntake::OciIntake(boost::asio::io_context& io, Config config, AdoptFn adopt)
    : io_(io),
      config_(std::move(config)),
      adopt_(std::move(adopt)),
      listener_(io),
      gate_(io, config_.socket_path.filename().string(), config_.limits) {
  // SOCK_STREAM, as the OCI runtimes connect.
  listener_.assign(open_listener(config_.inherited_fd, config_.socket_path, SOCK_STREAM, config_.mode,
                                 config_.group, "oci", owns_path_)
                       .release());
}

OciIntake::~OciIntake() {
  if (owns_path_) ::unlink(config_.socket_path.c_str());
}

void OciIntake::start() {
  accept_next();
  spdlog::info("serving {} (OCI seccomp agent: runc, crun, podman){}", config_.socket_path.string(),
               config_.default_policy.empty() ? "" : "; default policy `" + config_.default_policy + "`");
}

void OciIntake::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  listener_.close(ec);
  if (owns_path_) ::unlink(config_.socket_path.c_str());
  auto conns = connections_;
  for (auto& [c, conn] : conns) conn->refuse("supervisor shutting down");
}

void OciIntake::accept_next() {
  accept_connections(*this, listener_, config_.socket_path, connections_, gate_, stopping_);
}

void OciIntake::on_connection_done(Connection* conn) {
  const uid_t uid = conn->uid();  // alive: the posted handler holds it
  if (connections_.erase(conn) != 0) gate_.release(uid);
}

bool OciIntake::take_buffer(uid_t uid, std::size_t more) {
  if (uid == 0) return true;
  std::size_t& mine = buffered_[uid];
  if (mine + more > config_.max_buffered_per_uid || buffered_others_ + more > config_.max_buffered_others) {
    if (mine == 0) buffered_.erase(uid);
    return false;
  }
  mine += more;
  buffered_others_ += more;
  return true;
}

void OciIntake::give_back_buffer(uid_t uid, std::size_t bytes) {
  if (uid == 0 || bytes == 0) return;
  buffered_others_ -= std::min(buffered_others_, bytes);
  if (const auto it = buffered_.find(uid); it != buffered_.end()) {
    it->second -= std::min(it->second, bytes);
    if (it->second == 0) buffered_.erase(it);
  }
}

}  // namespace sysvisor
