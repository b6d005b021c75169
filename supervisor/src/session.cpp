#include "sysvisor/session.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <array>
#include <csignal>
#include <cstdio>

#include "sysvisor/decode.hpp"
#include "sysvisor/filter.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/task.hpp"

namespace sysvisor {
namespace {

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
                bool mknod_family, mode_t mode, bool path_read) {
  event.set_event("call");
  event.set_container(audit::utf8(who.container_id));
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
  event.set_action(policy::to_string(decision.action));
  if (decision.would) event.set_would(policy::to_string(*decision.would));
  if (decision.rule_index >= 0) {
    const policy::Rule& rule = pol.rules[static_cast<std::size_t>(decision.rule_index)];
    event.set_rule(rule.name);
    if (!rule.origin.empty() && rule.origin != pol.name) event.set_rule_policy(rule.origin);
  }
}

}  // namespace

struct Session::Pending {
  std::unique_ptr<emul::Job> job;
  boost::asio::posix::stream_descriptor exited;
  boost::asio::steady_timer deadline;
  audit::Event event;
  bool audit = false;
  int nr = -1;
  Clock::time_point started;
  bool timed_out = false;

  Pending(boost::asio::io_context& io, std::unique_ptr<emul::Job> j)
      : job(std::move(j)), exited(io, ::dup(job->pidfd())), deadline(io) {}
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
      bucket_(services_.audit_rate),
      summary_timer_(io) {
  snapshot_.store(std::make_shared<const Snapshot>(Snapshot{policy_, generation_}));
  state_.session_id = identity_.session_id;
  state_.container_id = identity_.container_id;
  state_.container_pid = identity_.container_pid;
  state_.devices = services_.devices;
  if (identity_.container_pid > 0) {
    container_pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, identity_.container_pid, 0)));
  }
}

Session::~Session() {
  if (receiver_) receiver_->stop();
  for (auto& [id, p] : pending_) {
    p->job->kill();
    (void)p->job->finish(state_);
  }
  for (const auto& node : state_.nodes) services_.devices->remove_node(node);
}

void Session::start() {
  if (!listener_.enable_sync_wakeup()) {
    spdlog::debug("[c={}] SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP unavailable, continuing without",
                  identity_.container_id);
  }
  // The receiver thread holds no reference: the loop owns the session, and stop() (in close()
  // and the destructor) ends the thread first. A post that finds the session gone is dropped.
  const std::weak_ptr<Session> weak = weak_from_this();
  Receiver::Hooks hooks{
      [this](const seccomp_notif& n) { return try_fast(n); },
      [this, weak](const seccomp_notif& n) {
        boost::asio::post(io_, [weak, n] {
          if (auto self = weak.lock()) self->dispatch_slow(n);
        });
      },
  };
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
  receiver_ = std::make_unique<Receiver>(listener_, services_.max_in_flight, std::move(hooks));
  if (auto started = receiver_->start(); !started) {
    spdlog::error("[c={}] {}", identity_.container_id, started.error().message());
    receiver_.reset();
    close();
  }
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

void Session::dispatch_slow(const seccomp_notif& n) {
  if (closed_) return;  // the listener goes with the session: the kernel fails the call
  dispatch(n);
  if (!pending_.contains(n.id) && receiver_) receiver_->answered();
}

void Session::on_hung_up() {
  // Every task of the filter has exited.
  hung_up_ = true;
  spdlog::info("[c={}] all tasks exited; {} calls handled", identity_.container_id, handled());
  if (pending_.empty()) close();
}

void Session::close() {
  if (closed_) return;
  closed_ = true;
  summary_timer_.cancel();
  flush_suppressed();
  if (services_.hangups != nullptr) services_.hangups->unwatch(listener_.get());
  if (receiver_) receiver_->stop();
  for (auto& [id, p] : pending_) {
    p->deadline.cancel();
    p->job->kill();
  }
  // Post: on_closed_ drops the daemon's reference, which may be the last one.
  boost::asio::post(io_, [self = shared_from_this()] { self->on_closed_(self->identity_.session_id); });
}

void Session::write_audit(audit::Event& event, Clock::time_point started) {
  audit::set_time(*event.mutable_time(), std::chrono::system_clock::now());
  event.set_latency_us(static_cast<std::uint32_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count()));
  flush_suppressed();  // the summary comes before the first record admitted again
  services_.audit->write(event);
}

bool Session::admit_record() {
  if (bucket_.admit(Clock::now())) return true;
  const auto now = std::chrono::system_clock::now();
  if (suppressed_ == 0) suppressed_since_ = now;
  suppressed_until_ = now;
  ++suppressed_;
  if (!summary_armed_ && !closed_) {
    // At most a second without a word about what is held back.
    summary_armed_ = true;
    summary_timer_.expires_after(std::chrono::seconds(1));
    summary_timer_.async_wait([self = shared_from_this()](const boost::system::error_code& ec) {
      self->summary_armed_ = false;
      if (!ec) self->flush_suppressed();
    });
  }
  return false;
}

