// The trapped task as the supervisor sees it: its /proc entries, its memory, its credentials.
// Parsers are pure functions (unit-tested); TaskHandle holds the fds opened before ID_VALID.
#pragma once

#include <sys/types.h>

#include <array>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::task {

// From /proc/TID/status, in the reader's (the supervisor's, i.e. the host's) id view.
struct Credentials {
  std::array<std::uint32_t, 4> uid{};  // real, effective, saved, filesystem
  std::array<std::uint32_t, 4> gid{};
  std::vector<std::uint32_t> groups;
  std::uint64_t cap_effective = 0;
  mode_t umask = 022;
};

[[nodiscard]] std::optional<Credentials> parse_status(std::string_view status);

// One line of /proc/TID/uid_map as read from the host: inside-id, host-id, count.
struct IdRange {
  std::uint32_t inside = 0;
  std::uint32_t outside = 0;
  std::uint32_t count = 0;
};
[[nodiscard]] std::optional<std::vector<IdRange>> parse_id_map(std::string_view text);
// Host id -> id inside the namespace; nullopt when unmapped.
[[nodiscard]] std::optional<std::uint32_t> to_inside(const std::vector<IdRange>& map, std::uint32_t host_id);

// The kernel's split of a 32-bit dev_t (new_decode_dev).
struct DevNumbers {
  std::uint32_t major = 0;
  std::uint32_t minor = 0;
};
[[nodiscard]] constexpr DevNumbers decode_dev(std::uint32_t dev) {
  return {(dev & 0xfff00U) >> 8U, (dev & 0xffU) | ((dev >> 12U) & 0xfff00U)};
}
[[nodiscard]] constexpr std::uint32_t encode_dev(std::uint32_t major, std::uint32_t minor) {
  return (minor & 0xffU) | (major << 8U) | ((minor & ~0xffU) << 12U);
}

// Reads a NUL-terminated string of at most `max` bytes (terminator included) from the
// task's memory, the way the kernel's strncpy_from_user would: EFAULT when unreadable
// before the terminator, ENAMETOOLONG when no terminator within `max`.
[[nodiscard]] Result<std::string> read_string(int mem_fd, std::uint64_t address, std::size_t max);

// Reads a whole (small) file relative to a directory fd.
[[nodiscard]] Result<std::string> read_file_at(int dir_fd, const char* name);

// The task's /proc directory and memory, opened before the first ID_VALID so that they
// are known to belong to the task that made the call (a pid can be reused).
class TaskHandle {
 public:
  [[nodiscard]] static Result<TaskHandle> open(pid_t tid);

  [[nodiscard]] pid_t tid() const noexcept { return tid_; }
  [[nodiscard]] int proc_dir() const noexcept { return proc_.get(); }
  [[nodiscard]] int mem() const noexcept { return mem_.get(); }

  // openat(/proc/TID, name, flags) with the error naming the file.
  [[nodiscard]] Result<UniqueFd> open_entry(const char* name, int flags) const;

 private:
  pid_t tid_ = 0;
  UniqueFd proc_;
  UniqueFd mem_;
};

}  // namespace sysvisor::task
