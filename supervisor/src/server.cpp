#include "sysvisor/server.hpp"

#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <stdexcept>

#include "agent.pb.h"
#include "sysvisor/filter.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor {
namespace {

bool valid_container_id(const std::string& id) {
  if (id.empty() || id.size() > 128) return false;
  for (const char c : id) {
    const auto u = static_cast<unsigned char>(c);
    if (u <= 0x20 || u >= 0x7f) return false;
  }
  return true;
}

}  // namespace

// One agent connection, from hello to handoff. Every violation closes it with a log line.
class Server::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(Server& server, UniqueFd sock)
      : server_(server), sock_(std::move(sock)), readable_(server.io_, sock_.get()), deadline_(server.io_) {
    ucred cred{};
    socklen_t len = sizeof cred;
    if (::getsockopt(sock_.get(), SOL_SOCKET, SO_PEERCRED, &cred, &len) == 0) {
      peer_pid_ = cred.pid;
      peer_uid_ = cred.uid;
    }
  }
  ~Connection() {
    boost::system::error_code ec;
    readable_.cancel(ec);
    [[maybe_unused]] const int fd = readable_.release();
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() {
    deadline_.expires_after(server_.config_.handshake_timeout);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec) return;
      self->drop("no complete handshake within the timeout");
    });
    wait();
  }

  void drop(const std::string& why) {
    if (done_) return;
    done_ = true;
    spdlog::warn("agent connection (pid {} uid {}) closed: {}", peer_pid_, peer_uid_, why);
    finish();
  }

 private:
  void wait() {
    readable_.async_wait(boost::asio::posix::stream_descriptor::wait_read,
                         [self = shared_from_this()](const boost::system::error_code& ec) {
                           if (ec || self->done_) return;
                           self->on_readable();
                         });
  }

  void finish() {
    done_ = true;
    deadline_.cancel();
    boost::system::error_code ec;
    readable_.cancel(ec);
    boost::asio::post(server_.io_,
                      [self = shared_from_this()] { self->server_.on_connection_done(self.get()); });
  }

  void refuse(const std::string& reason) {
    v1::SupervisorMessage msg;
    msg.mutable_refusal()->set_reason(reason);
    (void)wire::send_message(sock_.get(), msg);
    spdlog::warn("agent (pid {} uid {}) refused: {}", peer_pid_, peer_uid_, reason);
    finish();
  }

  void on_readable() {
    auto packet = wire::receive_packet(sock_.get(), true);
    if (!packet) {
      if (packet.error().err == EAGAIN) {
        wait();
        return;
      }
      drop(packet.error().message());
      return;
    }
    if (packet->eof) {
      drop(hello_done_ ? "agent went away before the handoff" : "agent went away before saying hello");
      return;
    }
    v1::AgentMessage msg;
    if (auto r = wire::parse(packet->bytes, msg, "agent message"); !r) {
      drop(r.error().message());
      return;
    }
    if (!hello_done_) {
      if (!msg.has_hello() || packet->fd) {
        drop("expected a hello without file descriptors");
        return;
      }
      on_hello(msg.hello());
    } else {
      if (!msg.has_handoff()) {
        drop("expected the handoff");
        return;
      }
      on_handoff(std::move(packet->fd));
    }
  }

  void on_hello(const v1::Hello& hello) {
    if (hello.protocol_version() != v1::PROTOCOL_VERSION_1) {
      refuse("unsupported protocol version " + std::to_string(hello.protocol_version()) +
             " (this supervisor speaks 1)");
      return;
    }
    if (!valid_container_id(hello.container_id())) {
      refuse("invalid container id: 1 to 128 printable characters without spaces");
      return;
    }
    const auto it = server_.policies_.find(hello.policy());
    if (it == server_.policies_.end()) {
      std::string known;
      for (const auto& [name, _] : server_.policies_) known += (known.empty() ? "" : ", ") + name;
      refuse("unknown policy `" + hello.policy() + "` (known: " + (known.empty() ? "none" : known) + ")");
      return;
    }
    policy_ = it->second.policy;
    container_id_ = hello.container_id();
    v1::SupervisorMessage msg;
    auto* spec = msg.mutable_filter();
    spec->set_policy(policy_->name);
    spec->set_bpf(reinterpret_cast<const char*>(it->second.bpf.data()),
                  it->second.bpf.size() * sizeof(sock_filter));
    if (auto r = wire::send_message(sock_.get(), msg); !r) {
      drop(r.error().message());
      return;
    }
    hello_done_ = true;
    wait();
  }

  void on_handoff(UniqueFd fd) {
    if (!fd) {
      refuse("the handoff carried no listener fd");
      return;
    }
    if (!notify::is_listener(fd.get())) {
      refuse("the handed-over fd is not a seccomp listener");
      return;
    }
    const std::string session_id = "s" + std::to_string(++server_.next_session_);
    Session::Identity identity{session_id, container_id_, peer_pid_, peer_uid_};
    auto session =
        std::make_shared<Session>(server_.io_, SessionServices{&server_.devices_, &server_.audit_}, identity,
                                  policy_, notify::NotifyFd(std::move(fd)),
                                  [&srv = server_](const std::string& id) { srv.on_session_closed(id); });
    server_.sessions_.emplace(session_id, session);
    session->start();
    v1::SupervisorMessage msg;
    msg.mutable_ready()->set_session_id(session_id);
    (void)wire::send_message(sock_.get(), msg);
    spdlog::info("[c={}] supervised with policy `{}` (session {}, agent pid {} uid {})", container_id_,
                 policy_->name, session_id, peer_pid_, peer_uid_);
    finish();
  }

  Server& server_;
  UniqueFd sock_;
  boost::asio::posix::stream_descriptor readable_;
  boost::asio::steady_timer deadline_;
  pid_t peer_pid_ = 0;
  uid_t peer_uid_ = 0;
  bool hello_done_ = false;
  bool done_ = false;
  std::shared_ptr<const policy::Policy> policy_;
  std::string container_id_;
};

