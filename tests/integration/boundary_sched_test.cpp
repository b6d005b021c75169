// The privilege boundary of the scheduling emulation (issue 13, finding 3) and of the xattr
// emulation, per kind of caller,
// under the shipped rootless-tuning policy granted by a configuration:
//   - a host user in a user namespace of its own (`unshare -Ur`, `sysvisor-agent exec`, the host's
//     pid namespace) on a root-owned host process: the kernel's answer (EPERM), nothing changed;
//   - the same user on its own processes: what the policy grants;
//   - a rootless container (`sysvisor-agent run`) on its own processes: granted; on a host pid
//     that its pid namespace does not have: ESRCH, as the kernel says.
// Each expected errno is the kernel's own for the same caller without sysvisor, asked in the
// same test. Needs root.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <array>
#include <fstream>
#include <sstream>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

constexpr uid_t kNobody = 65534;

// Policy, real-time priority and nice of a host task (/proc/PID/stat fields 41, 40, 19).
std::string host_sched(pid_t pid) {
  const std::string stat = read_file("/proc/" + std::to_string(pid) + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> w;
  for (std::string s; in >> s;) w.push_back(s);
  if (w.size() < 39) return "unreadable: " + stat;
  // w[0] is field 3.
  return w[38] + " " + w[37] + " " + w[16];
}

// A root-owned `sleep` on the host, killed and reaped at destruction.
class RootSleep {
 public:
  RootSleep() {
    pid_ = ::fork();
    if (pid_ == 0) {
      ::execl("/bin/sleep", "sleep", "1000", static_cast<char*>(nullptr));
      ::_exit(127);
    }
  }
  ~RootSleep() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  RootSleep(const RootSleep&) = delete;
  RootSleep& operator=(const RootSleep&) = delete;
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
};

class BoundarySched : public DaemonSuite<BoundarySched> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = new TempDir("sysvisor-bsched");
    // Traversable by nobody: the agent socket and the binaries it runs.
    fs::permissions(dir_->path(), fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                      fs::perms::others_read | fs::perms::others_exec);
    fs::create_directories(policies());
    for (const auto& e : fs::directory_iterator(source_dir() / "policies")) {
      if (e.path().extension() == ".yaml" && !e.path().string().ends_with(".cases.yaml")) {
        fs::copy_file(e.path(), policies() / e.path().filename());
      }
    }
    std::ofstream(config()) << "default_policy: rootless-devices\n"
                               "access:\n"
                               "  - users: [root]\n"
                               "    policies: [\"*\"]\n"
                               "  - users: [nobody]\n"
                               "    policies: [rootless-tuning]\n";
    fs::create_directories(bin());
    for (const char* name : {"sysvisor-agent", "probe"}) {
      fs::copy_file(bin_dir() / name, bin() / name);
      fs::permissions(bin() / name, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                                        fs::perms::others_read | fs::perms::others_exec);
    }
    daemon_ = new Daemon(runtime(), policies(), dir_->path() / "audit.jsonl", daemon_log(),
                         {"--config", config().string()});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(); }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path config() { return dir_->path() / "sysvisor.yaml"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }
  static fs::path bin() { return dir_->path() / "bin"; }

  // `script` (with PROBE for the probe) as host user nobody in a user namespace of its own
  // (root inside), under the agent's `exec` with rootless-tuning or, unsupervised, on its own.
  static Outcome as_unshared_nobody(const std::string& script, bool supervised) {
    std::vector<std::string> argv{"/usr/bin/setpriv",
                                  "--reuid=" + std::to_string(kNobody),
                                  "--regid=" + std::to_string(kNobody),
                                  "--clear-groups",
                                  "/usr/bin/unshare",
                                  "-Ur"};
    if (supervised) {
      for (const std::string& a :
           {(bin() / "sysvisor-agent").string(), std::string("exec"), std::string("--runtime-dir"),
            runtime().string(), std::string("--policy"), std::string("rootless-tuning"), std::string("--")}) {
        argv.push_back(a);
      }
    }
    argv.insert(argv.end(), {"/bin/sh", "-c", "PROBE=" + (bin() / "probe").string() + "; " + script});
    return run(argv);
  }
};

