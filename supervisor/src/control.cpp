#include "sysvisor/control.hpp"

#include <google/protobuf/util/json_util.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <ctime>
#include <stdexcept>

#include "sysvisor/audit.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::control {

bool may_control(const config::Peer& peer, std::optional<gid_t> group) {
  if (peer.uid == 0) return true;
  if (!group) return false;
  return peer.gid == *group || std::ranges::find(peer.groups, *group) != peer.groups.end();
}

std::string rfc3339(std::chrono::system_clock::time_point t) {
  if (t.time_since_epoch().count() == 0) return {};
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(t.time_since_epoch()).count();
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  ::gmtime_r(&secs, &tm);
  std::array<char, 32> buf{};
  const std::size_t n = std::strftime(buf.data(), buf.size(), "%Y-%m-%dT%H:%M:%S", &tm);
  std::array<char, 8> frac{};
  std::snprintf(frac.data(), frac.size(), ".%03dZ", static_cast<int>(ms % 1000));
  return std::string(buf.data(), n) + frac.data();
}

void RateWindow::sample(std::uint64_t total) noexcept {
  ring_[next_] = total;
  next_ = (next_ + 1) % ring_.size();
  filled_ = std::min(filled_ + 1, ring_.size());
}

double RateWindow::per_second() const noexcept {
  if (filled_ < 2) return 0;
  const std::size_t newest = (next_ + ring_.size() - 1) % ring_.size();
  const std::size_t oldest = (next_ + ring_.size() - filled_) % ring_.size();
  // Totals only grow; a smaller newest sample would be a bug upstream, not a negative rate.
  if (ring_[newest] < ring_[oldest]) return 0;
  return static_cast<double>(ring_[newest] - ring_[oldest]) / static_cast<double>(filled_ - 1);
}

v1::ContainersReply containers_reply(const std::vector<SessionStats>& sessions) {
  using Key = std::pair<std::string, uid_t>;  // id, owner
  std::map<Key, v1::Container> by_id;
  std::map<Key, std::chrono::system_clock::time_point> last;
  for (const SessionStats& s : sessions) {
    const Key key{s.container_id, s.owner};
    auto [it, fresh] = by_id.try_emplace(key);
    v1::Container& c = it->second;
    if (fresh) {
      c.set_id(s.container_id);
      c.set_owner(s.owner);
      c.set_engine(s.engine);
      c.set_policy(s.policy);
      c.set_policy_version(s.policy_version);
    }
    if (c.pid() == 0 && s.container_pid > 0) c.set_pid(static_cast<std::uint32_t>(s.container_pid));
    c.set_sessions(c.sessions() + 1);
    const stats::Counters& n = s.counters;
    c.set_notifications(c.notifications() + n.notifications);
    c.set_emulated(c.emulated() + n.emulated);
    c.set_allowed(c.allowed() + n.allowed);
    c.set_denied(c.denied() + n.denied);
    c.set_returned(c.returned() + n.returned);
    c.set_killed(c.killed() + n.killed);
    c.set_errors(c.errors() + n.errors);
    auto& when = last[key];
    when = std::max(when, n.last_activity);
  }
  v1::ContainersReply reply;
  for (auto& [id, c] : by_id) {
    c.set_last_activity(rfc3339(last[id]));
    *reply.add_containers() = std::move(c);
  }
  return reply;
}

std::string to_json(const v1::Response& response) {
  google::protobuf::util::JsonPrintOptions options;
  options.preserve_proto_field_names = true;
  options.always_print_primitive_fields = true;
  std::string out;
  if (auto status = google::protobuf::util::MessageToJsonString(response, &out, options); !status.ok()) {
    return R"({"error":{"message":"cannot print the reply as JSON"}})";
  }
  return out;
}

// ---- The daemon's side ----

