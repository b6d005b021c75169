// The seccomp listener fd and its raw ioctls. libseccomp 2.5 turns every ioctl error
// into -ECANCELED, which loses ENOENT ("the task is gone"), so we talk to the kernel directly.
#pragma once

#include <linux/ioctl.h>
#include <linux/seccomp.h>

#include <cstdint>
#include <vector>

#include "sysvisor/error.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::notify {

// Kernel >= 6.6; Debian 12's headers predate them.
inline constexpr unsigned long kIoctlSetFlags = SECCOMP_IOW(4, __u64);
inline constexpr std::uint64_t kFlagSyncWakeUp = 1;

// Told of every notification received and every answer sent (handover.hpp, StateFile): what
// a daemon killed outright leaves unanswered, the next one answers. Called from any thread.
class Journal {
 public:
  virtual ~Journal() = default;
  virtual void received(const seccomp_notif& n) noexcept = 0;
  virtual void answered(std::uint64_t id) noexcept = 0;
};

class NotifyFd {
 public:
  explicit NotifyFd(UniqueFd fd);

  // Before the first RECV; `journal` must outlive this object (null: none).
  void set_journal(Journal* journal) noexcept { journal_ = journal; }

  [[nodiscard]] int get() const noexcept { return fd_.get(); }

  // SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP: the woken task runs on our CPU. False where the
  // kernel lacks it (the caller goes on without).
  bool enable_sync_wakeup() const noexcept;

  // RECV. err == ENOENT: the notification vanished (the task was killed) - not an error.
  // RECV blocks until a notification comes (even after the last task exited); `interruptible`
  // returns EINTR when a signal arrives instead of waiting on.
  [[nodiscard]] Result<const seccomp_notif*> receive(bool interruptible = false);
  // ID_VALID. err == ENOENT: the task is gone or its call was interrupted.
  [[nodiscard]] Result<void> id_valid(std::uint64_t id) const;
  // SEND. err == ENOENT: the task is gone - not an error.
  [[nodiscard]] Result<void> respond_continue(std::uint64_t id) const;
  // The call returns -err, or 0 when err is 0.
  [[nodiscard]] Result<void> respond(std::uint64_t id, int err) const;
  // The call is not made; the caller sees `value` as its result (error 0).
  [[nodiscard]] Result<void> respond_value(std::uint64_t id, std::int64_t value) const;

 private:
  [[nodiscard]] Result<void> send(const seccomp_notif_resp& resp) const;

  UniqueFd fd_;
  Journal* journal_ = nullptr;
  // Sized with SECCOMP_GET_NOTIF_SIZES: the kernel's structs may be larger than ours.
  std::vector<std::uint64_t> buffer_;
  std::size_t notif_size_ = 0;
  std::size_t resp_size_ = 0;
};

// True when `fd` is a seccomp listener ("anon_inode:seccomp notify").
[[nodiscard]] bool is_listener(int fd);

}  // namespace sysvisor::notify