void Session::flush_suppressed() {
  if (suppressed_ == 0) return;
  audit::Suppressed summary;
  summary.set_event("suppressed");
  audit::set_time(*summary.mutable_time(), std::chrono::system_clock::now());
  summary.set_container(audit::utf8(identity_.container_id));
  summary.set_engine(identity_.engine);
  summary.set_policy(policy_->name);
  summary.set_count(suppressed_);
  audit::set_time(*summary.mutable_since(), suppressed_since_);
  audit::set_time(*summary.mutable_until(), suppressed_until_);
  suppressed_ = 0;
  services_.audit->write(summary);
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

void Session::dispatch(const seccomp_notif& n) {
  const auto started = Clock::now();
  const std::uint64_t id = n.id;
  const auto tid = static_cast<pid_t>(n.pid);
  const auto let_kernel_decide = [&] { warn_unless_gone(listener_.respond_continue(id), tid); };
  const auto respond = [&](int err) { warn_unless_gone(listener_.respond(id, err), tid); };
  if (registry_.generation() != generation_) follow_registry();
  const policy::Policy& pol = *policy_;

  const auto nr = filter::identify(n.data.arch, n.data.nr);
  if (!nr) {
    // A call with no x86_64 name (i386 socketcall, ipc): no rule can be about it, and its
    // arguments live in memory the kernel would read again. Not ours to let through.
    respond(ENOSYS);
    account(-1, policy::Action::Deny, started);
    return;
  }
  policy::Call call = decode::raw_call(*nr, n.data, filter::is_compat32(n.data.arch));
  const policy::SyscallInfo* info = policy::syscall_info(*nr);
  const policy::Mode run_mode = identity_.learn ? policy::Mode::Learn : pol.mode;
  const auto decide = [&] { return policy::decide_in(pol, call, run_mode); };
  // In audit and learn modes the record shows every field the call has, not only those the
  // rules read: `policy learn` generalises from them.
  const std::uint32_t fields =
      run_mode == policy::Mode::Enforce || info == nullptr ? pol.fields_for(*nr) : info->fields;
  if (info != nullptr) decode::from_registers(call, *info, fields);
  const bool from_memory = info != nullptr && (fields & policy::kMemoryFields) != 0;

  // The fast path: the decision needs nothing from the caller's memory and asks for no
  // record and no work beyond the answer.
  policy::Decision decision;
  if (!from_memory) {
    decision = decide();
    if (answer_now(id, tid, *nr, decision, started)) return;
  }

  // 1. Open what we need of the task, then prove it is still the caller.
  auto task = task::TaskHandle::open(tid);
  if (!task) {
    if (!gone(task.error()))
      spdlog::warn("[c={} tid={}] {}", identity_.container_id, tid, task.error().message());
    if (run_mode != policy::Mode::Enforce) {
      let_kernel_decide();  // auditing or learning refuses nothing, even without a record
      account(*nr, policy::Action::Allow, started);
      return;
    }
    respond(EPERM);  // SEND reports ENOENT quietly when the task is gone
    account(*nr, policy::Action::Deny, started);
    return;
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
  UniqueFd victim;
  if ((enforcing && from_memory) || decision.action == policy::Action::Kill ||
      decision.action == policy::Action::KillContainer) {
    // PIDFD_THREAD (O_EXCL, kernel >= 6.9) accepts any thread; older kernels only leaders.
    victim.reset(static_cast<int>(::syscall(SYS_pidfd_open, tid, O_EXCL)));
    if (!victim) victim.reset(static_cast<int>(::syscall(SYS_pidfd_open, tid, 0)));
  }
  if (auto v = listener_.id_valid(id); !v) {
    return;  // the task is gone (or its call interrupted): nobody to answer
  }
  // 2. Copy the pointer arguments, then check again that the copy is the caller's.
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
  if (auto v = listener_.id_valid(id); !v) return;
  if (from_memory) {
    if (!copied && run_mode == policy::Mode::Enforce) {
      // What the kernel itself would have answered (EFAULT, ENAMETOOLONG, EBADF, ...); never
      // CONTINUE: the kernel would read the memory again, maybe changed by then.
      respond(copied.error().err);
      account(*nr, policy::Action::Deny, started);
      return;
    }
    decision = decide();  // audit and learn: on what could be copied; the kernel decides anyway
  }

  // A record the container's rate limit holds back is counted now, before any /proc read for it.
  if (decision.audit && !admit_record()) decision.audit = false;
  audit::Event event;
  event.set_host_tid(tid);
  if (decision.audit) {
    fill_event(event, identity_, pol, call, decision, n.data.arch, n.data.nr, copied, raw_path, info,
               mknod_family, mode, path_read);
    if (decision.learn) event.set_action("learn");
  }

  // 3. Act on the copies only. The audit record is written before the answer goes out, so no
  // decided call is without its record even if the daemon dies right after.
  switch (decision.action) {
    case policy::Action::Allow:
      send_answer(id, emul::Answer::let_kernel_decide(), event, decision.audit, *nr, decision.action,
                  started);
      return;
    case policy::Action::Deny:
      send_answer(id, emul::Answer::error(decision.err), event, decision.audit, *nr, decision.action,
                  started);
      return;
    case policy::Action::Return:
      send_answer(id, emul::Answer::returning(decision.value), event, decision.audit, *nr, decision.action,
                  started);
      return;
    case policy::Action::Kill:
    case policy::Action::KillContainer: {
      // The record before the kill: once the container is gone, its launcher (and an auditor)
      // may look for it.
      const emul::Answer answer = emul::Answer::error(ENOSYS);
      if (decision.audit) record(event, answer, started);
      if (decision.action == policy::Action::KillContainer) kill_container(tid);
      if (victim) {
        ::syscall(SYS_pidfd_send_signal, victim.get(), SIGKILL, nullptr, 0);
      } else {
        ::kill(tid, SIGKILL);  // no pidfd for this thread here; ID_VALID just vouched for tid
      }
      send_answer(id, answer, event, false, *nr, decision.action, started);
      return;
    }
    case policy::Action::Emulate:
      emulate(std::move(emulation), id, *task, call, decision, copied, raw_path,
              filter::is_compat32(n.data.arch), std::move(event), started);
      return;  // emulate() answers and audits
  }
}

void Session::record(audit::Event& event, const emul::Answer& a, Clock::time_point started) {
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
  write_audit(event, started);
}

void Session::send_answer(std::uint64_t id, const emul::Answer& a, audit::Event& event, bool audit, int nr,
                          policy::Action action, Clock::time_point started) {
  const pid_t tid = event.host_tid();
  if (!a.diagnostic.empty()) {
    spdlog::warn("[c={} tid={}] {} `{}`: {}", identity_.container_id, tid, policy::syscall_name(nr),
                 event.args().path(), a.diagnostic);
  }
  if (audit) record(event, a, started);
  switch (a.kind) {
    case emul::Answer::Kind::Continue:
      warn_unless_gone(listener_.respond_continue(id), tid);
      break;
    case emul::Answer::Kind::Value:
      warn_unless_gone(listener_.respond_value(id, a.value), tid);
      break;
    case emul::Answer::Kind::Errno:
      warn_unless_gone(listener_.respond(id, a.err), tid);
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

void Session::emulate(Result<std::unique_ptr<emul::Emulation>> prepared, std::uint64_t id,
                      const task::TaskHandle& task, const policy::Call& call,
                      const policy::Decision& decision, const Result<void>& copied,
                      const std::string& raw_path, bool compat32, audit::Event event,
                      Clock::time_point started) {
  const auto answer = [&](const emul::Answer& a) {
    send_answer(id, a, event, decision.audit, call.nr, policy::Action::Emulate, started);
  };
  if (!prepared) {
    answer(emul::Answer::error(EPERM, prepared.error().message()));
    return;
  }
  std::unique_ptr<emul::Emulation> emulation = std::move(*prepared);
  if (!emulation) {
    // The loader accepts `emulate` only where an emulator exists.
    answer(emul::Answer::error(ENOSYS, "no emulator"));
    return;
  }
  if (!copied) {
    answer(emul::Answer::error(copied.error().err));  // EFAULT / ENAMETOOLONG / EBADF: the kernel's answer
    return;
  }
  // 4. What else the emulation reads of the caller's memory, then ID_VALID once more.
  if (auto more = emulation->copy(task, call); !more) {
    if (listener_.id_valid(id)) answer(emul::Answer::error(more.error().err));
    return;
  }
  if (auto v = listener_.id_valid(id); !v) return;
  const policy::Rule* rule =
      decision.rule_index >= 0 ? &policy_->rules[static_cast<std::size_t>(decision.rule_index)] : nullptr;
  if (rule == nullptr) {
    answer(emul::Answer::error(ENOSYS, "emulate without a rule"));
    return;
  }
  const emul::Context ctx{task, call, rule, raw_path, compat32, state_};
  emul::Started started_job = emulation->start(ctx);
  if (auto* now = std::get_if<emul::Answer>(&started_job)) {
    answer(*now);
    return;
  }
  auto p = std::make_unique<Pending>(io_, std::move(std::get<std::unique_ptr<emul::Job>>(started_job)));
  p->event = std::move(event);
  p->audit = decision.audit;
  p->nr = call.nr;
  p->started = started;
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
      p.exited = boost::asio::posix::stream_descriptor(io_, ::dup(p.job->pidfd()));
      wait_for_helper(id);
      return;
    }
  }
  std::unique_ptr<Pending> p = std::move(it->second);
  pending_.erase(it);
  p->deadline.cancel();
  const emul::Answer outcome = p->job->finish(state_);
  if (p->timed_out) {
    spdlog::warn("[c={} tid={}] {}: the helper timed out and was killed", identity_.container_id,
                 p->event.host_tid(), policy::syscall_name(p->nr));
  }
  send_answer(id, outcome, p->event, p->audit, p->nr, policy::Action::Emulate, p->started);
  if (receiver_) receiver_->answered();
  if (hung_up_ && pending_.empty()) close();
}

}  // namespace sysvisor
