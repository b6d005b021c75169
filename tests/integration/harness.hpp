// Helpers for the integration tests: real processes, real namespaces, real kernel.
#pragma once

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/types.h>

#include <chrono>
#include <cstdio>
#include <filesystem>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <vector>

namespace sysvisor::it {

namespace fs = std::filesystem;

struct Outcome {
  int status = -1;  // exit code, or 128+signal
  std::string out;
  std::string err;
  bool timed_out = false;
};

// Runs argv, capturing stdout and stderr; killed after `timeout`.
Outcome run(const std::vector<std::string>& argv, std::chrono::seconds timeout = std::chrono::seconds(60));

// A datagram unix socket bound at `path` (O_CLOEXEC): a stand-in for the service manager's
// notify socket or syslog's /dev/log. -1 on failure.
int bind_datagram(const fs::path& path);

// The path of an e2fsprogs or util-linux tool: they live in sbin, which a test's PATH may lack.
std::string sbin(const std::string& tool);

// Where tests make directories that other users (setpriv, runuser) must reach: TMPDIR when
// every directory on its path lets others through, else /tmp. A checkout or TMPDIR under a
// 0700 home must not make a test of another user fail.
[[nodiscard]] fs::path public_temp_base();

// The built program `name` (sysvisor, sysvisor-agent, probe), copied once per test process
// into a 0755 directory under public_temp_base(), for running it as another user.
[[nodiscard]] fs::path public_bin(const std::string& name);

// The shipped policies (policies/*.yaml and their cases), copied once per test process into
// a directory the daemon trusts; its path is what tests give `serve --policies`.
[[nodiscard]] fs::path shipped_policies();

// A directory (0755, under public_temp_base()) removed at destruction, after detaching what
// is mounted below it.
class TempDir {
 public:
  explicit TempDir(const std::string& prefix);
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  [[nodiscard]] const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

// Whether `cond` holds within `limit`, polled every 20 ms.
[[nodiscard]] bool wait_for(const std::function<bool()>& cond,
                            std::chrono::milliseconds limit = std::chrono::seconds(10));

// A unix socket of `type` connected to `path`, or -1.
[[nodiscard]] int connect_to(const fs::path& path, int type);

// One packet (or stream chunk) of `bytes`, with `fds` as SCM_RIGHTS; errors are the peer's
// business (the daemon may have hung up).
void send_with(int sock, const std::string& bytes, const std::vector<int>& fds);

// Reads `sock` to its end (at most 10 s) and closes it: whether the daemon closed it.
[[nodiscard]] bool closed_by_daemon(int sock);

// runc's payload on oci.sock (the OCI seccomp agent protocol) for container `id`, its process
// `pid`, the profile's listenerMetadata and the bundle's annotations.
[[nodiscard]] std::string runc_payload(const std::string& id, pid_t pid, const std::string& metadata,
                                       const std::map<std::string, std::string>& annotations = {});

// An OCI handoff as host user `uid`, the way rootless podman's runc makes it: a process of the
// user's under a filter trapping unshare, its listener handed over on `oci` with container id
// `id` and policy deny-dangerous. The errno of that process's unshare(CLONE_NEWUTS) afterwards:
// EPERM when supervised (or from the kernel), ENOSYS when the handoff was refused (the
// listener closed); negative when a step failed.
[[nodiscard]] int oci_handoff_as(const fs::path& oci, uid_t uid, const std::string& id);

// A busybox root filesystem with the probe in /bin, owned by host uid/gid `owner`.
void make_rootfs(const fs::path& dir, uid_t owner);

// The executable `name` in the usual system directories, or empty.
[[nodiscard]] fs::path which(const std::string& name);

// The unprivileged user of the rootless-engine tests, with subordinate ids of its own; made
// once (idempotent). A configuration that grants it policies by name needs it to exist first.
inline constexpr const char* kRootlessUser = "sysvisor-it";
void ensure_rootless_user();

// A podman store of a test's own (root, runroot, tmpdir, vfs, cgroupfs, events in a file) at
// `store`, run as `user` through runuser when rootless (its home, XDG dirs and TMPDIR there).
struct Podman {
  fs::path store;
  std::string user;  // empty: rootful
};
[[nodiscard]] std::vector<std::string> podman_argv(const Podman& pm, std::vector<std::string> args);

// Makes the store's directories (owned by `uid` when rootless) and imports a busybox root
// filesystem (make_rootfs) as `image`; failures are the test's.
void podman_import(const Podman& pm, uid_t uid, const std::string& image);

// Rootless podman leaves its user namespace's pause process behind; this kills the ones
// whose pause.pid lies under `store`, at destruction.
struct PauseReaper {
  fs::path store;
  explicit PauseReaper(fs::path at) : store(std::move(at)) {}
  PauseReaper(const PauseReaper&) = delete;
  PauseReaper& operator=(const PauseReaper&) = delete;
  ~PauseReaper();
};

// A `sysvisor serve` child process.
class Daemon {
 public:
  // `extra`: more `serve` arguments (e.g. --config FILE).
  Daemon(const fs::path& runtime_dir, const fs::path& policies_dir, const fs::path& audit_log,
         const fs::path& log, const std::vector<std::string>& extra = {});
  ~Daemon();
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;
  [[nodiscard]] bool ready() const { return ready_; }
  [[nodiscard]] pid_t pid() const { return pid_; }
  // SIGTERM (clean) or SIGKILL; returns the exit status as run() reports it.
  int stop(int sig);

