// The scheduling emulation's pid lookup (issue 13, finding 7): a pid of the caller's namespace
// resolves to a host tid without reading /proc, so its cost does not grow with the host's task
// count. Structural, not timed: the lookup runs in a mount namespace where /proc is an empty
// tmpfs, and must still find the tasks of a real pid namespace (and ESRCH outside it).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <filesystem>
#include <fstream>

#include "sysvisor/sched.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::emul::sched {
namespace {

// A pid namespace of its own (inside a user namespace, so no privilege is needed) holding pid 1
// and pid 2 until killed. Host pids of both are reported back.
class PidNs {
 public:
  PidNs() {
    std::array<int, 2> p{-1, -1};
    std::array<int, 2> forked{-1, -1};  // pid 1 says when pid 2 exists
    if (::pipe(p.data()) != 0 || ::pipe(forked.data()) != 0) return;
    outer_ = ::fork();
    if (outer_ == 0) {
      ::close(p[0]);
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      if (::unshare(CLONE_NEWUSER | CLONE_NEWPID) != 0) ::_exit(1);
      const pid_t init = ::fork();  // pid 1 of the new namespace
      if (init == 0) {
        const pid_t second = ::fork();  // pid 2
        if (second == 0) {
          ::pause();
          ::_exit(0);
        }
        (void)!::write(forked[1], "x", 1);
        ::pause();
        ::_exit(0);
      }
      std::array<pid_t, 1> msg{init};
      (void)!::write(p[1], msg.data(), sizeof msg);
      ::pause();
      ::_exit(0);
    }
    ::close(p[1]);
    ::close(forked[1]);
    pid_t init = -1;
    char x = 0;
    if (::read(p[0], &init, sizeof init) == sizeof init && ::read(forked[0], &x, 1) == 1) init_ = init;
    ::close(p[0]);
    ::close(forked[0]);
  }
  ~PidNs() {
    if (init_ > 0) ::kill(init_, SIGKILL);  // takes pid 2 with it
    if (outer_ > 0) {
      ::kill(outer_, SIGKILL);
      ::waitpid(outer_, nullptr, 0);
    }
  }
  PidNs(const PidNs&) = delete;
  PidNs& operator=(const PidNs&) = delete;
  [[nodiscard]] pid_t init() const { return init_; }

 private:
  pid_t outer_ = -1;
  pid_t init_ = -1;
};

// NS_GET_PID_FROM_PIDNS is kernel 6.7's: probe it, skip loudly without.
bool have_pidns_ioctls() {
  UniqueFd self(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
  auto r = host_tid(self.get(), ::getpid());
  return r || r.error().err != ENOTTY;
}

TEST(SchedLookup, ResolvesThroughTheNamespaceFdWithProcHidden) {
  if (!have_pidns_ioctls()) GTEST_SKIP() << "SKIPPED: no NS_GET_PID_FROM_PIDNS (kernel < 6.7)";
  PidNs ns;
  ASSERT_GT(ns.init(), 0) << "no pid namespace";
  UniqueFd nsfd(::open(("/proc/" + std::to_string(ns.init()) + "/ns/pid").c_str(), O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(nsfd) << "open ns/pid";
  // pid 2's host pid, from the host's view of pid 1's children (before /proc is hidden).
  pid_t second = -1;
  std::ifstream(
      ("/proc/" + std::to_string(ns.init()) + "/task/" + std::to_string(ns.init()) + "/children")) >>
      second;
  ASSERT_GT(second, 0) << "pid 2 not found";

  const pid_t child = ::fork();
  if (child == 0) {
    // /proc becomes an empty directory here: any lookup that reads it finds nothing.
    if (::unshare(CLONE_NEWUSER | CLONE_NEWNS) != 0) ::_exit(10);
    if (::mount("none", "/proc", "tmpfs", 0, nullptr) != 0) ::_exit(11);
    if (!std::filesystem::is_empty("/proc")) ::_exit(12);
    auto one = host_tid(nsfd.get(), 1);
    if (!one || *one != ns.init()) ::_exit(13);
    auto two = host_tid(nsfd.get(), 2);
    if (!two || *two != second) ::_exit(14);
    auto none = host_tid(nsfd.get(), 3);
    if (none || none.error().err != ESRCH) ::_exit(15);
    auto back = pid_in_ns(nsfd.get(), second);
    if (!back || *back != 2) ::_exit(16);
    // This process is no task of that namespace.
    auto outside = pid_in_ns(nsfd.get(), ::getpid());
    if (outside || outside.error().err != ESRCH) ::_exit(17);
    ::_exit(0);
  }
  ASSERT_GT(child, 0);
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0) << "10 unshare, 11 mount, 12 /proc not empty, 13 pid 1, 14 pid 2, "
                                       "15 pid 3 not ESRCH, 16 reverse, 17 outside not ESRCH";
}

TEST(SchedLookup, NoPidIsNoTask) {
  if (!have_pidns_ioctls()) GTEST_SKIP() << "SKIPPED: no NS_GET_PID_FROM_PIDNS (kernel < 6.7)";
  UniqueFd nsfd(::open("/proc/self/ns/pid", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(nsfd);
  for (const pid_t pid : {0, -1}) {
    auto r = host_tid(nsfd.get(), pid);
    ASSERT_FALSE(r);
    EXPECT_EQ(r.error().err, ESRCH);
  }
  auto self = host_tid(nsfd.get(), ::getpid());
  ASSERT_TRUE(self) << self.error().message();
  EXPECT_EQ(*self, ::getpid());
}

}  // namespace
}  // namespace sysvisor::emul::sched
