// One supervised listener: the container's trapped calls, answered by its policy.
// The safe order of design.md lives here, once: RECV, open the task, ID_VALID, copy the
// arguments, ID_VALID, decide on the copies, act, SEND. ENOENT means the task is gone.
//
// Threads. The receiver thread (receiver.hpp) answers what the registers decide. Everything
// else goes through the loop to the session's own worker thread, which does all that touches
// the container: /proc/TID, reads and writes of its memory, path resolution, the emulations.
// A page of the caller's memory can be a FUSE or userfaultfd page that never arrives, so the
// worker may wait for ever: it then delays only its own container. The loop owns the shared
// state (audit, pending helpers, the session's device nodes and mounts) and sends the worker's
// answers; a call the worker has not answered within the emulation timeout is answered by the
// loop instead (EFAULT: the memory could not be read; EINTR: not looked at yet), and the
// worker's late result is dropped. A stuck worker is replaced once per session; how many may be
// stuck per uid and per daemon is bounded (session.cpp).
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
#include <mutex>
#include <string>
#include <unordered_map>
#include <vector>

#include "sysvisor/audit.hpp"
#include "sysvisor/emulator.hpp"
#include "sysvisor/handover.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/receiver.hpp"
#include "sysvisor/registry.hpp"
#include "sysvisor/stats.hpp"

namespace sysvisor {

// The emulation timeout sessions get unless told otherwise (`serve --emulation-timeout-ms`):
// set once at start-up, before the first session.
void set_default_emulation_timeout(std::chrono::milliseconds timeout);
[[nodiscard]] std::chrono::milliseconds default_emulation_timeout();

// The audit rate limit of one scope, shared by every session in it (docs/audit.md, "Rate
// limit"): the daemon keeps one per container (owner uid and id) and one per non-root owner
// uid, so N sessions of a container, or of a uid, together get what one session would. Used
// on the loop and on the sessions' worker threads, under `m`. A container's budget also counts
// the records held back, for its `suppressed` summaries.
struct AuditBudget {
  explicit AuditBudget(audit::Rate r) : rate(r), bucket(r) {}
  const audit::Rate rate;
  std::mutex m;
  audit::Bucket bucket;
  std::uint32_t suppressed = 0;  // held back since the last summary
  std::chrono::system_clock::time_point suppressed_since, suppressed_until;
  bool summary_armed = false;  // a session's timer will write the summary
};

// What every session shares with the daemon.
struct SessionServices {
  mknod::DeviceStore* devices = nullptr;
  audit::Sink* audit = nullptr;
  // How long one slow call may take: reading or writing the caller's memory, an emulation's
  // helper. Past it the call is answered with an errno.
  std::chrono::milliseconds emulation_timeout = default_emulation_timeout();
  // At most this many emulations of one session at once; beyond it the session stops
  // receiving until one ends, so a flooding container only delays itself.
  std::size_t max_in_flight = 8;
  stats::Recorder* recorder = nullptr;  // optional: metrics
  HangupWatch* hangups = nullptr;       // tells the session when its tasks have all exited
  audit::Rate audit_rate;               // records per container (docs/audit.md)
  // The container's budget (null: one of the session's own, at audit_rate) and its owner's
  // (null: none, as for root).
  std::shared_ptr<AuditBudget> container_budget;
  std::shared_ptr<AuditBudget> uid_budget;
};

class Session : public std::enable_shared_from_this<Session> {
 public:
  struct Identity {
    std::string session_id;    // unique in this daemon, names the device nodes
    std::string container_id;  // from the agent, for logs and audit
    pid_t peer_pid = 0;
    uid_t peer_uid = 0;
    uid_t owner = 0;          // the uid the handoff was charged to (config::Peer::charged): owns the id
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

  // Restart and upgrade (handover.hpp). Before start(): the session's state memfd (its
  // journal from then on), and for a session taken over from a previous daemon what that one
  // recorded: counters, device nodes, mounts, and the calls it received and left unanswered
  // (start() answers those the kernel still holds). `base` holds what the daemon adds to each
  // record (oci, filter).
  void set_state_file(handover::StateFile file, state::v1::Session base);
  // `pidfd`: the container's init as the previous daemon held it (invalid: none).
  void take_over(const state::v1::Session& record, std::vector<handover::StateFile::Unanswered> unanswered,
                 UniqueFd pidfd);
  // Writes the record now (the loop calls it after every change of what sysvisor made, and on
  // its tick when the counters moved).
  void save_state();
  void save_state_if_changed();
  [[nodiscard]] int state_fd() const noexcept { return state_file_ ? state_file_->fd() : -1; }
  [[nodiscard]] int pidfd() const noexcept { return container_pidfd_.get(); }
  // The device store nodes made for it (names), as its record keeps them.
  [[nodiscard]] const std::vector<std::string>& nodes() const noexcept { return state_.nodes; }
  // Stops taking calls (they wait in the kernel); quiet() once every call taken is answered.
  // begin_quiesce() only tells the receiver, so that many sessions stop together.
  // Workers given up on in a caller's memory (a FUSE page that never comes), daemon-wide: an
  // execve would wait for them forever (it must end every other thread first).
  [[nodiscard]] static std::size_t stuck_workers();
  void begin_quiesce();
  void quiesce();
  [[nodiscard]] bool quiet() const noexcept;
  void resume();  // takes calls again (an upgrade that failed)
  // The daemon hands the container to its successor: closing or destroying the session then
  // leaves its device nodes in the store.
  void detach() noexcept { detached_ = true; }