// Finding 3: CAP_SYS_NICE in the caller's own user namespace said "yes" for a host process.
TEST_F(BoundarySched, HostUserInItsOwnUserNamespaceCannotScheduleARootProcess) {
  RootSleep target;
  ASSERT_GT(target.pid(), 0);
  const std::string before = host_sched(target.pid());
  ASSERT_EQ(before, "0 0 0");
  const std::string p = std::to_string(target.pid());
  // Raise it (SCHED_FIFO 10, nice -3), and demote it (SCHED_IDLE, nice 19), with each call.
  const std::string script = "$PROBE sched fifo 10 " + p + "; $PROBE setattr fifo 5 0 " + p +
                             "; $PROBE nice -3 " + p + "; $PROBE sched idle 0 " + p +
                             "; $PROBE setattr batch 0 19 " + p + "; $PROBE nice 19 " + p;
  const Outcome kernel = as_unshared_nobody(script, false);
  const std::vector<std::string> expected{"EPERM", "EPERM", "EPERM", "EPERM", "EPERM", "EPERM"};
  ASSERT_EQ(lines(kernel.out), expected) << "the kernel's own answers: " << kernel.err;
  EXPECT_EQ(host_sched(target.pid()), before);

  const Outcome o = as_unshared_nobody(script, true);
  EXPECT_EQ(lines(o.out), lines(kernel.out)) << o.err;
  EXPECT_EQ(host_sched(target.pid()), before) << "the root-owned host process was rescheduled";
}

// The xattr emulation under the same grant (rootless-tuning emulates trusted.overlay.*): the
// inode's owner decides. A host user in a user namespace of its own gets the kernel's answer on a
// file of root's or of another user's, and nothing is set on the host.
TEST_F(BoundarySched, HostUserInItsOwnUserNamespaceSetsNoXattrOnFilesItDoesNotOwn) {
  const fs::path dir = dir_->path() / "xattr";
  fs::create_directories(dir);
  fs::permissions(dir, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                           fs::perms::others_read | fs::perms::others_exec);
  std::ofstream(dir / "roots") << "x";
  std::ofstream(dir / "others") << "x";
  ASSERT_EQ(::chown((dir / "others").c_str(), 4242, 4242), 0);
  const std::string script = "$PROBE setxattr " + (dir / "roots").string() + " trusted.overlay.opaque y; " +
                             "$PROBE setxattr " + (dir / "others").string() + " trusted.overlay.opaque y";
  const Outcome kernel = as_unshared_nobody(script, false);
  ASSERT_EQ(lines(kernel.out), (std::vector<std::string>{"EPERM", "EPERM"})) << kernel.err;
  const Outcome o = as_unshared_nobody(script, true);
  EXPECT_EQ(lines(o.out), lines(kernel.out)) << o.err << read_file(daemon_log());
  for (const char* f : {"roots", "others"}) {
    std::array<char, 8> buf{};
    EXPECT_LT(::getxattr((dir / f).c_str(), "trusted.overlay.opaque", buf.data(), buf.size()), 0)
        << f << ": an xattr was set on the host";
  }
}

// The same user on its own processes (its user namespace owns them): what the policy grants.
TEST_F(BoundarySched, HostUserInItsOwnUserNamespaceOnItsOwnProcesses) {
  const Outcome o = as_unshared_nobody(
      "$PROBE sched fifo 10 $$; $PROBE getsched $$; $PROBE sched fifo 11 $$; $PROBE sched other 0 $$; "
      "$PROBE nice -5 $$; $PROBE getsched $$; $PROBE nice -6 $$; $PROBE getsched $$",
      true);
  EXPECT_EQ(lines(o.out),
            (std::vector<std::string>{"ok", "1 10 0", "EPERM", "ok", "ok", "0 0 -5", "EPERM", "0 0 -5"}))
      << o.err;
  // A child of it, named by its (host) pid: also its own.
  const Outcome child =
      as_unshared_nobody("sleep 100 & $PROBE sched rr 3 $!; $PROBE getsched $!; kill $!", true);
  EXPECT_EQ(lines(child.out), (std::vector<std::string>{"ok", "2 3 0"})) << child.err;
}

// A rootless container on its own processes: granted; on a host pid: its namespace has no such
// task (ESRCH, as the kernel's own sched_getscheduler says), and the host process is unchanged.
TEST_F(BoundarySched, RootlessContainerOwnsItsTasksNotTheHosts) {
  RootSleep target;
  ASSERT_GT(target.pid(), 0);
  const std::string before = host_sched(target.pid());
  const std::string p = std::to_string(target.pid());
  // (/dev/null first: the shell gives it to a background job. The child inherits FIFO 10.)
  const Outcome o = run_container(
      runtime(), "rootless-tuning", rootfs_,
      "mknod /dev/null c 1 3; probe sched fifo 10 $$; probe getsched $$; sleep 100 & probe nice -5 $!; "
      "probe getsched $!; kill $!; probe getsched " +
          p + "; probe sched fifo 5 " + p + "; probe nice 19 " + p);
  EXPECT_EQ(lines(o.out),
            (std::vector<std::string>{"ok", "1 10 0", "ok", "1 10 -5", "ESRCH", "ESRCH", "ESRCH"}))
      << o.err;
  EXPECT_EQ(host_sched(target.pid()), before);
}

}  // namespace
}  // namespace sysvisor::it