// One client: its request, the answer, done. Every failure closes it; none throws.
class ControlServer::Connection : public std::enable_shared_from_this<Connection> {
 public:
  Connection(ControlServer& server, UniqueFd sock, config::Peer peer)
      : server_(server),
        sock_(std::move(sock)),
        io_(server.io_, sock_.get()),
        deadline_(server.io_),
        peer_(std::move(peer)) {}
  ~Connection() {
    boost::system::error_code ec;
    io_.cancel(ec);
    [[maybe_unused]] const int fd = io_.release();
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() {
    // One deadline for the whole exchange: the request, then room for the answer.
    deadline_.expires_after(server_.config_.timeout);
    deadline_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      if (ec || self->done_) return;
      self->server_.gate_.log().warn(
          self->peer_.charged,
          fmt::format("control: uid {} (pid {}): no request or no room for the answer within the timeout",
                      self->peer_.uid, self->peer_.pid));
      self->finish();
    });
    wait(boost::asio::posix::stream_descriptor::wait_read);
  }

  void finish() {
    if (done_) return;
    done_ = true;
    deadline_.cancel();
    boost::system::error_code ec;
    io_.cancel(ec);
    boost::asio::post(server_.io_,
                      [self = shared_from_this()] { self->server_.on_connection_done(self.get()); });
  }

  [[nodiscard]] uid_t uid() const noexcept { return peer_.charged; }

 private:
  void wait(boost::asio::posix::stream_descriptor::wait_type what) {
    io_.async_wait(what, [self = shared_from_this(), what](const boost::system::error_code& ec) {
      if (ec || self->done_) return;
      if (what == boost::asio::posix::stream_descriptor::wait_read) {
        self->on_readable();
      } else {
        self->send_pending();
      }
    });
  }

  void on_readable() {
    auto packet = wire::receive_packet(sock_.get(), true);
    if (!packet) {
      if (packet.error().err == EAGAIN) return wait(boost::asio::posix::stream_descriptor::wait_read);
      return bad_request(packet.error().message());
    }
    if (packet->eof) return finish();
    // Checked once the request is read: closing with it unread would reset the connection
    // and the client might see ECONNRESET instead of the reason.
    if (!may_control(peer_, server_.config_.group)) {
      server_.gate_.log().warn(
          peer_.charged, fmt::format("control: uid {} (pid {}) refused: not root{}", peer_.uid, peer_.pid,
                                     server_.config_.group ? " nor in control_group" : ""));
      v1::Response denied;
      denied.mutable_error()->set_message("permission denied: uid " + std::to_string(peer_.uid) +
                                          " is not root" +
                                          (server_.config_.group ? " nor a member of the control group"
                                                                 : " (no control_group is configured)"));
      return reply(denied);
    }
    if (packet->fd) return bad_request("a request carries no file descriptor");
    v1::Request request;
    if (!request.ParseFromString(packet->bytes)) return bad_request("not a control.proto Request");
    if (request.request_case() == v1::Request::REQUEST_NOT_SET) {
      return bad_request("an empty or unknown request (this daemon answers status, containers and reload)");
    }
    reply(server_.handler_(request, peer_));
  }

  void bad_request(const std::string& why) {
    server_.gate_.log().warn(
        peer_.charged, fmt::format("control: uid {} (pid {}): bad request: {}", peer_.uid, peer_.pid, why));
    v1::Response response;
    response.mutable_error()->set_message("bad request: " + why);
    reply(response);
  }

  void reply(const v1::Response& response) {
    if (!response.SerializeToString(&out_)) out_.clear();
    send_pending();
  }

  // One packet, whole or not at all; a reply larger than the socket's buffer grows it (the
  // daemon is root: SO_SNDBUFFORCE).
  void send_pending() {
    for (int attempt = 0; attempt < 2; ++attempt) {
      const ssize_t n = ::send(sock_.get(), out_.data(), out_.size(), MSG_DONTWAIT | MSG_NOSIGNAL);
      if (n >= 0) return finish();
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return wait(boost::asio::posix::stream_descriptor::wait_write);
      if (errno == EMSGSIZE && attempt == 0) {
        const int size = static_cast<int>(std::min<std::size_t>(out_.size() * 2 + 65536, 256u << 20));
        if (::setsockopt(sock_.get(), SOL_SOCKET, SO_SNDBUFFORCE, &size, sizeof size) == 0) continue;
      }
      spdlog::warn("control: send the answer to uid {} (pid {}): {}", peer_.uid, peer_.pid,
                   std::strerror(errno));
      return finish();
    }
    finish();
  }

  ControlServer& server_;
  UniqueFd sock_;
  boost::asio::posix::stream_descriptor io_;
  boost::asio::steady_timer deadline_;
  config::Peer peer_;
  std::string out_;
  bool done_ = false;
};

namespace {

// The audit sink's health goes into every status reply, whoever builds the rest.
void add_audit_status(v1::Response& response) {
  if (!response.has_status()) return;
  const audit::Health h = audit::health();
  v1::AuditStatus& a = *response.mutable_status()->mutable_audit();
  a.set_sink(h.sink);
  a.set_write_failures(h.write_failures);
  a.set_failing(h.failing);
  a.set_last_error(h.last_error);
  a.set_failure_action(std::string(audit::to_string(h.action)));
}

ControlServer::Handler with_audit_status(ControlServer::Handler handler) {
  return [handler = std::move(handler)](const v1::Request& request, const config::Peer& peer) {
    v1::Response response = handler(request, peer);
    add_audit_status(response);
    return response;
  };
}

}  // namespace

