// caps::capable against real user namespaces: the kernel's cap_capable() walk.
#include "sysvisor/capable.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <string>

namespace sysvisor {
namespace {

constexpr std::uint64_t kAll = ~std::uint64_t{0};

UniqueFd open_ns(pid_t pid, const char* type) {
  return UniqueFd(::open(("/proc/" + std::to_string(pid) + "/ns/" + type).c_str(), O_RDONLY | O_CLOEXEC));
}

// A child that sits in a user namespace of its own until killed.
class ChildNs {
 public:
  ChildNs() {
    int ready[2];
    if (::pipe(ready) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      const char ok = ::unshare(CLONE_NEWUSER) == 0 ? 'y' : 'n';
      (void)!::write(ready[1], &ok, 1);
      ::pause();
      ::_exit(0);
    }
    ::close(ready[1]);
    char ok = 'n';
    (void)!::read(ready[0], &ok, 1);
    ::close(ready[0]);
    ok_ = ok == 'y';
  }
  ~ChildNs() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  ChildNs(const ChildNs&) = delete;
  ChildNs& operator=(const ChildNs&) = delete;
  [[nodiscard]] bool ok() const { return ok_; }
  [[nodiscard]] pid_t pid() const { return pid_; }

 private:
  pid_t pid_ = -1;
  bool ok_ = false;
};

TEST(Capable, InTheSubjectsOwnNamespaceTheEffectiveSetDecides) {
  const UniqueFd mine = open_ns(::getpid(), "user");
  ASSERT_TRUE(mine);
  const caps::Subject with{mine.get(), ::geteuid(), std::uint64_t{1} << caps::kSysAdmin};
  const caps::Subject without{mine.get(), ::geteuid(), 0};
  EXPECT_EQ(caps::capable(with, mine.get(), caps::kSysAdmin), true);
  EXPECT_EQ(caps::capable(with, mine.get(), caps::kMknod), false);
  EXPECT_EQ(caps::capable(without, mine.get(), caps::kSysAdmin), false);
}

TEST(Capable, TheCreatorOfAChildNamespaceHoldsEverythingInIt) {
  ChildNs child;
  ASSERT_TRUE(child.ok()) << "unshare(CLONE_NEWUSER) failed: user namespaces disabled?";
  const UniqueFd mine = open_ns(::getpid(), "user");
  const UniqueFd theirs = open_ns(child.pid(), "user");
  ASSERT_TRUE(mine && theirs);
  EXPECT_EQ(caps::capable({mine.get(), ::geteuid(), 0}, theirs.get(), caps::kSysAdmin), true);
  // Another euid in the parent namespace, without the capability there: nothing.
  EXPECT_EQ(caps::capable({mine.get(), ::geteuid() + 4242, 0}, theirs.get(), caps::kSysAdmin), false);
}

TEST(Capable, EveryCapabilityInAChildNamespaceIsNothingInItsParent) {
  ChildNs child;
  ASSERT_TRUE(child.ok());
  const UniqueFd mine = open_ns(::getpid(), "user");
  const UniqueFd theirs = open_ns(child.pid(), "user");
  const UniqueFd mnt = open_ns(::getpid(), "mnt");
  ASSERT_TRUE(mine && theirs && mnt);
  const caps::Subject nested{theirs.get(), ::geteuid(), kAll};
  EXPECT_EQ(caps::capable(nested, mine.get(), caps::kSysAdmin), false);
  // Our mount namespace is owned by our user namespace (or an ancestor): not theirs.
  EXPECT_EQ(caps::capable_over(nested, mnt.get(), caps::kSysAdmin), false);
  EXPECT_EQ(caps::capable_over({mine.get(), ::geteuid(), kAll}, mnt.get(), caps::kSysAdmin), true);
}

}  // namespace
}  // namespace sysvisor
