// The one interface every emulator implements, and the table that picks one per syscall.
//
// The dispatcher (session.cpp) drives an emulation in the safe order of design.md:
//   prepare()  before the first ID_VALID: open what the emulation needs of the task (fds of
//              its root, cwd, namespaces, memory), so ID_VALID vouches for them;
//   copy()     once decide() said `emulate`: copy whatever else it reads of the caller's
//              memory (an xattr value, a sched_attr, mount options); ID_VALID follows;
//   start()    act on the copies only: either an immediate answer (sched, sysinfo: no file
//              system work), or a Job, a helper process the loop waits for through its pidfd
//              without blocking (file system work: a container's FUSE mount could stall it);
//   Job::finish() after the pidfd polls readable: the answer.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/mknod.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/syscalls.hpp"
#include "sysvisor/task.hpp"

namespace sysvisor::emul {

// What one container's emulations share and leave behind, owned by its session.
struct SessionState {
  std::string session_id;
  std::string container_id;
  pid_t container_pid = 0;  // its init, host view (0: unknown, `exec` mode)
  mknod::DeviceStore* devices = nullptr;
  std::vector<std::string> nodes;     // device nodes made for it, removed with the session
  std::vector<std::uint64_t> mounts;  // unique ids (STATX_MNT_ID_UNIQUE) of the mounts made for it
  // Where each of `nodes` is mounted: mknod reclaims a node whose mount is gone.
  std::vector<mknod::Attached> attached;
};

struct Answer {
  enum class Kind : std::uint8_t { Errno, Value, Continue };
  Kind kind = Kind::Errno;
  int err = 0;             // Errno: 0 (success, value 0) or an errno
  std::int64_t value = 0;  // Value
  std::string diagnostic;  // non-empty when our machinery failed (logged, not the caller's error)

  static Answer ok() { return {}; }
  static Answer error(int e, std::string why = {}) { return Answer{Kind::Errno, e, 0, std::move(why)}; }
  static Answer let_kernel_decide() { return Answer{Kind::Continue, 0, 0, {}}; }
  static Answer returning(std::int64_t v) { return Answer{Kind::Value, 0, v, {}}; }
};

// A running helper process.
class Job {
 public:
  virtual ~Job() = default;
  [[nodiscard]] virtual int pidfd() const = 0;  // polls readable when the helper exits
  virtual void kill() = 0;                      // SIGKILL; finish() must still be called
  // Reaps the helper; exactly once per Job. Records what it left for the session.
  [[nodiscard]] virtual Answer finish(SessionState& state) = 0;
  // Asked before finish(), once the fd polls readable: a job that found it cannot decide
  // (the direct mknod thread declining) hands over to another job, waited for instead.
  [[nodiscard]] virtual std::unique_ptr<Job> follow_up(SessionState& /*state*/) { return nullptr; }
};

using Started = std::variant<Answer, std::unique_ptr<Job>>;

struct Context {
  const task::TaskHandle& task;
  const policy::Call& call;     // the decided copies
  const policy::Rule* rule;     // the rule that said `emulate` (never null in start())
  const std::string& raw_path;  // the first path argument as the caller passed it ("" if none)
  bool compat32 = false;        // i386 ABI: 32-bit structures in the caller's memory
  SessionState& state;
};

class Emulation {
 public:
  virtual ~Emulation() = default;
  Emulation() = default;
  Emulation(const Emulation&) = delete;
  Emulation& operator=(const Emulation&) = delete;
  // policy::Field bits decode::from_memory must copy for the emulation, whatever the policy reads.
  [[nodiscard]] virtual std::uint32_t fields() const { return policy::kFieldNone; }
  // After decide(), before the last ID_VALID: further copies of the caller's memory. An error
  // is the caller's answer (EFAULT, E2BIG, ...).
  [[nodiscard]] virtual Result<void> copy(const task::TaskHandle& /*task*/, const policy::Call& /*call*/) {
    return {};
  }
  [[nodiscard]] virtual Started start(const Context& ctx) = 0;
};

// Before the first ID_VALID, for a call that may be emulated: the emulation of its family with
// the task's fds opened. nullptr when the syscall has no emulator. `call` holds registers only.
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info,
                                                         const task::TaskHandle& task,
                                                         const policy::Call& call);

// The families (one file each).
namespace mknod_emul {
// The store nodes whose mount is gone leave the store and stop counting against the cap. On
// the loop only (it owns the session's state and the store's watches).
void reclaim(SessionState& state);
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info,
                                                         const task::TaskHandle& task,
                                                         const policy::Call& call);
}  // namespace mknod_emul
namespace sched {
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info,
                                                         const task::TaskHandle& task,
                                                         const policy::Call& call);
}
namespace sysinfo {
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const task::TaskHandle& task);
}
namespace mount {
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info,
                                                         const task::TaskHandle& task,
                                                         const policy::Call& call);
}
namespace xattr {
[[nodiscard]] Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info,
                                                         const task::TaskHandle& task,
                                                         const policy::Call& call);
}

}  // namespace sysvisor::emul
