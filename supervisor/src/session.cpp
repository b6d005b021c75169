#include "sysvisor/session.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <linux/openat2.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pthread.h>
#include <spdlog/spdlog.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <condition_variable>
#include <csignal>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <map>
#include <mutex>
#include <optional>
#include <sstream>
#include <thread>

#include "sysvisor/decode.hpp"
#include "sysvisor/filter.hpp"
#include "sysvisor/pidfd.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/task.hpp"

namespace sysvisor {
namespace {

std::atomic<std::int64_t> g_emulation_timeout_ms{10000};

using Clock = std::chrono::steady_clock;

const char* arch_name(std::uint32_t arch, int nr) {
  if (arch == AUDIT_ARCH_I386) return "i386";
  if (arch == AUDIT_ARCH_X86_64) return (static_cast<unsigned>(nr) & 0x40000000U) != 0 ? "x32" : "x86_64";
  return "unknown";
}

bool gone(const SysError& e) {
  return e.err == ENOENT || e.err == ESRCH;
}

std::string hex(std::uint64_t v) {
  std::array<char, 24> buf{};
  std::snprintf(buf.data(), buf.size(), "0x%llx", static_cast<unsigned long long>(v));
  return buf.data();
}

// The record of an audited call: who called (from /proc, only now), what, and what was decided.
void fill_event(audit::Event& event, const Session::Identity& who, const policy::Policy& pol,
                const policy::Call& call, const policy::Decision& decision, std::uint32_t arch, int nr_raw,
                const Result<void>& copied, const std::string& raw_path, const policy::SyscallInfo* info,
                bool mknod_family, mode_t mode, bool path_read, bool forensic) {
  event.set_event("call");
  event.set_container(audit::utf8(who.container_id));
  event.set_owner_uid(who.owner);
  event.set_engine(who.engine);
  event.set_policy(pol.name);
  event.set_policy_version(pol.version);
  const audit::Process proc = audit::describe(static_cast<pid_t>(event.host_tid()));
  event.set_host_pid(proc.host_pid);
  if (proc.container_pid) event.set_container_pid(*proc.container_pid);
  if (proc.container_tid) event.set_container_tid(*proc.container_tid);
  if (!proc.comm.empty()) event.set_comm(audit::utf8(proc.comm));
  if (!proc.exe.empty()) event.set_exe(audit::utf8(proc.exe));
  if (proc.host_uid) event.set_host_uid(*proc.host_uid);
  if (proc.container_uid) event.set_container_uid(*proc.container_uid);
  event.set_syscall(policy::syscall_name(call.nr));
  event.set_arch(arch_name(arch, nr_raw));
  audit::v1::Args& args = *event.mutable_args();
  for (const std::uint64_t r : call.args) args.add_raw(hex(r));
  if (path_read && info != nullptr && info->paths[0].path >= 0) {
    if (copied || !raw_path.empty()) {
      args.set_path(audit::utf8(raw_path));
    } else {
      args.set_path_error(policy::errno_name(copied.error().err));
    }
  }
  for (const auto& p : call.paths) args.add_paths(audit::utf8(p));
  if (mknod_family) {
    args.set_type(call.type ? policy::to_string(*call.type) : "");
    args.set_device(std::to_string(call.major) + ":" + std::to_string(call.minor));
    std::array<char, 16> octal{};
    std::snprintf(octal.data(), octal.size(), "0%o", static_cast<unsigned>(mode & 07777));
    args.set_mode(octal.data());
  }
  if (call.fstype) args.set_fstype(audit::utf8(*call.fstype));
  if (call.source) args.set_source(audit::utf8(*call.source));
  if (call.target) args.set_target(audit::utf8(*call.target));
  if (call.xattr_name) args.set_xattr(audit::utf8(*call.xattr_name));
  if (call.flags) args.set_flags(hex(*call.flags));
  if (call.value_size) args.set_value_size(*call.value_size);
  if (call.sched_policy) args.set_sched_policy(*call.sched_policy);
  if (call.priority) args.set_priority(static_cast<std::int32_t>(*call.priority));
  if (call.nice) args.set_nice(static_cast<std::int32_t>(*call.nice));
  if (forensic) {
    const decode::Forensic f = decode::forensic(call);
    if (!f.clone_flags.empty()) args.set_clone_flags(f.clone_flags);
    if (!f.ns_type.empty()) args.set_ns_type(f.ns_type);
    if (!f.ptrace_request.empty()) args.set_ptrace_request(f.ptrace_request);
    if (f.target_pid) args.set_target_pid(static_cast<std::int32_t>(*f.target_pid));
    if (!f.bpf_cmd.empty()) args.set_bpf_cmd(f.bpf_cmd);
  }
  for (const auto& a : call.argv) args.add_argv(audit::utf8(a));
  if (call.argv_truncated) args.set_argv_truncated(true);
  if (!call.argv_error.empty()) args.set_argv_error(call.argv_error);
  event.set_action(policy::to_string(decision.action));
  if (decision.action == policy::Action::Allow &&
      (!call.paths.empty() || call.fstype || call.source || call.target || call.xattr_name ||
       !call.argv.empty() ||
       (call.priority && info != nullptr && info->family == policy::Family::Sched &&
        call.nr != SYS_setpriority))) {
    event.set_memory_reread(true);
  }
  if (decision.would) event.set_would(policy::to_string(*decision.would));
  if (decision.rule_index >= 0) {
    const policy::Rule& rule = pol.rules[static_cast<std::size_t>(decision.rule_index)];
    event.set_rule(rule.name);
    if (!rule.origin.empty() && rule.origin != pol.name) event.set_rule_policy(rule.origin);
  }
}

// How many worker threads may be stuck (past a call's deadline and not back) per uid of the
// launcher and in the whole daemon. A stuck thread waits in the kernel on a page the
// container's FUSE server or userfaultfd does not deliver; nothing short of killing the
// daemon interrupts it, so what is bounded is how many there may be. While a uid is at its
// bound its sessions get no new worker: their slow calls wait in the queue and are answered
// EINTR at their deadline.
constexpr std::size_t kStuckPerUid = 4;
constexpr std::size_t kStuckTotal = 64;
// A session replaces its stuck worker once: a second stuck thread gets no replacement.
constexpr std::size_t kStuckPerSession = 2;
// The worker's stack: decode and the emulators' start() are shallow, buffers are small.
constexpr std::size_t kWorkerStack = 1024 * 1024;

class StuckWorkers {
 public:
  static StuckWorkers& instance() {
    static StuckWorkers s;
    return s;
  }
  [[nodiscard]] bool may_start(uid_t uid) {
    const std::scoped_lock lock(m_);
    const auto it = per_uid_.find(uid);
    return total_ < kStuckTotal && (it == per_uid_.end() || it->second < kStuckPerUid);
  }
  void stuck(uid_t uid) {
    const std::scoped_lock lock(m_);
    ++per_uid_[uid];
    ++total_;
  }
  void back(uid_t uid) {
    const std::scoped_lock lock(m_);
    if (--per_uid_[uid] == 0) per_uid_.erase(uid);
    --total_;
  }
  [[nodiscard]] std::size_t total() {
    const std::scoped_lock lock(m_);
    return total_;
  }

