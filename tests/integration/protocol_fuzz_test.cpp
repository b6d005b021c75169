// Hostile peers on every socket of a real daemon: agent.sock, oci.sock and control.sock get
// random and mutated messages (bad framing, truncated protobuf, broken JSON, wrong fds, early
// hang-ups) from a seeded generator; afterwards the daemon is alive, unchanged in what it
// serves, and a real container is supervised as before. Needs root (the daemon).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <random>
#include <string>
#include <vector>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

class ProtocolFuzz : public DaemonSuite<ProtocolFuzz> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = new TempDir("sysvisor-pfuzz");
    fs::create_directories(dir_->path() / "policies");
    fs::copy_file(source_dir() / "policies" / "rootless-devices.yaml",
                  dir_->path() / "policies" / "rootless-devices.yaml");
    daemon_ = new Daemon(runtime(), dir_->path() / "policies", dir_->path() / "audit.jsonl", log(),
                         {"--default-policy", "rootless-devices"});
    ASSERT_TRUE(daemon_->ready()) << read_file(log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(); }
  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path log() { return dir_->path() / "daemon.log"; }
};

// One packet (or stream chunk), with `pass` as SCM_RIGHTS when >= 0; errors are the peer's
// business (the daemon may have hung up on us).
void send_with(int sock, const std::string& bytes, int pass) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int))] = {};
  if (pass >= 0) {
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    cmsghdr* c = CMSG_FIRSTHDR(&msg);
    c->cmsg_level = SOL_SOCKET;
    c->cmsg_type = SCM_RIGHTS;
    c->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(c), &pass, sizeof pass);
  }
  (void)::sendmsg(sock, &msg, MSG_NOSIGNAL | MSG_DONTWAIT);
}

// Reads whatever comes back within a few milliseconds: the daemon's answer, if any.
void drain(int sock) {
  pollfd pfd{sock, POLLIN, 0};
  std::array<char, 65536> buf{};
  while (::poll(&pfd, 1, 5) == 1 && ::recv(sock, buf.data(), buf.size(), MSG_DONTWAIT) > 0) {
  }
}

std::string varint(std::uint64_t v) {
  std::string out;
  do {
    out.push_back(static_cast<char>((v & 0x7fU) | (v > 0x7fU ? 0x80U : 0U)));
    v >>= 7U;
  } while (v != 0);
  return out;
}
std::string field(int number, const std::string& bytes) {  // length-delimited
  return varint((static_cast<std::uint64_t>(number) << 3U) | 2U) + varint(bytes.size()) + bytes;
}

class Mutator {
 public:
  explicit Mutator(std::uint64_t seed) : rng_(seed) {}
  std::size_t below(std::size_t n) { return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng_); }
  std::string random_bytes(std::size_t max) {
    std::string s(below(max + 1), '\0');
    for (auto& c : s) c = static_cast<char>(below(256));
    return s;
  }
  // Flips, truncates, duplicates or splices a valid message.
  std::string mutate(std::string s) {
    const std::size_t edits = 1 + below(4);
    for (std::size_t i = 0; i < edits && !s.empty(); ++i) {
      switch (below(5)) {
        case 0:
          s[below(s.size())] = static_cast<char>(below(256));
          break;
        case 1:
          s.resize(below(s.size()));
          break;
        case 2:
          s.insert(below(s.size() + 1), random_bytes(16));
          break;
        case 3:
          s += s.substr(below(s.size()));
          break;
        default:
          s.erase(below(s.size()), below(8));
          break;
      }
    }
    return s;
  }

 private:
  std::mt19937_64 rng_;
};

