#include "commands.hpp"

#include <sys/random.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

#include "client.hpp"
#include "container.hpp"
#include "exit_codes.hpp"
#include "failure.hpp"
#include "supervised_exec.hpp"
#include "timing.hpp"

namespace sysvisor::agent {
namespace {

// Connects and gets the filter: everything that can be refused happens before any namespace,
// thread or filter exists.
Result<std::pair<UniqueFd, Filter>> negotiate(const CommonOptions& common,
                                              std::map<std::string, std::string> labels) {
  timing_mark("hello");
  auto sock = connect_supervisor(common.runtime_dir);
  if (!sock) {
    return std::unexpected(sock.error());
  }
  auto filter =
      request_filter(sock->get(), HelloRequest{common.policy, common.id, std::move(labels), common.learn});
  if (!filter) {
    return std::unexpected(filter.error());
  }
  return std::pair{std::move(*sock), std::move(*filter)};
}

}  // namespace

std::string generate_container_id() {
  std::uint32_t bits = 0;
  std::size_t got = 0;
  while (got < sizeof(bits)) {
    const ssize_t n = ::getrandom(reinterpret_cast<char*>(&bits) + got, sizeof(bits) - got, 0);
    if (n > 0) {
      got += static_cast<std::size_t>(n);
    } else if (errno != EINTR) {
      bits ^=
          static_cast<std::uint32_t>(::getpid()) * 2654435761U ^ static_cast<std::uint32_t>(::time(nullptr));
      break;
    }
  }
  std::array<char, 16> buf{};
  std::snprintf(buf.data(), buf.size(), "sv-%08x", bits);
  return buf.data();
}

int run_command(const RunOptions& opts) {
  auto negotiated = negotiate(opts.common, {{"rootfs", opts.rootfs}, {"mode", "run"}});
  if (!negotiated) {
    print_error(negotiated.error().message());
    return kExitAgentFailure;
  }
  auto& [sock, filter] = *negotiated;
  auto code = run_container(opts, std::move(sock), filter);
  if (!code) {
    print_error(code.error().message());
    return kExitAgentFailure;
  }
  return *code;
}

int exec_command(const ExecOptions& opts) {
  auto negotiated = negotiate(opts.common, {{"mode", "exec"}});
  if (!negotiated) {
    print_error(negotiated.error().message());
    return kExitAgentFailure;
  }
  auto& [sock, filter] = *negotiated;
  const FailureChannel failure = FailureChannel::to_stderr();
  supervised_exec(sock.release(), filter, static_cast<std::uint32_t>(::getpid()), opts.common.command,
                  opts.common.preserve_fds, failure);
}

}  // namespace sysvisor::agent
