// The agent wire format: one protobuf message per SOCK_SEQPACKET packet, at most
// kMaxMessageBytes, optionally carrying one file descriptor as SCM_RIGHTS.
#pragma once

#include <google/protobuf/message_lite.h>

#include <cstddef>
#include <string>

#include "sysvisor/error.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::wire {

inline constexpr std::size_t kMaxMessageBytes = 64 * 1024;

// Sends `msg` as one packet; `pass_fd` >= 0 travels with it. EINTR is retried.
Result<void> send_message(int sock, const google::protobuf::MessageLite& msg, int pass_fd = -1);

struct Received {
  std::string bytes;  // the packet, empty at orderly shutdown (eof == true)
  UniqueFd fd;        // the fd that came with it, if any
  bool eof = false;
};

// Receives one packet. Packets larger than kMaxMessageBytes, more than one fd, or
// ancillary data that was cut are errors (every fd that arrived is closed).
// With `nonblocking`, EAGAIN is returned as an error with err == EAGAIN.
Result<Received> receive_packet(int sock, bool nonblocking = false);

// The raw primitives under the two functions above. They allocate nothing and touch no
// locks, so the short-lived helpers that run between fork() and _exit() use them too.
// send_with_fd: one packet of `len` bytes with `fd` (none when fd < 0); sendmsg's result.
ssize_t send_with_fd(int sock, const void* data, std::size_t len, int fd) noexcept;
// receive_with_fds: one packet into `buf`; up to `max_fds` received fds (close-on-exec) are
// stored in `fds` and counted in `*nfds`; `*flags` gets msg_flags (MSG_TRUNC, MSG_CTRUNC).
// recvmsg's result; EINTR is not retried.
ssize_t receive_with_fds(int sock, void* buf, std::size_t len, int* fds, std::size_t max_fds,
                         std::size_t* nfds, int* flags, bool nonblocking = false) noexcept;

// Parses a packet; garbage is an error that names `what`.
Result<void> parse(const std::string& bytes, google::protobuf::MessageLite& msg, const char* what);

}  // namespace sysvisor::wire
