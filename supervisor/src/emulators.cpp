// The emulator table (one entry per family) and the mknod family behind the Emulation interface.
#include <fcntl.h>
#include <linux/capability.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <climits>
#include <memory>
#include <optional>

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

// The store nodes whose mount is gone (the container unmounted them, or its mount namespace
// ended) leave the store now, so a container cycling mknod + umount holds no more than it has
// mounted; one still held by a copy of its mount counts until the last copy goes.
void reclaim(SessionState& state) {
  std::vector<mknod::Attached> kept;
  kept.reserve(state.attached.size());
  for (mknod::Attached& node : state.attached) {
    if (!node.released) {
      if (mknod::still_mounted(node)) {
        kept.push_back(std::move(node));
        continue;
      }
      // Without a watch (inotify's limits) the node keeps its name and stays counted.
      node.released = state.devices->release(node.name);
      if (!node.released) {
        kept.push_back(std::move(node));
        continue;
      }
    }
    if (node.released && state.devices->alive(node.name)) {
      kept.push_back(std::move(node));
      continue;
    }
    state.devices->remove_node(node.name);
    std::erase(state.nodes, node.name);
  }
  state.attached = std::move(kept);
}

namespace {

// A node attached for the container: removed with the session, or earlier by reclaim().
void record(SessionState& state, const std::string& name, std::uint64_t mnt_id, std::uint64_t ns_id) {
  state.nodes.push_back(name);
  state.attached.push_back(mknod::Attached{name, mnt_id, ns_id});
}

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
    const std::uint64_t mnt_id = run_.tree ? mknod::unique_mount_id(run_.tree.get()) : 0;
    const mknod::Outcome outcome = mknod::finish(run_, store_);
    if (outcome.err == 0 && !run_.node_name.empty()) record(state, run_.node_name, mnt_id, run_.ns_id);
    return Answer::error(outcome.err, outcome.diagnostic);
  }

 private:
  mknod::Running run_;
  mknod::DeviceStore& store_;
};

// A bad dirfd is the caller's error; anything else is ours, logged, and EPERM.
Answer start_failure(const SysError& e) {
  if (e.err == EBADF || e.err == ENOTDIR) return Answer::error(e.err);
  return Answer::error(EPERM, "mknod: " + e.message());
}

// The capabilities that bypass permission checks: a caller holding one in its user namespace
// may be let through where the direct thread (which holds none) is refused.
constexpr std::uint64_t kPermissionCaps = (1U << 1U) | (1U << 2U) | (1U << 3U) | (1U << 4U);

// The direct thread's request; if it declines, the helpers take over (follow_up).
class DirectJob final : public Job {
 public:
  DirectJob(std::shared_ptr<mknod::DirectRequest> req, mknod::Request request, std::string path,
            mknod::DeviceStore& store)
      : req_(std::move(req)), request_(std::move(request)), path_(std::move(path)), store_(store) {}
  [[nodiscard]] int pidfd() const override { return req_->done.get(); }
  void kill() override {}  // a thread cannot be killed; a late result is dropped with req_
  std::unique_ptr<Job> follow_up(SessionState& state) override {
    if (!done() || !req_->fallback) return nullptr;
    if (!req_->diagnostic.empty()) spdlog::debug("mknod: direct path declined: {}", req_->diagnostic);
    // The thread is finished with the request: its fds are ours again.
    request_.root = std::move(req_->root);
    request_.start = std::move(req_->start);
    request_.mnt_ns = std::move(req_->mnt_ns);
    if (auto read = mknod::read_user_ns(request_, request_.proc.get()); !read) {
      failed_ = read.error();
      return nullptr;
    }
    auto run = mknod::start(request_, path_, store_, state.session_id);
    if (!run) {
      failed_ = run.error();
      return nullptr;
    }
    return std::make_unique<MknodJob>(std::move(*run), store_);
  }
  Answer finish(SessionState& state) override {
    if (failed_) return start_failure(*failed_);
    if (!done()) return Answer::error(EPERM, "mknod: the direct thread did not answer in time");
    if (req_->fallback) return Answer::error(EPERM, "mknod: " + req_->diagnostic);
    if (req_->err == 0 && !req_->node_name.empty()) {
      record(state, req_->node_name, req_->mnt_id, req_->mnt_ns ? mknod::mount_ns_id(req_->mnt_ns.get()) : 0);
    }
    return Answer::error(req_->err, req_->diagnostic);
  }

