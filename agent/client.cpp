#include "client.hpp"

#include <linux/seccomp.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/un.h>

#include <chrono>
#include <cstring>

#include "sysvisor/wire.hpp"

namespace sysvisor::agent {
namespace {

#ifndef SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV
#define SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV (1UL << 5)
#endif

// Flags a supervisor may ask for. TSYNC is not among them: the agent's handoff thread must stay
// outside the filter, or the handoff would wait on itself.
constexpr std::uint32_t kHonouredFlags = SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW |
                                         SECCOMP_FILTER_FLAG_NEW_LISTENER |
                                         SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV;

// Waits for one SupervisorMessage, at most kReplyTimeoutMs.
Result<v1::SupervisorMessage> receive_reply(int sock, const char* waiting_for) {
  using Clock = std::chrono::steady_clock;
  const auto deadline = Clock::now() + std::chrono::milliseconds(kReplyTimeoutMs);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now());
    if (left.count() <= 0) {
      return plain_error("no answer from the supervisor within " + std::to_string(kReplyTimeoutMs / 1000) +
                         " s while waiting for " + waiting_for);
    }
    pollfd pfd{sock, POLLIN, 0};
    const int n = ::poll(&pfd, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) {
      continue;
    }
    if (n < 0) {
      return sys_error(std::string("wait for ") + waiting_for);
    }
    if (n > 0) {
      break;
    }
  }
  auto packet = wire::receive_packet(sock);
  if (!packet) {
    return std::unexpected(
        SysError{packet.error().err, packet.error().context + " (waiting for " + waiting_for + ")"});
  }
  if (packet->eof) {
    return plain_error(std::string("the supervisor closed the connection while the agent waited for ") +
                       waiting_for);
  }
  if (packet->fd) {
    return plain_error(std::string("protocol error: the supervisor sent a file descriptor with ") +
                       waiting_for);
  }
  v1::SupervisorMessage reply;
  if (auto parsed = wire::parse(packet->bytes, reply, "supervisor message"); !parsed) {
    return std::unexpected(parsed.error());
  }
  return reply;
}

}  // namespace

Result<UniqueFd> connect_supervisor(const std::string& runtime_dir) {
  const std::string path = runtime_dir + "/agent.sock";
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (path.size() >= sizeof(addr.sun_path)) {
    return plain_error("socket path `" + path + "` is longer than " +
                       std::to_string(sizeof(addr.sun_path) - 1) + " bytes");
  }
  std::memcpy(addr.sun_path, path.c_str(), path.size() + 1);
  UniqueFd sock(::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0));
  if (!sock) {
    return sys_error("create a unix socket");
  }
  for (;;) {
    if (::connect(sock.get(), reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)) == 0) {
      return sock;
    }
    if (errno != EINTR) {
      return sys_error("connect to the supervisor at `" + path + "`");
    }
  }
}

static_assert(sizeof(sock_filter) == 8, "the wire format carries 8-byte BPF instructions");

Result<Filter> decode_filter(const v1::FilterSpec& spec) {
  const std::string& bpf = spec.bpf();
  if (bpf.empty()) {
    return plain_error("the supervisor sent an empty filter for policy `" + spec.policy() + "`");
  }
  if (bpf.size() % sizeof(sock_filter) != 0) {
    return plain_error("the supervisor sent a filter of " + std::to_string(bpf.size()) +
                       " bytes, not a whole number of 8-byte instructions");
  }
  const std::size_t count = bpf.size() / sizeof(sock_filter);
  if (count > kMaxFilterInstructions) {
    return plain_error("the supervisor sent a filter of " + std::to_string(count) +
                       " instructions, more than the kernel's " + std::to_string(kMaxFilterInstructions));
  }
  const std::uint32_t extra = spec.extra_flags();
  if ((extra & (SECCOMP_FILTER_FLAG_TSYNC | SECCOMP_FILTER_FLAG_TSYNC_ESRCH)) != 0) {
    return plain_error("the supervisor asked for SECCOMP_FILTER_FLAG_TSYNC, which the agent cannot honour");
  }
  if ((extra & ~kHonouredFlags) != 0) {
    return plain_error("the supervisor asked for unknown seccomp filter flags (bits " +
                       std::to_string(extra & ~kHonouredFlags) + ")");
  }
  Filter filter;
  filter.policy = spec.policy();
  filter.program.resize(count);
  std::memcpy(filter.program.data(), bpf.data(), bpf.size());
  filter.flags = extra | static_cast<std::uint32_t>(SECCOMP_FILTER_FLAG_NEW_LISTENER);
  filter.futex_free = spec.futex_free();
  return filter;
}

Result<Filter> request_filter(int sock, const HelloRequest& request) {
  v1::AgentMessage msg;
  v1::Hello* hello = msg.mutable_hello();
  hello->set_protocol_version(v1::PROTOCOL_VERSION_1);
  hello->set_policy(request.policy);
  hello->set_container_id(request.container_id);
  hello->set_learn(request.learn);
  for (const auto& [key, value] : request.labels) {
    (*hello->mutable_labels())[key] = value;
  }
  if (auto sent = wire::send_message(sock, msg); !sent) {
    return std::unexpected(SysError{sent.error().err, sent.error().context + " (hello to the supervisor)"});
  }
  auto reply = receive_reply(sock, "the filter");
  if (!reply) {
    return std::unexpected(reply.error());
  }
  switch (reply->body_case()) {
    case v1::SupervisorMessage::kFilter:
      return decode_filter(reply->filter());
    case v1::SupervisorMessage::kRefusal:
      return plain_error("the supervisor refused policy `" + request.policy +
                         "`: " + reply->refusal().reason());
    default:
      return plain_error(
          "protocol error: the supervisor answered the hello with neither a filter nor a refusal");
  }
}

Result<std::string> hand_off(int sock, int listener_fd, std::uint32_t pid) {
  v1::AgentMessage msg;
  msg.mutable_handoff()->set_pid(pid);
  if (auto sent = wire::send_message(sock, msg, listener_fd); !sent) {
    return std::unexpected(SysError{sent.error().err, sent.error().context + " (handoff to the supervisor)"});
  }
  auto reply = receive_reply(sock, "the supervisor to take the listener");
  if (!reply) {
    return std::unexpected(reply.error());
  }
  switch (reply->body_case()) {
    case v1::SupervisorMessage::kReady:
      return reply->ready().session_id();
    case v1::SupervisorMessage::kRefusal:
      return plain_error("the supervisor refused the handoff: " + reply->refusal().reason());
    default:
      return plain_error(
          "protocol error: the supervisor answered the handoff with neither ready nor a refusal");
  }
}

}  // namespace sysvisor::agent
