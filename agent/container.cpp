#include "container.hpp"

#include <fcntl.h>
#include <linux/sched.h>
#include <poll.h>
#include <sched.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <cstring>

#include "cgroup_setup.hpp"
#include "container_setup.hpp"
#include "exit_codes.hpp"
#include "failure.hpp"
#include "idmap.hpp"
#include "supervised_exec.hpp"

namespace sysvisor::agent {
namespace {

constexpr std::array kForwardedSignals{SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2};

constexpr const char* kDefaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

// ---- the container init (the clone()d child) -------------------------------------------------
// Runs in a copy of the agent's memory; it never returns and never throws past container_init().

struct InitContext {
  const RunOptions* opts = nullptr;
  const Filter* filter = nullptr;
  const std::vector<std::string>* env = nullptr;
  int sock = -1;
  int sync_read = -1;   // the parent sends the init's host pid on it once the id maps are written
  int sync_write = -1;  // the parent's end
  int err_read = -1;    // the parent's end
  int err_write = -1;   // failures go here; end of file without a record means CMD was exec'd
  sigset_t sigmask{};   // the caller's signal mask and dispositions, for the workload
  const std::array<struct sigaction, kForwardedSignals.size()>* sigactions = nullptr;
};

bool read_full(int fd, void* data, std::size_t size) {
  auto* out = static_cast<char*>(data);
  std::size_t done = 0;
  while (done < size) {
    const ssize_t n = ::read(fd, out + done, size - done);
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n <= 0) {
      return false;
    }
    done += static_cast<std::size_t>(n);
  }
  return true;
}

[[noreturn]] void container_init(const InitContext& ctx) noexcept {
  ::close(ctx.sync_write);
  ::close(ctx.err_read);
  const FailureChannel failure = FailureChannel::to_parent(ctx.err_write);
  const auto check = [&failure](const Result<void>& step) {
    if (!step) {
      failure.fail(kExitAgentFailure, step.error().message());
    }
  };
  const RunOptions& opts = *ctx.opts;
  for (std::size_t i = 0; i < kForwardedSignals.size(); ++i) {
    ::sigaction(kForwardedSignals[i], &(*ctx.sigactions)[i], nullptr);
  }
  ::sigprocmask(SIG_SETMASK, &ctx.sigmask, nullptr);

  // Wait until the parent wrote the id maps; end of file means it gave up (and reports why).
  std::uint32_t host_pid = 0;
  if (!read_full(ctx.sync_read, &host_pid, sizeof(host_pid))) {
    ::_exit(kExitAgentFailure);
  }
  ::close(ctx.sync_read);

  check(enter_rootfs(opts.rootfs));
  check(become_root());
  // After the credential change, which clears it. The agent waits for us, so the window where
  // it could die unnoticed is only the one before this call.
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) {
    check(sys_error("set PR_SET_PDEATHSIG"));
  }
  check(mount_filesystems(opts.rootfs));
  check(pivot_into_cwd(opts.rootfs));
  if (::sethostname(opts.common.id.data(), opts.common.id.size()) != 0) {
    check(sys_error("set the hostname to `" + opts.common.id + "`"));
  }

  // execvp searches the container's PATH: replace the environment (its strings stay alive
  // in this copy of the agent's memory until exec).
  std::vector<char*> envp;
  for (const std::string& entry : *ctx.env) {
    envp.push_back(const_cast<char*>(entry.c_str()));
  }
  envp.push_back(nullptr);
  environ = envp.data();

  supervised_exec(ctx.sock, *ctx.filter, host_pid, opts.common.command, opts.common.preserve_fds, failure);
}

// ---- the agent (the parent) ------------------------------------------------------------------

std::string signal_name(int sig) {
  const char* abbrev = ::sigabbrev_np(sig);
  return abbrev != nullptr ? std::string("SIG") + abbrev : "signal " + std::to_string(sig);
}

int status_to_exit_code(int status) {
  if (WIFEXITED(status)) {
    return WEXITSTATUS(status);
  }
  if (WIFSIGNALED(status)) {
    return kExitSignalBase + WTERMSIG(status);
  }
  return kExitAgentFailure;
}

int send_signal(int pidfd, int sig) {
  return static_cast<int>(::syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0));
}

