// sched_setscheduler, sched_setattr, setpriority: real-time policies and negative nice values
// for tasks of the caller's own container, within the limits of the rule that said `emulate`.
//
// The kernel refuses them to a rootless container because CAP_SYS_NICE only counts in the
// initial user namespace. The supervisor has it, and acts on the target's host tid, after:
//   - the target pid, read in the caller's pid namespace, names a task of that same pid
//     namespace (0: the caller itself);
//   - the caller may act on the target as the kernel would require without CAP_SYS_NICE (same
//     euid as the target's uid or euid), or holds CAP_SYS_NICE in its own user namespace;
//   - the request needs no privilege, or the rule bounds it: a real-time priority only under a
//     rule with `priority: {max: N}`, a negative nice only under `nice: {min: N}`. SCHED_DEADLINE
//     and sched_attr flags other than SCHED_FLAG_RESET_ON_FORK are not emulated (EPERM).
// No file system work: the answer is immediate.
#include "sysvisor/sched.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <cstring>
#include <limits>

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

Verdict check_request(const Request& req, const policy::Rule& rule) {
  const int policy = req.policy & ~kResetOnFork;
  switch (policy) {
    case SCHED_OTHER:
    case SCHED_BATCH:
    case SCHED_IDLE:
      if (req.priority != 0) return Verdict{EINVAL};
      break;
    case SCHED_FIFO:
    case SCHED_RR:
      if (req.priority < 1 || req.priority > 99) return Verdict{EINVAL};
      if (!rule.match.priority || !rule.match.priority->max || req.priority > *rule.match.priority->max) {
        return Verdict{EPERM};
      }
      break;
    default:
      return Verdict{req.policy == SCHED_DEADLINE ? EPERM : EINVAL};
  }
  if (req.nice) {
    if (*req.nice < -20 || *req.nice > 19) {
      // setpriority clamps; sched_setattr refuses.
      if (!req.clamp_nice) return Verdict{EINVAL};
    }
    const std::int64_t nice = std::clamp<std::int64_t>(*req.nice, -20, 19);
    if (nice < 0 && (!rule.match.nice || !rule.match.nice->min || nice < *rule.match.nice->min)) {
      return Verdict{req.clamp_nice ? EACCES : EPERM};
    }
  }
  return Verdict{0};
}