ControlServer::ControlServer(boost::asio::io_context& io, Config config, Handler handler)
    : io_(io),
      config_(std::move(config)),
      handler_(with_audit_status(std::move(handler))),
      listener_(io),
      // control.sock is root's and control_group's: a member holds at most a quarter of it.
      gate_(io, "control.sock",
            ConnectionLimits{std::max<std::size_t>(config_.max_connections / 4, 1),
                             config_.max_connections / 2, config_.max_connections}) {
  listener_.assign(open_listener(config_.inherited_fd, config_.socket_path, SOCK_SEQPACKET,
                                 config_.group ? 0660 : 0600, config_.group, "control", owns_path_)
                       .release());
}

ControlServer::~ControlServer() {
  if (owns_path_) ::unlink(config_.socket_path.c_str());
}

void ControlServer::start() {
  accept_next();
}

void ControlServer::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  listener_.close(ec);
  if (owns_path_) ::unlink(config_.socket_path.c_str());
  auto conns = connections_;
  for (auto& [c, conn] : conns) conn->finish();
}

void ControlServer::accept_next() {
  accept_connections(*this, listener_, config_.socket_path, connections_, gate_, stopping_);
}

void ControlServer::on_connection_done(Connection* conn) {
  const uid_t uid = conn->uid();  // alive: the posted handler holds it
  if (connections_.erase(conn) != 0) gate_.release(uid);
}

// ---- The client's side ----

std::expected<v1::Response, ClientError> request(const std::filesystem::path& socket, const v1::Request& req,
                                                 std::chrono::milliseconds timeout) {
  const std::string path = socket.string();
  const auto failed = [&](ClientError::Kind kind, int err, const std::string& what) {
    return std::unexpected(ClientError{kind, err, what});
  };
  const auto unreachable = [&](int err) {
    std::string hint = "(is `sysvisor serve` running?)";
    if (err == EACCES || err == EPERM) {
      hint = "(the control socket is for root, or for the group named by control_group in the configuration)";
    }
    return failed(ClientError::Kind::Unreachable, err,
                  "cannot reach the daemon at " + path + ": " + std::strerror(err) + " " + hint);
  };
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof addr.sun_path) return unreachable(ENAMETOOLONG);
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) return unreachable(errno);
  if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0)
    return unreachable(errno);

  const auto io_failed = [&](const std::string& what, int err) {
    return failed(
        ClientError::Kind::Failed, err,
        "the daemon at " + path + ": " + what + (err != 0 ? std::string(": ") + std::strerror(err) : ""));
  };
  std::string bytes;
  if (!req.SerializeToString(&bytes)) return io_failed("cannot encode the request", 0);
  if (::send(sock.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL) < 0) {
    // A refusal may already be waiting (permission denied): read it before giving up.
    if (errno != EPIPE && errno != ECONNRESET) return io_failed("send the request", errno);
  }
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return io_failed("no answer within " + std::to_string(timeout.count() / 1000) + " s", 0);
    pollfd pfd{sock.get(), POLLIN, 0};
    const int ready = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (ready < 0 && errno == EINTR) continue;
    if (ready < 0) return io_failed("wait for the answer", errno);
    if (ready > 0) break;
  }
  // The packet's size first: a large containers list may exceed any fixed buffer.
  const ssize_t size = ::recv(sock.get(), nullptr, 0, MSG_PEEK | MSG_TRUNC | MSG_DONTWAIT);
  if (size < 0) return io_failed("receive the answer", errno);
  if (size == 0) return io_failed("it closed the connection without an answer", 0);
  constexpr ssize_t kMaxReply = 256 << 20;
  if (size > kMaxReply) return io_failed("the answer is larger than 256 MiB", 0);
  std::string in(static_cast<std::size_t>(size), '\0');
  const ssize_t got = ::recv(sock.get(), in.data(), in.size(), MSG_DONTWAIT);
  if (got != size) return io_failed("receive the answer", got < 0 ? errno : 0);
  v1::Response response;
  if (!response.ParseFromString(in) || response.response_case() == v1::Response::RESPONSE_NOT_SET) {
    return io_failed("the answer is not a control.proto Response", 0);
  }
  return response;
}

}  // namespace sysvisor::control