// Takes the forwarded signals for a signalfd: blocked, and with the default disposition, since
// a signal the caller ignores (a shell's `&` ignores SIGINT and SIGQUIT) would be discarded
// instead of queued. Restores the caller's mask and dispositions when the agent is done; the
// container init restores them before exec, so the workload inherits what a plain exec would.
class ForwardedSignals {
 public:
  Result<void> take() {
    sigemptyset(&set_);
    for (std::size_t i = 0; i < kForwardedSignals.size(); ++i) {
      sigaddset(&set_, kForwardedSignals[i]);
    }
    if (::sigprocmask(SIG_BLOCK, &set_, &saved_mask_) != 0) {
      return sys_error("block signals");
    }
    taken_ = true;
    struct sigaction dfl {};
    dfl.sa_handler = SIG_DFL;
    for (std::size_t i = 0; i < kForwardedSignals.size(); ++i) {
      if (::sigaction(kForwardedSignals[i], &dfl, &saved_actions_[i]) != 0) {
        return sys_error("reset the disposition of signal " + std::to_string(kForwardedSignals[i]));
      }
      ++actions_saved_;
    }
    return {};
  }
  ForwardedSignals() = default;
  ForwardedSignals(const ForwardedSignals&) = delete;
  ForwardedSignals& operator=(const ForwardedSignals&) = delete;
  ~ForwardedSignals() {
    for (std::size_t i = 0; i < actions_saved_; ++i) {
      ::sigaction(kForwardedSignals[i], &saved_actions_[i], nullptr);
    }
    if (taken_) {
      ::sigprocmask(SIG_SETMASK, &saved_mask_, nullptr);
    }
  }

  [[nodiscard]] const sigset_t& set() const { return set_; }
  [[nodiscard]] const sigset_t& saved_mask() const { return saved_mask_; }
  [[nodiscard]] const std::array<struct sigaction, kForwardedSignals.size()>& saved_actions() const {
    return saved_actions_;
  }

 private:
  sigset_t set_{};
  sigset_t saved_mask_{};
  std::array<struct sigaction, kForwardedSignals.size()> saved_actions_{};
  std::size_t actions_saved_ = 0;
  bool taken_ = false;
};

// Waits for the init: reads its failure record (or the end of file that means CMD was exec'd),
// forwards signals, reaps it. Before CMD starts, a forwarded signal aborts the start instead
// (the init, pid 1 without handlers, would ignore it).
int supervise(pid_t pid, const UniqueFd& pidfd, UniqueFd err_read, const UniqueFd& sigfd) {
  std::string record;
  int interrupted_by = 0;
  const auto read_record = [&record, &err_read] {
    std::array<char, 1024> buf{};
    const ssize_t n = ::read(err_read.get(), buf.data(), buf.size());
    if (n > 0) {
      record.append(buf.data(), static_cast<std::size_t>(n));
    } else if (n == 0 || errno != EINTR) {
      err_read.reset();
    }
  };
  for (;;) {
    std::array<pollfd, 3> fds{
        {{pidfd.get(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {err_read.get(), POLLIN, 0}}};
    const nfds_t count = err_read ? 3 : 2;
    if (::poll(fds.data(), count, -1) < 0) {
      if (errno == EINTR) {
        continue;
      }
      print_error(std::string("wait for the container: ") + std::strerror(errno));
      send_signal(pidfd.get(), SIGKILL);
      break;
    }
    if (count == 3 && fds[2].revents != 0) {
      read_record();
    }
    if (fds[1].revents != 0) {
      signalfd_siginfo info{};
      if (::read(sigfd.get(), &info, sizeof(info)) == static_cast<ssize_t>(sizeof(info))) {
        const int sig = static_cast<int>(info.ssi_signo);
        if (err_read && record.empty()) {
          if (interrupted_by == 0) {
            interrupted_by = sig;
            send_signal(pidfd.get(), SIGKILL);
          }
        } else if (send_signal(pidfd.get(), sig) != 0 && errno != ESRCH) {
          print_error("forward " + signal_name(sig) + " to the container: " + std::strerror(errno));
        }
      }
    }
    if (fds[0].revents != 0) {
      break;
    }
  }
  while (err_read) {
    read_record();
  }
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) {
      print_error(std::string("wait for the container: ") + std::strerror(errno));
      return kExitAgentFailure;
    }
  }
  FailureRecord failure;
  if (decode_failure_record(record, failure)) {
    print_error(failure.message);
    return failure.exit_code;
  }
  if (interrupted_by != 0) {
    print_error("interrupted by " + signal_name(interrupted_by) + " before the command started");
    return kExitSignalBase + interrupted_by;
  }
  return status_to_exit_code(status);
}

}  // namespace

