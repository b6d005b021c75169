#include "sysvisor/wire.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <array>
#include <cstring>
#include <vector>

namespace sysvisor::wire {

Result<void> send_message(int sock, const google::protobuf::MessageLite& msg, int pass_fd) {
  std::string bytes;
  if (!msg.SerializeToString(&bytes)) {
    return plain_error("serialize message");
  }
  if (bytes.size() > kMaxMessageBytes) {
    return plain_error("message of " + std::to_string(bytes.size()) + " bytes exceeds the limit");
  }
  // An empty protobuf would look like EOF to the peer; a oneof-based envelope is never empty.
  iovec iov{bytes.data(), bytes.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (pass_fd >= 0) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &pass_fd, sizeof(int));
  }
  for (;;) {
    const ssize_t n = ::sendmsg(sock, &mh, MSG_NOSIGNAL);
    if (n >= 0) {
      return {};
    }
    if (errno != EINTR) {
      return sys_error("send message");
    }
  }
}

Result<Received> receive_packet(int sock, bool nonblocking) {
  Received out;
  out.bytes.resize(kMaxMessageBytes + 1);
  iovec iov{out.bytes.data(), out.bytes.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  // Room for a few fds so that a peer sending several is detected and all are closed.
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * 8)> control{};
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  ssize_t n = 0;
  for (;;) {
    n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0));
    if (n >= 0) {
      break;
    }
    if (errno != EINTR) {
      return sys_error("receive message");
    }
  }
  std::vector<UniqueFd> fds;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) {
      continue;
    }
    const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      fds.emplace_back(fd);
    }
  }
  if ((mh.msg_flags & MSG_CTRUNC) != 0) {
    return plain_error("message with too many file descriptors");
  }
  if ((mh.msg_flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > kMaxMessageBytes) {
    return plain_error("message larger than " + std::to_string(kMaxMessageBytes) + " bytes");
  }
  if (fds.size() > 1) {
    return plain_error("message with " + std::to_string(fds.size()) +
                       " file descriptors, expected at most 1");
  }
  if (n == 0 && fds.empty()) {
    out.bytes.clear();
    out.eof = true;
    return out;
  }
  out.bytes.resize(static_cast<std::size_t>(n));
  if (!fds.empty()) {
    out.fd = std::move(fds.front());
  }
  return out;
}

Result<void> parse(const std::string& bytes, google::protobuf::MessageLite& msg, const char* what) {
  if (!msg.ParseFromString(bytes)) {
    return plain_error(std::string("malformed ") + what + " (" + std::to_string(bytes.size()) + " bytes)");
  }
  return {};
}

}  // namespace sysvisor::wire