std::expected<std::map<std::string, LoadedPolicy, std::less<>>, std::vector<std::string>> load_policies(
    const std::filesystem::path& dir) {
  auto loaded = policy::load_policy_dir(dir);
  if (!loaded) {
    std::vector<std::string> errors;
    for (const auto& e : loaded.error()) errors.push_back(e.format());
    return std::unexpected(errors);
  }
  std::map<std::string, LoadedPolicy, std::less<>> out;
  std::vector<std::string> errors;
  for (const auto& [name, pol] : *loaded) {
    auto bpf = filter::compile(*pol);
    if (!bpf) {
      errors.push_back(pol->pos.file + ": compile filter: " + bpf.error().message());
      continue;
    }
    out.emplace(name, LoadedPolicy{pol, std::move(*bpf)});
  }
  if (!errors.empty()) return std::unexpected(errors);
  return out;
}

Server::Server(boost::asio::io_context& io, ServerConfig config,
               std::map<std::string, LoadedPolicy, std::less<>> policies, mknod::DeviceStore& devices,
               audit::Sink& audit)
    : io_(io),
      config_(std::move(config)),
      policies_(std::move(policies)),
      devices_(devices),
      audit_(audit),
      socket_path_(config_.runtime_dir / "agent.sock"),
      listener_(io),
      signals_(io, SIGTERM, SIGINT) {
  const std::string path = socket_path_.string();
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) {
    throw std::runtime_error("socket path `" + path + "` is longer than " +
                             std::to_string(sizeof addr.sun_path - 1) +
                             " bytes: choose a shorter --runtime-dir");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  // A live socket means another daemon: refuse rather than steal it. A dead one is stale.
  {
    UniqueFd probe(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    if (::connect(probe.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) == 0) {
      throw std::runtime_error("another supervisor is already serving `" + path + "`");
    }
    ::unlink(path.c_str());
  }
  if (::bind(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    throw std::runtime_error("bind `" + path + "`: " + std::strerror(errno));
  }
  // Any local user may launch supervised containers; what a peer can get is only what the
  // policies grant, done with the trapped task's own identity.
  ::chmod(path.c_str(), 0666);
  if (::listen(sock.get(), 128) != 0)
    throw std::runtime_error("listen `" + path + "`: " + std::strerror(errno));
  listener_.assign(sock.release());

  if (!config_.default_policy.empty() && !policies_.contains(config_.default_policy)) {
    throw std::runtime_error("default policy `" + config_.default_policy +
                             "` is not among the loaded policies");
  }
  oci_ =
      std::make_unique<OciIntake>(io_,
                                  OciIntake::Config{config_.runtime_dir / "oci.sock", config_.default_policy,
                                                    config_.handshake_timeout, config_.max_connections},
                                  [this](OciHandoff handoff) { return adopt(std::move(handoff)); });
}

Server::~Server() {
  for (auto& [id, s] : sessions_) s->stop();
  ::unlink(socket_path_.c_str());
}

void Server::start() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    spdlog::info("signal {}: shutting down", sig);
    shutdown();
  });
  accept_next();
  oci_->start();
  std::string names;
  for (const auto& [name, p] : policies_) {
    names += (names.empty() ? "" : ", ") + name + " (" + std::to_string(p.bpf.size()) + " BPF instructions)";
  }
  spdlog::info("serving {} with policies: {}", socket_path_.string(), names.empty() ? "none" : names);
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  listener_.close(ec);
  signals_.cancel(ec);
  ::unlink(socket_path_.c_str());
  oci_->shutdown();
  for (auto& [c, conn] : connections_) conn->drop("supervisor shutting down");
  auto sessions = sessions_;
  for (auto& [id, s] : sessions) s->stop();
  io_.stop();
}

