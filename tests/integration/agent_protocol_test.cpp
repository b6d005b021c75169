// The agent against a supervisor this test plays itself, over the real socket and with
// real filters: what the agent does when the supervisor refuses, and that a filter that
// traps the agent's own calls after installation (sendmsg, execve, everything) cannot
// deadlock it.
#include <gtest/gtest.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <fstream>
#include <sstream>
#include <thread>

#include "agent.pb.h"
#include "harness.hpp"
#include "sysvisor/wire.hpp"

namespace sysvisor::it {
namespace {

class FakeSupervisor {
 public:
  enum class Mode { RefuseHello, RefuseHandoff, TrapEverything, CloseAfterHello };

  FakeSupervisor(const fs::path& dir, Mode mode) : mode_(mode) {
    fs::create_directories(dir);
    const std::string path = (dir / "agent.sock").string();
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
    listen_.reset(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
    EXPECT_EQ(::bind(listen_.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
    EXPECT_EQ(::listen(listen_.get(), 4), 0);
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeSupervisor() {
    ::shutdown(listen_.get(), SHUT_RDWR);
    thread_.join();
  }
  FakeSupervisor(const FakeSupervisor&) = delete;
  FakeSupervisor& operator=(const FakeSupervisor&) = delete;

  std::atomic<int> answered{0};

 private:
  void serve() {
    UniqueFd conn(::accept4(listen_.get(), nullptr, nullptr, SOCK_CLOEXEC));
    if (!conn) return;
    auto hello = wire::receive_packet(conn.get());
    if (!hello) return;
    v1::SupervisorMessage reply;
    if (mode_ == Mode::RefuseHello) {
      reply.mutable_refusal()->set_reason("fake says no to the hello");
      (void)wire::send_message(conn.get(), reply);
      return;
    }
    // One instruction: every syscall of the installing thread is trapped.
    sock_filter all{BPF_RET | BPF_K, 0, 0, SECCOMP_RET_USER_NOTIF};
    if (mode_ != Mode::TrapEverything) all.k = SECCOMP_RET_ALLOW;
    reply.mutable_filter()->set_policy("fake");
    reply.mutable_filter()->set_bpf(reinterpret_cast<const char*>(&all), sizeof all);
    (void)wire::send_message(conn.get(), reply);
    if (mode_ == Mode::CloseAfterHello) return;
    auto handoff = wire::receive_packet(conn.get());
    if (!handoff || !handoff->fd) return;
    v1::SupervisorMessage second;
    if (mode_ == Mode::RefuseHandoff) {
      second.mutable_refusal()->set_reason("fake says no to the handoff");
      (void)wire::send_message(conn.get(), second);
      return;
    }
    second.mutable_ready()->set_session_id("fake-1");
    (void)wire::send_message(conn.get(), second);
    answer_all(handoff->fd.get());
  }

  // Answers CONTINUE to everything until the listener hangs up.
  void answer_all(int listener) {
    for (;;) {
      pollfd pfd{listener, POLLIN, 0};
      if (::poll(&pfd, 1, 20000) <= 0) return;
      if ((pfd.revents & POLLIN) == 0) return;
      seccomp_notif n{};
      if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_RECV, &n) != 0) continue;
      seccomp_notif_resp r{};
      r.id = n.id;
      r.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
      if (::ioctl(listener, SECCOMP_IOCTL_NOTIF_SEND, &r) == 0) ++answered;
    }
  }

  Mode mode_;
  UniqueFd listen_;
  std::thread thread_;
};

Outcome agent_exec(const fs::path& rt, const std::string& script) {
  return run({(bin_dir() / "sysvisor-agent").string(), "exec", "--runtime-dir", rt.string(), "--policy",
              "fake", "--", "/bin/sh", "-c", script},
             std::chrono::seconds(30));
}

TEST(AgentProtocol, RefusedHelloNeverRunsTheCommand) {
  TempDir dir("sysvisor-agent");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::RefuseHello);
  const auto o = agent_exec(dir.path() / "run", "touch " + (dir.path() / "ran").string());
  EXPECT_EQ(o.status, 125);
  EXPECT_NE(o.err.find("fake says no to the hello"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(dir.path() / "ran"));
}

TEST(AgentProtocol, RefusedHandoffNeverRunsTheCommand) {
  TempDir dir("sysvisor-agent");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::RefuseHandoff);
  const auto o = agent_exec(dir.path() / "run", "touch " + (dir.path() / "ran").string());
  EXPECT_EQ(o.status, 125);
  EXPECT_NE(o.err.find("fake says no to the handoff"), std::string::npos) << o.err;
  EXPECT_FALSE(fs::exists(dir.path() / "ran"));
}

TEST(AgentProtocol, SupervisorGoneAfterHelloNeverRunsTheCommand) {
  TempDir dir("sysvisor-agent");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::CloseAfterHello);
  const auto o = agent_exec(dir.path() / "run", "touch " + (dir.path() / "ran").string());
  EXPECT_EQ(o.status, 125) << o.err;
  EXPECT_FALSE(fs::exists(dir.path() / "ran"));
}

TEST(AgentProtocol, TrappingTheAgentsOwnCallsDoesNotDeadlock) {
  TempDir dir("sysvisor-agent");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::TrapEverything);
  const auto o = agent_exec(dir.path() / "run", "echo hello-from-workload; exit 3");
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.status, 3) << o.err;
  EXPECT_EQ(o.out, "hello-from-workload\n") << o.err;
  EXPECT_GT(fake.answered.load(), 10) << "the workload's calls went through the listener";
}