std::vector<std::string> container_environment(const std::string& hostname,
                                               const std::vector<std::string>& extra) {
  std::vector<std::string> env{std::string("PATH=") + kDefaultPath, "HOSTNAME=" + hostname, "HOME=/root"};
  if (const char* term = std::getenv("TERM"); term != nullptr) {
    env.push_back(std::string("TERM=") + term);
  }
  for (const std::string& entry : extra) {
    std::string value = entry;
    if (entry.find('=') == std::string::npos) {
      const char* inherited = std::getenv(entry.c_str());
      if (inherited == nullptr) {
        continue;
      }
      value = entry + "=" + inherited;
    }
    const std::string key = value.substr(0, value.find('=') + 1);
    std::erase_if(env, [&key](const std::string& e) { return e.starts_with(key); });
    env.push_back(std::move(value));
  }
  return env;
}

Result<int> run_container(const RunOptions& opts, UniqueFd sock, const Filter& filter) {
  const std::vector<std::string> env = container_environment(opts.common.id, opts.env);

  std::array<int, 2> err_pipe{-1, -1};
  std::array<int, 2> sync_pair{-1, -1};
  if (::pipe2(err_pipe.data(), O_CLOEXEC) != 0) {
    return sys_error("create a pipe");
  }
  UniqueFd err_read(err_pipe[0]);
  UniqueFd err_write(err_pipe[1]);
  // A socket pair rather than a pipe: send() with MSG_NOSIGNAL cannot kill the agent with
  // SIGPIPE when the init died early.
  if (::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sync_pair.data()) != 0) {
    return sys_error("create a socket pair");
  }
  UniqueFd sync_read(sync_pair[0]);
  UniqueFd sync_write(sync_pair[1]);

  // Taken from before the init exists, so that no signal is lost.
  ForwardedSignals signals;
  if (auto taken = signals.take(); !taken) {
    return std::unexpected(taken.error());
  }
  UniqueFd sigfd(::signalfd(-1, &signals.set(), SFD_CLOEXEC));
  if (!sigfd) {
    return sys_error("create a signalfd");
  }

  // The container's cgroup exists before the init does; it is removed after the init is reaped.
  auto cgroup = ContainerCgroup::create("sysvisor-" + opts.common.id + "-" + std::to_string(::getpid()),
                                        CgroupLimits{opts.memory, opts.pids});
  if (!cgroup) {
    return std::unexpected(cgroup.error());
  }

  InitContext ctx;
  ctx.opts = &opts;
  ctx.filter = &filter;
  ctx.env = &env;
  ctx.sock = sock.get();
  ctx.sync_read = sync_read.get();
  ctx.sync_write = sync_write.get();
  ctx.err_read = err_read.get();
  ctx.err_write = err_write.get();
  ctx.sigmask = signals.saved_mask();
  ctx.sigactions = &signals.saved_actions();

  int pidfd_raw = -1;
  clone_args args{};
  args.flags = CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_PIDFD;
  args.pidfd = reinterpret_cast<std::uintptr_t>(&pidfd_raw);
  args.exit_signal = SIGCHLD;
  // Like fork(): the child continues here, on a copy of this stack. The agent is still
  // single-threaded, as a new user namespace requires.
  const long cloned = ::syscall(SYS_clone3, &args, sizeof(args));
  if (cloned < 0) {
    return sys_error("create the container's namespaces (clone3 user, mount, pid, uts, ipc)");
  }
  if (cloned == 0) {
    container_init(ctx);
  }
  const auto pid = static_cast<pid_t>(cloned);
  UniqueFd pidfd(pidfd_raw);
  err_write.reset();
  sync_read.reset();
  sock.reset();  // the init holds the connection now

  // Before the init is released, a failure kills and reaps it: CMD never starts.
  const auto abort_init = [&] {
    send_signal(pidfd.get(), SIGKILL);
    while (::waitpid(pid, nullptr, 0) < 0 && errno == EINTR) {
    }
  };
  if (auto mapped = write_id_maps(pid, opts.userns, signals.saved_mask()); !mapped) {
    abort_init();
    return std::unexpected(mapped.error());
  }
  if (auto joined = cgroup->add(pid); !joined) {
    abort_init();
    return std::unexpected(joined.error());
  }
  const auto host_pid = static_cast<std::uint32_t>(pid);
  if (::send(sync_write.get(), &host_pid, sizeof(host_pid), MSG_NOSIGNAL) !=
      static_cast<ssize_t>(sizeof(host_pid))) {
    const int err = errno;
    abort_init();
    return sys_error(err, "start the container init");
  }
  sync_write.reset();
  return supervise(pid, pidfd, std::move(err_read), sigfd);
}

}  // namespace sysvisor::agent
