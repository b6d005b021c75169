// The agent wire format: one message per SEQPACKET packet, one fd at most, 64 KiB cap.
#include "sysvisor/wire.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include <array>
#include <cstring>

#include "agent.pb.h"

namespace sysvisor {
namespace {

struct Pair {
  UniqueFd a;
  UniqueFd b;
  Pair() {
    std::array<int, 2> fds{};
    EXPECT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, fds.data()), 0);
    a.reset(fds[0]);
    b.reset(fds[1]);
  }
};

TEST(Wire, RoundTripWithFd) {
  Pair p;
  v1::AgentMessage msg;
  msg.mutable_hello()->set_policy("rootless-devices");
  msg.mutable_hello()->set_container_id("web-1");
  (*msg.mutable_hello()->mutable_labels())["k"] = "v";
  UniqueFd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  ASSERT_TRUE(wire::send_message(p.a.get(), msg, devnull.get()));
  auto got = wire::receive_packet(p.b.get());
  ASSERT_TRUE(got) << got.error().message();
  EXPECT_TRUE(got->fd.valid());
  EXPECT_NE(got->fd.get(), devnull.get());
  EXPECT_NE(::fcntl(got->fd.get(), F_GETFD) & FD_CLOEXEC, 0) << "received fds are close-on-exec";
  v1::AgentMessage back;
  ASSERT_TRUE(wire::parse(got->bytes, back, "agent message"));
  EXPECT_EQ(back.hello().policy(), "rootless-devices");
  EXPECT_EQ(back.hello().labels().at("k"), "v");
}

TEST(Wire, EofIsReported) {
  Pair p;
  p.a.reset();
  auto got = wire::receive_packet(p.b.get());
  ASSERT_TRUE(got);
  EXPECT_TRUE(got->eof);
}

TEST(Wire, OversizedPacketIsAnError) {
  Pair p;
  int size = 1 << 20;
  ::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  std::string big(wire::kMaxMessageBytes + 100, 'x');
  ASSERT_EQ(::send(p.a.get(), big.data(), big.size(), 0), static_cast<ssize_t>(big.size()));
  auto got = wire::receive_packet(p.b.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message().find("larger than"), std::string::npos);
}

TEST(Wire, ExactlyTheLimitIsAccepted) {
  Pair p;
  int size = 1 << 20;
  ::setsockopt(p.a.get(), SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  std::string max(wire::kMaxMessageBytes, 'y');
  ASSERT_EQ(::send(p.a.get(), max.data(), max.size(), 0), static_cast<ssize_t>(max.size()));
  auto got = wire::receive_packet(p.b.get());
  ASSERT_TRUE(got);
  EXPECT_EQ(got->bytes.size(), wire::kMaxMessageBytes);
}

TEST(Wire, TwoFdsAreRefusedAndClosed) {
  Pair p;
  char byte = 'x';
  iovec iov{&byte, 1};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 2)> control{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  cmsghdr* cm = CMSG_FIRSTHDR(&mh);
  cm->cmsg_level = SOL_SOCKET;
  cm->cmsg_type = SCM_RIGHTS;
  cm->cmsg_len = CMSG_LEN(sizeof(int) * 2);
  std::array<int, 2> fds{0, 1};
  std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * 2);
  ASSERT_EQ(::sendmsg(p.a.get(), &mh, 0), 1);
  // The next fd number the process gets tells whether the received ones were closed.
  const int before = ::dup(0);
  ::close(before);
  auto got = wire::receive_packet(p.b.get());
  ASSERT_FALSE(got);
  EXPECT_NE(got.error().message().find("2 file descriptors"), std::string::npos) << got.error().message();
  const int after = ::dup(0);
  EXPECT_EQ(after, before) << "received fds leaked";
  ::close(after);
}

TEST(Wire, GarbageDoesNotParseAsAMessageWithABody) {
  const std::string garbage = "\xff\xff\xff\xff\x0f garbage";
  v1::AgentMessage msg;
  const auto r = wire::parse(garbage, msg, "agent message");
  EXPECT_FALSE(r && (msg.has_hello() || msg.has_handoff()));
}

TEST(Wire, NonblockingReceiveSaysEagain) {
  Pair p;
  auto got = wire::receive_packet(p.b.get(), true);
  ASSERT_FALSE(got);
  EXPECT_EQ(got.error().err, EAGAIN);
}

}  // namespace
}  // namespace sysvisor