TEST(AgentProtocol, TrappingEverythingInRunMode) {
  if (::geteuid() != 0) GTEST_SKIP() << "run mode needs root here";
  TempDir dir("sysvisor-agent");
  const fs::path rootfs = dir.path() / "rootfs";
  fs::create_directories(rootfs);
  make_rootfs(rootfs, 100000);
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::TrapEverything);
  const auto o = run({(bin_dir() / "sysvisor-agent").string(), "run", "--runtime-dir",
                      (dir.path() / "run").string(), "--policy", "fake", "--rootfs", rootfs.string(),
                      "--userns", "100000:65536", "--", "/bin/sh", "-c", "echo in-box; exit 4"},
                     std::chrono::seconds(30));
  EXPECT_FALSE(o.timed_out);
  EXPECT_EQ(o.status, 4) << o.err;
  EXPECT_EQ(o.out, "in-box\n") << o.err;
}

// Issue 13, finding 12: a directory fd the launcher left open (no O_CLOEXEC) must reach neither
// the workload nor the container's set-up; through it a container created files outside its
// root. The launcher here is bash with fd 7 on a host directory.
std::vector<std::string> launched_with_fd7(const fs::path& host_dir,
                                           const std::vector<std::string>& agent_args,
                                           const std::string& script, Outcome* outcome = nullptr) {
  std::string cmd = "exec 7<'" + host_dir.string() + "' && exec";
  for (const std::string& a : agent_args) cmd += " '" + a + "'";
  cmd += " -- /bin/sh -c '" + script + "'";
  Outcome o = run({"/bin/bash", "-c", cmd}, std::chrono::seconds(30));
  if (outcome != nullptr) *outcome = o;
  EXPECT_FALSE(o.timed_out) << o.err;
  return lines(o.out);
}

// `ls /proc/self/fd` lists 0, 1, 2 and its own directory fd (3): nothing else.
const std::vector<std::string> kOnlyStdio{"0", "1", "2", "3"};

TEST(AgentProtocol, ExecPassesNoInheritedFdToTheWorkload) {
  TempDir dir("sysvisor-agent");
  fs::create_directories(dir.path() / "host");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::TrapEverything);
  Outcome o;
  EXPECT_EQ(launched_with_fd7(dir.path() / "host",
                              {(bin_dir() / "sysvisor-agent").string(), "exec", "--runtime-dir",
                               (dir.path() / "run").string(), "--policy", "fake"},
                              "ls /proc/self/fd; touch /proc/self/fd/7/escaped", &o),
            kOnlyStdio)
      << o.err;
  EXPECT_FALSE(fs::exists(dir.path() / "host" / "escaped"));
}

TEST(AgentProtocol, PreserveFdsPassesExactlyThose) {
  TempDir dir("sysvisor-agent");
  fs::create_directories(dir.path() / "host");
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::TrapEverything);
  Outcome o;
  // fds 3..7: 7 is the launcher's; the agent's own fds (maybe among 3..6) are not passed.
  EXPECT_EQ(launched_with_fd7(dir.path() / "host",
                              {(bin_dir() / "sysvisor-agent").string(), "exec", "--runtime-dir",
                               (dir.path() / "run").string(), "--policy", "fake", "--preserve-fds", "5"},
                              "ls /proc/self/fd", &o),
            (std::vector<std::string>{"0", "1", "2", "3", "7"}))
      << o.err;
}

