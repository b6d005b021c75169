// Metrics in the Prometheus text exposition format (0.0.4), served over HTTP on an opt-in
// address: `serve --metrics-listen 127.0.0.1:9464`, or a unix socket that only root (or a
// group) may connect to, `--metrics-listen unix:/run/sysvisor/metrics.sock`. A reader learns
// every supervised container's id and its per-syscall counts.
//
// The Recorder side runs for every decided call, on the loop and on the receiver threads, and
// must cost supervision nothing while a scrape renders: the counters are atomics or sit behind
// a per-container mutex that render() holds only to copy that container's few counts; the map
// of containers is behind a shared mutex that render() holds (shared) only to copy its
// pointers. After the first call of a (container, syscall, action) recording allocates nothing.
// At most `max_series` series exist: beyond, calls are counted by action in
// sysvisor_calls_overflow_total. A container's series go away when its last session closes.
#pragma once

#include <sys/types.h>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <expected>
#include <filesystem>
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <shared_mutex>
#include <string>
#include <string_view>
#include <unordered_map>

#include "sysvisor/policy.hpp"
#include "sysvisor/stats.hpp"

namespace boost::asio {
class io_context;
}

namespace sysvisor::metrics {

// Upper bounds (seconds) of the latency histogram's buckets; +Inf is implied.
inline constexpr std::array<double, 12> kLatencyBuckets{1e-6, 2.5e-6, 5e-6, 1e-5, 2.5e-5, 5e-5,
                                                        1e-4, 2.5e-4, 1e-3, 1e-2, 0.1,    1.0};

// A label value as the text format wants it: `\`, `"` and newline escaped; bytes that are not
// UTF-8 become U+FFFD (container ids come from launchers: anything may be in them).
[[nodiscard]] std::string escape_label_value(std::string_view value);

// A sample value: integers exactly, others with enough digits to read back; +Inf, NaN.
[[nodiscard]] std::string format_value(double value);

// Lock-free: observe() may run on several threads while render() reads.
class Histogram {
 public:
  void observe(double seconds) noexcept;
  // Appends NAME_bucket{LABELS,le="..."} (cumulative), NAME_sum and NAME_count. `labels` is
  // `key="value",...` already escaped, or empty.
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  [[nodiscard]] std::uint64_t count() const noexcept;
  // Observations in bucket i alone (not cumulative); index kLatencyBuckets.size() is +Inf.
  [[nodiscard]] std::uint64_t bucket(std::size_t i) const noexcept {
    return buckets_.at(i).load(std::memory_order_relaxed);
  }

 private:
  // The count is the sum of the buckets, so that a render between two observations still
  // has _count equal to the +Inf bucket.
  std::array<std::atomic<std::uint64_t>, kLatencyBuckets.size() + 1> buckets_{};
  std::atomic<double> sum_{0};
};

// What the daemon knows beyond the decided calls, sampled at each scrape.
struct Gauges {
  std::size_t containers = 0;
  std::uint64_t notifications_total = 0;
  double uptime_seconds = 0;
  std::uint64_t policy_generation = 0;
};

class Metrics final : public stats::Recorder {
 public:
  static constexpr std::size_t kDefaultMaxSeries = 10000;
  // `max_series` counts each container's errors series and each (container, syscall, action).
  explicit Metrics(std::size_t max_series = kDefaultMaxSeries);

  void record(const std::string& container_id, int nr, policy::Action action,
              std::chrono::nanoseconds latency) override;
  void error(const std::string& container_id) override;
  // The container's owner uid, shown as the label owner="UID" on its series (a series of a
  // container whose owner was never set has no owner label). Creates the container's entry if
  // the cap allows.
  void set_owner(const std::string& container_id, uid_t owner);
  // The container's last session closed: its series are dropped.
  void forget(const std::string& container_id);
  [[nodiscard]] std::string render(const Gauges& gauges) const;
  [[nodiscard]] std::size_t series() const noexcept { return series_.load(std::memory_order_relaxed); }

  // For tests: called by every render() once it has copied the first container's counts (or
  // found none), holding no lock that record(), error() or forget() take.
  void set_render_hook(std::function<void()> hook) { render_hook_ = std::move(hook); }

 private:
  // Heterogeneous lookup: a call's container id is looked up without a copy.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Container {
    // Held by record() for one increment and by render() for one copy of `calls`.
    std::mutex m;
    std::unordered_map<std::uint32_t, std::uint64_t> calls;  // (nr + 1) << 3 | action -> count
    std::atomic<std::uint64_t> errors{0};
    std::atomic<std::int64_t> owner{-1};  // -1: not set
  };
  static constexpr std::size_t kActions = 6;  // policy::Action

  // Reserves one series against the cap; false when the cap is reached.
  bool reserve_series() noexcept;
  // Runs `f(Container&)` with the container looked up (created if the cap allows) under the
  // shared lock; false when it could not be created.
  template <class F>
  bool with_container(const std::string& container_id, F&& f);

  const std::size_t max_series_;
  std::atomic<std::size_t> series_{0};
  // Shared: record(), error(), render()'s copy of the pointers. Exclusive: a new container,
  // forget().
  mutable std::shared_mutex m_;
  std::unordered_map<std::string, std::shared_ptr<Container>, Hash, std::equal_to<>> containers_;
  std::array<Histogram, kActions> latency_{};
  std::array<std::atomic<std::uint64_t>, kActions> overflow_calls_{};  // by action
  std::atomic<std::uint64_t> overflow_errors_{0};
  std::function<void()> render_hook_;
};

// Parses ADDRESS:PORT ("127.0.0.1:9464", "[::1]:9464") or unix:PATH[?mode=OCTAL][&group=GROUP]
// ("unix:/run/sysvisor/metrics.sock": mode 0600, root only; with a group the mode defaults to
// 0660). PATH is absolute; GROUP a name or a number. The error says what is wrong.
struct ListenAddress {
  std::string address;  // an IP address; empty for a unix socket
  std::uint16_t port = 0;
  std::filesystem::path path{};  // the unix socket; empty for TCP
  mode_t mode = 0600;
  std::optional<gid_t> group{};
  [[nodiscard]] bool is_unix() const { return !path.empty(); }
};
[[nodiscard]] std::expected<ListenAddress, std::string> parse_listen(std::string_view text);

// HTTP/1.1 on the daemon's loop: GET /metrics answers `body()`, anything else 404 (other
// methods 405); a malformed request closes the connection, and so does a client silent for
// `timeout` (a first request) or `idle_timeout` (a keep-alive connection between requests).
// A connection is closed after `max_requests` answers (pipelined or not). At most
// `max_connections` are open: a new one closes the oldest that waits for a request (or, if
// none does, the oldest), so idle or slow clients cannot lock a scraper out.
class HttpServer {
 public:
  struct Config {
    ListenAddress listen;
    std::chrono::milliseconds timeout{10000};
    std::size_t max_connections = 64;
    std::chrono::milliseconds idle_timeout{2000};
    std::size_t max_requests = 16;
  };
  // Binds and listens: throws std::runtime_error naming the address. A unix socket is removed
  // again by shutdown() (if it is still the one bound).
  HttpServer(boost::asio::io_context& io, Config config, std::function<std::string()> body);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void start();
  void shutdown();
  [[nodiscard]] std::uint16_t port() const;  // the bound port (useful with port 0); 0 for unix

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sysvisor::metrics
