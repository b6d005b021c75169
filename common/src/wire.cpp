#include "sysvisor/wire.hpp"

#include <sys/socket.h>
#include <sys/uio.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <vector>

namespace sysvisor::wire {

namespace {
constexpr std::size_t kMaxFdsPerPacket = 8;
}  // namespace

ssize_t send_with_fd(int sock, const void* data, std::size_t len, int fd) noexcept {
  iovec iov{const_cast<void*>(data), len};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  if (fd >= 0) {
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &fd, sizeof(int));
  }
  return ::sendmsg(sock, &mh, MSG_NOSIGNAL);
}

ssize_t receive_with_fds(int sock, void* buf, std::size_t len, int* fds, std::size_t max_fds,
                         std::size_t* nfds, int* flags, bool nonblocking) noexcept {
  iovec iov{buf, len};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int) * kMaxFdsPerPacket)> control{};
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  *nfds = 0;
  const ssize_t n = ::recvmsg(sock, &mh, MSG_CMSG_CLOEXEC | (nonblocking ? MSG_DONTWAIT : 0));
  *flags = n >= 0 ? mh.msg_flags : 0;
  if (n < 0) return n;
  for (cmsghdr* cm = CMSG_FIRSTHDR(&mh); cm != nullptr; cm = CMSG_NXTHDR(&mh, cm)) {
    if (cm->cmsg_level != SOL_SOCKET || cm->cmsg_type != SCM_RIGHTS) continue;
    const std::size_t count = (cm->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (std::size_t i = 0; i < count; ++i) {
      int fd = -1;
      std::memcpy(&fd, CMSG_DATA(cm) + i * sizeof(int), sizeof(int));
      if (*nfds < max_fds) {
        fds[(*nfds)++] = fd;
      } else {
        ::close(fd);
        ++*nfds;  // counted, so the caller knows more came than it takes
      }
    }
  }
  return n;
}

Result<void> send_message(int sock, const google::protobuf::MessageLite& msg, int pass_fd) {
  std::string bytes;
  if (!msg.SerializeToString(&bytes)) {
    return plain_error("serialize message");
  }
  if (bytes.size() > kMaxMessageBytes) {
    return plain_error("message of " + std::to_string(bytes.size()) + " bytes exceeds the limit");
  }
  // An empty protobuf would look like EOF to the peer; a oneof-based envelope is never empty.
  while (send_with_fd(sock, bytes.data(), bytes.size(), pass_fd) < 0) {
    if (errno != EINTR) {
      return sys_error("send message");
    }
  }
  return {};
}

Result<Received> receive_packet(int sock, bool nonblocking) {
  Received out;
  out.bytes.resize(kMaxMessageBytes + 1);
  std::array<int, kMaxFdsPerPacket> raw{};
  std::size_t nfds = 0;
  int flags = 0;
  ssize_t n = 0;
  while ((n = receive_with_fds(sock, out.bytes.data(), out.bytes.size(), raw.data(), raw.size(), &nfds,
                               &flags, nonblocking)) < 0) {
    if (errno != EINTR) {
      return sys_error("receive message");
    }
  }
  std::vector<UniqueFd> fds;
  for (std::size_t i = 0; i < std::min(nfds, raw.size()); ++i) {
    fds.emplace_back(raw[i]);
  }
  if ((flags & MSG_CTRUNC) != 0 || nfds > raw.size()) {
    return plain_error("message with too many file descriptors");
  }
  if ((flags & MSG_TRUNC) != 0 || static_cast<std::size_t>(n) > kMaxMessageBytes) {
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
