#include "sysvisor/receiver.hpp"

#include <fcntl.h>
#include <poll.h>
#include <spdlog/spdlog.h>
#include <sys/epoll.h>

#include <array>
#include <chrono>
#include <csignal>
#include <cstring>
#include <thread>

namespace sysvisor {
namespace {

// Interrupts a receiver's RECV. Installed without SA_RESTART, so the ioctl returns EINTR.
int wake_signal() {
  static const int sig = [] {
    const int s = SIGRTMIN + 3;
    struct sigaction sa {};
    sa.sa_handler = [](int) {};
    ::sigemptyset(&sa.sa_mask);
    sa.sa_flags = 0;
    ::sigaction(s, &sa, nullptr);
    return s;
  }();
  return sig;
}

}  // namespace

Receiver::Receiver(notify::NotifyFd& listener, std::size_t max_outstanding, Hooks hooks)
    : listener_(listener),
      max_outstanding_(max_outstanding == 0 ? 1 : max_outstanding),
      hooks_(std::move(hooks)) {}

Receiver::~Receiver() {
  stop();
}

Result<void> Receiver::start() {
  (void)wake_signal();
  pthread_attr_t attr;
  ::pthread_attr_init(&attr);
  // Deep recursion never happens here (decide() and the hooks are shallow): a small stack
  // keeps a thousand idle containers cheap.
  ::pthread_attr_setstacksize(&attr, 256 * 1024);
  // Signals stay with the loop's thread (Asio's signal_set): the new thread blocks them all
  // but its wake-up signal.
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

void Receiver::request_stop() {
  if (!started_) return;
  {
    const std::scoped_lock lock(m_);
    stopping_.store(true);
  }
  cv_.notify_one();
  if (!exited_.load()) ::pthread_kill(thread_, wake_signal());
}

void Receiver::stop() {
  if (!started_) return;
  {
    const std::scoped_lock lock(m_);
    stopping_.store(true);
  }
  cv_.notify_one();
  // The signal may land just before the thread enters RECV: send it until the thread is out.
  for (int i = 0; !exited_.load(); ++i) {
    ::pthread_kill(thread_, wake_signal());
    std::this_thread::sleep_for(std::chrono::microseconds(i < 20 ? 50 : 1000));
  }
  ::pthread_join(thread_, nullptr);
  started_ = false;
}

void Receiver::answered() {
  if (outstanding_.fetch_sub(1) == max_outstanding_) {
    // The thread may be waiting for room.
    const std::scoped_lock lock(m_);
    cv_.notify_one();
  }
}

void* Receiver::main(void* self) {
  auto* r = static_cast<Receiver*>(self);
  sigset_t wake;
  ::sigemptyset(&wake);
  ::sigaddset(&wake, wake_signal());
  ::pthread_sigmask(SIG_UNBLOCK, &wake, nullptr);
  r->run();
  r->exited_.store(true);
  return nullptr;
}

void Receiver::run() {
  while (!stopping_.load(std::memory_order_relaxed)) {
    if (outstanding_.load() >= max_outstanding_) {
      // Flow control: wait while the loop still has max_outstanding of ours.
      std::unique_lock lock(m_);
      cv_.wait(lock, [&] { return stopping_.load() || outstanding_.load() < max_outstanding_; });
      continue;
    }
    // Wait in poll, not in RECV: a thread killed (kill -9 of the daemon) while it sleeps in RECV
    // still takes a notification that came in meanwhile (the kernel looks for one before it
    // looks at signals), and a call received by a dead daemon is answered by nobody. A thread
    // killed in poll takes nothing; the window left is RECV's own few microseconds.
    pollfd ready{listener_.get(), POLLIN, 0};
    if (::poll(&ready, 1, -1) < 0 || (ready.revents & POLLIN) == 0) {
      if ((ready.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0) {
        std::unique_lock lock(m_);  // the filter is gone: the loop, told by HangupWatch, stops us
        cv_.wait(lock, [&] { return stopping_.load(); });
      }
      continue;
    }
    auto n = listener_.receive(true);
    if (!n) {
      if (n.error().err == ENOENT) {
        // A notification that vanished (its task died), or the filter itself is gone: then
        // RECV would fail at once forever, so wait here until the loop, told by HangupWatch,
        // stops us.
        pollfd p{listener_.get(), POLLIN, 0};
        if (::poll(&p, 1, 0) == 1 && (p.revents & POLLIN) == 0 && (p.revents & POLLHUP) != 0) {
          std::unique_lock lock(m_);
          cv_.wait(lock, [&] { return stopping_.load(); });
        }
      } else if (n.error().err != EINTR) {
        spdlog::warn("receiver: {}", n.error().message());
      }
      continue;
    }
    if (hooks_.fast(**n)) continue;
    outstanding_.fetch_add(1);
    hooks_.slow(**n);
  }
}

HangupWatch::HangupWatch(boost::asio::io_context& io) : epoll_(::epoll_create1(EPOLL_CLOEXEC)), ready_(io) {
  if (!epoll_) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  ready_.assign(::fcntl(epoll_.get(), F_DUPFD_CLOEXEC, 0));
  arm();
}

HangupWatch::~HangupWatch() {
  boost::system::error_code ec;
  ready_.close(ec);
}

Result<void> HangupWatch::watch(int fd, std::function<void()> on_hangup) {
  // No EPOLLIN: epoll reports EPOLLHUP and EPOLLERR whatever it is asked for, and nothing else.
  epoll_event ev{};
  ev.events = 0;
  ev.data.fd = fd;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0)
    return sys_error("watch a listener for hang-up");
  watched_[fd] = std::move(on_hangup);
  return {};
}

void HangupWatch::unwatch(int fd) {
  if (watched_.erase(fd) > 0) ::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
}

void HangupWatch::arm() {
  ready_.async_wait(
      boost::asio::posix::stream_descriptor::wait_read, [this](const boost::system::error_code& ec) {
        if (ec) return;
        std::array<epoll_event, 64> events{};
        const int n = ::epoll_wait(epoll_.get(), events.data(), static_cast<int>(events.size()), 0);
        for (int i = 0; i < n; ++i) {
          const int fd = events[static_cast<std::size_t>(i)].data.fd;
          const auto it = watched_.find(fd);
          if (it == watched_.end()) continue;
          std::function<void()> callback = std::move(it->second);
          unwatch(fd);
          callback();
        }
        arm();
      });
}

}  // namespace sysvisor