namespace {

constexpr int kCapSysNice = 23;

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

Result<std::uint64_t> ns_inode(int proc_dir, const char* name) {
  struct stat st {};
  if (::fstatat(proc_dir, name, &st, 0) != 0) return sys_error(std::string("stat ") + name);
  return static_cast<std::uint64_t>(st.st_ino);
}

// The host tid of `pid` as the pid namespace with inode `pidns` numbers it, found among the
// tasks of that namespace. ESRCH when there is none.
Result<pid_t> host_tid(pid_t pid, std::uint64_t pidns) {
  UniqueFd proc(::open("/proc", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!proc) return sys_error("open /proc");
  DIR* dir = ::fdopendir(::dup(proc.get()));
  if (dir == nullptr) return sys_error("opendir /proc");
  std::unique_ptr<DIR, int (*)(DIR*)> guard(dir, ::closedir);
  while (const dirent* e = ::readdir(dir)) {
    if (e->d_name[0] < '1' || e->d_name[0] > '9') continue;
    const std::string tasks = std::string(e->d_name) + "/task";
    UniqueFd tdir_fd(::openat(proc.get(), tasks.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!tdir_fd) continue;
    DIR* tdir = ::fdopendir(tdir_fd.release());
    if (tdir == nullptr) continue;
    std::unique_ptr<DIR, int (*)(DIR*)> tguard(tdir, ::closedir);
    while (const dirent* t = ::readdir(tdir)) {
      if (t->d_name[0] < '1' || t->d_name[0] > '9') continue;
      const std::string task = tasks + "/" + t->d_name;
      UniqueFd task_dir(::openat(proc.get(), task.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
      if (!task_dir) continue;
      auto status = task::read_file_at(task_dir.get(), "status");
      if (!status) continue;
      auto ids = parse_nspid(*status);
      if (!ids || ids->back() != pid) continue;
      auto ns = ns_inode(task_dir.get(), "ns/pid");
      if (!ns || *ns != pidns) continue;
      return ids->front();
    }
  }
  return sys_error(ESRCH, "no such task in the caller's pid namespace");
}

class Sched final : public Emulation {
 public:
  Sched(const policy::SyscallInfo& info, std::uint64_t pidns, task::Credentials creds)
      : info_(info), pidns_(pidns), creds_(std::move(creds)) {}

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
    Request req;
    pid_t pid = 0;
    if (info_.name == "setpriority") {
      const auto which = static_cast<int>(static_cast<std::int32_t>(call.args[0]));
      if (which != PRIO_PROCESS) {
        return Answer::error(EPERM, "setpriority: only PRIO_PROCESS is emulated");
      }
      pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[1]));
      req.policy = -1;  // unchanged
      req.nice = call.nice;
      req.clamp_nice = true;
    } else if (info_.name == "sched_setscheduler") {
      pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[0]));
      if (!call.sched_policy || !call.priority) return Answer::error(EFAULT);
      req.policy = *call.sched_policy;
      req.priority = *call.priority;
    } else if (info_.name == "sched_setattr") {
      pid = static_cast<pid_t>(static_cast<std::int32_t>(call.args[0]));
      if (call.args[2] != 0) return Answer::error(EINVAL);  // flags must be 0
      if (!call.sched_policy || !call.priority || !call.nice) return Answer::error(EFAULT);
      if ((attr_.sched_flags & ~kFlagResetOnFork) != 0) {
        return Answer::error(EPERM, "sched_setattr: only SCHED_FLAG_RESET_ON_FORK is emulated");
      }
      // The decided copies, never the second read.
      req.policy = *call.sched_policy;
      req.priority = *call.priority;
      req.nice = *call.nice;
      if (req.policy == SCHED_OTHER || req.policy == SCHED_BATCH) {
        // nice only matters for these; for others the kernel ignores it.
      } else {
        req.nice.reset();
      }
    } else {
      return Answer::error(ENOSYS, "no sched emulator for " + std::string(info_.name));
    }
    if (pid < 0) return Answer::error(info_.name == "setpriority" ? ESRCH : EINVAL);
    if (req.policy != -1) {
      if (Verdict v = check_request(req, *ctx.rule); v.err != 0) return Answer::error(v.err);
    } else if (req.nice) {
      Request only_nice = req;
      only_nice.policy = SCHED_OTHER;
      if (Verdict v = check_request(only_nice, *ctx.rule); v.err != 0) return Answer::error(v.err);
    }

    pid_t target = ctx.task.tid();
    if (pid != 0) {
      auto found = host_tid(pid, pidns_);
      if (!found) return Answer::error(ESRCH);
      target = *found;
    }
    // The kernel's check_same_owner / set_one_prio_perm, done for the caller.
    const std::string dir = "/proc/" + std::to_string(target);
    UniqueFd target_dir(::open(dir.c_str(), O_PATH | O_DIRECTORY | O_CLOEXEC));
    if (!target_dir) return Answer::error(ESRCH);
    auto status = task::read_file_at(target_dir.get(), "status");
    auto creds = status ? task::parse_status(*status) : std::nullopt;
    if (!creds) return Answer::error(ESRCH);
    const bool same_owner = creds_.uid[1] == creds->uid[0] || creds_.uid[1] == creds->uid[1];
    const bool nice_cap = (creds_.cap_effective & (std::uint64_t{1} << kCapSysNice)) != 0;
    if (!same_owner && !nice_cap) return Answer::error(EPERM);
    // Still the task we checked (a pid of the same namespace).
    if (auto ns = ns_inode(target_dir.get(), "ns/pid"); !ns || *ns != pidns_) return Answer::error(ESRCH);

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
  std::uint64_t pidns_;
  task::Credentials creds_;
  SchedAttr attr_{};
};

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& /*call*/) {
  auto pidns = ns_inode(task.proc_dir(), "ns/pid");
  if (!pidns) return std::unexpected(pidns.error());
  auto status = task::read_file_at(task.proc_dir(), "status");
  if (!status) return std::unexpected(status.error());
  auto creds = task::parse_status(*status);
  if (!creds) return plain_error("unparsable /proc/" + std::to_string(task.tid()) + "/status");
  return std::make_unique<Sched>(info, *pidns, std::move(*creds));
}

}  // namespace sysvisor::emul::sched
