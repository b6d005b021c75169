#include "sysvisor/metrics.hpp"

#include <spdlog/spdlog.h>

#include <algorithm>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cmath>
#include <limits>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "sysvisor/audit.hpp"

namespace sysvisor::metrics {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

constexpr std::size_t kActions = 6;

std::uint32_t call_key(int nr, policy::Action action) {
  return (static_cast<std::uint32_t>(nr + 1) << 3) | static_cast<std::uint32_t>(action);
}

// The length of the UTF-8 sequence at `s[i]`, 0 when it is not one (overlong forms and
// surrogates included, as the Unicode standard's table 3-7 says).
std::size_t utf8_length(std::string_view s, std::size_t i) {
  const auto at = [&](std::size_t k) { return static_cast<unsigned char>(s[k]); };
  const unsigned char b = at(i);
  std::size_t n = 0;
  unsigned char lo = 0x80;
  unsigned char hi = 0xbf;
  if (b >= 0xc2 && b <= 0xdf) {
    n = 2;
  } else if (b >= 0xe0 && b <= 0xef) {
    n = 3;
    if (b == 0xe0) lo = 0xa0;
    if (b == 0xed) hi = 0x9f;
  } else if (b >= 0xf0 && b <= 0xf4) {
    n = 4;
    if (b == 0xf0) lo = 0x90;
    if (b == 0xf4) hi = 0x8f;
  } else {
    return 0;
  }
  if (i + n > s.size()) return 0;
  if (at(i + 1) < lo || at(i + 1) > hi) return 0;
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xbf) return 0;
  }
  return n;
}

void help(std::string& out, std::string_view name, std::string_view type, std::string_view text) {
  out.append("# HELP ").append(name).append(" ").append(text).append("\n");
  out.append("# TYPE ").append(name).append(" ").append(type).append("\n");
}

}  // namespace

std::string escape_label_value(std::string_view value) {
  std::string out;
  out.reserve(value.size());
  for (std::size_t i = 0; i < value.size();) {
    const auto c = static_cast<unsigned char>(value[i]);
    if (c < 0x80) {
      if (c == '\\') {
        out += "\\\\";
      } else if (c == '"') {
        out += "\\\"";
      } else if (c == '\n') {
        out += "\\n";
      } else {
        out += static_cast<char>(c);
      }
      ++i;
      continue;
    }
    if (const std::size_t n = utf8_length(value, i); n != 0) {
      out.append(value.substr(i, n));
      i += n;
    } else {
      out += "\xef\xbf\xbd";  // U+FFFD
      ++i;
    }
  }
  return out;
}

std::string format_value(double value) {
  if (std::isnan(value)) return "NaN";
  if (std::isinf(value)) return value > 0 ? "+Inf" : "-Inf";
  std::array<char, 64> buf{};
  if (std::trunc(value) == value && std::fabs(value) < 9007199254740992.0) {
    const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), static_cast<std::int64_t>(value));
    return std::string(buf.data(), r.ptr);
  }
  const auto r = std::to_chars(buf.data(), buf.data() + buf.size(), value);
  return std::string(buf.data(), r.ptr);
}

void Histogram::observe(double seconds) noexcept {
  // `le` is inclusive: a value equal to a bound counts in that bucket.
  const auto it = std::lower_bound(kLatencyBuckets.begin(), kLatencyBuckets.end(), seconds);
  ++buckets_[static_cast<std::size_t>(it - kLatencyBuckets.begin())];
  ++count_;
  sum_ += seconds;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
    cumulative += buckets_[i];
    const std::string le = i < kLatencyBuckets.size() ? format_value(kLatencyBuckets[i]) : "+Inf";
    out.append(name).append("_bucket{").append(prefix).append("le=\"").append(le).append("\"} ");
    out.append(std::to_string(cumulative)).append("\n");
  }
  const std::string braces = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
  out.append(name).append("_sum").append(braces).append(" ").append(format_value(sum_)).append("\n");
  out.append(name).append("_count").append(braces).append(" ").append(std::to_string(count_)).append("\n");
}

Metrics::Series& Metrics::series(const std::string& container_id) {
  if (auto it = containers_.find(container_id); it != containers_.end()) return it->second;
  return containers_.emplace(container_id, Series{}).first->second;
}

void Metrics::record(const std::string& container_id, int nr, policy::Action action,
                     std::chrono::nanoseconds latency) {
  const std::scoped_lock lock(m_);
  ++series(container_id).calls[call_key(nr, action)];
  const auto index = static_cast<std::size_t>(action);
  if (index < latency_.size()) {
    latency_[index].observe(std::chrono::duration<double>(latency).count());
  }
}

void Metrics::error(const std::string& container_id) {
  const std::scoped_lock lock(m_);
  ++series(container_id).errors;
}

void Metrics::forget(const std::string& container_id) {
  const std::scoped_lock lock(m_);
  if (auto it = containers_.find(container_id); it != containers_.end()) containers_.erase(it);
}