  [[nodiscard]] const Identity& identity() const noexcept { return identity_; }
  [[nodiscard]] std::uint64_t handled() const noexcept {
    return counters_.notifications.load(std::memory_order_relaxed);
  }
  // A snapshot (the receiver thread counts too).
  [[nodiscard]] stats::Counters counters() const noexcept;
  [[nodiscard]] const policy::Policy& policy() const noexcept { return *policy_; }
  // The seccomp listener (for recognising a listener handed off twice); -1 once closed.
  [[nodiscard]] int listener_fd() const noexcept { return closed_ ? -1 : listener_.get(); }

 private:
  struct Pending;
  struct Work;     // a slow call, from the loop to the worker and back
  struct Outcome;  // what the worker found and did: the loop answers
  struct Shared;   // what the worker threads share with the session (may outlive it)
  struct InFlight {
    std::shared_ptr<Work> work;
    std::unique_ptr<boost::asio::steady_timer> deadline;
  };

  // On the receiver thread: answers the call when the registers suffice and nothing is to be
  // recorded (deny, allow, return); false hands it to dispatch_slow() (loop, then worker).
  bool try_fast(const seccomp_notif& n);
  // Answers a decision that needs no record and no work beyond the answer (allow, deny,
  // return without audit), from either thread; false for any other.
  bool answer_now(std::uint64_t id, pid_t tid, int nr, const policy::Decision& decision,
                  std::chrono::steady_clock::time_point started);
  // On the loop: a notification the receiver passed goes to the worker, with its deadline.
  // The receiver is told (answered()) once the call is answered.
  // `retry`: a call a killed daemon had begun to emulate (its effect may be done).
  void dispatch_slow(const seccomp_notif& n, bool retry = false);
  [[nodiscard]] Receiver::Hooks receiver_hooks();
  // A retried call's answer, given what the first attempt may have done: a umount2 that would
  // go to the kernel (or get EINVAL) while a mount the record names is gone from the caller's
  // mount namespace is the killed daemon's work: success, and the mount is forgotten. (A
  // retried mknod whose node is there is settled on the worker: made_before.)
  [[nodiscard]] emul::Answer settle_retry(const seccomp_notif& n, const emul::Answer& a);
  void on_hung_up();
  // On a worker thread: the safe order up to the decision, and the action's work (emulation
  // start included). Touches no session state but what `Shared` holds.
  static std::unique_ptr<Outcome> examine(Shared& shared, const Work& work);
  static void run_worker(const std::shared_ptr<Shared>& shared);
  // Starts a worker thread for `shared` if the per-uid and daemon bounds allow.
  static void spawn_worker(const std::shared_ptr<Shared>& shared);
  // On the loop: the worker's result (answered now, or a helper to wait for).
  void complete(const std::shared_ptr<Outcome>& outcome);
  // On the loop: a call not answered by the worker in time.
  void on_deadline(std::uint64_t id);
  void wait_pending(std::uint64_t id, std::unique_ptr<emul::Job> job, audit::Event event, bool audit, int nr,
                    std::chrono::steady_clock::time_point started, bool answered);
  void publish_state();
  void arm_summary();
  void follow_registry();
  void kill_container(pid_t tid);
  // Records the answer in `event`, writes the audit record when asked, then answers: the
  // record exists before the caller goes on.
  void send_answer(std::uint64_t id, const emul::Answer& a, audit::Event& event, bool audit, int nr,
                   policy::Action action, std::chrono::steady_clock::time_point started);
  // Completes `event` with the answer and writes it (subject to the rate limit).
  // Returns whether the record was written.
  bool record(audit::Event& event, const emul::Answer& a, std::chrono::steady_clock::time_point started);
  void wait_for_helper(std::uint64_t id);
  void finish_emulation(std::uint64_t id);
  // Writes the record (after the summary of those held back, if any).
  bool write_audit(audit::Event& event, std::chrono::steady_clock::time_point started);
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
  std::unordered_map<std::uint64_t, InFlight> in_flight_;  // with the worker
  std::shared_ptr<Shared> shared_;
  emul::SessionState state_;  // device nodes and mounts made for this container (loop; the
                              // worker reads a copy, publish_state())
  bool closed_ = false;
  bool hung_up_ = false;
  bool detached_ = false;
  std::shared_ptr<handover::StateFile> state_file_;  // the workers mark calls that act
  state::v1::Session base_record_;
  std::uint64_t saved_notifications_ = ~0ULL;            // the count the last record holds
  std::vector<handover::StateFile::Unanswered> replay_;  // taken over unanswered, answered by start()
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
  boost::asio::steady_timer summary_timer_;  // the audit bucket itself is in Shared
};

}  // namespace sysvisor
