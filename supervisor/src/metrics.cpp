#include "sysvisor/metrics.hpp"

#include <arpa/inet.h>
#include <grp.h>
#include <netinet/in.h>
#include <spdlog/spdlog.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <algorithm>
#include <boost/asio/basic_socket_acceptor.hpp>
#include <boost/asio/generic/stream_protocol.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <charconv>
#include <cmath>
#include <cstring>
#include <limits>
#include <map>
#include <optional>
#include <stdexcept>
#include <utility>
#include <vector>

#include "sysvisor/audit.hpp"
#include "sysvisor/listen.hpp"
#include "sysvisor/unique_fd.hpp"

namespace sysvisor::metrics {
namespace {

namespace beast = boost::beast;
namespace http = boost::beast::http;
using tcp = boost::asio::ip::tcp;

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
  buckets_[static_cast<std::size_t>(it - kLatencyBuckets.begin())].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(seconds, std::memory_order_relaxed);
}

std::uint64_t Histogram::count() const noexcept {
  std::uint64_t n = 0;
  for (const auto& b : buckets_) n += b.load(std::memory_order_relaxed);
  return n;
}

void Histogram::render(std::string& out, std::string_view name, std::string_view labels) const {
  const std::string prefix = labels.empty() ? std::string() : std::string(labels) + ",";
  std::uint64_t cumulative = 0;
  for (std::size_t i = 0; i <= kLatencyBuckets.size(); ++i) {
    cumulative += buckets_[i].load(std::memory_order_relaxed);
    const std::string le = i < kLatencyBuckets.size() ? format_value(kLatencyBuckets[i]) : "+Inf";
    out.append(name).append("_bucket{").append(prefix).append("le=\"").append(le).append("\"} ");
    out.append(std::to_string(cumulative)).append("\n");
  }
  const std::string braces = labels.empty() ? std::string() : "{" + std::string(labels) + "}";
  out.append(name).append("_sum").append(braces).append(" ");
  out.append(format_value(sum_.load(std::memory_order_relaxed))).append("\n");
  out.append(name)
      .append("_count")
      .append(braces)
      .append(" ")
      .append(std::to_string(cumulative))
      .append("\n");
}

Metrics::Metrics(std::size_t max_series) : max_series_(max_series) {}

bool Metrics::reserve_series() noexcept {
  std::size_t n = series_.load(std::memory_order_relaxed);
  do {
    if (n >= max_series_) return false;
  } while (!series_.compare_exchange_weak(n, n + 1, std::memory_order_relaxed));
  return true;
}

template <class F>
bool Metrics::with_container(const std::string& container_id, F&& f) {
  for (;;) {
    {
      const std::shared_lock lock(m_);
      if (auto it = containers_.find(container_id); it != containers_.end()) {
        f(*it->second);
        return true;
      }
    }
    // A new container (once per container): its errors series counts against the cap.
    const std::unique_lock lock(m_);
    if (containers_.contains(container_id)) continue;  // another thread added it meanwhile
    if (!reserve_series()) return false;
    containers_.emplace(container_id, std::make_shared<Container>());
  }
}

void Metrics::record(const std::string& container_id, int nr, policy::Action action,
                     std::chrono::nanoseconds latency) {
  const auto index = static_cast<std::size_t>(action);
  if (index < latency_.size()) {
    latency_[index].observe(std::chrono::duration<double>(latency).count());
  }
  bool counted = false;
  const bool found = with_container(container_id, [&](Container& c) {
    const std::scoped_lock lock(c.m);
    const std::uint32_t key = call_key(nr, action);
    if (auto it = c.calls.find(key); it != c.calls.end()) {
      ++it->second;
      counted = true;
    } else if (reserve_series()) {
      c.calls.emplace(key, 1);
      counted = true;
    }
  });
  if ((!found || !counted) && index < overflow_calls_.size()) {
    overflow_calls_[index].fetch_add(1, std::memory_order_relaxed);
  }
}

void Metrics::error(const std::string& container_id) {
  if (!with_container(container_id, [](Container& c) { c.errors.fetch_add(1, std::memory_order_relaxed); })) {
    overflow_errors_.fetch_add(1, std::memory_order_relaxed);
  }
}

void Metrics::set_owner(const std::string& container_id, uid_t owner) {
  (void)with_container(container_id,
                       [owner](Container& c) { c.owner.store(owner, std::memory_order_relaxed); });
}

void Metrics::forget(const std::string& container_id) {
  std::shared_ptr<Container> gone;
  {
    const std::unique_lock lock(m_);
    const auto it = containers_.find(container_id);
    if (it == containers_.end()) return;
    gone = std::move(it->second);
    containers_.erase(it);
  }
  // No record() can reach it any more: only a render's copy may still hold it.
  const std::scoped_lock lock(gone->m);
  series_.fetch_sub(1 + gone->calls.size(), std::memory_order_relaxed);
}

std::string Metrics::render(const Gauges& gauges) const {
  // A snapshot: the pointers under the shared lock, then each container's counts under its
  // own mutex, one at a time; the text is written with no lock held.
  std::vector<std::pair<std::string, std::shared_ptr<Container>>> containers;
  {
    const std::shared_lock lock(m_);
    containers.reserve(containers_.size());
    for (const auto& [id, c] : containers_) containers.emplace_back(id, c);
  }
  struct Snapshot {
    std::string id;  // escaped, with the owner label when known: `NAME",owner="UID`
    std::vector<std::pair<std::uint32_t, std::uint64_t>> calls;
    std::uint64_t errors = 0;
  };
  std::vector<Snapshot> sorted;
  sorted.reserve(containers.size());
  for (auto& [id, c] : containers) {
    Snapshot snap{escape_label_value(id), {}, c->errors.load(std::memory_order_relaxed)};
    if (const std::int64_t owner = c->owner.load(std::memory_order_relaxed); owner >= 0) {
      snap.id.append("\",owner=\"").append(std::to_string(owner));
    }
    {
      const std::scoped_lock lock(c->m);
      snap.calls.assign(c->calls.begin(), c->calls.end());
    }
    sorted.push_back(std::move(snap));
    if (sorted.size() == 1 && render_hook_) render_hook_();
  }
  if (sorted.empty() && render_hook_) render_hook_();
  containers.clear();
  std::ranges::sort(sorted, {}, &Snapshot::id);

  std::string out;
  help(out, "sysvisor_calls_total", "counter",
       "Trapped calls decided, by container (and its owner uid), syscall and action (a container's series "
       "go when its last process does).");
  for (auto& s : sorted) {
    std::ranges::sort(s.calls);
    for (const auto& [key, count] : s.calls) {
      const int nr = static_cast<int>(key >> 3) - 1;
      const auto action = static_cast<policy::Action>(key & 7);
      out.append("sysvisor_calls_total{container=\"").append(s.id).append("\",syscall=\"");
      out.append(nr < 0 ? std::string("unknown") : escape_label_value(policy::syscall_name(nr)));
      out.append("\",action=\"").append(policy::to_string(action)).append("\"} ");
      out.append(std::to_string(count)).append("\n");
    }
  }
  help(out, "sysvisor_errors_total", "counter",
       "Calls where the supervisor's machinery failed (not the caller's errno), by container.");
  for (const auto& s : sorted) {
    out.append("sysvisor_errors_total{container=\"").append(s.id).append("\"} ");
    out.append(std::to_string(s.errors)).append("\n");
  }
  help(out, "sysvisor_calls_overflow_total", "counter",
       "Trapped calls decided that got no series of their own in sysvisor_calls_total because "
       "sysvisor_series_limit was reached, by action.");
  for (std::size_t a = 0; a < kActions; ++a) {
    out.append("sysvisor_calls_overflow_total{action=\"")
        .append(policy::to_string(static_cast<policy::Action>(a)))
        .append("\"} ");
    out.append(std::to_string(overflow_calls_[a].load(std::memory_order_relaxed))).append("\n");
  }
  help(out, "sysvisor_errors_overflow_total", "counter",
       "Machinery failures of containers that got no series of their own (sysvisor_series_limit).");
  out.append("sysvisor_errors_overflow_total ")
      .append(std::to_string(overflow_errors_.load(std::memory_order_relaxed)))
      .append("\n");
  help(out, "sysvisor_series", "gauge",
       "Per-container series now (errors, and calls by syscall and action).");
  out.append("sysvisor_series ").append(std::to_string(series())).append("\n");
  help(out, "sysvisor_series_limit", "gauge", "The most per-container series kept at once.");
  out.append("sysvisor_series_limit ").append(std::to_string(max_series_)).append("\n");
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

namespace {

// unix:PATH[?mode=OCTAL][&group=GROUP]
std::expected<ListenAddress, std::string> parse_unix_listen(std::string_view text, const std::string& shown) {
  std::string_view rest = text.substr(5);
  std::string_view query;
  if (const auto q = rest.find('?'); q != std::string_view::npos) {
    query = rest.substr(q + 1);
    rest = rest.substr(0, q);
  }
  if (rest.empty() || rest.front() != '/') {
    return std::unexpected("metrics address " + shown + ": expected unix:/ABSOLUTE/PATH");
  }
  ListenAddress out;
  out.path = std::string(rest);
  std::optional<mode_t> mode;
  while (!query.empty()) {
    const auto amp = query.find('&');
    const std::string_view item = query.substr(0, amp);
    query = amp == std::string_view::npos ? std::string_view() : query.substr(amp + 1);
    const auto eq = item.find('=');
    const std::string_view key = item.substr(0, eq);
    const std::string_view value = eq == std::string_view::npos ? std::string_view() : item.substr(eq + 1);
    if (key == "mode") {
      unsigned m = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), m, 8);
      if (value.empty() || ec != std::errc{} || ptr != value.data() + value.size() || m > 0777) {
        return std::unexpected("metrics address " + shown + ": mode must be octal such as 0600 or 0660");
      }
      mode = static_cast<mode_t>(m);
    } else if (key == "group") {
      unsigned gid = 0;
      const auto [ptr, ec] = std::from_chars(value.data(), value.data() + value.size(), gid);
      if (!value.empty() && ec == std::errc{} && ptr == value.data() + value.size()) {
        out.group = static_cast<gid_t>(gid);
      } else {
        const std::string name(value);
        group buf{};
        group* found = nullptr;
        std::vector<char> scratch(16384);
        if (name.empty() || ::getgrnam_r(name.c_str(), &buf, scratch.data(), scratch.size(), &found) != 0 ||
            found == nullptr) {
          return std::unexpected("metrics address " + shown + ": no group `" + name + "`");
        }
        out.group = found->gr_gid;
      }
    } else {
      return std::unexpected("metrics address " + shown + ": unknown option `" + std::string(key) +
                             "` (mode=, group=)");
    }
  }
  out.mode = mode.value_or(out.group ? 0660 : 0600);
  return out;
}

}  // namespace

