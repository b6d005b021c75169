#include "timing.hpp"

#include <unistd.h>

#include <array>
#include <charconv>
#include <cstdio>
#include <cstdlib>
#include <ctime>
#include <string_view>

namespace sysvisor::agent {

int timing_fd() noexcept {
  const char* env = std::getenv("SYSVISOR_AGENT_TIMING_FD");
  if (env == nullptr) return -1;
  const std::string_view text(env);
  int fd = -1;
  if (auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), fd);
      ec != std::errc{} || end != text.data() + text.size() || fd < 0) {
    return -1;
  }
  return fd;
}

void timing_mark(const char* what) noexcept {
  const int fd = timing_fd();
  if (fd < 0) return;
  timespec ts{};
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  std::array<char, 64> buf{};
  const int n = std::snprintf(buf.data(), buf.size(), "%s %lld\n", what,
                              static_cast<long long>(ts.tv_sec) * 1'000'000'000LL + ts.tv_nsec);
  if (n > 0) {
    [[maybe_unused]] const ssize_t written = ::write(fd, buf.data(), static_cast<std::size_t>(n));
  }
}

}  // namespace sysvisor::agent
