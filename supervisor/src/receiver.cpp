#include "sysvisor/receiver.hpp"

#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/eventfd.h>

#include <array>
#include <csignal>

namespace sysvisor {

Receiver::Receiver(notify::NotifyFd& listener, std::size_t max_outstanding, Hooks hooks)
    : listener_(listener),
      max_outstanding_(max_outstanding == 0 ? 1 : max_outstanding),
      hooks_(std::move(hooks)) {}

Receiver::~Receiver() {
  stop();
}

Result<void> Receiver::start() {
  wake_.reset(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK));
  if (!wake_) return sys_error("eventfd for a receiver thread");
  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  // Deep recursion never happens here (decide() and the hooks are shallow): a small stack
  // keeps a thousand idle containers cheap.
  ::pthread_attr_setstacksize(&attr, 256 * 1024);
  // Signals stay with the loop's thread (Asio's signal_set): the new thread blocks them all.
  sigset_t all;
  sigset_t old;
  ::sigfillset(&all);
  ::pthread_sigmask(SIG_BLOCK, &all, &old);
  const int rc = ::pthread_create(&thread_, &attr, &Receiver::main, this);
  ::pthread_sigmask(SIG_SETMASK, &old, nullptr);
  ::pthread_attr_destroy(&attr);
  if (rc != 0) return sys_error(rc, "start a receiver thread");
  started_ = true;
  return {};
}

void Receiver::stop() {
  if (!started_) return;
  {
    const std::scoped_lock lock(m_);
    stopping_ = true;
  }
  cv_.notify_one();
  const std::uint64_t one = 1;
  [[maybe_unused]] const ssize_t n = ::write(wake_.get(), &one, sizeof one);
  ::pthread_join(thread_, nullptr);
  started_ = false;
}

void Receiver::answered() {
  {
    const std::scoped_lock lock(m_);
    if (outstanding_ > 0) --outstanding_;
  }
  cv_.notify_one();
}

void* Receiver::main(void* self) {
  static_cast<Receiver*>(self)->run();
  return nullptr;
}

void Receiver::run() {
  std::array<pollfd, 2> fds{pollfd{listener_.get(), POLLIN, 0}, pollfd{wake_.get(), POLLIN, 0}};
  for (;;) {
    {
      // Flow control: wait while the loop still has max_outstanding of ours.
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return stopping_ || outstanding_ < max_outstanding_; });
      if (stopping_) return;
    }
    fds[0].revents = 0;
    fds[1].revents = 0;
    // poll, not a bare RECV: RECV does not return when the last task exits, poll says
    // POLLHUP. A poll waiter sits on the listener's own wait queue, so SYNC_WAKE_UP still
    // applies.
    if (::poll(fds.data(), fds.size(), -1) < 0) {
      if (errno == EINTR) continue;
      spdlog::error("receiver: poll: {}", std::strerror(errno));
      return;
    }
    if (fds[1].revents != 0) return;  // stop()
    if ((fds[0].revents & POLLIN) != 0) {
      auto n = listener_.receive();
      if (!n) {
        if (n.error().err != ENOENT) spdlog::warn("receiver: {}", n.error().message());
        continue;
      }
      if (hooks_.fast(**n)) continue;
      {
        const std::scoped_lock lock(m_);
        ++outstanding_;
      }
      hooks_.slow(**n);
      continue;
    }
    if ((fds[0].revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) {
      hooks_.hung_up();
      return;
    }
  }
}

}  // namespace sysvisor