std::expected<ListenAddress, std::string> parse_listen(std::string_view text) {
  const std::string shown = "`" + std::string(text) + "`";
  if (text.starts_with("unix:")) return parse_unix_listen(text, shown);
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
      return std::unexpected("metrics address " + shown +
                             ": expected ADDRESS:PORT such as 127.0.0.1:9464, or unix:PATH");
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

namespace {

using stream_protocol = boost::asio::generic::stream_protocol;

UniqueFd bind_tcp(const ListenAddress& listen) {
  const std::string where = listen.address + ":" + std::to_string(listen.port);
  boost::system::error_code ec;
  const auto address = boost::asio::ip::make_address(listen.address, ec);
  if (ec) throw std::runtime_error("metrics address `" + where + "`: " + ec.message());
  const tcp::endpoint endpoint(address, listen.port);
  const auto fail = [&](const char* what) {
    return std::runtime_error(std::string("metrics: ") + what + " `" + where + "`: " + std::strerror(errno));
  };
  UniqueFd sock(::socket(endpoint.protocol().family(), SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!sock) throw fail("open a socket for");
  const int one = 1;
  if (::setsockopt(sock.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0)
    throw fail("set SO_REUSEADDR on");
  if (::bind(sock.get(), endpoint.data(), static_cast<socklen_t>(endpoint.size())) != 0) throw fail("bind");
  if (::listen(sock.get(), SOMAXCONN) != 0) throw fail("listen on");
  return sock;
}

}  // namespace

class HttpServer::Impl : public std::enable_shared_from_this<Impl> {
 public:
  Impl(boost::asio::io_context& io, Config config, std::function<std::string()> body)
      : config_(std::move(config)), body_(std::move(body)), acceptor_(io), retry_(io) {
    UniqueFd sock;
    int family = AF_UNIX;
    if (config_.listen.is_unix()) {
      sock = listen_unix(config_.listen.path, SOCK_STREAM, config_.listen.mode, config_.listen.group);
      struct stat st {};
      if (::stat(config_.listen.path.c_str(), &st) == 0) bound_ = std::pair{st.st_dev, st.st_ino};
    } else {
      sock = bind_tcp(config_.listen);
      family = config_.listen.address.find(':') == std::string::npos ? AF_INET : AF_INET6;
    }
    boost::system::error_code ec;
    acceptor_.assign(stream_protocol(family, 0), sock.get(), ec);
    if (ec) throw std::runtime_error("metrics: take over the listening socket: " + ec.message());
    (void)sock.release();
  }

  void accept_next() {
    if (stopping_) return;
    acceptor_.async_accept(
        [self = shared_from_this()](const boost::system::error_code& ec, stream_protocol::socket sock) {
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
          if (self->open_.size() >= self->config_.max_connections) self->evict();
          if (self->open_.size() < self->config_.max_connections) {
            auto conn = std::make_shared<Connection>(self, std::move(sock), self->next_id_++);
            self->open_.emplace(conn->id(), conn);
            conn->start();
          } else {
            boost::system::error_code ignored;
            sock.close(ignored);
          }
          self->accept_next();
        });
  }

  void shutdown() {
    if (stopping_) return;
    stopping_ = true;
    boost::system::error_code ec;
    acceptor_.close(ec);
    retry_.cancel();
    // Our socket file goes with us, unless someone replaced it meanwhile.
    struct stat st {};
    if (bound_ && ::stat(config_.listen.path.c_str(), &st) == 0 &&
        std::pair{st.st_dev, st.st_ino} == *bound_) {
      ::unlink(config_.listen.path.c_str());
    }
  }

  [[nodiscard]] std::uint16_t port() const {
    boost::system::error_code ec;
    const auto endpoint = acceptor_.local_endpoint(ec);
    if (ec) return 0;
    if (endpoint.data()->sa_family == AF_INET) {
      return ntohs(reinterpret_cast<const sockaddr_in*>(endpoint.data())->sin_port);
    }
    if (endpoint.data()->sa_family == AF_INET6) {
      return ntohs(reinterpret_cast<const sockaddr_in6*>(endpoint.data())->sin6_port);
    }
    return 0;
  }

 private:
  class Connection;

  // At the limit: the oldest connection that waits for a request goes (an idle keep-alive or a
  // slow sender), else the oldest of all (a reader too slow to take its answer).
  void evict() {
    if (open_.empty()) return;
    auto victim = open_.begin();
    for (auto it = open_.begin(); it != open_.end(); ++it) {
      if (auto conn = it->second.lock(); conn && conn->waiting()) {
        victim = it;
        break;
      }
    }
    if (auto conn = victim->second.lock()) {
      conn->close();  // erases itself from open_
    } else {
      open_.erase(victim);
    }
  }

  class Connection : public std::enable_shared_from_this<Connection> {
   public:
    Connection(std::shared_ptr<Impl> server, stream_protocol::socket sock, std::uint64_t id)
        : server_(std::move(server)), stream_(std::move(sock)), id_(id) {}
    ~Connection() { server_->open_.erase(id_); }  // closed or not (a loop torn down)
    Connection(const Connection&) = delete;
    Connection& operator=(const Connection&) = delete;

    void start() { read(); }
    [[nodiscard]] std::uint64_t id() const { return id_; }
    [[nodiscard]] bool waiting() const { return waiting_; }

    void close() {
      if (closed_) return;
      closed_ = true;
      server_->open_.erase(id_);
      beast::error_code ec;
      stream_.socket().shutdown(stream_protocol::socket::shutdown_both, ec);
      stream_.close();
    }

   private:
    void read() {
      parser_.emplace();
      parser_->header_limit(8 * 1024);
      parser_->body_limit(0);
      // A keep-alive connection between requests holds a slot: it gets less time.
      stream_.expires_after(requests_ == 0
                                ? server_->config_.timeout
                                : std::min(server_->config_.timeout, server_->config_.idle_timeout));
      waiting_ = true;
      http::async_read(stream_, buffer_, *parser_,
                       [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
                         self->waiting_ = false;
                         // Malformed, too large, timed out or gone: close without an answer.
                         if (ec || self->closed_ || self->server_->stopping_) return self->close();
                         self->respond(self->parser_->get());
                       });
    }

    void respond(const http::request<http::empty_body>& req) {
      ++requests_;
      res_ = {};
      res_.version(req.version());
      // Pipelined or not, a connection gets at most max_requests answers.
      res_.keep_alive(req.keep_alive() && requests_ < server_->config_.max_requests);
      res_.set(http::field::server, "sysvisor");
      const std::string_view target(req.target().data(), req.target().size());
      const bool metrics_path = target == "/metrics" || target.starts_with("/metrics?");
      // HEAD is GET without the body (RFC 9110): its headers, Content-Length included.
      const bool head = req.method() == http::verb::head;
      if (req.method() != http::verb::get && !head) {
        res_.result(http::status::method_not_allowed);
        res_.set(http::field::allow, "GET, HEAD");
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
      if (head) res_.body().clear();  // Content-Length stays the GET's
      stream_.expires_after(server_->config_.timeout);
      http::async_write(stream_, res_, [self = shared_from_this()](const beast::error_code& ec, std::size_t) {
        if (ec || self->closed_ || !self->res_.keep_alive() || self->server_->stopping_) return self->close();
        self->read();
      });
    }

    std::shared_ptr<Impl> server_;
    beast::basic_stream<stream_protocol> stream_;
    std::uint64_t id_;
    beast::flat_buffer buffer_{16 * 1024};
    std::optional<http::request_parser<http::empty_body>> parser_;
    http::response<http::string_body> res_;
    std::size_t requests_ = 0;
    bool waiting_ = false;
    bool closed_ = false;
  };

  Config config_;
  std::function<std::string()> body_;
  boost::asio::basic_socket_acceptor<stream_protocol> acceptor_;
  boost::asio::steady_timer retry_;
  // Open connections by accept order (oldest first).
  std::map<std::uint64_t, std::weak_ptr<Connection>> open_;
  std::uint64_t next_id_ = 0;
  std::optional<std::pair<dev_t, ino_t>> bound_;  // the unix socket we created
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
