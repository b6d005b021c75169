#include "sysvisor/server.hpp"

#include <fcntl.h>
#include <linux/kcmp.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <boost/asio/steady_timer.hpp>
#include <cstring>
#include <stdexcept>
#include <thread>

#include "agent.pb.h"
#include "sysvisor/filter.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/trusted_files.hpp"
#include "sysvisor/wire.hpp"

#ifndef SYSVISOR_VERSION
#define SYSVISOR_VERSION "unknown"
#endif

namespace sysvisor {
namespace {

SessionServices session_services(mknod::DeviceStore& devices, audit::Sink& audit, const config::Config& cfg) {
  SessionServices services;
  services.devices = &devices;
  services.audit = &audit;
  services.audit_rate =
      audit::Rate{static_cast<double>(cfg.audit_rate.per_second), static_cast<double>(cfg.audit_rate.burst)};
  return services;
}

// The mode a container really runs in: learn when launched so (and granted), else its policy's.
const char* running_mode(const policy::Policy& pol, bool learn) {
  return learn ? policy::to_string(policy::Mode::Learn) : policy::to_string(pol.mode);
}

// The handshakes per uid on agent.sock and oci.sock: the configuration's limits.handshakes_per_uid
// (read at the start only: the gates are made once).
ConnectionLimits handshake_limits(ServerConfig& server) {
  server.limits.per_uid = server.config.limits.handshakes_per_uid;
  return server.limits;
}

// A container whose policy is no longer loaded after a restart: every call its filter traps is
// refused (EPERM) until a reload brings the policy back (sessions follow their policy by name).
std::shared_ptr<const policy::Policy> deny_everything(const std::string& name) {
  auto p = std::make_shared<policy::Policy>();
  p->name = name;
  p->version = "fallback";
  p->description = "policy not loaded: every trapped call is refused";
  policy::Rule r;
  r.name = "fallback: policy `" + name + "` is not loaded";
  r.origin = name;
  r.action = policy::Action::Deny;
  r.err = EPERM;
  for (int nr = 0; nr < 1024; ++nr) r.syscalls.push_back(nr);
  p->rules.push_back(r);
  p->own_rules.push_back(std::move(r));
  p->build_index();
  return p;
}

// `binary --version` runs and exits 0 within 5 s: what an upgrade checks before it commits.
std::string runs(const std::string& binary) {
  const pid_t child = ::fork();
  if (child < 0) return std::string("fork: ") + std::strerror(errno);
  if (child == 0) {
    const int null = ::open("/dev/null", O_WRONLY);
    if (null >= 0) {
      ::dup2(null, 1);
      ::dup2(null, 2);
    }
    ::execl(binary.c_str(), binary.c_str(), "--version", static_cast<char*>(nullptr));
    ::_exit(127);
  }
  int status = 0;
  for (int i = 0; i < 500; ++i) {
    const pid_t r = ::waitpid(child, &status, WNOHANG);
    if (r == child) {
      if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return {};
      return "`" + binary + " --version` failed (" +
             (WIFEXITED(status) ? "exit status " + std::to_string(WEXITSTATUS(status))
                                : "signal " + std::to_string(WTERMSIG(status))) +
             ")";
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, &status, 0);
  return "`" + binary + " --version` did not finish within 5 s";
}

std::uint64_t serial_of(std::string_view session_id) {
  if (session_id.size() < 2 || session_id[0] != 's') return 0;
  std::uint64_t v = 0;
  for (const char c : session_id.substr(1)) {
    if (c < '0' || c > '9') return 0;
    v = v * 10 + static_cast<std::uint64_t>(c - '0');
  }
  return v;
}

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
  Connection(Server& server, UniqueFd sock, config::Peer peer)
      : server_(server),
        sock_(std::move(sock)),
        readable_(server.io_, sock_.get()),
        deadline_(server.io_),
        peer_(std::move(peer)) {
    peer_pid_ = peer_.pid;
    peer_uid_ = peer_.uid;
  }
  ~Connection() {
    boost::system::error_code ec;
    readable_.cancel(ec);
    [[maybe_unused]] const int fd = readable_.release();
  }
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  void start() {
    arm_deadline(server_.config_.hello_timeout, "no hello within the timeout");
    wait();
  }

  void drop(const std::string& why) {
    if (done_) return;
    done_ = true;
    server_.agent_gate_.log().warn(
        peer_.charged, fmt::format("agent connection (pid {} uid {}) closed: {}", peer_pid_, peer_uid_, why));
    finish();
  }

  [[nodiscard]] uid_t uid() const noexcept { return peer_.charged; }

 private:
  // Re-arming cancels the wait before (its handler sees operation_aborted).
  void arm_deadline(std::chrono::milliseconds after, const char* why) {
    deadline_.expires_after(after);
    deadline_.async_wait([self = shared_from_this(), why, after](const boost::system::error_code& ec) {
      if (ec) return;
      self->drop(std::string(why) + " (" + std::to_string(after.count()) + " ms)");
    });
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
    server_.agent_gate_.log().warn(
        peer_.charged, fmt::format("agent (pid {} uid {}) refused: {}", peer_pid_, peer_uid_, reason));
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
      on_handoff(std::move(packet->fd), static_cast<pid_t>(msg.handoff().pid()));
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
    const LoadedPolicy* loaded = server_.registry_.find(hello.policy());
    if (loaded == nullptr) {
      refuse("unknown policy `" + hello.policy() + "` (yours to use: " + server_.usable_names(peer_) + ")");
      return;
    }
    if (auto why = config::refusal(server_.config_.config, peer_, hello.policy()); !why.empty()) {
      refuse(why);
      return;
    }
    // Learn mode turns the policy's enforcement off: only where the configuration grants it.
    // The agent can still be told, so a refused request refuses the container before it runs.
    if (hello.learn()) {
      if (auto why = config::learn_refusal(server_.config_.config, peer_, hello.policy()); !why.empty()) {
        refuse(why + "; run without --learn, or grant it with `learn:` in the configuration");
        return;
      }
    }
    if (auto why = server_.admission(peer_.charged, hello.container_id(), -1); !why.empty()) {
      refuse(why);
      return;
    }
    policy_ = loaded->policy;
    filter_ = loaded->bpf;
    container_id_ = hello.container_id();
    learn_ = hello.learn();
    v1::SupervisorMessage msg;
    auto* spec = msg.mutable_filter();
    spec->set_policy(policy_->name);
    spec->set_bpf(reinterpret_cast<const char*>(filter_.data()), filter_.size() * sizeof(sock_filter));
    const std::vector<int> trapped = policy_->syscalls();
    spec->set_futex_free(std::find(trapped.begin(), trapped.end(), SYS_futex) == trapped.end());
    if (auto r = wire::send_message(sock_.get(), msg); !r) {
      drop(r.error().message());
      return;
    }
    hello_done_ = true;
    arm_deadline(server_.config_.handshake_timeout, "no handoff within the timeout after the hello");
    wait();
  }

  void on_handoff(UniqueFd fd, pid_t pid) {
    if (!fd) {
      refuse("the handoff carried no listener fd");
      return;
    }
    if (!notify::is_listener(fd.get())) {
      refuse("the handed-over fd is not a seccomp listener");
      return;
    }
    // Checked again: another uid's container may have taken the id since the hello.
    if (auto why = server_.admission(peer_.charged, container_id_, fd.get()); !why.empty()) {
      refuse(why);
      return;
    }
    const std::string session_id = "s" + std::to_string(++server_.next_session_);
    // Ready first: the agent execs the workload while the session is set up (its trapped calls
    // wait in the kernel until the receiver thread takes them). Should the set-up fail, the
    // listener closes and those calls fail with ENOSYS: closed, never unsupervised.
    v1::SupervisorMessage msg;
    msg.mutable_ready()->set_session_id(session_id);
    (void)wire::send_message(sock_.get(), msg);
    // The agent's pid for the workload is believed only if it is the peer or its descendant
    // namespace's init it just made; else kill-container has nobody to kill but the caller.
    Session::Identity identity{session_id,      container_id_, peer_pid_,
                               peer_uid_,       peer_.charged, plausible_init(pid) ? pid : 0,
                               "sysvisor-agent"};
    identity.learn = learn_;
    if (server_.metrics_) server_.metrics_->set_owner(container_id_, peer_.charged);
    auto session =
        std::make_shared<Session>(server_.io_, server_.services(peer_.charged, container_id_), identity,
                                  server_.registry_, policy_, notify::NotifyFd(std::move(fd)),
                                  [&srv = server_](const std::string& id) { srv.on_session_closed(id); });
    server_.sessions_.emplace(session_id, Supervised{session, filter_});
    server_.launch(session, false, filter_);
    spdlog::info("[c={}] supervised with policy `{}` (session {}, agent pid {} uid {}, owner {}, mode {})",
                 container_id_, policy_->name, session_id, peer_pid_, peer_uid_, peer_.charged,
                 running_mode(*policy_, learn_));
    finish();
  }

  // The handoff's pid must be a live process owned by the peer (its uid, or a user
  // namespace the peer owns), so that kill-container never reaches anyone else's process.
  [[nodiscard]] bool plausible_init(pid_t pid) const {
    if (pid <= 0) return false;
    struct stat st {};
    const std::string dir = "/proc/" + std::to_string(pid);
    if (::stat(dir.c_str(), &st) != 0) return false;
    return peer_.uid == 0 || st.st_uid == peer_.uid;
  }

  Server& server_;
  UniqueFd sock_;
  boost::asio::posix::stream_descriptor readable_;
  boost::asio::steady_timer deadline_;
  config::Peer peer_;
  pid_t peer_pid_ = 0;
  uid_t peer_uid_ = 0;
  std::vector<sock_filter> filter_;
  bool hello_done_ = false;
  bool done_ = false;
  std::shared_ptr<const policy::Policy> policy_;
  std::string container_id_;
  bool learn_ = false;  // Hello.learn: every trapped call allowed and recorded
};

std::expected<PolicySet, std::vector<std::string>> load_policies(const std::filesystem::path& dir,
                                                                 const policy::InForce& in_force) {
  auto loaded = policy::load_policy_dir(dir, in_force);
  if (!loaded) {
    std::vector<std::string> errors;
    for (const auto& e : loaded.error()) errors.push_back(e.diagnostic());
    return std::unexpected(errors);
  }
  for (const auto& w : loaded->warnings) spdlog::warn("{}", w.format());
  PolicySet out;
  std::vector<std::string> errors;
  for (const auto& [name, pol] : loaded->policies) {
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

policy::InForce files_of(const PolicySet& set) {
  policy::InForce files;
  for (const auto& [name, loaded] : set) files.emplace(name, loaded.policy->pos.file);
  return files;
}

void apply_audit_failure(const config::Config& cfg) {
  audit::Sink::set_failure_action(
      audit::parse_failure_action(cfg.audit_failure).value_or(audit::FailureAction::Keep));
}

std::expected<std::pair<config::Config, PolicySet>, std::vector<std::string>> load_all(
    const ServerConfig& server, const policy::InForce& in_force) {
  config::Config cfg;
  // Root grants what these files say: nobody else may be able to change them, anywhere on
  // their path (sshd's StrictModes), checked before they are read.
  if (!server.config_file.empty()) {
    if (auto ok = trusted::check_file(server.config_file, "configuration file"); !ok) {
      return std::unexpected(std::vector<std::string>{ok.error()});
    }
    auto loaded = config::load_config(server.config_file);
    if (!loaded) {
      std::vector<std::string> errors;
      for (const auto& e : loaded.error()) errors.push_back(e.diagnostic());
      return std::unexpected(errors);
    }
    cfg = std::move(*loaded);
  }
  if (server.policies_override) cfg.policies_dir = *server.policies_override;
  if (server.audit_override) cfg.audit = *server.audit_override;
  if (server.audit_failure_override) cfg.audit_failure = *server.audit_failure_override;
  if (server.runtime_override) cfg.runtime_dir = *server.runtime_override;
  if (server.default_policy_override) cfg.default_policy = *server.default_policy_override;
  if (server.metrics_override) cfg.metrics_listen = *server.metrics_override;
  std::vector<std::string> untrusted;
  if (auto ok = trusted::check_dir(cfg.policies_dir, "policies directory"); !ok) {
    untrusted.push_back(ok.error());
  } else if (auto files = policy::policy_files(cfg.policies_dir)) {
    for (const auto& file : *files) {
      if (auto checked = trusted::check_file(file, "policy file"); !checked)
        untrusted.push_back(checked.error());
    }
  }
  if (!untrusted.empty()) return std::unexpected(untrusted);
  auto policies = load_policies(cfg.policies_dir, in_force);
  if (!policies) return std::unexpected(policies.error());
  if (!cfg.default_policy.empty() && !policies->contains(cfg.default_policy)) {
    const std::string where = cfg.file.empty() ? std::string("the configuration") : cfg.file.string();
    return std::unexpected(std::vector<std::string>{where + ": default_policy `" + cfg.default_policy +
                                                    "` is not among the policies in `" +
                                                    cfg.policies_dir.string() + "`"});
  }
  return std::pair{std::move(cfg), std::move(*policies)};
}

Server::Server(boost::asio::io_context& io, ServerConfig config, PolicySet policies,
               mknod::DeviceStore& devices, audit::Sink& audit)
    : io_(io),
      config_(std::move(config)),
      registry_(std::move(policies)),
      devices_(devices),
      audit_(audit),
      socket_path_(config_.config.runtime_dir / "agent.sock"),
      listener_(io),
      signals_(io, SIGTERM, SIGINT),
      hangups_(io, SIGHUP),
      upgrades_(io, SIGUSR2),
      quiet_timer_(io),
      agent_gate_(io, "agent.sock", handshake_limits(config_)),
      listener_hangups_(io),
      ticker_(io) {
  try {
    bind_socket();
  } catch (...) {
    // A later socket (oci, control, metrics) failed: agent.sock, if we bound it, goes too.
    if (listener_.is_open() && !agent_activated_) ::unlink(socket_path_.c_str());
    throw;
  }
}

SessionServices Server::services(uid_t owner, const std::string& container_id) {
  SessionServices s = session_services(devices_, audit_, config_.config);
  s.recorder = metrics_.get();
  s.hangups = &listener_hangups_;
  // The audit rate limit holds per container and per owner uid, not per session: the budgets
  // live as long as a session holds them (a uid's for the daemon's life: closing and opening
  // sessions must not refill it), and a reload with another rate gives new sessions new ones.
  std::erase_if(container_budgets_, [](const auto& entry) { return entry.second.expired(); });
  auto& weak = container_budgets_[{owner, container_id}];
  auto budget = weak.lock();
  if (!budget || budget->rate.per_second != s.audit_rate.per_second ||
      budget->rate.burst != s.audit_rate.burst) {
    budget = std::make_shared<AuditBudget>(s.audit_rate);
    weak = budget;
  }
  s.container_budget = budget;
  const std::uint32_t per_uid = config_.config.audit_rate.per_uid;
  if (owner != 0 && per_uid > 0 && !s.audit_rate.unlimited()) {
    const audit::Rate rate{s.audit_rate.per_second * per_uid, s.audit_rate.burst * per_uid};
    auto& held = uid_budgets_[owner];
    if (!held || held->rate.per_second != rate.per_second || held->rate.burst != rate.burst) {
      held = std::make_shared<AuditBudget>(rate);
    }
    s.uid_budget = held;
  }
  return s;
}

std::string Server::admission(uid_t owner, const std::string& container_id, int listener) const {
  // A container id is its first user's while any of its sessions lives.
  for (const auto& [id, s] : sessions_) {
    const Session::Identity& who = s.session->identity();
    if (who.container_id == container_id && who.owner != owner) {
      return "container id `" + container_id +
             "` is in use by another user's container; choose another id (an id belongs to the user "
             "that first used it while any of its processes is supervised)";
    }
  }
  // Seccomp listeners are anon inodes that all share one inode: the open file description
  // tells one from another. A listener adopted twice would be served by two sessions.
  if (listener >= 0) {
    const pid_t self = ::getpid();
    for (const auto& [id, s] : sessions_) {
      const int theirs = s.session->listener_fd();
      if (theirs < 0) continue;
      const long same = ::syscall(SYS_kcmp, self, self, KCMP_FILE, listener, theirs);
      if (same == 0) {
        return "this seccomp listener is already supervised: a listener is adopted once (its "
               "container's calls are answered by the first session)";
      }
      if (same < 0 && errno == ENOSYS) {
        // A kernel without CONFIG_CHECKPOINT_RESTORE has no kcmp: a listener handed off twice
        // is then not recognised (each session still counts against its uid's bound).
        static bool warned = false;
        if (!warned) {
          warned = true;
          spdlog::warn("kcmp(2) is not available: a seccomp listener handed off twice cannot be recognised");
        }
        break;
      }
    }
  }
  const std::uint32_t bound = config_.config.limits.sessions_per_uid;
  if (owner != 0 && bound > 0) {
    const auto live = static_cast<std::size_t>(std::ranges::count_if(
        sessions_, [owner](const auto& entry) { return entry.second.session->identity().owner == owner; }));
    if (live >= bound) {
      return "uid " + std::to_string(owner) + " has " + std::to_string(live) +
             " supervised processes, its bound (limits.sessions_per_uid in the supervisor's "
             "configuration); wait for one to exit";
    }
  }
  return {};
}

void Server::bind_socket() {
  const config::Config& cfg = config_.config;
  // Socket activation: what systemd passed by name is taken over, the rest bound as usual.
  auto inherited = [&](std::string_view name) {
    const auto it = config_.listen_fds.find(name);
    return it == config_.listen_fds.end() ? -1 : it->second;
  };
  if (const int fd = inherited("agent"); fd >= 0) {
    listener_.assign(take_listener(fd, SOCK_SEQPACKET, "agent").release());
    agent_activated_ = !config_.own_sockets.contains("agent");
  } else {
    listener_.assign(listen_unix(socket_path_, SOCK_SEQPACKET, cfg.socket_mode, cfg.socket_group).release());
  }
  OciIntake::Config oci_config{
      cfg.runtime_dir / "oci.sock", cfg.default_policy, cfg.socket_mode, cfg.socket_group,
      config_.handshake_timeout,    config_.limits};
  oci_config.inherited_fd = inherited("oci");
  oci_ = std::make_unique<OciIntake>(io_, std::move(oci_config),
                                     [this](OciHandoff handoff) { return adopt(std::move(handoff)); });
  if (config_.own_sockets.contains("oci")) oci_->claim_path();
  control_ = std::make_unique<control::ControlServer>(
      io_,
      control::ControlServer::Config{cfg.runtime_dir / "control.sock", cfg.control_group,
                                     inherited("control")},
      [this](const control::v1::Request& request, const config::Peer& peer) {
        return answer(request, peer);
      });
  if (config_.own_sockets.contains("control")) control_->claim_path();
  if (!cfg.metrics_listen.empty()) {
    auto listen = metrics::parse_listen(cfg.metrics_listen);
    if (!listen) throw std::runtime_error(listen.error());
    metrics_ = std::make_unique<metrics::Metrics>();
    metrics_http_ = std::make_unique<metrics::HttpServer>(io_, metrics::HttpServer::Config{*listen}, [this] {
      return metrics_->render(
          metrics::Gauges{container_count(), notifications_total(),
                          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count(),
                          registry_.generation()});
    });
  }
}

Server::~Server() {
  for (auto& [id, s] : sessions_) s.session->stop();
  if (!agent_activated_) ::unlink(socket_path_.c_str());
}

void Server::start() {
  signals_.async_wait([this](const boost::system::error_code& ec, int sig) {
    if (ec) return;
    if (fdstore_.enabled() && !sessions_.empty()) {
      // systemd keeps the listeners: a restart finds them; a stop closes them after us.
      spdlog::info(
          "signal {}: handing {} supervised processes to systemd's file descriptor store, then "
          "stopping",
          sig, sessions_.size());
      begin_handover(Handover::Stop);
      return;
    }
    spdlog::info("signal {}: shutting down", sig);
    shutdown();
  });
  wait_for_upgrade();
  if (fdstore_.enabled() && config_.mount_ns_fd >= 0) {
    fdstore_.store(config_.mount_ns_fd, std::string(handover::kMountNamespaceName));
  }
  adopt_inherited();
  {
    // What the previous daemon left in the store that no container's record names (its direct
    // worker's spare node; nodes of a session whose listener did not come back) goes.
    std::set<std::string, std::less<>> claimed;
    for (const auto& [id, sup] : sessions_)
      claimed.insert(sup.session->nodes().begin(), sup.session->nodes().end());
    devices_.remove_unclaimed(claimed);
  }
  wait_for_hangup();
  accept_next();
  oci_->start();
  control_->start();
  spdlog::info("serving {} (status, containers, reload: {})", control_->path().string(),
               config_.config.control_group
                   ? "root and group " + std::to_string(*config_.config.control_group)
                   : std::string("root only"));
  if (metrics_http_) {
    metrics_http_->start();
    const auto listen = metrics::parse_listen(config_.config.metrics_listen);
    if (listen && listen->is_unix()) {
      spdlog::info("serving metrics on unix:{} (GET /metrics)", listen->path.string());
    } else {
      spdlog::info("serving metrics on http://{}:{}/metrics",
                   config_.config.metrics_listen.substr(0, config_.config.metrics_listen.rfind(':')),
                   metrics_http_->port());
    }
  }
  tick();
  std::string names;
  for (const auto& [name, p] : registry_.all()) {
    names += (names.empty() ? "" : ", ") + name + " v" + p.policy->version + " (" +
             std::to_string(p.bpf.size()) + " BPF instructions)";
  }
  spdlog::info("serving {} with policies: {}; configuration: {}", socket_path_.string(),
               names.empty() ? "none" : names,
               config_.config_file.empty() ? "built-in" : config_.config_file.string());
}

void Server::wait_for_upgrade() {
  upgrades_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || stopping_) return;
    spdlog::info("SIGUSR2: upgrading in place");
    if (auto why = upgrade(); !why.empty()) spdlog::error("upgrade: {}", why);
    wait_for_upgrade();
  });
}

void Server::wait_for_hangup() {
  hangups_.async_wait([this](const boost::system::error_code& ec, int) {
    if (ec || stopping_) return;
    spdlog::info("SIGHUP: reloading the configuration and the policies");
    (void)reload();
    wait_for_hangup();
  });
}

std::expected<void, std::vector<std::string>> Server::reload() {
  auto loaded = load_all(config_, files_of(registry_.all()));
  if (!loaded) {
    for (const auto& e : loaded.error()) spdlog::error("reload: {}", e);
    spdlog::error("reload failed with {} error(s): the running configuration and policies stay in force",
                  loaded.error().size());
    // The running sink is reopened all the same: logrotate sends the SIGHUP after moving the
    // log, and a policy broken meanwhile must not keep the records going to the moved file,
    // which the next rotation compresses and deletes.
    if (auto r = audit_.reopen(); !r) spdlog::error("reload: reopen the audit log: {}", r.error().message());
    return std::unexpected(loaded.error());
  }
  auto& [cfg, policies] = *loaded;
  const config::Config& old = config_.config;
  if (cfg.runtime_dir != old.runtime_dir || cfg.socket_mode != old.socket_mode ||
      cfg.socket_group != old.socket_group || cfg.control_group != old.control_group ||
      cfg.metrics_listen != old.metrics_listen) {
    spdlog::warn("reload: runtime_dir and socket settings apply at the next start; kept {} (mode {:o})",
                 old.runtime_dir.string(), old.socket_mode);
    cfg.runtime_dir = old.runtime_dir;
    cfg.socket_mode = old.socket_mode;
    cfg.socket_group = old.socket_group;
    cfg.control_group = old.control_group;
    cfg.metrics_listen = old.metrics_listen;
  }
  if (cfg.audit != audit_.where()) {
    auto sink = audit::Sink::open(cfg.audit);
    if (!sink) {
      spdlog::error("reload: {}; the running configuration and policies stay in force",
                    sink.error().message());
      return std::unexpected(std::vector<std::string>{sink.error().message()});
    }
    audit_ = std::move(*sink);
  } else if (auto r = audit_.reopen(); !r) {
    spdlog::error("reload: reopen the audit log: {}", r.error().message());
  }
  // Running containers keep the filter their agent installed: say which new rules need
  // calls it does not trap.
  for (const auto& [id, s] : sessions_) {
    if (s.filter.empty()) continue;
    const std::string& name = s.session->policy().name;
    const auto it = policies.find(name);
    if (it == policies.end()) continue;
    const auto& now = it->second.bpf;
    const bool same =
        now.size() == s.filter.size() &&
        std::equal(now.begin(), now.end(), s.filter.begin(), [](const sock_filter& a, const sock_filter& b) {
          return a.code == b.code && a.jt == b.jt && a.jf == b.jf && a.k == b.k;
        });
    if (!same) {
      std::string added;
      const auto before = s.session->policy().syscalls();
      for (const int nr : it->second.policy->syscalls()) {
        if (!std::ranges::binary_search(before, nr))
          added += (added.empty() ? "" : ", ") + policy::syscall_name(nr);
      }
      spdlog::warn(
          "[c={}] policy `{}` v{} traps other calls than this container's filter{}{}: rules that need "
          "calls its filter does not trap apply to new containers only",
          s.session->identity().container_id, name, it->second.policy->version,
          added.empty() ? "" : "; not trapped here: ", added);
    }
  }
  std::string names;
  for (const auto& [name, p] : policies)
    names += (names.empty() ? "" : ", ") + name + " v" + p.policy->version;
  config_.config = std::move(cfg);
  apply_audit_failure(config_.config);
  registry_.replace(std::move(policies));
  oci_->set_default_policy(config_.config.default_policy);
  spdlog::info("reload: in force: {}", names.empty() ? "no policies" : names);
  return {};
}

void Server::shutdown() {
  if (stopping_) return;
  stopping_ = true;
  boost::system::error_code ec;
  listener_.close(ec);
  signals_.cancel(ec);
  hangups_.cancel(ec);
  upgrades_.cancel(ec);
  quiet_timer_.cancel();
  ticker_.cancel();
  if (!agent_activated_) ::unlink(socket_path_.c_str());
  oci_->shutdown();
  control_->shutdown();
  if (metrics_http_) metrics_http_->shutdown();
  for (auto& [c, conn] : connections_) conn->drop("supervisor shutting down");
  auto sessions = sessions_;
  for (auto& [id, s] : sessions) s.session->stop();
  io_.stop();
}

void Server::accept_next() {
  accept_connections(*this, listener_, socket_path_, connections_, agent_gate_, stopping_);
}

void Server::on_connection_done(Connection* conn) {
  const uid_t uid = conn->uid();  // alive: the posted handler holds it
  if (connections_.erase(conn) != 0) agent_gate_.release(uid);
}

void Server::on_session_closed(const std::string& session_id) {
  const auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return;
  const std::string container_id = it->second.session->identity().container_id;
  closed_notifications_ += it->second.session->counters().notifications;
  closed_errors_ += it->second.session->counters().errors;
  sessions_.erase(it);
  if (!handed_over_) {
    fdstore_.remove_session(session_id);
  }
  // A container's metric series go with its last session.
  if (metrics_ && std::ranges::none_of(sessions_, [&](const auto& entry) {
        return entry.second.session->identity().container_id == container_id;
      })) {
    metrics_->forget(container_id);
  }
}

void Server::tick() {
  rate_.sample(notifications_total());
  // The counts a crash would lose are at most a second's.
  if (!handing_over_) {
    for (auto& [id, sup] : sessions_) sup.session->save_state_if_changed();
  }
  ticker_.expires_after(std::chrono::seconds(1));
  ticker_.async_wait([this](const boost::system::error_code& ec) {
    if (ec || stopping_) return;
    tick();
  });
}

std::uint64_t Server::notifications_total() const {
  std::uint64_t total = closed_notifications_;
  for (const auto& [id, s] : sessions_) total += s.session->counters().notifications;
  return total;
}

std::size_t Server::container_count() const {
  std::set<std::string_view> ids;
  for (const auto& [id, s] : sessions_) ids.insert(s.session->identity().container_id);
  return ids.size();
}

control::v1::PolicySet Server::policy_set() const {
  control::v1::PolicySet set;
  set.set_generation(registry_.generation());
  for (const auto& [name, p] : registry_.all()) {
    auto* entry = set.add_policies();
    entry->set_name(name);
    entry->set_version(p.policy->version);
  }
  return set;
}

control::v1::Response Server::answer(const control::v1::Request& request, const config::Peer& peer) {
  control::v1::Response response;
  switch (request.request_case()) {
    case control::v1::Request::kStatus: {
      auto* status = response.mutable_status();
      status->set_version(SYSVISOR_VERSION);
      status->set_pid(static_cast<std::uint32_t>(::getpid()));
      status->set_uptime_seconds(
          std::chrono::duration<double>(std::chrono::steady_clock::now() - started_).count());
      status->set_containers(static_cast<std::uint32_t>(container_count()));
      status->set_sessions(static_cast<std::uint32_t>(sessions_.size()));
      status->set_notifications_per_second(rate_.per_second());
      status->set_notifications_total(notifications_total());
      std::uint64_t errors = closed_errors_;
      for (const auto& [id, s] : sessions_) errors += s.session->counters().errors;
      status->set_errors_total(errors);
      *status->mutable_policy_set() = policy_set();
      break;
    }
    case control::v1::Request::kContainers: {
      std::vector<control::SessionStats> all;
      all.reserve(sessions_.size());
      for (const auto& [id, s] : sessions_) {
        const Session::Identity& who = s.session->identity();
        const policy::Policy& pol = s.session->policy();
        all.push_back({who.container_id, who.engine, who.container_pid, pol.name, pol.version,
                       s.session->counters(), who.owner});
      }
      *response.mutable_containers() = control::containers_reply(all);
      break;
    }
    case control::v1::Request::kReload: {
      spdlog::info("control: reload requested by uid {} (pid {})", peer.uid, peer.pid);
      auto* reply = response.mutable_reload();
      auto done = reload();
      reply->set_ok(done.has_value());
      if (!done) {
        for (const auto& e : done.error()) reply->add_errors(e);
      }
      *reply->mutable_policy_set() = policy_set();
      break;
    }
    case control::v1::Request::kUpgrade: {
      auto* reply = response.mutable_upgrade();
      reply->set_pid(static_cast<std::uint32_t>(::getpid()));
      reply->set_binary(config_.binary);
      reply->set_sessions(static_cast<std::uint32_t>(sessions_.size()));
      if (peer.uid != 0) {
        reply->set_error("only root may upgrade the daemon (uid " + std::to_string(peer.uid) + " asked)");
        break;
      }
      spdlog::info("control: upgrade requested by uid {} (pid {})", peer.uid, peer.pid);
      const std::string why = upgrade();
      reply->set_ok(why.empty());
      reply->set_error(why);
      break;
    }
    case control::v1::Request::REQUEST_NOT_SET:
      response.mutable_error()->set_message("empty request");
      break;
  }
  return response;
}

std::string Server::usable_names(const config::Peer& peer) const {
  return registry_.names(
      [&](const std::string& name) { return config::refusal(config_.config, peer, name).empty(); });
}

void Server::launch(const std::shared_ptr<Session>& session, bool oci,
                    const std::vector<sock_filter>& filter) {
  state::v1::Session base;
  base.set_oci(oci);
  if (!filter.empty()) {
    base.set_filter(
        std::string(reinterpret_cast<const char*>(filter.data()), filter.size() * sizeof(sock_filter)));
  }
  if (auto file = handover::StateFile::create()) {
    session->set_state_file(std::move(*file), std::move(base));
  } else {
    spdlog::warn("[c={}] {}: this container will not outlive a restart of the daemon",
                 session->identity().container_id, file.error().message());
  }
  session->start();
  if (session->listener_fd() < 0) return;  // closed at once
  if (handing_over_) session->quiesce();   // handed over with the others
  fdstore_.store_session(session->identity().session_id, session->listener_fd(), session->state_fd(),
                         session->pidfd());
}

void Server::adopt_inherited() {
  if (!config_.inherited) return;
  handover::Inherited inherited = std::move(*config_.inherited);
  config_.inherited.reset();
  for (const auto& p : inherited.problems) spdlog::error("take over: {}", p);
  std::size_t taken = 0;
  for (auto& [session_id, stored] : inherited.sessions) {
    next_session_ = std::max(next_session_, serial_of(session_id));
    if (!stored.listener || !notify::is_listener(stored.listener.get())) {
      spdlog::error(
          "take over: session {} has no seccomp listener among the inherited fds: its state is dropped",
          session_id);
      fdstore_.remove_session(session_id);
      continue;
    }
    std::optional<handover::StateFile> file;
    std::expected<handover::StateFile::Read, std::string> read =
        std::unexpected(std::string("no state memfd"));
    if (stored.state) {
      if (auto adopted = handover::StateFile::adopt(std::move(stored.state))) {
        file = std::move(*adopted);
        read = file->read();
      } else {
        read = std::unexpected(adopted.error().message());
      }
    }
    state::v1::Session record;
    bool trusted = false;
    if (read && read->version <= handover::kRecordVersion) {
      record = std::move(read->record);
      trusted = true;
    } else if (read) {
      // A newer daemon's record (a downgrade): only what every version keeps (id, owner,
      // policy by name) is believed; the rest is not taken over.
      spdlog::error(
          "take over: session {}: its record has format {}, newer than this daemon's {}: served with policy "
          "`{}` by name; its counts and what sysvisor made for it are not taken over (removed only with the "
          "device store)",
          session_id, read->version, handover::kRecordVersion, read->record.policy());
      record.set_container_id(read->record.container_id());
      record.set_policy(read->record.policy());
      record.set_owner(read->record.owner());
      record.set_engine(read->record.engine());
      record.set_oci(read->record.oci());
    } else {
      spdlog::error(
          "take over: session {}: its record cannot be read ({}): the container is served by the "
          "deny-everything fallback",
          session_id, read.error());
    }
    std::string container_id = record.container_id();
    if (!valid_container_id(container_id)) container_id = "unknown-" + session_id;
    const LoadedPolicy* loaded = record.policy().empty() ? nullptr : registry_.find(record.policy());
    std::shared_ptr<const policy::Policy> pol;
    if (loaded != nullptr) {
      pol = loaded->policy;
      if (trusted && !record.policy_version().empty() && record.policy_version() != pol->version) {
        spdlog::info("[c={}] policy `{}`: version {} -> {} (changed while the daemon was down)", container_id,
                     pol->name, record.policy_version(), pol->version);
      }
    } else {
      const std::string name = record.policy().empty() ? "unknown" : record.policy();
      spdlog::error(
          "[c={}] policy `{}` is not loaded: every call its filter traps is refused (EPERM) until a "
          "reload brings it back",
          container_id, name);
      pol = deny_everything(name);
    }
    const uid_t owner = record.owner();
    Session::Identity identity{session_id,
                               container_id,
                               static_cast<pid_t>(record.peer_pid()),
                               record.peer_uid(),
                               owner,
                               0,
                               record.engine().empty() ? "unknown" : record.engine()};
    identity.learn = record.learn();
    const bool oci = record.oci();
    std::function<void(const std::string&)> on_closed = [this](const std::string& id) {
      on_session_closed(id);
    };
    if (oci) {
      on_closed = [this, container_id](const std::string& id) {
        if (auto group = oci_containers_.find(container_id); group != oci_containers_.end()) {
          group->second.erase(id);
          if (group->second.empty()) oci_containers_.erase(group);
        }
        on_session_closed(id);
      };
    }
    if (metrics_) metrics_->set_owner(container_id, owner);
    auto session =
        std::make_shared<Session>(io_, services(owner, container_id), identity, registry_, pol,
                                  notify::NotifyFd(std::move(stored.listener)), std::move(on_closed));
    std::vector<sock_filter> filter(record.filter().size() / sizeof(sock_filter));
    if (!filter.empty())
      std::memcpy(filter.data(), record.filter().data(), filter.size() * sizeof(sock_filter));
    state::v1::Session base;
    base.set_oci(oci);
    base.set_filter(record.filter());
    std::vector<handover::StateFile::Unanswered> unanswered;
    if (!file) {
      if (auto made = handover::StateFile::create()) file = std::move(*made);
    } else {
      unanswered = file->unanswered();
    }
    if (file) session->set_state_file(std::move(*file), std::move(base));
    if (trusted) {
      session->take_over(record, std::move(unanswered), std::move(stored.pidfd));
    } else {
      session->take_over(state::v1::Session{}, std::move(unanswered), UniqueFd{});
    }
    sessions_.emplace(session_id, Supervised{session, std::move(filter)});
    if (oci) oci_containers_[container_id].insert(session_id);
    session->start();
    if (session->listener_fd() >= 0)
      fdstore_.store_session(session_id, session->listener_fd(), session->state_fd(), session->pidfd());
    ++taken;
  }
  if (taken > 0) {
    spdlog::info("took over {} supervised processes ({} containers) from the previous daemon", taken,
                 container_count());
  }
  audit::Daemon rec;
  rec.set_event("daemon");
  audit::set_time(*rec.mutable_time(), std::chrono::system_clock::now());
  rec.set_action("start");
  rec.set_pid(static_cast<std::uint32_t>(::getpid()));
  rec.set_version(SYSVISOR_VERSION);
  rec.set_sessions(static_cast<std::uint32_t>(taken));
  audit_.write(rec);
}

namespace {
std::string stuck_refusal(std::size_t stuck) {
  return "upgrade refused: " + std::to_string(stuck) +
         " worker thread(s) are stuck reading a container's memory (a FUSE page that is never "
         "served): executing the new binary would wait for them forever; the running daemon goes "
         "on (restart it under systemd to replace it)";
}
}  // namespace

std::string Server::upgrade() {
  if (stopping_ || handing_over_) return "the daemon is already stopping or upgrading";
  if (config_.binary.empty()) return "the daemon's own binary is not known (/proc/self/exe)";
  if (const std::size_t stuck = Session::stuck_workers(); stuck > 0) return stuck_refusal(stuck);
  if (auto why = runs(config_.binary); !why.empty()) return why + "; the running daemon goes on";
  // The new binary reads the configuration and the policies as they are on disk now, and would
  // refuse to start on an error, dropping every container: refused here instead, as a reload is.
  if (auto loaded = load_all(config_, files_of(registry_.all())); !loaded) {
    for (const auto& e : loaded.error()) spdlog::error("upgrade: {}", e);
    return "upgrade refused: " + std::to_string(loaded.error().size()) +
           " error(s) in the configuration or the policies on disk (the first: " + loaded.error().front() +
           "); the running daemon goes on";
  }
  // After the reply to `sysvisor upgrade` has gone out (50 ms): a daemon with nothing in flight
  // would otherwise execute the new binary before writing it.
  handing_over_ = true;
  quiet_timer_.expires_after(std::chrono::milliseconds(50));
  quiet_timer_.async_wait([this](const boost::system::error_code& ec) {
    if (!ec) begin_handover(Handover::Upgrade);
  });
  return {};
}

void Server::begin_handover(Handover why) {
  handing_over_ = true;
  // New handshakes wait in the sockets' backlogs (or are refused while the binary changes).
  for (auto& [c, conn] : connections_) conn->drop("supervisor restarting");
  for (auto& [id, sup] : sessions_) sup.session->begin_quiesce();
  for (auto& [id, sup] : sessions_) sup.session->quiesce();
  // A call held by a helper or a worker is answered within the emulation timeout.
  const auto timeout = session_services(devices_, audit_, config_.config).emulation_timeout;
  wait_quiet(why, std::chrono::steady_clock::now() + timeout + std::chrono::seconds(1));
}

void Server::wait_quiet(Handover why, std::chrono::steady_clock::time_point give_up) {
  const bool quiet = std::ranges::all_of(sessions_, [](const auto& e) { return e.second.session->quiet(); });
  if (quiet || std::chrono::steady_clock::now() >= give_up) {
    if (!quiet) spdlog::warn("handover: some calls were still being answered when the time ran out");
    finish_handover(why);
    return;
  }
  quiet_timer_.expires_after(std::chrono::milliseconds(5));
  quiet_timer_.async_wait([this, why, give_up](const boost::system::error_code& ec) {
    if (!ec) wait_quiet(why, give_up);
  });
}

void Server::finish_handover(Handover why) {
  for (auto& [id, sup] : sessions_) sup.session->save_state();
  audit::Daemon rec;
  rec.set_event("daemon");
  audit::set_time(*rec.mutable_time(), std::chrono::system_clock::now());
  rec.set_action("handover");
  rec.set_reason(why == Handover::Upgrade ? "upgrade" : "stop");
  rec.set_pid(static_cast<std::uint32_t>(::getpid()));
  rec.set_version(SYSVISOR_VERSION);
  rec.set_sessions(static_cast<std::uint32_t>(sessions_.size()));
  audit_.write(rec);
  if (why == Handover::Stop) {
    handed_over_ = true;
    for (auto& [id, sup] : sessions_) sup.session->detach();
    shutdown();
    return;
  }
  std::vector<std::pair<std::string, int>> fds;
  for (const auto& [name, fd] : config_.listen_fds) {  // systemd's sockets
    if (!config_.own_sockets.contains(name)) fds.emplace_back(name, fd);
  }
  // The sockets it bound itself go along too, as if activated: a runtime's OCI handoff or an
  // agent's hello waiting in a backlog is served by the new binary, not lost with the old one.
  const auto own = [&](const std::string& name, int fd) {
    if (fd >= 0 && (!config_.listen_fds.contains(name) || config_.own_sockets.contains(name)))
      fds.emplace_back(std::string(kOwnSocketPrefix) + name, fd);
  };
  own("agent", listener_.native_handle());
  if (oci_) own("oci", oci_->listening_fd());
  if (control_) own("control", control_->listening_fd());
  if (config_.mount_ns_fd >= 0)
    fds.emplace_back(std::string(handover::kMountNamespaceName), config_.mount_ns_fd);
  for (const auto& [id, sup] : sessions_) {
    const Session& s = *sup.session;
    if (s.listener_fd() < 0) continue;
    fds.emplace_back(handover::listener_name(id), s.listener_fd());
    if (s.state_fd() >= 0) fds.emplace_back(handover::state_name(id), s.state_fd());
    if (s.pidfd() >= 0) fds.emplace_back(handover::pidfd_name(id), s.pidfd());
  }
  if (const std::size_t stuck = Session::stuck_workers(); stuck > 0) {
    spdlog::error("{}", stuck_refusal(stuck));
    handing_over_ = false;
    for (auto& [id, sup] : sessions_) sup.session->resume();
    return;
  }
  // Again, just before: the files may have changed while the calls in hand were finished.
  if (auto loaded = load_all(config_, files_of(registry_.all())); !loaded) {
    for (const auto& e : loaded.error()) spdlog::error("upgrade: {}", e);
    spdlog::error(
        "upgrade refused: {} error(s) in the configuration or the policies on disk; the running "
        "daemon goes on",
        loaded.error().size());
    handing_over_ = false;
    for (auto& [id, sup] : sessions_) sup.session->resume();
    return;
  }
  spdlog::info("upgrade: executing {} with {} supervised processes", config_.binary, sessions_.size());
  spdlog::default_logger()->flush();
  const SysError failed = handover::exec_with_fds(config_.binary, config_.argv, fds);
  spdlog::error("upgrade: {}; this daemon goes on serving", failed.message());
  handing_over_ = false;
  for (auto& [id, sup] : sessions_) sup.session->resume();
}

std::expected<OciAdopted, std::string> Server::adopt(OciHandoff handoff) {
  if (stopping_) return std::unexpected("the supervisor is shutting down");
  const LoadedPolicy* loaded = registry_.find(handoff.policy);
  if (loaded == nullptr) {
    return std::unexpected(
        "unknown policy `" + handoff.policy + "` (named by the " + oci::to_string(handoff.policy_source) +
        "). To fix it, name a loaded policy in the profile's listenerMetadata "
        "(`policy=NAME`) or add the policy to the supervisor's policy directory; yours to use: " +
        usable_names(handoff.peer));
  }
  if (auto why = config::refusal(config_.config, handoff.peer, handoff.policy); !why.empty()) {
    return std::unexpected(why);
  }
  const std::string container_id = handoff.identity.id;
  const uid_t owner = handoff.peer.charged;
  if (auto why = admission(owner, container_id, handoff.listener.get()); !why.empty()) {
    return std::unexpected(why);
  }
  const std::string session_id = "s" + std::to_string(++next_session_);
  Session::Identity identity{session_id, container_id,     handoff.peer.pid,       handoff.peer.uid,
                             owner,      handoff.init_pid, handoff.identity.engine};
  // Learn mode at launch: listenerMetadata `learn=true` or annotation io.sysvisor.learn=true,
  // only where the configuration grants it to this peer for this policy. Whoever writes the
  // annotations (a pod's author) is not whoever the runtime runs as, and the runtime cannot be
  // told of a refusal (refusing the handoff would leave its trapped calls failing with ENOSYS):
  // a refused request runs in the policy's own mode, and the log says so.
  const auto learn_label = handoff.labels.find("learn");
  const auto learn_annotation = handoff.identity.annotations.find("io.sysvisor.learn");
  const char* asked_by =
      learn_label != handoff.labels.end() && learn_label->second == "true" ? "listenerMetadata `learn=true`"
      : learn_annotation != handoff.identity.annotations.end() && learn_annotation->second == "true"
          ? "annotation io.sysvisor.learn=true"
          : nullptr;
  if (asked_by != nullptr) {
    if (auto why = config::learn_refusal(config_.config, handoff.peer, handoff.policy); !why.empty()) {
      spdlog::warn("[c={}] learn mode asked for by the {} is not granted: {}; the container runs in mode {}",
                   container_id, asked_by, why, running_mode(*loaded->policy, false));
    } else {
      identity.learn = true;
    }
  }
  const std::string mode = running_mode(*loaded->policy, identity.learn);
  if (metrics_) metrics_->set_owner(container_id, owner);
  auto session = std::make_shared<Session>(
      io_, services(owner, container_id), identity, registry_, loaded->policy, std::move(handoff.listener),
      [this, container_id](const std::string& id) {
        if (auto group = oci_containers_.find(container_id); group != oci_containers_.end()) {
          group->second.erase(id);
          if (group->second.empty()) oci_containers_.erase(group);
        }
        on_session_closed(id);
      });
  // The runtime's filter, not ours: nothing to compare at a reload.
  sessions_.emplace(session_id, Supervised{session, {}});
  auto& group = oci_containers_[container_id];
  group.insert(session_id);
  launch(session, true, {});
  if (group.size() > 1) {
    spdlog::info("[c={}] process {} joins the container ({} supervised processes)", container_id, handoff.pid,
                 group.size());
  }
  return OciAdopted{session_id, mode};
}

}  // namespace sysvisor