 private:
  pid_t pid_ = -1;
  bool ready_ = false;
};

// `sysvisor-agent run` of `/bin/sh -c script` in `rootfs` under `policy`; a timeout is a failure.
Outcome run_container(const fs::path& runtime_dir, const std::string& policy, const fs::path& rootfs,
                      const std::string& script, const std::string& id = "",
                      const std::vector<std::string>& options = {});

// The audit lines of one container.
[[nodiscard]] std::vector<std::string> audit_lines(const fs::path& audit_log, const std::string& container);

[[nodiscard]] std::string read_file(const fs::path& p);
[[nodiscard]] std::vector<std::string> lines(const std::string& text);
[[nodiscard]] fs::path bin_dir();     // build/bin
[[nodiscard]] fs::path source_dir();  // the repository

// Whether this kernel runs i386 code (`int $0x80`): a child tries getpid through it. Kernels
// built without IA32 emulation, or booted with ia32_emulation=0, fault every such call
// (SIGSEGV), supervised or not. Probed once per test process.
[[nodiscard]] bool kernel_runs_i386();

// Skips the current test where the kernel has no i386 ABI, loudly (stderr and the test's
// skip message). Use as `SKIP_UNLESS_I386();` at the top of a test that needs it.
#define SKIP_UNLESS_I386()                                                                        \
  do {                                                                                            \
    if (!::sysvisor::it::kernel_runs_i386()) {                                                    \
      std::fprintf(stderr,                                                                        \
                   "\n*** SKIPPED: THIS KERNEL HAS NO i386 ABI (int $0x80 faults: IA32 "          \
                   "emulation off or ia32_emulation=0): the i386 door is untested here ***\n\n"); \
      GTEST_SKIP() << "THIS KERNEL HAS NO i386 ABI: int $0x80 faults for every process";          \
    }                                                                                             \
  } while (false)

// A child under a filter that traps syscall `nr` (x86_64) with SECCOMP_RET_USER_NOTIF; its
// listener comes back here. On call_errno() it makes `call` once and reports its errno (0 for
// success): a listener a test hands to the daemon, and the caller whose answer it checks.
struct FilteredChild {
  pid_t pid = -1;
  int listener = -1;
  int go = -1;      // write a byte: the child makes the call once
  int result = -1;  // the child's errno (an int)

  FilteredChild() = default;
  FilteredChild(const FilteredChild&) = delete;
  FilteredChild& operator=(const FilteredChild&) = delete;
  ~FilteredChild();
  // Our copy of the listener, closed once handed over (else the listener never goes away).
  void drop_listener();
  // The call's errno; -2 when it was not answered within 10 s.
  int call_errno();
};
[[nodiscard]] std::unique_ptr<FilteredChild> filtered_child(int nr, long (*call)());

// Container root on the host under the agent's default map (0 -> 100000).
inline constexpr uid_t kHostRoot = 100000;

// A suite with one daemon for all its tests (the suite's SetUpTestSuite starts it into
// daemon_, in dir_) and a fresh busybox root for each test (rootfs_).
template <class Suite>
class DaemonSuite : public ::testing::Test {
 protected:
  // The daemon stops cleanly on SIGTERM and takes `socket` (if given) with it.
  static void stop_suite_daemon(const fs::path& socket = {}) {
    if (daemon_ != nullptr) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << "clean shutdown on SIGTERM";
      if (!socket.empty()) {
        EXPECT_FALSE(fs::exists(socket)) << socket << " not removed at shutdown";
      }
    }
    delete daemon_;
    delete dir_;
    daemon_ = nullptr;
    dir_ = nullptr;
  }

  void SetUp() override {
    rootfs_holder_ = std::make_unique<TempDir>("sysvisor-rootfs");
    rootfs_ = rootfs_holder_->path() / "rootfs";
    fs::create_directories(rootfs_);
    make_rootfs(rootfs_, kHostRoot);
  }

  static inline TempDir* dir_ = nullptr;
  static inline Daemon* daemon_ = nullptr;
  std::unique_ptr<TempDir> rootfs_holder_;
  fs::path rootfs_;
};

}  // namespace sysvisor::it