void Server::accept_next() {
  if (stopping_) return;
  listener_.async_wait(
      boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
        if (ec || stopping_) return;
        for (;;) {
          UniqueFd sock(::accept4(listener_.native_handle(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
          if (!sock) {
            if (errno != EAGAIN && errno != EINTR && errno != ECONNABORTED) {
              spdlog::warn("accept on {}: {}", socket_path_.string(), std::strerror(errno));
            }
            break;
          }
          if (connections_.size() >= config_.max_connections) {
            spdlog::warn("too many agent handshakes in progress ({}): connection dropped",
                         connections_.size());
            continue;
          }
          auto conn = std::make_shared<Connection>(*this, std::move(sock));
          connections_.emplace(conn.get(), conn);
          conn->start();
        }
        accept_next();
      });
}

void Server::on_connection_done(Connection* conn) {
  connections_.erase(conn);
}

void Server::on_session_closed(const std::string& session_id) {
  sessions_.erase(session_id);
}

std::expected<std::string, std::string> Server::adopt(OciHandoff handoff) {
  if (stopping_) return std::unexpected("the supervisor is shutting down");
  const auto it = policies_.find(handoff.policy);
  if (it == policies_.end()) {
    std::string known;
    for (const auto& [name, _] : policies_) known += (known.empty() ? "`" : ", `") + name + "`";
    return std::unexpected(
        "unknown policy `" + handoff.policy + "` (named by the " + oci::to_string(handoff.policy_source) +
        "). To fix it, name a loaded policy in the profile's listenerMetadata "
        "(`policy=NAME`) or add the policy to the supervisor's policy directory; loaded: " +
        (known.empty() ? "none" : known));
  }
  const std::string container_id = handoff.identity.id;
  const std::string session_id = "s" + std::to_string(++next_session_);
  Session::Identity identity{session_id, container_id, handoff.peer.pid, handoff.peer.uid};
  auto session = std::make_shared<Session>(
      io_, SessionServices{&devices_, &audit_}, identity, it->second.policy, std::move(handoff.listener),
      [this, container_id](const std::string& id) {
        if (auto group = oci_containers_.find(container_id); group != oci_containers_.end()) {
          group->second.erase(id);
          if (group->second.empty()) oci_containers_.erase(group);
        }
        on_session_closed(id);
      });
  sessions_.emplace(session_id, session);
  auto& group = oci_containers_[container_id];
  group.insert(session_id);
  session->start();
  if (group.size() > 1) {
    spdlog::info("[c={}] process {} joins the container ({} supervised processes)", container_id, handoff.pid,
                 group.size());
  }
  return session_id;
}

}  // namespace sysvisor
