// Metrics in the Prometheus text exposition format (0.0.4), served over HTTP on an opt-in
// address (`serve --metrics-listen 127.0.0.1:9464`). The Recorder side runs on the loop for
// every decided call: after the first call of a (container, syscall, action) it allocates
// nothing. A container's series go away when its last session closes.
#pragma once

#include <array>
#include <chrono>
#include <cstdint>
#include <expected>
#include <functional>
#include <memory>
#include <mutex>
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

class Histogram {
 public:
  void observe(double seconds) noexcept;
  // Appends NAME_bucket{LABELS,le="..."} (cumulative), NAME_sum and NAME_count. `labels` is
  // `key="value",...` already escaped, or empty.
  void render(std::string& out, std::string_view name, std::string_view labels) const;
  [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
  // Observations in bucket i alone (not cumulative); index kLatencyBuckets.size() is +Inf.
  [[nodiscard]] std::uint64_t bucket(std::size_t i) const noexcept { return buckets_.at(i); }

 private:
  std::array<std::uint64_t, kLatencyBuckets.size() + 1> buckets_{};
  std::uint64_t count_ = 0;
  double sum_ = 0;
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
  void record(const std::string& container_id, int nr, policy::Action action,
              std::chrono::nanoseconds latency) override;
  void error(const std::string& container_id) override;
  // The container's last session closed: its series are dropped.
  void forget(const std::string& container_id);
  [[nodiscard]] std::string render(const Gauges& gauges) const;

 private:
  // Heterogeneous lookup: a call's container id is looked up without a copy.
  struct Hash {
    using is_transparent = void;
    std::size_t operator()(std::string_view s) const noexcept { return std::hash<std::string_view>{}(s); }
  };
  struct Series {
    // (nr + 1) << 3 | action -> count
    std::unordered_map<std::uint32_t, std::uint64_t> calls;
    std::uint64_t errors = 0;
  };
  Series& series(const std::string& container_id);

  // record() comes from the sessions' receiver threads as well as from the loop.
  mutable std::mutex m_;
  std::unordered_map<std::string, Series, Hash, std::equal_to<>> containers_;
  std::array<Histogram, 6> latency_{};  // by policy::Action
};

// Parses ADDRESS:PORT ("127.0.0.1:9464", "[::1]:9464"); the error says what is wrong.
struct ListenAddress {
  std::string address;
  std::uint16_t port = 0;
};
[[nodiscard]] std::expected<ListenAddress, std::string> parse_listen(std::string_view text);

// HTTP/1.1 on the daemon's loop: GET /metrics answers `body()`, anything else 404 (other
// methods 405); a malformed request closes the connection, and so does a client silent for
// `timeout`.
class HttpServer {
 public:
  struct Config {
    ListenAddress listen;
    std::chrono::milliseconds timeout{10000};
    std::size_t max_connections = 64;
  };
  // Binds and listens: throws std::runtime_error naming the address.
  HttpServer(boost::asio::io_context& io, Config config, std::function<std::string()> body);
  ~HttpServer();
  HttpServer(const HttpServer&) = delete;
  HttpServer& operator=(const HttpServer&) = delete;

  void start();
  void shutdown();
  [[nodiscard]] std::uint16_t port() const;  // the bound port (useful with port 0)

 private:
  class Impl;
  std::shared_ptr<Impl> impl_;
};

}  // namespace sysvisor::metrics