std::string Metrics::render(const Gauges& gauges) const {
  const std::scoped_lock lock(m_);
  std::vector<std::pair<std::string, const Series*>> sorted;
  sorted.reserve(containers_.size());
  for (const auto& [id, s] : containers_) sorted.emplace_back(escape_label_value(id), &s);
  std::ranges::sort(sorted, {}, &std::pair<std::string, const Series*>::first);

  std::string out;
  help(out, "sysvisor_calls_total", "counter",
       "Trapped calls decided, by container, syscall and action (a container's series go when its last "
       "process does).");
  for (const auto& [id, s] : sorted) {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> calls(s->calls.begin(), s->calls.end());
    std::ranges::sort(calls);
    for (const auto& [key, count] : calls) {
      const int nr = static_cast<int>(key >> 3) - 1;
      const auto action = static_cast<policy::Action>(key & 7);
      out.append("sysvisor_calls_total{container=\"").append(id).append("\",syscall=\"");
      out.append(nr < 0 ? std::string("unknown") : escape_label_value(policy::syscall_name(nr)));
      out.append("\",action=\"").append(policy::to_string(action)).append("\"} ");
      out.append(std::to_string(count)).append("\n");
    }
  }
  help(out, "sysvisor_errors_total", "counter",
       "Calls where the supervisor's machinery failed (not the caller's errno), by container.");
  for (const auto& [id, s] : sorted) {
    out.append("sysvisor_errors_total{container=\"").append(id).append("\"} ");
    out.append(std::to_string(s->errors)).append("\n");
  }
  help(out, "sysvisor_call_latency_seconds", "histogram",
       "From receiving a trapped call to answering it, by action.");
  for (std::size_t a = 0; a < kActions; ++a) {
    const std::string labels =
        std::string("action=\"") + policy::to_string(static_cast<policy::Action>(a)) + "\"";
    latency_[a].render(out, "sysvisor_call_latency_seconds", labels);
  }
  help(out, "sysvisor_containers", "gauge", "Containers supervised now.");
  out.append("sysvisor_containers ").append(std::to_string(gauges.containers)).append("\n");
  help(out, "sysvisor_notifications_total", "counter", "Trapped calls received since the start.");
  out.append("sysvisor_notifications_total ").append(std::to_string(gauges.notifications_total)).append("\n");
  const audit::Health audit_health = audit::health();
  help(out, "sysvisor_audit_write_failures_total", "counter",
       "Audit records that could not be written (each one lost) since the start.");
  out.append("sysvisor_audit_write_failures_total ")
      .append(std::to_string(audit_health.write_failures))
      .append("\n");
  help(out, "sysvisor_uptime_seconds", "gauge", "Seconds since the daemon started.");
  out.append("sysvisor_uptime_seconds ").append(format_value(gauges.uptime_seconds)).append("\n");
  help(out, "sysvisor_policy_set_generation", "gauge",
       "Successful reloads of the policy set since the start.");
  out.append("sysvisor_policy_set_generation ").append(std::to_string(gauges.policy_generation)).append("\n");
  return out;
}

std::expected<ListenAddress, std::string> parse_listen(std::string_view text) {
  const std::string shown = "`" + std::string(text) + "`";
  std::string_view host;
  std::string_view port;
  if (!text.empty() && text.front() == '[') {
    const auto close = text.find(']');
    if (close == std::string_view::npos || close + 1 >= text.size() || text[close + 1] != ':') {
      return std::unexpected("metrics address " + shown + ": expected [IPV6]:PORT");
    }
    host = text.substr(1, close - 1);
    port = text.substr(close + 2);
  } else {
    const auto colon = text.rfind(':');
    if (colon == std::string_view::npos || text.find(':') != colon) {
      return std::unexpected("metrics address " + shown + ": expected ADDRESS:PORT such as 127.0.0.1:9464");
    }
    host = text.substr(0, colon);
    port = text.substr(colon + 1);
  }
  boost::system::error_code ec;
  (void)boost::asio::ip::make_address(std::string(host), ec);
  if (host.empty() || ec) {
    return std::unexpected("metrics address " + shown + ": `" + std::string(host) +
                           "` is not an IP address (such as 127.0.0.1 or [::1])");
  }
  unsigned value = 0;
  const auto [ptr, perr] = std::from_chars(port.data(), port.data() + port.size(), value);
  if (port.empty() || perr != std::errc{} || ptr != port.data() + port.size() || value > 65535) {
    return std::unexpected("metrics address " + shown + ": the port must be a number from 0 to 65535");
  }
  return ListenAddress{std::string(host), static_cast<std::uint16_t>(value)};
}

// ---- HTTP ----

