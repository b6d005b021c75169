// The thread that waits on one listener, where the raw loop waits: in the kernel, on the
// listener itself, so SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP hands the CPU straight to it (an
// epoll waiter is woken without that hint). It answers what needs no more than the registers
// (deny, allow, return without audit) itself and passes everything else to the Asio loop.
// One per session: containers do not queue behind each other, and a preempted thread delays
// only its own container.
#pragma once

#include <linux/seccomp.h>
#include <pthread.h>

#include <condition_variable>
#include <cstddef>
#include <functional>
#include <mutex>

#include "sysvisor/error.hpp"
#include "sysvisor/notify.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor {

class Receiver {
 public:
  struct Hooks {
    // On the thread, for each notification: true when it was answered there.
    std::function<bool(const seccomp_notif&)> fast;
    // On the thread: the notification goes to the loop (post it). It counts as outstanding
    // until the loop calls answered().
    std::function<void(const seccomp_notif&)> slow;
    // On the thread, once: every task of the filter has exited (the thread ends after it).
    std::function<void()> hung_up;
  };

  // `listener` must outlive the Receiver. At most `max_outstanding` notifications wait for
  // the loop; beyond that the thread stops receiving, so a container flooding slow calls
  // delays only itself.
  Receiver(notify::NotifyFd& listener, std::size_t max_outstanding, Hooks hooks);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  [[nodiscard]] Result<void> start();
  // Ends the thread and waits for it (microseconds: it waits in poll or on the condition).
  void stop();
  // From the loop: one notification passed by `slow` has been answered.
  void answered();

 private:
  static void* main(void* self);
  void run();

  notify::NotifyFd& listener_;
  const std::size_t max_outstanding_;
  Hooks hooks_;
  UniqueFd wake_;  // eventfd: stop()
  pthread_t thread_{};
  bool started_ = false;
  std::mutex m_;
  std::condition_variable cv_;
  std::size_t outstanding_ = 0;
  bool stopping_ = false;
};

}  // namespace sysvisor