TEST(AgentProtocol, RunPassesNoInheritedFdToTheContainer) {
  if (::geteuid() != 0) GTEST_SKIP() << "run mode needs root here";
  TempDir dir("sysvisor-agent");
  const fs::path rootfs = dir.path() / "rootfs";
  fs::create_directories(rootfs);
  make_rootfs(rootfs, 100000);
  // A host directory the container's root could write to, were the fd passed on.
  const fs::path host = dir.path() / "host";
  fs::create_directories(host);
  fs::permissions(host, fs::perms::all);
  FakeSupervisor fake(dir.path() / "run", FakeSupervisor::Mode::TrapEverything);
  Outcome o;
  EXPECT_EQ(launched_with_fd7(host,
                              {(bin_dir() / "sysvisor-agent").string(), "run", "--runtime-dir",
                               (dir.path() / "run").string(), "--policy", "fake", "--rootfs", rootfs.string(),
                               "--userns", "100000:65536"},
                              "ls /proc/self/fd; touch /proc/self/fd/7/escaped", &o),
            kOnlyStdio)
      << o.err;
  EXPECT_FALSE(fs::exists(host / "escaped")) << "the container wrote outside its root";
}

// Issue 13, finding 13: the default id range is the one /etc/subuid and /etc/subgid give root
// (or `sysvisor`), never Debian's first user's 100000:65536. The files are swapped for
// temporary ones through SYSVISOR_SUBUID_FILE / SYSVISOR_SUBGID_FILE.
Outcome run_with_subids(const fs::path& dir, const std::string& subids, uid_t rootfs_owner,
                        const std::string& script) {
  const fs::path rootfs = dir / "rootfs";
  fs::create_directories(rootfs);
  make_rootfs(rootfs, rootfs_owner);
  std::ofstream(dir / "subuid") << subids;
  std::ofstream(dir / "subgid") << subids;
  FakeSupervisor fake(dir / "run", FakeSupervisor::Mode::TrapEverything);
  return run({"/usr/bin/env", "SYSVISOR_SUBUID_FILE=" + (dir / "subuid").string(),
              "SYSVISOR_SUBGID_FILE=" + (dir / "subgid").string(), (bin_dir() / "sysvisor-agent").string(),
              "run", "--runtime-dir", (dir / "run").string(), "--policy", "fake", "--rootfs", rootfs.string(),
              "--", "/bin/sh", "-c", script},
             std::chrono::seconds(30));
}

TEST(AgentIdRange, RootsEntryIsTheDefault) {
  if (::geteuid() != 0) GTEST_SKIP() << "run mode needs root here";
  TempDir dir("sysvisor-agent");
  const auto o = run_with_subids(dir.path(), "alice:100000:65536\nroot:300000:65536\n", 300000,
                                 "cat /proc/self/uid_map /proc/self/gid_map");
  EXPECT_EQ(o.status, 0) << o.err;
  const auto l = lines(o.out);
  ASSERT_EQ(l.size(), 2U) << o.out << o.err;
  for (const std::string& map : l) {
    std::istringstream in(map);
    std::vector<std::string> w;
    for (std::string s; in >> s;) w.push_back(s);
    EXPECT_EQ(w, (std::vector<std::string>{"0", "300000", "65536"})) << map;
  }
}

TEST(AgentIdRange, NoEntryOfRootIsRefusedWithTheFix) {
  if (::geteuid() != 0) GTEST_SKIP() << "run mode needs root here";
  TempDir dir("sysvisor-agent");
  // What Debian's useradd gives the first user, and nothing for root.
  const auto o = run_with_subids(dir.path(), "alice:100000:65536\n", 100000, "echo ran");
  EXPECT_EQ(o.status, 125) << o.out << o.err;
  EXPECT_EQ(o.out, "") << "the command never ran";
  EXPECT_NE(o.err.find((dir.path() / "subuid").string() + " has no entry for `sysvisor` or `root`"),
            std::string::npos)
      << o.err;
  EXPECT_NE(o.err.find("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root"),
            std::string::npos)
      << o.err;
}

TEST(AgentIdRange, AnOverlapWithAnotherUserIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "run mode needs root here";
  TempDir dir("sysvisor-agent");
  const auto o = run_with_subids(dir.path(), "root:100000:65536\nalice:150000:65536\n", 100000, "echo ran");
  EXPECT_EQ(o.status, 125) << o.out << o.err;
  EXPECT_EQ(o.out, "") << "the command never ran";
  EXPECT_NE(o.err.find("overlaps the entry `alice:150000:65536` of " + (dir.path() / "subuid").string()),
            std::string::npos)
      << o.err;
}

}  // namespace
}  // namespace sysvisor::it
