// sched_setscheduler, sched_setattr, setpriority: real-time policies and negative nice values
// for tasks the caller's user namespace owns, within the limits of the rule that said `emulate`.
//
// The kernel refuses them to a rootless container because CAP_SYS_NICE only counts in the
// initial user namespace. The supervisor has it, and acts on the target's host tid, after:
//   - the target pid is resolved in the caller's pid namespace, as the kernel's
//     find_task_by_vpid() does for the caller (0: the caller itself), with no scan of /proc;
//   - the caller may act on the target as the kernel would let it (design.md, "Threat model":
//     the user namespace that owns the *target task's* credentials decides): same euid as the
//     target's uid or euid (check_same_owner / set_one_prio_perm, host view), or CAP_SYS_NICE in
//     the target's user namespace (caps::capable). A capability in the caller's own namespace
//     says nothing about a host process;
//   - what an unprivileged process may not do (a real-time policy, a nice below 0 or below the
//     target's current one, leaving SCHED_IDLE) is granted only with CAP_SYS_NICE in the
//     target's user namespace, i.e. over tasks the caller's namespace owns;
//   - the request needs no privilege, or the rule bounds it: a real-time priority only under a
//     rule with `priority: {max: N}`, a negative nice only under `nice: {min: N}`. SCHED_DEADLINE
//     and sched_attr flags other than SCHED_FLAG_RESET_ON_FORK are not emulated (EPERM).
// No file system work: the answer is immediate.
#include "sysvisor/sched.hpp"

#include <fcntl.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

#include "sysvisor/capable.hpp"
#include "sysvisor/emulator.hpp"

