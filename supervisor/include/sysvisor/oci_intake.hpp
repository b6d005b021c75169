// The OCI seccomp agent socket (RUNTIME_DIR/oci.sock): runc, crun and podman connect to the
// `linux.seccomp.listenerPath` of their profile, once per process (run and each exec), and send
// a ContainerProcessState JSON with the listener fd. The intake reads it (tolerating what real
// runtimes do), checks it against the live process, and hands it to the Server (adopt).
// Every refusal closes the connection with one log line; nothing here throws after start-up.
#pragma once

#include <sys/types.h>

#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <chrono>
#include <expected>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>

#include "sysvisor/config.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/oci.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor {

// The connecting runtime, from SO_PEERCRED and SO_PEERGROUPS (host view).
using Peer = config::Peer;

// Read from /proc of the live process, never taken from the payload.
struct LiveProcess {
  pid_t pid = 0;
  uid_t uid = 0;        // real uid, host view
  std::string uid_map;  // /proc/PID/uid_map as the host reads it
  std::string gid_map;
  ino_t user_ns = 0;         // inode of its user namespace
  bool own_user_ns = false;  // a user namespace other than the supervisor's
  uid_t user_ns_owner = 0;   // NS_GET_OWNER_UID of it (0 for the initial namespace)
};

// The container as the runtime names it. Every process of one container (run, each exec) has
// the same id, and joins the same container in the supervisor's view.
struct ContainerIdentity {
  std::string id;
  std::string bundle;  // "." from crun exec
  std::string status;  // "creating", "running", ...
  std::string engine;  // a guess, for logs: oci::guess_engine
  std::map<std::string, std::string, std::less<>> annotations;
  bool exec = false;  // the process is not the container's init
};

struct OciHandoff {
  ContainerIdentity identity;
  std::string policy;
  oci::PolicySource policy_source = oci::PolicySource::Default;
  std::map<std::string, std::string, std::less<>> labels;  // listenerMetadata key=value
  notify::NotifyFd listener;
  pid_t pid = 0;       // the live process whose listener this is (state.pid for crun exec)
  pid_t init_pid = 0;  // the container's init (state.pid), checked live like `pid`; 0: unknown
  LiveProcess process;
  Peer peer;  // for per-uid policy permissions
};

// What the Server made of a handoff: its session, and the mode the container really runs in
// ("enforce", "audit" or "learn": learn only when asked for and granted).
struct OciAdopted {
  std::string session_id;
  std::string mode;
};

// Returns the session, or the reason for refusing (then the listener is closed and the
// runtime's trapped calls fail with ENOSYS).
using AdoptFn = std::function<std::expected<OciAdopted, std::string>(OciHandoff)>;

class OciIntake {
 public:
  struct Config {
    std::filesystem::path socket_path;
    std::string default_policy;  // empty: a payload must name its policy
    mode_t mode = 0666;
    std::optional<gid_t> group;
    // The whole payload, from connect: crun connects before it creates the container.
    std::chrono::milliseconds timeout{10000};
    ConnectionLimits limits;  // handshakes in progress, by the peer's uid
    std::size_t max_bytes = oci::kMaxPayloadBytes;
    // Unfinished payloads held for one non-root uid, and for all of them together: a peer
    // that dribbles megabytes over many connections grows the daemon by at most this much.
    std::size_t max_buffered_per_uid = 4 * oci::kMaxPayloadBytes;
    std::size_t max_buffered_others = 64 * oci::kMaxPayloadBytes;
    int inherited_fd = -1;  // socket activation: a listening socket to take over, not bind
  };

  // Binds and listens (mode 0666): throws std::runtime_error at start-up.
  OciIntake(boost::asio::io_context& io, Config config, AdoptFn adopt);
  ~OciIntake();
  OciIntake(const OciIntake&) = delete;
  OciIntake& operator=(const OciIntake&) = delete;

  // A reload may change it; connections still in progress take the new one.
  void set_default_policy(std::string name) { config_.default_policy = std::move(name); }

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

  // Room for `more` bytes of `uid`'s unfinished payloads; taken when granted.
  [[nodiscard]] bool take_buffer(uid_t uid, std::size_t more);
  void give_back_buffer(uid_t uid, std::size_t bytes);

  boost::asio::io_context& io_;
  Config config_;
  AdoptFn adopt_;
  boost::asio::posix::stream_descriptor listener_;
  ConnectionGate gate_;                    // before connections_: outlives them
  std::map<uid_t, std::size_t> buffered_;  // non-root uids' unfinished payload bytes
  std::size_t buffered_others_ = 0;
  std::map<Connection*, std::shared_ptr<Connection>> connections_;
  bool stopping_ = false;
  bool owns_path_ = true;  // not when systemd made the socket
};

// Reads what LiveProcess holds from /proc/PID, pinned by a pidfd so that a reused pid is
// noticed. Errors say what was being read.
[[nodiscard]] std::expected<LiveProcess, std::string> read_live_process(pid_t pid);

// The one child of `parent` (the runtime, from SO_PEERCRED) that is under a seccomp filter:
// the process of a crun exec, whose payload names none.
[[nodiscard]] std::expected<pid_t, std::string> filtered_child(pid_t parent);

// A non-root peer may hand over only its own processes: the process runs as the peer's uid,
// or in a user namespace the peer owns. Root may hand over any. The error says why not.
[[nodiscard]] std::expected<void, std::string> check_peer_owns(const Peer& peer, const LiveProcess& process);

}  // namespace sysvisor
