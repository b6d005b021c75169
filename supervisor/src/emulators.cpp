// The emulator table (one entry per family) and the mknod family behind the Emulation interface.
#include <fcntl.h>
#include <spdlog/spdlog.h>
#include <sys/stat.h>

#include "sysvisor/emulator.hpp"

namespace sysvisor::emul {

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& call) {
  if (!info.emulator) return std::unique_ptr<Emulation>{};
  switch (info.family) {
    case policy::Family::Mknod:
      return mknod_emul::prepare(info, task, call);
    case policy::Family::Sched:
      return sched::prepare(info, task, call);
    case policy::Family::Sysinfo:
      return sysinfo::prepare(task);
    case policy::Family::Xattr:
      return xattr::prepare(info, task, call);
    case policy::Family::Mount:
    case policy::Family::Umount:
      return mount::prepare(info, task, call);
    case policy::Family::None:
      break;
  }
  return std::unique_ptr<Emulation>{};
}

namespace mknod_emul {
namespace {

class MknodJob final : public Job {
 public:
  explicit MknodJob(mknod::Running run, mknod::DeviceStore& store) : run_(std::move(run)), store_(store) {}
  ~MknodJob() override {
    if (run_.pidfd) {  // never finished: the session is going away
      mknod::kill(run_);
      (void)mknod::finish(run_, store_);
    }
  }
  MknodJob(const MknodJob&) = delete;
  MknodJob& operator=(const MknodJob&) = delete;
  [[nodiscard]] int pidfd() const override { return run_.pidfd.get(); }
  void kill() override { mknod::kill(run_); }
  Answer finish(SessionState& state) override {
    const mknod::Outcome outcome = mknod::finish(run_, store_);
    if (outcome.err == 0 && !run_.node_name.empty()) state.nodes.push_back(run_.node_name);
    return Answer::error(outcome.err, outcome.diagnostic);
  }

 private:
  mknod::Running run_;
  mknod::DeviceStore& store_;
};

class Mknod final : public Emulation {
 public:
  explicit Mknod(Result<mknod::Request> request) : request_(std::move(request)) {}
  [[nodiscard]] std::uint32_t fields() const override { return policy::kFieldPath; }
  Started start(const Context& ctx) override {
    if (!ctx.call.type) {
      // A FIFO, socket or regular file: unprivileged callers may make those themselves.
      return Answer::let_kernel_decide();
    }
    if (ctx.raw_path.empty()) return Answer::error(ENOENT);
    if (!request_) return Answer::error(EPERM, "mknod: " + request_.error().message());
    auto run = mknod::start(*request_, ctx.raw_path, *ctx.state.devices, ctx.state.session_id);
    if (!run) {
      // A bad dirfd is the caller's error; anything else is ours, logged, and EPERM.
      const SysError& e = run.error();
      if (e.err == EBADF || e.err == ENOTDIR) return Answer::error(e.err);
      return Answer::error(EPERM, "mknod: " + e.message());
    }
    return std::make_unique<MknodJob>(std::move(*run), *ctx.state.devices);
  }

 private:
  Result<mknod::Request> request_;
};

}  // namespace

Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& info, const task::TaskHandle& task,
                                           const policy::Call& call) {
  const std::size_t first = info.paths[0].dirfd >= 0 ? 1 : 0;  // mknodat has a dirfd first
  const auto mode = static_cast<mode_t>(static_cast<std::uint16_t>(call.args[first + 1]));
  const int dirfd = first == 1 ? static_cast<int>(static_cast<std::int32_t>(call.args[0])) : AT_FDCWD;
  // A failure here is reported when (and if) the call is emulated, as EPERM.
  return std::make_unique<Mknod>(
      mknod::prepare(task, mode, static_cast<std::uint32_t>(call.args[first + 2]), dirfd));
}

}  // namespace mknod_emul
}  // namespace sysvisor::emul