namespace sysvisor::emul::sched {

std::optional<std::vector<pid_t>> parse_nspid(std::string_view status) {
  std::size_t at = 0;
  while (at < status.size()) {
    std::size_t end = status.find('\n', at);
    if (end == std::string_view::npos) end = status.size();
    std::string_view line = status.substr(at, end - at);
    at = end + 1;
    if (!line.starts_with("NSpid:")) continue;
    line.remove_prefix(6);
    std::vector<pid_t> out;
    while (!line.empty()) {
      while (!line.empty() && (line.front() == ' ' || line.front() == '\t')) line.remove_prefix(1);
      if (line.empty()) break;
      pid_t v = 0;
      auto [p, ec] = std::from_chars(line.data(), line.data() + line.size(), v);
      if (ec != std::errc{} || v <= 0) return std::nullopt;
      out.push_back(v);
      line.remove_prefix(static_cast<std::size_t>(p - line.data()));
    }
    if (out.empty()) return std::nullopt;
    return out;
  }
  return std::nullopt;
}

namespace {
// <linux/nsfs.h> of kernel 6.7; Debian 12's headers predate them. The argument is the pid
// itself, the result the translated pid.
constexpr unsigned long kNsGetPidFromPidns = _IOR(0xb7, 0x6, int);
constexpr unsigned long kNsGetPidInPidns = _IOR(0xb7, 0x8, int);
}  // namespace

// Why an ioctl and not /proc: the caller names the target in its own pid namespace, which the
// supervisor's /proc does not number. Looking through every /proc/PID/task/TID/status for a
// matching NSpid cost a loop iteration per task on the host (measured: a neighbour's mknod went
// from 0.4 ms to 54 ms while one container flooded such calls). The namespace fd translates a
// number in one step, as the kernel does for the caller; the supervisor, in the initial pid
// namespace, is an ancestor of every namespace and gets the host tid back.
Result<pid_t> host_tid(int pidns_fd, pid_t pid) {
  if (pid <= 0) return sys_error(ESRCH, "pid " + std::to_string(pid) + " in the caller's pid namespace");
  const int host = ::ioctl(pidns_fd, kNsGetPidFromPidns, static_cast<unsigned long>(pid));
  if (host <= 0) {
    return sys_error(host == 0 ? ESRCH : errno, "NS_GET_PID_FROM_PIDNS " + std::to_string(pid));
  }
  return static_cast<pid_t>(host);
}

Result<pid_t> pid_in_ns(int pidns_fd, pid_t host) {
  if (host <= 0) return sys_error(ESRCH, "host tid " + std::to_string(host));
  const int pid = ::ioctl(pidns_fd, kNsGetPidInPidns, static_cast<unsigned long>(host));
  if (pid <= 0) return sys_error(pid == 0 ? ESRCH : errno, "NS_GET_PID_IN_PIDNS " + std::to_string(host));
  return static_cast<pid_t>(pid);
}

namespace {

// The first fields of struct sched_attr (SCHED_ATTR_SIZE_VER0 = 48 bytes).
struct SchedAttr {
  std::uint32_t size;
  std::uint32_t sched_policy;
  std::uint64_t sched_flags;
  std::int32_t sched_nice;
  std::uint32_t sched_priority;
  std::uint64_t sched_runtime;
  std::uint64_t sched_deadline;
  std::uint64_t sched_period;
};
static_assert(sizeof(SchedAttr) == 48);
constexpr std::uint64_t kFlagResetOnFork = 0x01;

// Fields 19 (nice) and 41 (policy) of /proc/TID/stat.
struct Current {
  std::int64_t nice = 0;
  int policy = SCHED_OTHER;
};
std::optional<Current> parse_stat(std::string_view stat) {
  const std::size_t paren = stat.rfind(')');
  if (paren == std::string_view::npos) return std::nullopt;
  std::string_view rest = stat.substr(paren + 1);
  // rest starts with " S ...": field 3 is the first word.
  int field = 2;
  Current cur;
  bool nice_seen = false;
  bool policy_seen = false;
  while (!rest.empty() && !(nice_seen && policy_seen)) {
    while (!rest.empty() && rest.front() == ' ') rest.remove_prefix(1);
    const std::size_t end = std::min(rest.find(' '), rest.size());
    const std::string_view word = rest.substr(0, end);
    ++field;
    if (field == 19 || field == 41) {
      std::int64_t v = 0;
      auto [p, ec] = std::from_chars(word.data(), word.data() + word.size(), v);
      if (ec != std::errc{}) return std::nullopt;
      if (field == 19) {
        cur.nice = v;
        nice_seen = true;
      } else {
        cur.policy = static_cast<int>(v);
        policy_seen = true;
      }
    }
    rest.remove_prefix(end);
  }
  if (!nice_seen || !policy_seen) return std::nullopt;
  return cur;
}

// What an unprivileged process may not do to a task (kernel/sched/syscalls.c,
// __sched_setscheduler's and can_nice's checks when not capable(CAP_SYS_NICE)), judged without
// the caller's RLIMIT_RTPRIO / RLIMIT_NICE, i.e. as if they were 0: never more than the kernel.
bool needs_privilege(const Request& req, const Current& cur) {
  const int policy = req.policy == -1 ? -1 : (req.policy & ~kResetOnFork);
  if (policy == SCHED_FIFO || policy == SCHED_RR || policy == SCHED_DEADLINE) return true;
  if (req.nice && (*req.nice < 0 || *req.nice < cur.nice)) return true;
  // Leaving SCHED_IDLE (for another non-real-time policy) takes can_nice() too.
  return cur.policy == SCHED_IDLE && policy != -1 && policy != SCHED_IDLE;
}

class Sched final : public Emulation {
 public:
  Sched(const policy::SyscallInfo& info, UniqueFd pidns, UniqueFd userns, task::Credentials creds)
      : info_(info), pidns_(std::move(pidns)), userns_(std::move(userns)), creds_(std::move(creds)) {}

  [[nodiscard]] std::uint32_t fields() const override { return policy::kFieldSched; }

  Result<void> copy(const task::TaskHandle& task, const policy::Call& call) override {
    if (info_.name != "sched_setattr") return {};
    // The kernel's sched_copy_attr: size 0 means the first version; below it or above a page, E2BIG.
    std::uint32_t size = 0;
    if (call.args[1] == 0) return sys_error(EINVAL, "NULL sched_attr");
    if (::pread(task.mem(), &size, sizeof size, static_cast<off_t>(call.args[1])) != sizeof size) {
      return sys_error(EFAULT, "read sched_attr");
    }
    if (size == 0) size = sizeof(SchedAttr);
    if (size < sizeof(SchedAttr) || size > 4096) return sys_error(E2BIG, "sched_attr size");
    if (::pread(task.mem(), &attr_, sizeof attr_, static_cast<off_t>(call.args[1])) != sizeof attr_) {
      return sys_error(EFAULT, "read sched_attr");
    }
    return {};
  }

