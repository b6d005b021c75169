#include "sysvisor/notify.hpp"

#include <sys/ioctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <string>
#include <string_view>

namespace sysvisor::notify {
namespace {

seccomp_notif_sizes kernel_sizes() {
  static const seccomp_notif_sizes sizes = [] {
    seccomp_notif_sizes s{};
    if (::syscall(SYS_seccomp, SECCOMP_GET_NOTIF_SIZES, 0, &s) != 0) {
      s.seccomp_notif = sizeof(seccomp_notif);
      s.seccomp_notif_resp = sizeof(seccomp_notif_resp);
      s.seccomp_data = sizeof(seccomp_data);
    }
    return s;
  }();
  return sizes;
}

template <class F>
int retry_eintr(F&& f) {
  int rc = 0;
  do {
    rc = f();
  } while (rc < 0 && errno == EINTR);
  return rc;
}

}  // namespace

NotifyFd::NotifyFd(UniqueFd fd) : fd_(std::move(fd)) {
  const auto sizes = kernel_sizes();
  notif_size_ = std::max<std::size_t>(sizes.seccomp_notif, sizeof(seccomp_notif));
  resp_size_ = std::max<std::size_t>(sizes.seccomp_notif_resp, sizeof(seccomp_notif_resp));
  buffer_.resize((std::max(notif_size_, resp_size_) + 7) / 8);
}

bool NotifyFd::enable_sync_wakeup() const noexcept {
  return ::ioctl(fd_.get(), kIoctlSetFlags, kFlagSyncWakeUp) == 0;
}

Result<const seccomp_notif*> NotifyFd::receive(bool interruptible) {
  // The kernel insists on a zeroed buffer.
  std::memset(buffer_.data(), 0, notif_size_);
  const auto recv = [&] { return ::ioctl(fd_.get(), SECCOMP_IOCTL_NOTIF_RECV, buffer_.data()); };
  if ((interruptible ? recv() : retry_eintr(recv)) < 0) return sys_error("receive notification");
  const auto* n = reinterpret_cast<const seccomp_notif*>(buffer_.data());
  if (journal_ != nullptr) journal_->received(*n);
  return n;
}

Result<void> NotifyFd::id_valid(std::uint64_t id) const {
  if (retry_eintr([&] { return ::ioctl(fd_.get(), SECCOMP_IOCTL_NOTIF_ID_VALID, &id); }) < 0) {
    return sys_error("check notification id");
  }
  return {};
}

Result<void> NotifyFd::send(const seccomp_notif_resp& resp) const {
  // A separate buffer: `buffer_` may still hold the notification being answered.
  std::array<std::uint64_t, 8> out{};
  static_assert(sizeof(seccomp_notif_resp) <= sizeof(out));
  std::memcpy(out.data(), &resp, sizeof(resp));
  const int rc = retry_eintr([&] { return ::ioctl(fd_.get(), SECCOMP_IOCTL_NOTIF_SEND, out.data()); });
  const int err = errno;
  // Answered, or no longer answerable (the task is gone): either way not for a next daemon.
  if (journal_ != nullptr) journal_->answered(resp.id);
  if (rc < 0) return sys_error(err, "send response");
  return {};
}

Result<void> NotifyFd::respond_continue(std::uint64_t id) const {
  seccomp_notif_resp resp{};
  resp.id = id;
  resp.flags = SECCOMP_USER_NOTIF_FLAG_CONTINUE;
  return send(resp);
}

Result<void> NotifyFd::respond(std::uint64_t id, int err) const {
  seccomp_notif_resp resp{};
  resp.id = id;
  resp.error = -err;  // with val 0: the call returns 0 when err is 0
  return send(resp);
}

Result<void> NotifyFd::respond_value(std::uint64_t id, std::int64_t value) const {
  seccomp_notif_resp resp{};
  resp.id = id;
  resp.val = value;
  return send(resp);
}

bool is_listener(int fd) {
  std::array<char, 64> link{};
  const std::string path = "/proc/self/fd/" + std::to_string(fd);
  const ssize_t n = ::readlink(path.c_str(), link.data(), link.size() - 1);
  return n > 0 && std::string_view(link.data(), static_cast<std::size_t>(n)) == "anon_inode:seccomp notify";
}

}  // namespace sysvisor::notify
