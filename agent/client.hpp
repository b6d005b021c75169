// The agent's side of the agent protocol (proto/agent.proto): hello -> filter, handoff -> ready.
#pragma once

#include <linux/filter.h>

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "agent.pb.h"
#include "sysvisor/error.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::agent {

// The kernel's limit on one classic BPF program (BPF_MAXINSNS).
inline constexpr std::size_t kMaxFilterInstructions = 4096;
// How long the agent waits for each answer of the supervisor.
inline constexpr int kReplyTimeoutMs = 30'000;

struct HelloRequest {
  std::string policy;
  std::string container_id;
  std::map<std::string, std::string> labels;
  bool learn = false;
};

// A filter the supervisor sent, validated and ready for seccomp(SECCOMP_SET_MODE_FILTER).
struct Filter {
  std::string policy;
  std::vector<sock_filter> program;
  std::uint32_t flags = 0;  // SECCOMP_FILTER_FLAG_*, NEW_LISTENER included
  bool futex_free = false;  // the filter never traps futex: the filtered thread may block in it
};

// Connects to RUNTIME_DIR/agent.sock (SOCK_SEQPACKET, close-on-exec).
Result<UniqueFd> connect_supervisor(const std::string& runtime_dir);

// Sends the hello and returns the filter; a refusal is an error carrying the supervisor's reason.
Result<Filter> request_filter(int sock, const HelloRequest& hello);

// Sends the handoff with `listener_fd` and returns the session id once the supervisor is ready.
// Safe to call from a thread other than the one under the filter (uses only its own memory).
Result<std::string> hand_off(int sock, int listener_fd, std::uint32_t pid);

// Checks what the supervisor sent: non-empty, whole 8-byte instructions, at most
// kMaxFilterInstructions, and flags the agent can honour.
Result<Filter> decode_filter(const v1::FilterSpec& spec);

}  // namespace sysvisor::agent
