#include "failure.hpp"

#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>

namespace sysvisor::agent {
namespace {

constexpr std::string_view kPrefix = "sysvisor-agent: ";

class LineBuffer {
 public:
  void append(std::string_view text) noexcept {
    const std::size_t n = std::min(text.size(), buf_.size() - size_);
    std::copy_n(text.data(), n, buf_.data() + size_);
    size_ += n;
  }
  void append(char c) noexcept { append(std::string_view(&c, 1)); }
  // Ends with a newline even when the message was cut.
  void terminate_line() noexcept {
    if (size_ == buf_.size()) {
      --size_;
    }
    buf_[size_++] = '\n';
  }
  void write_to(int fd) const noexcept {
    std::size_t done = 0;
    while (done < size_) {
      const ssize_t n = ::write(fd, buf_.data() + done, size_ - done);
      if (n < 0 && errno == EINTR) {
        continue;
      }
      if (n <= 0) {
        return;
      }
      done += static_cast<std::size_t>(n);
    }
  }

 private:
  std::array<char, 2048> buf_{};
  std::size_t size_ = 0;
};

}  // namespace

void print_error(std::string_view message) noexcept {
  LineBuffer line;
  line.append(kPrefix);
  line.append(message);
  line.terminate_line();
  line.write_to(STDERR_FILENO);
}

void FailureChannel::fail(int exit_code, std::string_view message) const noexcept {
  LineBuffer out;
  if (record_) {
    out.append(static_cast<char>(exit_code));
    out.append(message);
  } else {
    out.append(kPrefix);
    out.append(message);
    out.terminate_line();
  }
  out.write_to(fd_);
  ::_exit(exit_code);
}

bool decode_failure_record(std::string_view bytes, FailureRecord& out) noexcept {
  if (bytes.empty()) {
    return false;
  }
  out.exit_code = static_cast<unsigned char>(bytes.front());
  out.message = bytes.substr(1);
  return true;
}

}  // namespace sysvisor::agent