// An fd to pass where a listener is expected: nothing, a pipe, an eventfd or a directory.
int some_fd(Mutator& m, std::vector<int>& keep) {
  switch (m.below(4)) {
    case 0:
      return -1;
    case 1: {
      std::array<int, 2> p{};
      if (::pipe2(p.data(), O_CLOEXEC) != 0) return -1;
      keep.push_back(p[0]);
      keep.push_back(p[1]);
      return p[0];
    }
    case 2: {
      const int fd = ::eventfd(0, EFD_CLOEXEC);
      keep.push_back(fd);
      return fd;
    }
    default: {
      const int fd = ::open("/", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
      keep.push_back(fd);
      return fd;
    }
  }
}

TEST_F(ProtocolFuzz, GarbageOnEverySocketLeavesTheDaemonServing) {
  constexpr std::uint64_t kSeed = 0x5eed5157u;
  constexpr int kRounds = 250;
  Mutator m(kSeed);
  SCOPED_TRACE("seed " + std::to_string(kSeed));
  const std::string hello =
      field(1, std::string("\x08\x01", 2) + field(2, "rootless-devices") + field(3, "fuzzed"));
  const std::string handoff = field(2, std::string("\x08\x2a", 2));
  const std::string oci =
      R"({"ociVersion":"1.0.2","fds":["seccompFd"],"pid":4242,"metadata":"policy=rootless-devices",)"
      R"("state":{"ociVersion":"1.0.2","id":"fuzzed","status":"creating","pid":4242,)"
      R"("bundle":"/tmp/b","annotations":{"io.sysvisor.learn":"true"}}})";
  const std::string control = field(1, "");  // a status request, or near enough
  for (int round = 0; round < kRounds; ++round) {
    std::vector<int> keep;
    // agent.sock: a Hello, maybe a Handoff with a wrong fd, each maybe mangled or random.
    if (const int s = connect_to(runtime() / "agent.sock", SOCK_SEQPACKET); s >= 0) {
      send_with(s, m.below(3) == 0 ? m.random_bytes(300) : m.below(2) == 0 ? hello : m.mutate(hello), -1);
      drain(s);
      if (m.below(2) == 0) send_with(s, m.below(2) == 0 ? handoff : m.mutate(handoff), some_fd(m, keep));
      drain(s);
      ::close(s);
    }
    // oci.sock: a state, mangled, in pieces, with a wrong fd or none, maybe never finished.
    if (const int s = connect_to(runtime() / "oci.sock", SOCK_STREAM); s >= 0) {
      const std::string payload = m.below(4) == 0 ? m.random_bytes(2000) : m.mutate(oci);
      const std::size_t cut = m.below(payload.size() + 1);
      send_with(s, payload.substr(0, cut), some_fd(m, keep));
      if (m.below(3) != 0) send_with(s, payload.substr(cut), -1);
      if (m.below(2) == 0) ::shutdown(s, SHUT_WR);
      drain(s);
      ::close(s);
    }
    // control.sock: requests of any shape.
    if (const int s = connect_to(runtime() / "control.sock", SOCK_SEQPACKET); s >= 0) {
      send_with(s, m.below(2) == 0 ? m.random_bytes(200) : m.mutate(control), some_fd(m, keep));
      drain(s);
      ::close(s);
    }
    for (const int fd : keep) ::close(fd);
    int status = 0;
    ASSERT_EQ(::waitpid(daemon_->pid(), &status, WNOHANG), 0) << "the daemon died in round " << round << "\n"
                                                              << read_file(log());
  }
  // Still serving: a container is supervised as before, and the control socket answers.
  const auto o = run_container(runtime(), "rootless-devices", rootfs_,
                               "mknod /dev/null c 1 3 && echo x > /dev/null && echo ok; "
                               "probe mknod /dev/sda b 8 0");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "EPERM"})) << o.err;
  const auto status = run({(bin_dir() / "sysvisor").string(), "status", "--runtime-dir", runtime().string()});
  EXPECT_EQ(status.status, 0) << status.err;
  // Every refusal was about the peer, and the log stayed bounded.
  EXPECT_LT(fs::file_size(log()), 4U << 20U) << "the log grew without bound";
  // The garbage reached every intake (else this test proves nothing).
  const std::string text = read_file(log());
  for (const char* seen : {"agent connection", "the handed-over fd is not a seccomp listener",
                           "oci: connection", "control: uid 0"}) {
    EXPECT_NE(text.find(seen), std::string::npos) << seen;
  }
}

}  // namespace
}  // namespace sysvisor::it