 private:
  bool done() {
    if (finished_) return true;
    std::uint64_t n = 0;
    finished_ = ::read(req_->done.get(), &n, sizeof n) == static_cast<ssize_t>(sizeof n);
    return finished_;
  }

  std::shared_ptr<mknod::DirectRequest> req_;
  mknod::Request request_;
  std::string path_;
  mknod::DeviceStore& store_;
  std::optional<SysError> failed_;
  bool finished_ = false;
};

// overlayfs's whiteout (char 0:0): the kernel lets anyone make it; the caller's part makes it.
bool is_whiteout(const mknod::Request& r) {
  const auto numbers = task::decode_dev(r.dev);
  return (r.mode & S_IFMT) == S_IFCHR && numbers.major == 0 && numbers.minor == 0;
}

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
    if (!is_whiteout(*request_)) {
      auto who = mknod::authorize(*request_);
      if (!who) return Answer::error(EPERM, "mknod: " + who.error().message());
      if (*who == mknod::Authority::Kernel) return Answer::let_kernel_decide();
      // The container's own limit, audited as ENOSPC and not logged (it controls the rate). The
      // loop reclaimed what is gone before it handed the call over (Session::dispatch_slow).
      if (ctx.state.nodes.size() >= mknod::kMaxNodesPerContainer) return Answer::error(ENOSPC);
    }
    if (!ctx.rule->match.paths.empty()) {
      // The rule's grant is scoped by path: it holds only where the text said (finding: a
      // symlinked directory would carry an emulated node elsewhere).
      if (ctx.call.paths.empty()) return Answer::error(EPERM, "mknod: no decoded path for a path rule");
      const std::string& decided = ctx.call.paths[0];
      const auto slash = decided.rfind('/');
      request_->expect_dir = slash == 0 || slash == std::string::npos ? "/" : decided.substr(0, slash);
    }
    if (auto direct = start_direct(ctx)) return direct;
    if (auto read = mknod::read_user_ns(*request_, request_->proc.get()); !read)
      return start_failure(read.error());
    auto run = mknod::start(*request_, ctx.raw_path, *ctx.state.devices, ctx.state.session_id);
    if (!run) return start_failure(run.error());
    return std::make_unique<MknodJob>(std::move(*run), *ctx.state.devices);
  }

 private:
  // The direct thread, when it is free and the call is one it can answer exactly.
  std::unique_ptr<Job> start_direct(const Context& ctx) {
    const mknod::Request& r = *request_;
    const bool relative = !ctx.raw_path.starts_with('/');
    if ((r.mode & (S_ISUID | S_ISGID)) != 0 || (relative && !r.start) || ctx.raw_path.size() >= PATH_MAX) {
      return nullptr;
    }
    auto req = std::make_shared<mknod::DirectRequest>();
    req->done.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
    if (!req->done || !r.root || !r.mnt_ns) return nullptr;
    const mknod::SplitPath split = mknod::split_path(ctx.raw_path);
    req->dir = split.dir;
    req->base = split.base;
    req->trailing_slash = split.trailing_slash;
    req->relative = relative;
    req->native = is_whiteout(r) || (r.creds.cap_effective & (std::uint64_t{1} << CAP_MKNOD)) == 0;
    req->mode = r.mode;
    req->dev = r.dev;
    req->fsuid = r.creds.uid[3];
    req->fsgid = r.creds.gid[3];
    req->groups = r.creds.groups;
    req->umask = r.creds.umask;
    req->caps_may_matter = (r.creds.cap_effective & kPermissionCaps) != 0;
    req->session = ctx.state.session_id;
    req->expect_dir = r.expect_dir;
    // The fds travel with the request (and come back if the helpers take over).
    req->root = std::move(request_->root);
    req->start = std::move(request_->start);
    req->mnt_ns = std::move(request_->mnt_ns);
    if (!ctx.state.devices->worker().submit(req)) {
      request_->root = std::move(req->root);
      request_->start = std::move(req->start);
      request_->mnt_ns = std::move(req->mnt_ns);
      return nullptr;
    }
    return std::make_unique<DirectJob>(std::move(req), std::move(*request_), ctx.raw_path,
                                       *ctx.state.devices);
  }

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
      mknod::prepare(task, mode, static_cast<std::uint32_t>(call.args[first + 2]), dirfd, false));
}

}  // namespace mknod_emul
}  // namespace sysvisor::emul
