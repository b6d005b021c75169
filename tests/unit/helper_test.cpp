// Emulation helpers are raw_fork children of a daemon full of threads: what they call must not
// depend on glibc's idea of those threads. glibc's setresgid, for one, waits forever in such a
// child when the daemon was creating a thread at the fork (about one fork in eight with threads
// being born beside it, measured): a call then hung until the helper's deadline and got EPERM.
#include "sysvisor/helper.hpp"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>

namespace sysvisor::emul::helper {
namespace {

TEST(Helper, RawForkChildrenChangeIdsWhileTheParentIsBornThreads) {
  std::atomic<bool> stop{false};
  std::thread churn([&] {
    while (!stop) std::thread([] {}).join();
  });
  const uid_t uid = ::getuid();
  const gid_t gid = ::getgid();
  int hung = 0;
  int failed = 0;
  for (int i = 0; i < 200; ++i) {
    const pid_t pid = raw_fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      // The ids it has (allowed without privilege): the call, not the change, is under test.
      const bool ok = set_gids(gid, gid, gid) == 0 && set_uids(uid, uid, uid) == 0 &&
                      (::geteuid() != 0 || set_groups(0, nullptr) == 0);
      ::_exit(ok ? 0 : 1);
    }
    int status = 0;
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(2);
    while (::waitpid(pid, &status, WNOHANG) == 0) {
      if (std::chrono::steady_clock::now() > deadline) {
        ++hung;
        ::kill(pid, SIGKILL);
        ::waitpid(pid, &status, 0);
        break;
      }
      std::this_thread::sleep_for(std::chrono::microseconds(200));
    }
    if (WIFEXITED(status) && WEXITSTATUS(status) != 0) ++failed;
  }
  stop = true;
  churn.join();
  EXPECT_EQ(hung, 0) << "children hung changing their ids";
  EXPECT_EQ(failed, 0);
}

}  // namespace
}  // namespace sysvisor::emul::helper
