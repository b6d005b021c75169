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

// Parses a packet; garbage is an error that names `what`.
Result<void> parse(const std::string& bytes, google::protobuf::MessageLite& msg, const char* what);

}  // namespace sysvisor::wire