 private:
  std::mutex m_;
  std::map<uid_t, std::size_t> per_uid_;
  std::size_t total_ = 0;
};

// The answer a decision gives without any work (allow, deny, return); nullopt for the others.
std::optional<emul::Answer> plain_answer(const policy::Decision& d) {
  switch (d.action) {
    case policy::Action::Allow:
      return emul::Answer::let_kernel_decide();
    case policy::Action::Deny:
      return emul::Answer::error(d.err);
    case policy::Action::Return:
      return emul::Answer::returning(d.value);
    default:
      return std::nullopt;
  }
}

}  // namespace

void set_default_emulation_timeout(std::chrono::milliseconds timeout) {
  g_emulation_timeout_ms.store(timeout.count(), std::memory_order_relaxed);
}

std::chrono::milliseconds default_emulation_timeout() {
  return std::chrono::milliseconds(g_emulation_timeout_ms.load(std::memory_order_relaxed));
}

struct Session::Pending {
  std::unique_ptr<emul::Job> job;
  boost::asio::posix::stream_descriptor exited;
  boost::asio::steady_timer deadline;
  audit::Event event;
  bool audit = false;
  int nr = -1;
  Clock::time_point started;
  bool timed_out = false;
  bool answered = false;               // the caller had its answer at the deadline: only finish the job
  std::optional<seccomp_notif> retry;  // a retried call (settle_retry)

  Pending(boost::asio::io_context& io, std::unique_ptr<emul::Job> j)
      : job(std::move(j)), exited(io, ::fcntl(job->pidfd(), F_DUPFD_CLOEXEC, 0)), deadline(io) {}
};

struct Session::Work {
  // kQueued -> kWorking (the worker took it) -> kDone (answered by the worker's outcome, or
  // by the loop at the deadline: whoever moves it to kDone answers, once).
  enum Phase : int { kQueued, kWorking, kDone };
  seccomp_notif n{};
  bool retry = false;  // a killed daemon had begun to emulate it
  std::shared_ptr<const policy::Policy> policy;
  Clock::time_point started;
  std::atomic<int> phase{kQueued};
};

struct Session::Outcome {
  enum class Kind : std::uint8_t {
    Answer,  // send `answer` (after the record)
    Silent,  // nobody to answer: ID_VALID said the call is gone
    Kill,    // record, kill, then answer
    Job,     // a helper runs: the loop waits for it and answers then
  };
  std::shared_ptr<Work> work;
  bool by_worker = false;  // the worker answered before the deadline did
  Kind kind = Kind::Silent;
  int nr = -1;
  policy::Action action = policy::Action::Deny;
  emul::Answer answer;
  audit::Event event;
  bool audit = false;
  bool kill_container = false;
  UniqueFd victim;
  std::unique_ptr<emul::Job> job;
};

// What the worker threads of a session use. They hold it by shared_ptr and never touch the
// Session: a stuck worker may outlive it.
struct Session::Shared {
  Shared(boost::asio::io_context& io_context, int listener_fd, Session::Identity who,
         mknod::DeviceStore* device_store, std::shared_ptr<AuditBudget> container,
         std::shared_ptr<AuditBudget> owner)
      : io(io_context),
        listener(listener_fd),
        identity(std::move(who)),
        devices(device_store),
        budget(std::move(container)),
        uid_budget(std::move(owner)) {}

  boost::asio::io_context& io;
  const int listener;  // the session's; used only under `m` while !closed (then it may be reused)
  const Session::Identity identity;
  mknod::DeviceStore* const devices;
  std::weak_ptr<Session> session;
  std::shared_ptr<handover::StateFile> journal;  // set before start(); may be null

  std::mutex m;
  std::condition_variable cv;
  bool closed = false;  // the session closed: no more work, no more posts to the loop
  std::deque<std::shared_ptr<Work>> queue;
  std::size_t workers = 0;   // threads running, stuck ones included
  std::size_t stuck = 0;     // threads past a deadline, not back yet
  emul::SessionState state;  // the loop's state_ as of its last change (publish_state())
  // The audit rate limits: the container's (shared with its other sessions; it counts what
  // is held back) and the owner's (null: none). Locked in this order, never under `m`.
  const std::shared_ptr<AuditBudget> budget;
  const std::shared_ptr<AuditBudget> uid_budget;

