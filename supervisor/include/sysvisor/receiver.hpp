// The thread that waits on one listener where the raw loop waits: blocked in RECV. With
// SECCOMP_USER_NOTIF_FD_SYNC_WAKE_UP the kernel completes that wait on the trapping task's own
// CPU and hands it over at once; a poll or epoll waiter is woken without the hint (measured:
// 15% more per round trip). It answers what needs no more than the registers (deny, allow,
// return without audit) itself and passes everything else to the Asio loop, which hands it to
// the session's worker thread (session.hpp): nothing that touches the container's memory runs
// here or on the loop. One per session: containers do not queue behind each other, and a
// preempted thread delays only its own container.
//
// RECV does not return when the last task of the filter exits: the loop learns that from
// HangupWatch (the listener polls POLLHUP), and stop() interrupts the RECV with a signal.
#pragma once

#include <linux/seccomp.h>
#include <pthread.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <condition_variable>
#include <cstddef>
#include <functional>
#include <map>
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
  };

  // `listener` must outlive the Receiver. At most `max_outstanding` notifications wait for
  // the loop; beyond that the thread stops receiving, so a container flooding slow calls
  // delays only itself.
  Receiver(notify::NotifyFd& listener, std::size_t max_outstanding, Hooks hooks);
  ~Receiver();
  Receiver(const Receiver&) = delete;
  Receiver& operator=(const Receiver&) = delete;

  [[nodiscard]] Result<void> start();
  // Ends the thread and waits for it (microseconds: it is woken out of its wait by a signal).
  void stop();
  // Tells the thread to end without waiting for it: stop() then mostly finds it gone. Many
  // receivers stopping at once (a handover) end together instead of one after another.
  void request_stop();
  // From the loop: one notification passed by `slow` has been answered.
  void answered();
  // From the loop: a notification received by a previous daemon goes to the loop too (it
  // counts as outstanding until answered()).
  void adopted() { outstanding_.fetch_add(1); }
  [[nodiscard]] std::size_t outstanding() const noexcept { return outstanding_.load(); }

 private:
  static void* main(void* self);
  void run();

  notify::NotifyFd& listener_;
  const std::size_t max_outstanding_;
  Hooks hooks_;
  pthread_t thread_{};
  bool started_ = false;
  std::atomic<bool> stopping_{false};
  std::atomic<bool> exited_{false};
  std::mutex m_;
  std::condition_variable cv_;
  std::atomic<std::size_t> outstanding_{0};
};

// Tells the loop when a listener hangs up (every task of its filter exited), without waking
// it for each notification: one epoll set, interested in nothing but EPOLLHUP/EPOLLERR,
// itself watched by the loop.
class HangupWatch {
 public:
  explicit HangupWatch(boost::asio::io_context& io);
  ~HangupWatch();
  HangupWatch(const HangupWatch&) = delete;
  HangupWatch& operator=(const HangupWatch&) = delete;

  // `on_hangup` runs on the loop, once.
  [[nodiscard]] Result<void> watch(int fd, std::function<void()> on_hangup);
  void unwatch(int fd);

 private:
  void arm();

  UniqueFd epoll_;
  boost::asio::posix::stream_descriptor ready_;
  std::map<int, std::function<void()>> watched_;
};

}  // namespace sysvisor
