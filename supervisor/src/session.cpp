#include "sysvisor/session.hpp"

#include <fcntl.h>
#include <linux/audit.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include <csignal>

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
      on_closed_(std::move(on_closed)) {
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
      [this, weak] {
        boost::asio::post(io_, [weak] {
          if (auto self = weak.lock()) self->on_hung_up();
        });
      },
  };
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
  const policy::Decision decision = policy::decide(pol, call);
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
  account(*nr, decision.action, started);
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
  if (receiver_) receiver_->stop();
  for (auto& [id, p] : pending_) {
    p->deadline.cancel();
    p->job->kill();
  }
  // Post: on_closed_ drops the daemon's reference, which may be the last one.
  boost::asio::post(io_, [self = shared_from_this()] { self->on_closed_(self->identity_.session_id); });
}

void Session::write_audit(audit::Event& event, Clock::time_point started) {
  event.time = std::chrono::system_clock::now();
  event.latency_us = static_cast<std::uint64_t>(
      std::chrono::duration_cast<std::chrono::microseconds>(Clock::now() - started).count());
  services_.audit->write(event);
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
  const std::uint32_t fields = pol.fields_for(*nr);
  if (info != nullptr) decode::from_registers(call, *info, fields);
  const bool from_memory = info != nullptr && (fields & policy::kMemoryFields) != 0;

  // The fast path: the decision needs nothing from the caller's memory and asks for no
  // record and no work beyond the answer.
  policy::Decision decision;
  if (!from_memory) {
    decision = policy::decide(pol, call);
    if (!decision.audit) {
      switch (decision.action) {
        case policy::Action::Allow:
          let_kernel_decide();
          account(*nr, decision.action, started);
          return;
        case policy::Action::Deny:
          respond(decision.err);
          account(*nr, decision.action, started);
          return;
        case policy::Action::Return:
          warn_unless_gone(listener_.respond_value(id, decision.value), tid);
          account(*nr, decision.action, started);
          return;
        default:
          break;
      }
    }
  }

  // 1. Open what we need of the task, then prove it is still the caller.
  auto task = task::TaskHandle::open(tid);
  if (!task) {
    if (!gone(task.error()))
      spdlog::warn("[c={} tid={}] {}", identity_.container_id, tid, task.error().message());
    respond(EPERM);  // SEND reports ENOENT quietly when the task is gone
    account(*nr, policy::Action::Deny, started);
    return;
  }
  const bool mknod_family = info != nullptr && info->family == policy::Family::Mknod;
  const std::size_t first = mknod_family && info->paths[0].dirfd >= 0 ? 1 : 0;
  const auto mode = static_cast<mode_t>(static_cast<std::uint16_t>(call.args[first + 1]));
  Result<std::unique_ptr<emul::Emulation>> emulation{};
  if (info != nullptr && info->emulator && (from_memory || decision.action == policy::Action::Emulate)) {
    // Emulation may follow: its fds must be opened before ID_VALID vouches for them. A failure
    // matters only if the decision is `emulate`.
    emulation = emul::prepare(*info, *task, call);
  }
  UniqueFd victim;
  if (from_memory || decision.action == policy::Action::Kill ||
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
  Result<void> copied{};
  if (info != nullptr) {
    // mknod's path is read for the audit record too, whatever the decision.
    const std::uint32_t wanted = fields | (mknod_family ? policy::kFieldPath : 0U) |
                                 (emulation && *emulation ? (*emulation)->fields() : 0U);
    copied = decode::from_memory(call, *info, wanted, *task, &raw_path);
  }
  if (auto v = listener_.id_valid(id); !v) return;
  if (from_memory) {
    if (!copied) {
      // What the kernel itself would have answered (EFAULT, ENAMETOOLONG, EBADF, ...); never
      // CONTINUE: the kernel would read the memory again, maybe changed by then.
      respond(copied.error().err);
      account(*nr, policy::Action::Deny, started);
      return;
    }
    decision = policy::decide(pol, call);
  }

  audit::Event event;
  event.container = identity_.container_id;
  event.engine = identity_.engine;
  event.policy = pol.name;
  event.policy_version = pol.version;
  event.pid = tid;
  event.syscall = policy::syscall_name(*nr);
  event.arch = arch_name(n.data.arch, n.data.nr);
  event.raw = call.args;
  if (info != nullptr && info->paths[0].path >= 0) {
    if (copied || !raw_path.empty()) {
      event.path = raw_path;
    } else {
      event.path_error = policy::errno_name(copied.error().err);
    }
  }
  event.paths = call.paths;
  if (mknod_family) {
    event.device = true;
    event.type = call.type ? policy::to_string(*call.type) : "";
    event.major = call.major;
    event.minor = call.minor;
    event.mode = mode;
  }
  event.fstype = call.fstype;
  event.source = call.source;
  event.target = call.target;
  event.xattr = call.xattr_name;
  event.flags = call.flags;
  event.value_size = call.value_size;
  event.sched_policy = call.sched_policy;
  event.priority = call.priority;
  event.nice = call.nice;
  event.action = policy::to_string(decision.action);
  if (decision.rule_index >= 0) {
    const policy::Rule& rule = pol.rules[static_cast<std::size_t>(decision.rule_index)];
    event.rule = rule.name;
    event.rule_origin = rule.origin;
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
    case policy::Action::KillContainer:
      if (decision.action == policy::Action::KillContainer) kill_container(tid);
      if (victim) {
        ::syscall(SYS_pidfd_send_signal, victim.get(), SIGKILL, nullptr, 0);
      } else {
        ::kill(tid, SIGKILL);  // no pidfd for this thread here; ID_VALID just vouched for tid
      }
      send_answer(id, emul::Answer::error(ENOSYS), event, decision.audit, *nr, decision.action, started);
      return;
    case policy::Action::Emulate:
      emulate(std::move(emulation), id, *task, call, decision, copied, raw_path,
              filter::is_compat32(n.data.arch), std::move(event), started);
      return;  // emulate() answers and audits
  }
}

void Session::send_answer(std::uint64_t id, const emul::Answer& a, audit::Event& event, bool audit, int nr,
                          policy::Action action, Clock::time_point started) {
  const pid_t tid = event.pid;
  if (!a.diagnostic.empty()) {
    spdlog::warn("[c={} tid={}] {} `{}`: {}", identity_.container_id, tid, event.syscall,
                 event.path.value_or(""), a.diagnostic);
  }
  switch (a.kind) {
    case emul::Answer::Kind::Continue:
      event.continued = true;
      break;
    case emul::Answer::Kind::Value:
      event.value = a.value;
      break;
    case emul::Answer::Kind::Errno:
      event.err = a.err;
      break;
  }
  if (audit) write_audit(event, started);
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
                 p->event.pid, p->event.syscall);
  }
  send_answer(id, outcome, p->event, p->audit, p->nr, policy::Action::Emulate, p->started);
  if (receiver_) receiver_->answered();
  if (hung_up_ && pending_.empty()) close();
}

}  // namespace sysvisor