  // ID_VALID, false when the call (or the session) is gone.
  bool id_valid(std::uint64_t id) {
    const std::scoped_lock lock(m);
    if (closed) return false;
    int rc = 0;
    do {
      rc = ::ioctl(listener, SECCOMP_IOCTL_NOTIF_ID_VALID, &id);
    } while (rc < 0 && errno == EINTR);
    return rc == 0;
  }
  // Runs `fn` on the loop, unless the session is gone.
  template <class F>
  bool post(F&& fn) {
    const std::scoped_lock lock(m);
    if (closed) return false;
    boost::asio::post(io, std::forward<F>(fn));
    return true;
  }
  // Whether the container's rate limit lets one more record through; if not, it is counted
  // for the summary (`arm`: the loop must start the summary's timer). Never delays or changes
  // the answer.
  // A record passes when both the container's budget and its owner's have a token; it takes
  // one from each, or from neither.
  bool admit_record(bool& arm) {
    AuditBudget& c = *budget;
    const std::scoped_lock lock(c.m);
    const auto mono = Clock::now();
    bool admitted = c.bucket.ready(mono);
    if (admitted && uid_budget) {
      const std::scoped_lock owner_lock(uid_budget->m);
      admitted = uid_budget->bucket.ready(mono);
      if (admitted) uid_budget->bucket.take();
    }
    if (admitted) {
      c.bucket.take();
      return true;
    }
    const auto now = std::chrono::system_clock::now();
    if (c.suppressed == 0) c.suppressed_since = now;
    c.suppressed_until = now;
    ++c.suppressed;
    if (!c.summary_armed) {
      c.summary_armed = true;
      arm = true;
    }
    return false;
  }
  std::optional<emul::SessionState> state_copy() {
    const std::scoped_lock lock(m);
    if (closed) return std::nullopt;
    return state;
  }
  void close() {
    {
      const std::scoped_lock lock(m);
      closed = true;
      queue.clear();
    }
    cv.notify_all();
  }
};

Session::Session(boost::asio::io_context& io, SessionServices services, Identity identity,
                 const PolicyRegistry& registry, std::shared_ptr<const policy::Policy> policy,
                 notify::NotifyFd listener, std::function<void(const std::string&)> on_closed)
    : io_(io),
      services_(services),
      identity_(std::move(identity)),
      registry_(registry),
      policy_(std::move(policy)),
      generation_(registry.generation()),
      listener_(std::move(listener)),
      on_closed_(std::move(on_closed)),
      summary_timer_(io) {
  snapshot_.store(std::make_shared<const Snapshot>(Snapshot{policy_, generation_}));
  state_.session_id = identity_.session_id;
  state_.container_id = identity_.container_id;
  state_.container_pid = identity_.container_pid;
  state_.devices = services_.devices;
  if (!services_.container_budget)
    services_.container_budget = std::make_shared<AuditBudget>(services_.audit_rate);
  shared_ = std::make_shared<Shared>(io_, listener_.get(), identity_, services_.devices,
                                     services_.container_budget, services_.uid_budget);
  publish_state();
  if (identity_.container_pid > 0) {
    container_pidfd_ = open_pidfd(identity_.container_pid);
  }
}

Session::~Session() {
  shared_->close();  // before listener_ closes: a worker's ID_VALID must not reach a reused fd
  if (receiver_) receiver_->stop();
  for (auto& [id, p] : pending_) {
    p->job->kill();
    (void)p->job->finish(state_);
  }
  // A session handed to the next daemon leaves its nodes to it.
  if (!detached_) {
    for (const auto& node : state_.nodes) services_.devices->remove_node(node);
  }
}

void Session::set_state_file(handover::StateFile file, state::v1::Session base) {
  state_file_ = std::make_shared<handover::StateFile>(std::move(file));
  shared_->journal = state_file_;
  base_record_ = std::move(base);
  listener_.set_journal(state_file_.get());
}

void Session::take_over(const state::v1::Session& record,
                        std::vector<handover::StateFile::Unanswered> unanswered, UniqueFd pidfd) {
  const auto& c = record.counters();
  counters_.notifications.store(c.notifications());
  counters_.emulated.store(c.emulated());
  counters_.allowed.store(c.allowed());
  counters_.denied.store(c.denied());
  counters_.returned.store(c.returned());
  counters_.killed.store(c.killed());
  counters_.errors.store(c.errors());
  counters_.last_activity_ns.store(c.last_activity_ns());
  state_.nodes.assign(record.nodes().begin(), record.nodes().end());
  state_.mounts.assign(record.mounts().begin(), record.mounts().end());
  state_.attached.clear();
  for (const auto& a : record.attached())
    state_.attached.push_back({a.name(), a.mnt_id(), a.ns_id(), a.released()});
  identity_.container_pid = static_cast<pid_t>(record.container_pid());
  state_.container_pid = identity_.container_pid;
  container_pidfd_ = std::move(pidfd);
  publish_state();
  replay_ = std::move(unanswered);
}

emul::Answer Session::settle_retry(const seccomp_notif& n, const emul::Answer& a) {
  const auto nr = filter::identify(n.data.arch, n.data.nr);
  if (!nr || *nr != SYS_umount2) return a;
  const bool einval = a.kind == emul::Answer::Kind::Errno && a.err == EINVAL;
  if (!einval && a.kind != emul::Answer::Kind::Continue) return a;
  // The killed daemon unmounted one of the mounts its record names and died before answering:
  // that mount is gone from the caller's mount namespace (its unique id, STATX_MNT_ID_UNIQUE,
  // looked up there with statmount; where that cannot be asked, nothing counts as gone).
  // Otherwise the kernel's answer stands.
  if (state_.mounts.empty()) return a;
  const UniqueFd ns(::open(("/proc/" + std::to_string(n.pid) + "/ns/mnt").c_str(), O_RDONLY | O_CLOEXEC));
  const std::uint64_t ns_id = ns ? mknod::mount_ns_id(ns.get()) : 0;
  if (ns_id == 0) return a;
  const auto gone = std::ranges::find_if(state_.mounts, [&](const std::uint64_t id) {
    return !mknod::still_mounted(mknod::Attached{{}, id, ns_id, false});
  });
  // The namespace was the caller's, still waiting (a task waiting on a call cannot be reaped).
  if (gone == state_.mounts.end() || !listener_.id_valid(n.id)) return a;
  spdlog::info(
      "[c={} tid={}] umount2 retried after a restart: mount {} is gone, the killed daemon unmounted it",
      identity_.container_id, n.pid, *gone);
  state_.mounts.erase(gone);
  publish_state();
  return emul::Answer::ok();
}

namespace {

// On a worker (it touches the container's files): what a retried mknod finds at its path,
// looked up in the caller's root (or from its cwd or dirfd), no link followed.
//   - Made: the node as asked (type and device), made by the killed daemon before it could
//     answer: a second mknod would fail EEXIST.
//   - Placeholder: an empty regular file, as the killed daemon's caller-side helper leaves it
//     between creating the placeholder and the attach; that helper outlives the daemon (its
//     credential change cleared PR_SET_PDEATHSIG) and removes it when it sees the daemon gone.
// It only spares an answer the first attempt caused; it grants nothing.
enum class Retried { Other, Made, Placeholder };
Retried retried_mknod(const seccomp_notif& n, int nr, const std::string& path) {
  if (path.empty() || filter::is_compat32(n.data.arch)) return Retried::Other;
  const bool at = nr == SYS_mknodat;
  const auto mode = static_cast<mode_t>(n.data.args[at ? 2 : 1]);
  const auto dev = static_cast<dev_t>(n.data.args[at ? 3 : 2]);
  const std::string proc = "/proc/" + std::to_string(n.pid);
  std::string base = proc + "/root";
  if (!path.starts_with('/')) {
    const auto dirfd = static_cast<int>(n.data.args[0]);
    base = at && dirfd != AT_FDCWD ? proc + "/fd/" + std::to_string(dirfd) : proc + "/cwd";
  }
  const UniqueFd dir(::open(base.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!dir) return Retried::Other;
  open_how how{};
  how.flags = O_PATH | O_NOFOLLOW | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const UniqueFd node(static_cast<int>(::syscall(SYS_openat2, dir.get(), path.c_str(), &how, sizeof how)));
  struct stat st {};
  if (!node || ::fstat(node.get(), &st) != 0) return Retried::Other;
  if ((st.st_mode & S_IFMT) == (mode & S_IFMT) && (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) &&
      st.st_rdev == dev)
    return Retried::Made;
  return S_ISREG(st.st_mode) && st.st_size == 0 && st.st_nlink == 1 ? Retried::Placeholder : Retried::Other;
}

// The caller's fsuid, host view (Uid: real effective saved fs); -1 when unknown.
long caller_fsuid(pid_t pid) {
  std::ifstream status("/proc/" + std::to_string(pid) + "/status");
  for (std::string line; std::getline(status, line);) {
    if (!line.starts_with("Uid:")) continue;
    std::istringstream ids(line.substr(4));
    long id = -1;
    for (int i = 0; i < 4; ++i) ids >> id;
    return ids ? id : -1;
  }
  return -1;
}

// A placeholder nobody will remove: the killed daemon's direct worker (a thread of it, gone
// with it) had created it as the caller and not attached the node. Removed when it is the
// caller's own empty file with no more than the asked permissions, which the caller could
// remove itself; anything else stays and the emulation answers EEXIST.
void remove_stale_placeholder(const seccomp_notif& n, int nr, const std::string& path) {
  const auto slash = path.rfind('/');
  const std::string parent = slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
  const std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  if (base.empty() || base == "." || base == "..") return;
  const bool at = nr == SYS_mknodat;
  const auto mode = static_cast<mode_t>(n.data.args[at ? 2 : 1]);
  const std::string proc = "/proc/" + std::to_string(n.pid);
  std::string start = proc + "/root";
  if (!path.starts_with('/')) {
    const auto dirfd = static_cast<int>(n.data.args[0]);
    start = at && dirfd != AT_FDCWD ? proc + "/fd/" + std::to_string(dirfd) : proc + "/cwd";
  }
  const UniqueFd from(::open(start.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
  if (!from) return;
  open_how how{};
  how.flags = O_PATH | O_DIRECTORY | O_CLOEXEC;
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  const UniqueFd dir(static_cast<int>(::syscall(SYS_openat2, from.get(), parent.c_str(), &how, sizeof how)));
  struct stat st {};
  if (!dir || ::fstatat(dir.get(), base.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0) return;
  const long fsuid = caller_fsuid(n.pid);
  if (!S_ISREG(st.st_mode) || st.st_size != 0 || st.st_nlink != 1 || fsuid < 0 ||
      st.st_uid != static_cast<uid_t>(fsuid) || (st.st_mode & 07777 & ~(mode & 07777)) != 0)
    return;
  ::unlinkat(dir.get(), base.c_str(), 0);
}

// A retried mknod: Made, or Other once no placeholder of the killed daemon's is left. A
// caller-side helper outlives the daemon and removes its placeholder: waited for, up to
// 200 ms; the direct worker's is removed here (remove_stale_placeholder). A file the
// container made itself stays, and the emulation answers EEXIST as the kernel would.
bool made_before(const seccomp_notif& n, int nr, const std::string& path) {
  for (int i = 0; i < 40; ++i) {
    const Retried r = retried_mknod(n, nr, path);
    if (r != Retried::Placeholder) return r == Retried::Made;
    std::this_thread::sleep_for(std::chrono::milliseconds(5));
  }
  remove_stale_placeholder(n, nr, path);
  return retried_mknod(n, nr, path) == Retried::Made;
}

}  // namespace

void Session::save_state() {
  if (!state_file_ || closed_) return;
  state::v1::Session r = base_record_;
  r.set_session_id(identity_.session_id);
  r.set_container_id(identity_.container_id);
  r.set_engine(identity_.engine);
  r.set_policy(policy_->name);
  r.set_policy_version(policy_->version);
  r.set_learn(identity_.learn);
  r.set_peer_pid(static_cast<std::uint32_t>(identity_.peer_pid));
  r.set_peer_uid(identity_.peer_uid);
  r.set_owner(identity_.owner);
  r.set_container_pid(static_cast<std::uint32_t>(identity_.container_pid));
  for (const auto& n : state_.nodes) r.add_nodes(n);
  for (const auto m : state_.mounts) r.add_mounts(m);
  for (const auto& a : state_.attached) {
    auto* out = r.add_attached();
    out->set_name(a.name);
    out->set_mnt_id(a.mnt_id);
    out->set_ns_id(a.ns_id);
    out->set_released(a.released);
  }
  const stats::Counters c = counters();
  auto* rc = r.mutable_counters();
  rc->set_notifications(c.notifications);
  rc->set_emulated(c.emulated);
  rc->set_allowed(c.allowed);
  rc->set_denied(c.denied);
  rc->set_returned(c.returned);
  rc->set_killed(c.killed);
  rc->set_errors(c.errors);
  rc->set_last_activity_ns(counters_.last_activity_ns.load(std::memory_order_relaxed));
  if (auto w = state_file_->write(r); !w) {
    spdlog::warn("[c={}] {}: a restart of the daemon would not find this container's counts and made objects",
                 identity_.container_id, w.error().message());
    return;
  }
  saved_notifications_ = c.notifications;
}

void Session::save_state_if_changed() {
  if (counters_.notifications.load(std::memory_order_relaxed) != saved_notifications_) save_state();
  // Calls the journal still holds that nobody will answer (gone before an answer was sent).
  if (state_file_ && pending_.empty() && in_flight_.empty() && receiver_ && receiver_->outstanding() == 0) {
    for (const auto& u : state_file_->unanswered()) {
      if (!listener_.id_valid(u.n.id)) state_file_->answered(u.n.id);
    }
  }
}

std::size_t Session::stuck_workers() {
  return StuckWorkers::instance().total();
}

void Session::begin_quiesce() {
  if (receiver_) receiver_->request_stop();
}

void Session::quiesce() {
  if (receiver_) receiver_->stop();
}

bool Session::quiet() const noexcept {
  return closed_ || (in_flight_.empty() && pending_.empty() && (!receiver_ || receiver_->outstanding() == 0));
}

void Session::resume() {
  if (closed_ || !receiver_) return;
  // Calls the stopped receiver passed on are still being answered (a handover that timed out):
  // they count against the new one, whose answered() they will call.
  const std::size_t held = receiver_->outstanding();
  receiver_ = std::make_unique<Receiver>(listener_, services_.max_in_flight, receiver_hooks());
  for (std::size_t i = 0; i < held; ++i) receiver_->adopted();
  if (auto started = receiver_->start(); !started) {
    spdlog::error("[c={}] {}", identity_.container_id, started.error().message());
    receiver_.reset();
    close();
  }
}

Receiver::Hooks Session::receiver_hooks() {
  // The receiver thread holds no reference: the loop owns the session, and stop() (in close()
  // and the destructor) ends the thread first. A post that finds the session gone is dropped.
  const std::weak_ptr<Session> weak = weak_from_this();
  return Receiver::Hooks{
      [this](const seccomp_notif& n) { return try_fast(n); },
      [this, weak](const seccomp_notif& n) {
        boost::asio::post(io_, [weak, n] {
          if (auto self = weak.lock()) self->dispatch_slow(n);
        });
      },
  };
}

void Session::start() {
  if (!listener_.enable_sync_wakeup()) {
    spdlog::debug("[c={}] SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unavailable, continuing without",
                  identity_.container_id);
  }
  const std::weak_ptr<Session> weak = weak_from_this();
  shared_->session = weak;
  if (services_.hangups != nullptr) {
    if (auto watched = services_.hangups->watch(listener_.get(),
                                                [weak] {
                                                  if (auto self = weak.lock()) self->on_hung_up();
                                                });
        !watched) {
      spdlog::error("[c={}] {}", identity_.container_id, watched.error().message());
      close();
      return;
    }
  }
  receiver_ = std::make_unique<Receiver>(listener_, services_.max_in_flight, receiver_hooks());
  // Calls the previous daemon received and did not answer: those the kernel still holds are
  // answered now, as if just received (before any new one is taken).
  std::size_t replayed = 0;
  for (const auto& [n, acting] : replay_) {
    if (!listener_.id_valid(n.id)) {
      if (state_file_) state_file_->answered(n.id);
      continue;
    }
    ++replayed;
    receiver_->adopted();
    boost::asio::post(io_, [weak, n, retry = acting] {
      if (auto self = weak.lock()) self->dispatch_slow(n, retry);
    });
  }
  if (replayed > 0) {
    spdlog::info("[c={}] {} call(s) the previous daemon received and did not answer are answered now",
                 identity_.container_id, replayed);
  }
  replay_.clear();
  if (auto started = receiver_->start(); !started) {
    spdlog::error("[c={}] {}", identity_.container_id, started.error().message());
    receiver_.reset();
    close();
  }
  save_state();
}

void Session::stop() {
  close();
}

stats::Counters Session::counters() const noexcept {
  stats::Counters c;
  c.notifications = counters_.notifications.load(std::memory_order_relaxed);
  c.emulated = counters_.emulated.load(std::memory_order_relaxed);
  c.allowed = counters_.allowed.load(std::memory_order_relaxed);
  c.denied = counters_.denied.load(std::memory_order_relaxed);
  c.returned = counters_.returned.load(std::memory_order_relaxed);
  c.killed = counters_.killed.load(std::memory_order_relaxed);
  c.errors = counters_.errors.load(std::memory_order_relaxed);
  c.last_activity = std::chrono::system_clock::time_point(
      std::chrono::nanoseconds(counters_.last_activity_ns.load(std::memory_order_relaxed)));
  return c;
}

bool Session::try_fast(const seccomp_notif& n) {
  const auto started = Clock::now();
  counters_.notifications.fetch_add(1, std::memory_order_relaxed);
  counters_.last_activity_ns.store(std::chrono::duration_cast<std::chrono::nanoseconds>(
                                       std::chrono::system_clock::now().time_since_epoch())
                                       .count(),
                                   std::memory_order_relaxed);
  const std::shared_ptr<const Snapshot> snap = snapshot_.load(std::memory_order_acquire);
  // After a reload the loop follows the registry first.
  if (registry_.generation() != snap->generation) return false;
  const policy::Policy& pol = *snap->policy;
  // Audit and learn modes record every call: the loop's work.
  if (identity_.learn || pol.mode != policy::Mode::Enforce) return false;
  const std::uint64_t id = n.id;
  const auto tid = static_cast<pid_t>(n.pid);
  const auto nr = filter::identify(n.data.arch, n.data.nr);
  if (!nr) {
    // A call with no x86_64 name (i386 socketcall, ipc): no rule can be about it, and its
    // arguments live in memory the kernel would read again. Not ours to let through.
    warn_unless_gone(listener_.respond(id, ENOSYS), tid);
    account(-1, policy::Action::Deny, started);
    return true;
  }
  const policy::SyscallInfo* info = policy::syscall_info(*nr);
  const std::uint32_t fields = pol.fields_for(*nr);
  if (info != nullptr && (fields & policy::kMemoryFields) != 0) return false;
  policy::Call call = decode::raw_call(*nr, n.data, filter::is_compat32(n.data.arch));
  if (info != nullptr) decode::from_registers(call, *info, fields);
  return answer_now(id, tid, *nr, policy::decide(pol, call), started);
}

bool Session::answer_now(std::uint64_t id, pid_t tid, int nr, const policy::Decision& decision,
                         Clock::time_point started) {
  if (decision.audit) return false;
  switch (decision.action) {
    case policy::Action::Allow:
      warn_unless_gone(listener_.respond_continue(id), tid);
      break;
    case policy::Action::Deny:
      warn_unless_gone(listener_.respond(id, decision.err), tid);
      break;
    case policy::Action::Return:
      warn_unless_gone(listener_.respond_value(id, decision.value), tid);
      break;
    default:
      return false;
  }
  account(nr, decision.action, started);
  return true;
}

void Session::dispatch_slow(const seccomp_notif& n, bool retry) {
  if (closed_) return;  // the listener goes with the session: the kernel fails the call
  if (registry_.generation() != generation_) follow_registry();
  // The worker emulates on a copy of the state: what an emulation reads of it (the nodes that
  // count against the cap) is brought up to date here, where the state is owned.
  if (!state_.attached.empty()) {
    if (const auto nr = filter::identify(n.data.arch, n.data.nr)) {
      const policy::SyscallInfo* info = policy::syscall_info(*nr);
      if (info != nullptr && info->family == policy::Family::Mknod) {
        emul::mknod_emul::reclaim(state_);
        publish_state();
      }
    }
  }
  auto work = std::make_shared<Work>();
  work->n = n;
  work->retry = retry;
  work->policy = policy_;
  work->started = Clock::now();
  auto deadline = std::make_unique<boost::asio::steady_timer>(io_, services_.emulation_timeout);
  deadline->async_wait([weak = weak_from_this(), id = n.id](const boost::system::error_code& ec) {
    if (ec) return;
    if (auto self = weak.lock()) self->on_deadline(id);
  });
  in_flight_.insert_or_assign(n.id, InFlight{work, std::move(deadline)});
  bool spawn = false;
  {
    const std::scoped_lock lock(shared_->m);
    shared_->queue.push_back(std::move(work));
    spawn = shared_->workers == shared_->stuck && shared_->stuck < kStuckPerSession;
  }
  if (spawn) {
    spawn_worker(shared_);
  } else {
    shared_->cv.notify_one();
  }
}

void Session::on_hung_up() {
  // Every task of the filter has exited. Calls still with a worker have nobody to answer.
  hung_up_ = true;
  spdlog::info("[c={}] all tasks exited; {} calls handled", identity_.container_id, handled());
  if (pending_.empty()) close();
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  summary_timer_.cancel();
  flush_suppressed();
  shared_->close();
  for (auto& [id, f] : in_flight_) f.deadline->cancel();
  in_flight_.clear();
  if (services_.hangups != nullptr) services_.hangups->unwatch(listener_.get());
  if (receiver_) receiver_->stop();
  for (auto& [id, p] : pending_) {
    p->deadline.cancel();
    p->job->kill();
  }
  // Post: on_closed_ drops the daemon's reference, which may be the last one.
  boost::asio::post(io_, [self = shared_from_this()] { self->on_closed_(self->identity_.session_id); });
}

bool Session::write_audit(audit::Event& event, Clock::time_point started) {
  audit::set_time(*event.mutable_time(), std::chrono::system_clock::now());
  event.set_latency_us(static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()));
  flush_suppressed();  // the summary comes before the first record admitted again
  return services_.audit->write(event);
}

void Session::arm_summary() {
  if (closed_) {
    // close() wrote the summary; the next record held back arms another session's timer.
    const std::scoped_lock lock(shared_->budget->m);
    shared_->budget->summary_armed = false;
    return;
  }
  // At most a second without a word about what is held back.
  summary_timer_.expires_after(std::chrono::seconds(1));
  summary_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
    {
      const std::scoped_lock lock(self->shared_->budget->m);
      self->shared_->budget->summary_armed = false;
    }
    if (!ec) self->flush_suppressed();
  });
}

void Session::flush_suppressed() {
  audit::Suppressed summary;
  {
    AuditBudget& budget = *shared_->budget;
    const std::scoped_lock lock(budget.m);
    if (budget.suppressed == 0) return;
    summary.set_count(budget.suppressed);
    audit::set_time(*summary.mutable_since(), budget.suppressed_since);
    audit::set_time(*summary.mutable_until(), budget.suppressed_until);
    budget.suppressed = 0;
  }
  summary.set_event("suppressed");
  audit::set_time(*summary.mutable_time(), std::chrono::system_clock::now());
  summary.set_container(audit::utf8(identity_.container_id));
  summary.set_owner_uid(identity_.owner);
  summary.set_engine(identity_.engine);
  summary.set_policy(policy_->name);
  services_.audit->write(summary);
}

void Session::publish_state() {
  {
    const std::scoped_lock lock(shared_->m);
    shared_->state = state_;
  }
  save_state();  // what sysvisor made for the container must survive the daemon
}

void Session::warn_unless_gone(const Result<void>& sent, pid_t tid) const {
  if (!sent && sent.error().err != ENOENT) {
    spdlog::warn("[c={} tid={}] {}", identity_.container_id, tid, sent.error().message());
  }
}

void Session::follow_registry() {
  generation_ = registry_.generation();
  const LoadedPolicy* now = registry_.find(policy_->name);
  if (now == nullptr) {
    spdlog::warn("[c={}] policy `{}` is no longer loaded; this container keeps version {}",
                 identity_.container_id, policy_->name, policy_->version);
    snapshot_.store(std::make_shared<const Snapshot>(Snapshot{policy_, generation_}),
                    std::memory_order_release);
    return;
  }
  if (now->policy != policy_) {
    spdlog::info("[c={}] policy `{}`: version {} -> {}", identity_.container_id, policy_->name,
                 policy_->version, now->policy->version);
    policy_ = now->policy;
  }
  snapshot_.store(std::make_shared<const Snapshot>(Snapshot{policy_, generation_}),
                  std::memory_order_release);
}

void Session::kill_container(pid_t tid) {
  if (container_pidfd_) {
    ::syscall(SYS_pidfd_send_signal, container_pidfd_.get(), SIGKILL, nullptr, 0);
  } else {
    spdlog::warn("[c={}] kill-container: the container's init is unknown; killing the caller only",
                 identity_.container_id);
  }
  ::kill(tid, SIGKILL);
}

std::unique_ptr<Session::Outcome> Session::examine(Shared& shared, const Work& work) {
  const seccomp_notif& n = work.n;
  const std::uint64_t id = n.id;
  const auto tid = static_cast<pid_t>(n.pid);
  const Identity& who = shared.identity;
  auto out = std::make_unique<Outcome>();
  out->event.set_host_tid(tid);
  const auto answer = [&](int nr, policy::Action action, emul::Answer a) {
    out->kind = Outcome::Kind::Answer;
    out->nr = nr;
    out->action = action;
    out->answer = std::move(a);
    return std::move(out);
  };
  const policy::Policy& pol = *work.policy;

  const auto nr = filter::identify(n.data.arch, n.data.nr);
  if (!nr) {
    // A call with no x86_64 name (i386 socketcall, ipc): no rule can be about it, and its
    // arguments live in memory the kernel would read again. Not ours to let through.
    return answer(-1, policy::Action::Deny, emul::Answer::error(ENOSYS));
  }
  policy::Call call = decode::raw_call(*nr, n.data, filter::is_compat32(n.data.arch));
  const policy::SyscallInfo* info = policy::syscall_info(*nr);
  const policy::Mode run_mode = who.learn ? policy::Mode::Learn : pol.mode;
  const auto decide = [&] { return policy::decide_in(pol, call, run_mode); };
  // In audit and learn modes the record shows every field the call has, not only those the
  // rules read: `policy learn` generalises from them.
  // So does an enforcing policy's with `audit_arguments: all`.
  const bool every_argument = run_mode != policy::Mode::Enforce || pol.record_all_arguments;
  const std::uint32_t fields = !every_argument || info == nullptr ? pol.fields_for(*nr) : info->fields;
  if (info != nullptr) decode::from_registers(call, *info, fields);
  const bool from_memory = info != nullptr && (fields & policy::kMemoryFields) != 0;

  // The decision needs nothing from the caller's memory and asks for no record and no work
  // beyond the answer.
  policy::Decision decision;
  if (!from_memory) {
    decision = decide();
    if (auto plain = plain_answer(decision); plain && !decision.audit) {
      return answer(*nr, decision.action, std::move(*plain));
    }
  }

  // 1. Open what we need of the task, then prove it is still the caller.
  auto task = task::TaskHandle::open(tid);
  if (!task) {
    if (!gone(task.error())) spdlog::warn("[c={} tid={}] {}", who.container_id, tid, task.error().message());
    if (run_mode != policy::Mode::Enforce) {
      // Auditing or learning refuses nothing, even without a record.
      return answer(*nr, policy::Action::Allow, emul::Answer::let_kernel_decide());
    }
    return answer(*nr, policy::Action::Deny, emul::Answer::error(EPERM));  // ENOENT from SEND: gone
  }
  const bool mknod_family = info != nullptr && info->family == policy::Family::Mknod;
  const std::size_t first = mknod_family && info->paths[0].dirfd >= 0 ? 1 : 0;
  const auto mode = static_cast<mode_t>(static_cast<std::uint16_t>(call.args[first + 1]));
  Result<std::unique_ptr<emul::Emulation>> emulation{};
  // Audit and learn modes never emulate or kill: nothing to prepare for those.
  const bool enforcing = run_mode == policy::Mode::Enforce;
  if (enforcing && info != nullptr && info->emulator &&
      (from_memory || decision.action == policy::Action::Emulate)) {
    // Emulation may follow: its fds must be opened before ID_VALID vouches for them. A failure
    // matters only if the decision is `emulate`.
    emulation = emul::prepare(*info, *task, call);
  }
  if ((enforcing && from_memory) || decision.action == policy::Action::Kill ||
      decision.action == policy::Action::KillContainer) {
    out->victim = open_thread_pidfd(tid);
  }
  if (!shared.id_valid(id)) return out;  // the task is gone (or its call interrupted): nobody to answer

  // 2. Copy the pointer arguments, then check again that the copy is the caller's. This read
  // may wait as long as the page's owner wants (FUSE, userfaultfd): the loop answers at the
  // deadline meanwhile.
  std::string raw_path;
  bool path_read = false;  // the first path was copied (or tried): the record shows it
  Result<void> copied{};
  if (info != nullptr) {
    // mknod's path is read for the audit record too, whatever the decision.
    const std::uint32_t wanted = fields | (mknod_family ? policy::kFieldPath : 0U) |
                                 (emulation && *emulation ? (*emulation)->fields() : 0U);
    copied = decode::from_memory(call, *info, wanted, *task, &raw_path);
    path_read = (wanted & policy::kFieldPath) != 0;
  }
  if (!shared.id_valid(id)) return out;
  if (from_memory) {
    if (!copied && enforcing) {
      // What the kernel itself would have answered (EFAULT, ENAMETOOLONG, EBADF, ...); never
      // CONTINUE: the kernel would read the memory again, maybe changed by then.
      return answer(*nr, policy::Action::Deny, emul::Answer::error(copied.error().err));
    }
    decision = decide();  // audit and learn: on what could be copied; the kernel decides anyway
  }

  // A record the container's rate limit holds back is counted now, before any /proc read for it.
  if (decision.audit) {
    bool arm = false;
    if (!shared.admit_record(arm)) decision.audit = false;
    if (arm && !shared.post([weak = shared.session, budget = shared.budget] {
          if (auto self = weak.lock()) {
            self->arm_summary();
          } else {
            const std::scoped_lock lock(budget->m);
            budget->summary_armed = false;
          }
        })) {
      // The session closed: another session of the container (or the next record) writes the
      // summary.
      const std::scoped_lock lock(shared.budget->m);
      shared.budget->summary_armed = false;
    }
  }
  if (decision.audit) {
    fill_event(out->event, who, pol, call, decision, n.data.arch, n.data.nr, copied, raw_path, info,
               mknod_family, mode, path_read, every_argument);
    if (decision.learn) out->event.set_action("learn");
  }
  out->audit = decision.audit;
  out->nr = *nr;
  out->action = decision.action;

  // 3. Act on the copies only. The loop writes the record before the answer goes out.
  if (auto plain = plain_answer(decision)) {
    out->kind = Outcome::Kind::Answer;
    out->answer = std::move(*plain);
    return out;
  }
  if (decision.action == policy::Action::Kill || decision.action == policy::Action::KillContainer) {
    // The record before the kill (on the loop): once the container is gone, its launcher (and
    // an auditor) may look for it.
    out->kind = Outcome::Kind::Kill;
    out->kill_container = decision.action == policy::Action::KillContainer;
    out->answer = emul::Answer::error(ENOSYS);
    return out;
  }
  // Emulate.
  out->kind = Outcome::Kind::Answer;
  if (!emulation) {
    out->answer = emul::Answer::error(EPERM, emulation.error().message());
    return out;
  }
  if (!*emulation) {
    // The loader accepts `emulate` only where an emulator exists.
    out->answer = emul::Answer::error(ENOSYS, "no emulator");
    return out;
  }
  if (!copied) {
    out->answer = emul::Answer::error(copied.error().err);  // EFAULT / ENAMETOOLONG / EBADF: the kernel's
    return out;
  }
  // 4. What else the emulation reads of the caller's memory, then ID_VALID once more.
  if (auto more = (*emulation)->copy(*task, call); !more) {
    if (!shared.id_valid(id)) out->kind = Outcome::Kind::Silent;
    out->answer = emul::Answer::error(more.error().err);
    return out;
  }
  if (!shared.id_valid(id)) {
    out->kind = Outcome::Kind::Silent;
    return out;
  }
  const policy::Rule* rule =
      decision.rule_index >= 0 ? &pol.rules[static_cast<std::size_t>(decision.rule_index)] : nullptr;
  if (rule == nullptr) {
    out->answer = emul::Answer::error(ENOSYS, "emulate without a rule");
    return out;
  }
  // The emulators read the session's state (its mounts, its init) and never write it in
  // start(): a copy, as the loop last published it.
  std::optional<emul::SessionState> state = shared.state_copy();
  if (!state) {
    out->kind = Outcome::Kind::Silent;  // the session closed: its listener goes, the kernel fails the call
    return out;
  }
  const emul::Context ctx{*task, call, rule, raw_path, filter::is_compat32(n.data.arch), *state};
  if (work.retry && (*nr == SYS_mknod || *nr == SYS_mknodat) && made_before(n, *nr, raw_path)) {
    spdlog::info(
        "[c={} tid={}] mknod retried after a restart: `{}` is there as asked, made by the killed daemon",
        shared.identity.container_id, n.pid, raw_path);
    out->answer = emul::Answer::ok();
    return out;
  }
  if (shared.journal) shared.journal->acting(id);  // from here its effect may precede its answer
  emul::Started started_job = (*emulation)->start(ctx);
  if (auto* now = std::get_if<emul::Answer>(&started_job)) {
    out->answer = std::move(*now);
    return out;
  }
  out->kind = Outcome::Kind::Job;
  out->job = std::move(std::get<std::unique_ptr<emul::Job>>(started_job));
  return out;
}

void Session::spawn_worker(const std::shared_ptr<Shared>& shared) {
  const uid_t uid = shared->identity.peer_uid;
  if (!StuckWorkers::instance().may_start(uid)) {
    spdlog::warn(
        "[c={}] too many stuck workers (uid {}): this container's slow calls wait for one to come back",
        shared->identity.container_id, uid);
    return;
  }
  {
    const std::scoped_lock lock(shared->m);
    if (shared->closed) return;
    ++shared->workers;
  }
  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  ::pthread_attr_setstacksize(&attr, kWorkerStack);
  ::pthread_attr_setdetachstate(&attr, PTHREAD_CREATE_DETACHED);
  // Signals stay with the loop's thread, as for the receiver.
  sigset_t all;
  sigset_t old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  auto* arg = new std::shared_ptr<Shared>(shared);
  pthread_t thread{};
  const int rc = ::pthread_create(
      &thread, &attr,
      [](void* p) -> void* {
        const std::unique_ptr<std::shared_ptr<Shared>> held(static_cast<std::shared_ptr<Shared>*>(p));
        run_worker(*held);
        return nullptr;
      },
      arg);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::pthread_attr_destroy(&attr);
  if (rc != 0) {
    delete arg;
    spdlog::error("[c={}] start a worker thread: {}", shared->identity.container_id, std::strerror(rc));
    const std::scoped_lock lock(shared->m);
    --shared->workers;
  }
}

// The thread lives as long as its session, or until it comes back from a stuck call and finds
// a replacement serving the session. Helpers it forked die with it (PR_SET_PDEATHSIG follows
// the forking thread): in both cases nobody waits for them any more (a closed session kills
// its helpers; a late outcome's call was answered at its deadline).
void Session::run_worker(const std::shared_ptr<Shared>& shared) {
  for (;;) {
    std::shared_ptr<Work> work;
    {
      std::unique_lock lock(shared->m);
      shared->cv.wait(lock, [&] { return shared->closed || !shared->queue.empty(); });
      if (shared->closed) {
        --shared->workers;
        return;
      }
      work = std::move(shared->queue.front());
      shared->queue.pop_front();
    }
    int phase = Work::kQueued;
    if (!work->phase.compare_exchange_strong(phase, Work::kWorking)) continue;  // answered at its deadline
    std::shared_ptr<Outcome> out = examine(*shared, *work);
    out->work = work;
    phase = Work::kWorking;
    out->by_worker = work->phase.compare_exchange_strong(phase, Work::kDone);
    bool leave = false;
    if (!out->by_worker) {
      // The loop answered at the deadline and counted this thread stuck: it is back. If a
      // replacement serves the session meanwhile, this one ends.
      const std::scoped_lock lock(shared->m);
      --shared->stuck;
      StuckWorkers::instance().back(shared->identity.peer_uid);
      leave = shared->closed || shared->workers - shared->stuck > 1;
      if (leave) --shared->workers;
    }
    // A late outcome is dropped, but a helper it started is the session's to reap.
    if (out->by_worker || out->job) {
      (void)shared->post([weak = shared->session, out] {
        if (auto self = weak.lock()) self->complete(out);
      });
    }
    if (leave) return;
  }
}

void Session::complete(const std::shared_ptr<Outcome>& outcome) {
  Outcome& o = *outcome;
  const std::uint64_t id = o.work->n.id;
  const Clock::time_point started = o.work->started;
  if (o.by_worker) {
    if (auto it = in_flight_.find(id); it != in_flight_.end()) {
      it->second.deadline->cancel();
      in_flight_.erase(it);
    }
  }
  if (closed_) return;
  if (!o.by_worker) {
    // Answered at the deadline; what the helper does still ends in the session's state.
    if (o.job) wait_pending(id, std::move(o.job), std::move(o.event), false, o.nr, started, true);
    return;
  }
  const auto tid = static_cast<pid_t>(o.work->n.pid);
  switch (o.kind) {
    case Outcome::Kind::Silent:
      if (state_file_) state_file_->answered(id);  // gone: nobody to answer, now or after a restart
      break;
    case Outcome::Kind::Answer:
      send_answer(id, o.work->retry ? settle_retry(o.work->n, o.answer) : o.answer, o.event, o.audit, o.nr,
                  o.action, started);
      break;
    case Outcome::Kind::Kill:
      if (o.audit) record(o.event, o.answer, started);
      if (o.kill_container) kill_container(tid);
      if (o.victim) {
        ::syscall(SYS_pidfd_send_signal, o.victim.get(), SIGKILL, nullptr, 0);
      } else if (listener_.id_valid(id)) {
        ::kill(tid, SIGKILL);  // no pidfd for this thread here; ID_VALID just vouched for tid
      }
      send_answer(id, o.answer, o.event, false, o.nr, o.action, started);
      break;
    case Outcome::Kind::Job:
      wait_pending(id, std::move(o.job), std::move(o.event), o.audit, o.nr, started, false);
      if (o.work->retry) {
        if (auto p = pending_.find(id); p != pending_.end()) p->second->retry = o.work->n;
      }
      return;  // answered when the helper exits
  }
  if (receiver_) receiver_->answered();
}

void Session::on_deadline(std::uint64_t id) {
  const auto it = in_flight_.find(id);
  if (it == in_flight_.end()) return;
  const std::shared_ptr<Work> work = it->second.work;
  int phase = work->phase.load();
  bool replace = false;
  {
    // With the worker's own accounting under the same lock: it may be back already.
    const std::scoped_lock lock(shared_->m);
    while (phase != Work::kDone && !work->phase.compare_exchange_weak(phase, Work::kDone)) {
    }
    if (phase == Work::kDone) return;  // the worker's outcome is on its way
    if (phase == Work::kWorking) {
      ++shared_->stuck;
      StuckWorkers::instance().stuck(identity_.peer_uid);
      replace = shared_->workers == shared_->stuck && shared_->stuck < kStuckPerSession;
    }
  }
  in_flight_.erase(it);
  const auto tid = static_cast<pid_t>(work->n.pid);
  const auto nr = filter::identify(work->n.data.arch, work->n.data.nr);
  const int nr_or = nr ? *nr : -1;
  const bool enforcing = !identity_.learn && work->policy->mode == policy::Mode::Enforce;
  // Reading (or writing) the caller's memory did not finish: the kernel's own copy of a page
  // it cannot bring in fails EFAULT. A call still queued behind a stuck one was not looked at:
  // EINTR, what the kernel gives a trapped call whose wait ends without an answer. Audit and
  // learn modes refuse nothing: the kernel decides (and reads the memory itself).
  const int err = phase == Work::kWorking ? EFAULT : EINTR;
  spdlog::warn("[c={} tid={}] {}: not answered within {} ms ({}); answering {}", identity_.container_id, tid,
               policy::syscall_name(nr_or), services_.emulation_timeout.count(),
               phase == Work::kWorking ? "the caller's memory or files did not answer"
                                       : "waiting behind a stuck call of this container",
               enforcing ? policy::errno_name(err) : "continue");
  if (enforcing) {
    warn_unless_gone(listener_.respond(id, err), tid);
    account(nr_or, policy::Action::Deny, work->started);
  } else {
    warn_unless_gone(listener_.respond_continue(id), tid);
    account(nr_or, policy::Action::Allow, work->started);
  }
  account_error();
  if (replace) spawn_worker(shared_);
  if (receiver_) receiver_->answered();
}

bool Session::record(audit::Event& event, const emul::Answer& a, Clock::time_point started) {
  switch (a.kind) {
    case emul::Answer::Kind::Continue:
      event.set_result("continue");
      break;
    case emul::Answer::Kind::Value:
      event.set_result("return");
      event.set_value(a.value);
      event.set_err(0);
      break;
    case emul::Answer::Kind::Errno:
      event.set_result(a.err == 0 ? "ok" : policy::errno_name(a.err));
      event.set_err(a.err);
      break;
  }
  return write_audit(event, started);
}

void Session::send_answer(std::uint64_t id, const emul::Answer& a, audit::Event& event, bool audit, int nr,
                          policy::Action action, Clock::time_point started) {
  const pid_t tid = event.host_tid();
  if (!a.diagnostic.empty()) {
    // A call without a path (setpriority) is named by its syscall alone, not with an empty ``.
    if (event.args().path().empty()) {
      spdlog::warn("[c={} tid={}] {}: {}", identity_.container_id, tid, policy::syscall_name(nr),
                   a.diagnostic);
    } else {
      spdlog::warn("[c={} tid={}] {} `{}`: {}", identity_.container_id, tid, policy::syscall_name(nr),
                   event.args().path(), a.diagnostic);
    }
  }
  // --audit-failure refuse: no call is answered as decided without its record. (An emulation
  // has acted by now: only its answer can change.)
  const bool unrecorded = audit && !record(event, a, started) && audit::Sink::refuses_unrecorded();
  const emul::Answer refused = emul::Answer::error(EPERM);
  const emul::Answer& sent = unrecorded ? refused : a;
  switch (sent.kind) {
    case emul::Answer::Kind::Continue:
      warn_unless_gone(listener_.respond_continue(id), tid);
      break;
    case emul::Answer::Kind::Value:
      warn_unless_gone(listener_.respond_value(id, sent.value), tid);
      break;
    case emul::Answer::Kind::Errno:
      warn_unless_gone(listener_.respond(id, sent.err), tid);
      break;
  }
  if (!a.diagnostic.empty()) account_error();
  account(nr, action, started);
}

void Session::account(int nr, policy::Action action, Clock::time_point started) {
  switch (action) {
    case policy::Action::Emulate:
      counters_.emulated.fetch_add(1, std::memory_order_relaxed);
      break;
    case policy::Action::Allow:
      counters_.allowed.fetch_add(1, std::memory_order_relaxed);
      break;
    case policy::Action::Deny:
      counters_.denied.fetch_add(1, std::memory_order_relaxed);
      break;
    case policy::Action::Return:
      counters_.returned.fetch_add(1, std::memory_order_relaxed);
      break;
    case policy::Action::Kill:
    case policy::Action::KillContainer:
      counters_.killed.fetch_add(1, std::memory_order_relaxed);
      break;
  }
  if (services_.recorder != nullptr) {
    services_.recorder->record(identity_.container_id, nr, action, Clock::now() - started);
  }
}

void Session::account_error() {
  counters_.errors.fetch_add(1, std::memory_order_relaxed);
  if (services_.recorder != nullptr) services_.recorder->error(identity_.container_id);
}

void Session::wait_pending(std::uint64_t id, std::unique_ptr<emul::Job> job, audit::Event event, bool audit,
                           int nr, Clock::time_point started, bool answered) {
  auto p = std::make_unique<Pending>(io_, std::move(job));
  p->event = std::move(event);
  p->audit = audit;
  p->nr = nr;
  p->started = started;
  p->answered = answered;
  p->deadline.expires_after(services_.emulation_timeout);
  p->deadline.async_wait([self = shared_from_this(), id](const boost::system::error_code& ec) {
    if (ec) return;
    auto it = self->pending_.find(id);
    if (it == self->pending_.end()) return;
    it->second->timed_out = true;
    it->second->job->kill();
  });
  pending_.emplace(id, std::move(p));
  wait_for_helper(id);  // answered when the helper exits
}

void Session::wait_for_helper(std::uint64_t id) {
  const auto it = pending_.find(id);
  if (it == pending_.end()) return;
  it->second->exited.async_wait(
      boost::asio::posix::stream_descriptor::wait_read,
      [self = shared_from_this(), id](const boost::system::error_code& ec) {
        if (ec) return;  // only when the io_context goes away; the destructor reaps the helper
        const auto pending = self->pending_.find(id);
        if (pending == self->pending_.end()) return;
        // Asio 1.74's epoll reactor can hand a descriptor state that was just freed (another
        // fd closed in the same turn) to this new pidfd with the old fd's readiness still
        // queued: a wake-up is only an exit when the pidfd says so.
        pollfd pfd{pending->second->job->pidfd(), POLLIN, 0};
        if (::poll(&pfd, 1, 0) == 1 && (pfd.revents & POLLIN) != 0) {
          self->finish_emulation(id);
        } else {
          self->wait_for_helper(id);
        }
      });
}

void Session::finish_emulation(std::uint64_t id) {
  auto it = pending_.find(id);
  if (it == pending_.end()) return;
  if (!it->second->timed_out) {
    if (auto next = it->second->job->follow_up(state_)) {
      Pending& p = *it->second;
      p.job = std::move(next);
      p.exited = boost::asio::posix::stream_descriptor(io_, ::fcntl(p.job->pidfd(), F_DUPFD_CLOEXEC, 0));
      publish_state();
      wait_for_helper(id);
      return;
    }
  }
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  p->deadline.cancel();
  const emul::Answer outcome = p->job->finish(state_);
  publish_state();
  if (p->answered) {
    // The caller had its answer at the deadline; the helper's work stays the session's.
    if (hung_up_ && pending_.empty()) close();
    return;
  }
  if (p->timed_out) {
    spdlog::warn("[c={} tid={}] {}: the helper timed out and was killed", identity_.container_id,
                 p->event.host_tid(), policy::syscall_name(p->nr));
  }
  send_answer(id, p->retry ? settle_retry(*p->retry, outcome) : outcome, p->event, p->audit, p->nr,
              policy::Action::Emulate, p->started);
  if (receiver_) receiver_->answered();
  if (hung_up_ && pending_.empty()) close();
}

}  // namespace sysvisor