  Started start(const Context& ctx) override {
    const policy::Call& call = ctx.call;
    // What can be answered from the decided call and the rule alone (`policy test` asks the same).
    Early early = check_call(info_.name, call, *ctx.rule);
    if (early.err != 0) return Answer::error(early.err, std::move(early.why));
    if (info_.name == "sched_setattr" && (attr_.sched_flags & ~kFlagResetOnFork) != 0) {
      return Answer::error(EPERM, "only SCHED_FLAG_RESET_ON_FORK is emulated");
    }
    const pid_t pid = early.pid;
    const Request& req = early.req;

    const int denied = info_.name == "setpriority" ? EACCES : EPERM;
    pid_t target = ctx.task.tid();
    if (pid != 0) {
      auto found = host_tid(pidns_.get(), pid);
      if (!found) return Answer::error(ESRCH);
      target = *found;
    }
    UniqueFd target_dir(
        ::open(("/proc/" + std::to_string(target)).c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!target_dir) return Answer::error(ESRCH);
    // The directory is the task the caller named: had that task died and its host tid been
    // reused between the two steps, the new task would not carry the same number in the
    // caller's namespace. (The kernel has no sched_setscheduler by pidfd: the call below names
    // the host tid again, as the kernel's own lookup would.)
    if (pid != 0) {
      auto back = pid_in_ns(pidns_.get(), target);
      if (!back || *back != pid) return Answer::error(ESRCH);
    }
    auto status = task::read_file_at(target_dir.get(), "status");
    auto creds = status ? task::parse_status(*status) : std::nullopt;
    auto stat = task::read_file_at(target_dir.get(), "stat");
    auto current = stat ? parse_stat(*stat) : std::nullopt;
    if (!creds || !current) return Answer::error(ESRCH);
    UniqueFd target_userns(::openat(target_dir.get(), "ns/user", O_RDONLY | O_CLOEXEC));
    if (!target_userns) return Answer::error(ESRCH);

    // The kernel's check_same_owner / set_one_prio_perm, host view, or CAP_SYS_NICE in the user
    // namespace that owns the target's credentials.
    const caps::Subject subject{userns_.get(), static_cast<uid_t>(creds_.uid[1]), creds_.cap_effective};
    auto capable = caps::capable(subject, target_userns.get(), caps::kSysNice);
    if (!capable) return Answer::error(EPERM, capable.error().message());
    const bool same_owner = creds_.uid[1] == creds->uid[0] || creds_.uid[1] == creds->uid[1];
    if (!same_owner && !*capable) return Answer::error(EPERM);
    if (!*capable && needs_privilege(req, *current)) return Answer::error(denied);

    long rc = 0;
    if (info_.name == "setpriority") {
      rc = ::setpriority(PRIO_PROCESS, static_cast<id_t>(target),
                         static_cast<int>(std::clamp<std::int64_t>(*req.nice, -20, 19)));
    } else if (info_.name == "sched_setscheduler") {
      sched_param param{};
      param.sched_priority = static_cast<int>(req.priority);
      rc = ::sched_setscheduler(target, req.policy, &param);
    } else {
      SchedAttr attr{};
      attr.size = sizeof attr;
      attr.sched_policy = static_cast<std::uint32_t>(req.policy);
      attr.sched_flags = attr_.sched_flags & kFlagResetOnFork;
      attr.sched_nice = req.nice ? static_cast<std::int32_t>(*req.nice) : 0;
      attr.sched_priority = static_cast<std::uint32_t>(req.priority);
      rc = ::syscall(SYS_sched_setattr, target, &attr, 0U);
    }
    return Answer::error(rc == 0 ? 0 : errno);
  }

 private:
  const policy::SyscallInfo& info_;
  UniqueFd pidns_;   // the caller's active pid namespace
  UniqueFd userns_;  // the caller's user namespace
  task::Credentials creds_;
  SchedAttr attr_{};
};

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& /*call*/) {
  // Opened before ID_VALID: they are the caller's.
  auto pidns = task.open_entry("ns/pid", O_RDONLY | O_CLOEXEC);
  if (!pidns) return std::unexpected(pidns.error());
  auto userns = task.open_entry("ns/user", O_RDONLY | O_CLOEXEC);
  if (!userns) return std::unexpected(userns.error());
  auto status = task::read_file_at(task.proc_dir(), "status");
  if (!status) return std::unexpected(status.error());
  auto creds = task::parse_status(*status);
  if (!creds) return plain_error("unparsable /proc/" + std::to_string(task.tid()) + "/status");
  return std::make_unique<Sched>(info, std::move(*pidns), std::move(*userns), std::move(*creds));
}

}  // namespace sysvisor::emul::sched
