// One supervised listener: the container's trapped calls, answered by its policy.
// The safe order of design.md lives here, once: RECV, open the task, ID_VALID, copy the
// arguments, ID_VALID, decide on the copies, act, SEND. ENOENT means the task is gone.
#pragma once

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <unordered_map>
#include <vector>

#include "sysvisor/audit.hpp"
#include "sysvisor/emulator.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/receiver.hpp"
#include "sysvisor/registry.hpp"
#include "sysvisor/stats.hpp"

namespace sysvisor {

// What every session shares with the daemon.
struct SessionServices {
  mknod::DeviceStore* devices = nullptr;
  audit::Sink* audit = nullptr;
  std::chrono::milliseconds emulation_timeout{10000};
  // At most this many emulations of one session at once; beyond it the session stops
  // receiving until one ends, so a flooding container only delays itself.
  std::size_t max_in_flight = 8;
  stats::Recorder* recorder = nullptr;  // optional: metrics
  HangupWatch* hangups = nullptr;       // tells the session when its tasks have all exited
  audit::Rate audit_rate;               // records per container (docs/audit.md)
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  struct Identity {
    std::string session_id;    // unique in this daemon, names the device nodes
    std::string container_id;  // from the agent, for logs and audit
    pid_t peer_pid = 0;
    uid_t peer_uid = 0;
    pid_t container_pid = 0;  // the process `kill-container` kills (0: unknown)
    std::string engine = "sysvisor-agent";
    bool learn = false;  // launched in learn mode: every trapped call allowed and recorded
  };

  // The session follows its policy by name through `registry`: after a reload, the next call
  // is decided by the new version. If the policy disappears, the session keeps the last one.
  Session(boost::asio::io_context& io, SessionServices services, Identity identity,
          const PolicyRegistry& registry, std::shared_ptr<const policy::Policy> policy,
          notify::NotifyFd listener, std::function<void(const std::string&)> on_closed);
  ~Session();
  Session(const Session&) = delete;
  Session& operator=(const Session&) = delete;

  void start();
  void stop();

  [[nodiscard]] const Identity& identity() const noexcept { return identity_; }
  [[nodiscard]] std::uint64_t handled() const noexcept {
    return counters_.notifications.load(std::memory_order_relaxed);
  }
  // A snapshot (the receiver thread counts too).
  [[nodiscard]] stats::Counters counters() const noexcept;
  [[nodiscard]] const policy::Policy& policy() const noexcept { return *policy_; }

 private:
  struct Pending;

  // On the receiver thread: answers the call when the registers suffice and nothing is to be
  // recorded (deny, allow, return); false hands it to dispatch() on the loop.
  bool try_fast(const seccomp_notif& n);
  // Answers a decision that needs no record and no work beyond the answer (allow, deny,
  // return without audit), from either thread; false for any other.
  bool answer_now(std::uint64_t id, pid_t tid, int nr, const policy::Decision& decision,
                  std::chrono::steady_clock::time_point started);
  // On the loop: a notification the receiver passed; tells the receiver when it is answered.
  void dispatch_slow(const seccomp_notif& n);
  void on_hung_up();
  void dispatch(const seccomp_notif& n);
  void follow_registry();
  void kill_container(pid_t tid);
  // The Emulate branch of dispatch(): the emulation's copy, ID_VALID, start, and either the
  // answer now or a Pending job answered by finish_emulation().
  void emulate(Result<std::unique_ptr<emul::Emulation>> prepared, std::uint64_t id,
               const task::TaskHandle& task, const policy::Call& call, const policy::Decision& decision,
               const Result<void>& copied, const std::string& raw_path, bool compat32, audit::Event event,
               std::chrono::steady_clock::time_point started);
  // Records the answer in `event`, writes the audit record when asked, then answers: the
  // record exists before the caller goes on.
  void send_answer(std::uint64_t id, const emul::Answer& a, audit::Event& event, bool audit, int nr,
                   policy::Action action, std::chrono::steady_clock::time_point started);
  // Completes `event` with the answer and writes it (subject to the rate limit).
  void record(audit::Event& event, const emul::Answer& a, std::chrono::steady_clock::time_point started);
  void wait_for_helper(std::uint64_t id);
  void finish_emulation(std::uint64_t id);
  // Writes the record (after the summary of those held back, if any).
  void write_audit(audit::Event& event, std::chrono::steady_clock::time_point started);
  // Whether the container's rate limit lets one more record through; if not, it is counted
  // for the summary. Never delays or changes the answer.
  bool admit_record();
  // The summary of the records held back, if any.
  void flush_suppressed();
  // SEND's failure is logged, except ENOENT: the task is gone, nobody is waiting.
  void warn_unless_gone(const Result<void>& sent, pid_t tid) const;
  // Counts one decided call (every answer path comes here once).
  void account(int nr, policy::Action action, std::chrono::steady_clock::time_point started);
  void account_error();
  void close();

  boost::asio::io_context& io_;
  SessionServices services_;
  Identity identity_;
  const PolicyRegistry& registry_;
  std::shared_ptr<const policy::Policy> policy_;
  std::uint64_t generation_ = 0;
  UniqueFd container_pidfd_;
  notify::NotifyFd listener_;
  std::function<void(const std::string&)> on_closed_;
  std::unordered_map<std::uint64_t, std::unique_ptr<Pending>> pending_;
  emul::SessionState state_;  // device nodes and mounts made for this container
  bool closed_ = false;
  bool hung_up_ = false;
  // What the receiver thread reads: the policy and the registry generation it belongs to,
  // replaced together by follow_registry().
  struct Snapshot {
    std::shared_ptr<const policy::Policy> policy;
    std::uint64_t generation = 0;
  };
  std::atomic<std::shared_ptr<const Snapshot>> snapshot_;
  std::unique_ptr<Receiver> receiver_;
  struct AtomicCounters {
    std::atomic<std::uint64_t> notifications{0}, emulated{0}, allowed{0}, denied{0}, returned{0}, killed{0},
        errors{0};
    std::atomic<std::int64_t> last_activity_ns{0};  // system_clock
  };
  AtomicCounters counters_;
  audit::Bucket bucket_;
  std::uint32_t suppressed_ = 0;
  std::chrono::system_clock::time_point suppressed_since_, suppressed_until_;
  boost::asio::steady_timer summary_timer_;
  bool summary_armed_ = false;
};

}  // namespace sysvisor