class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(boost::asio::io_context& io, Config config, std::function<std::string()> body)
      : config_(std::move(config)), body_(std::move(body)), acceptor_(io), retry_(io) {
    const std::string where = config_.listen.address + ":" + std::to_string(config_.listen.port);
    boost::system::error_code ec;
    const auto address = boost::asio::ip::make_address(config_.listen.address, ec);
    if (ec) throw std::runtime_error("metrics address `" + where + "`: " + ec.message());
    const tcp::endpoint endpoint(address, config_.listen.port);
    const auto check = [&](const char* what) {
      if (ec) throw std::runtime_error(std::string("metrics: ") + what + " `" + where + "`: " + ec.message());
    };
    acceptor_.open(endpoint.protocol(), ec);
    check("open a socket for");
    acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
    check("set SO_REUSEADDR on");
    acceptor_.bind(endpoint, ec);
    check("bind");
    acceptor_.listen(boost::asio::socket_base::max_listen_connections, ec);
    check("listen on");
  }

  void accept_next() {
    if (stopping_) return;
    acceptor_.async_accept(
        [self = shared_from_this()](const boost::system::error_code& ec, tcp::socket sock) {
          if (self->stopping_) return;
          if (ec) {
            if (ec == boost::asio::error::operation_aborted) return;
            // EMFILE and the like: accepting again at once would spin; wait a little.
            spdlog::warn("metrics: accept: {}", ec.message());
            self->retry_.expires_after(std::chrono::milliseconds(100));
            self->retry_.async_wait([self](const boost::system::error_code& wait_ec) {
              if (!wait_ec && !self->stopping_) self->accept_next();
            });
            return;
          }
          if (self->live_ >= self->config_.max_connections) {
            boost::system::error_code ignored;
            sock.close(ignored);
          } else {
            std::make_shared<Connection>(self, std::move(sock))->start();
          }
          self->accept_next();
        });
  }

  void shutdown() {
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
  }

  [[nodiscard]] std::uint16_t port() const {
    boost::system::error_code ec;
    return acceptor_.local_endpoint(ec).port();
  }

 private:
  class Connection : public std::enable_shared_from_this<Connection> {
   public:
    Connection(std::shared_ptr<Impl> server, tcp::socket sock)
        : server_(std::move(server)), stream_(std::move(sock)) {
      ++server_->live_;
    }
    ~Connection() { --server_->live_; }
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start() { read(); }

   private:
    void read() {
      parser_.emplace();
      parser_->header_limit(8 * 1024);
      parser_->body_limit(0);
      stream_.expires_after(server_->config_.timeout);
      http::async_read(stream_, buffer_, *parser_,
                       [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                         // Malformed, too large, timed out or gone: close without an answer.
                         if (ec || self->server_->stopping_) return self->close();
                         self->respond(self->parser_->get());
                       });
    }

    void respond(const http::request<http::empty_body>& req) {
      res_ = {};
      res_.version(req.version());
      res_.keep_alive(req.keep_alive());
      res_.set(http::field::server, "sysvisor");
      const std::string_view target(req.target().data(), req.target().size());
      const bool metrics_path = target == "/metrics" || target.starts_with("/metrics?");
      if (req.method() != http::verb::get) {
        res_.result(http::status::method_not_allowed);
        res_.set(http::field::allow, "GET");
        res_.set(http::field::content_type, "text/plain; charset=utf-8");
        res_.body() = "only GET /metrics\n";
      } else if (!metrics_path) {
        res_.result(http::status::not_found);
        res_.set(http::field::content_type, "text/plain; charset=utf-8");
        res_.body() = "not found: metrics are at /metrics\n";
      } else {
        res_.result(http::status::ok);
        res_.set(http::field::content_type, "text/plain; version=0.0.4; charset=utf-8");
        res_.body() = server_->body_();
      }
      res_.prepare_payload();
      stream_.expires_after(server_->config_.timeout);
      http::async_write(stream_, res_, [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
        if (ec || !self->res_.keep_alive() || self->server_->stopping_) return self->close();
        self->read();
      });
    }

    void close() {
      beast::error_code ec;
      stream_.socket().shutdown(tcp::socket::shutdown_both, ec);
      stream_.close();
    }

    std::shared_ptr<Impl> server_;
    beast::tcp_stream stream_;
    beast::flat_buffer buffer_{16 * 1024};
    std::optional<http::request_parser<http::empty_body>> parser_;
    http::response<http::string_body> res_;
  };

  Config config_;
  std::function<std::string()> body_;
  tcp::acceptor acceptor_;
  boost::asio::steady_timer retry_;
  std::size_t live_ = 0;
  bool stopping_ = false;
};

HttpServer::HttpServer(boost::asio::io_context& io, Config config, std::function<std::string()> body)
    : impl_(std::make_shared<Impl>(io, std::move(config), std::move(body))) {}

HttpServer::~HttpServer() {
  impl_->shutdown();
}

void HttpServer::start() {
  impl_->accept_next();
}

void HttpServer::shutdown() {
  impl_->shutdown();
}

std::uint16_t HttpServer::port() const {
  return impl_->port();
}

}  // namespace sysvisor::metrics
