// The pure parts of metrics (text format, histogram, recorder) and of the control socket
// (who may ask, the rate window, grouping sessions into containers).
#include "sysvisor/metrics.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <boost/asio/io_context.hpp>
#include <cerrno>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <string>
#include <thread>
#include <vector>

#include "sysvisor/control.hpp"

namespace sysvisor {
namespace {

using namespace std::chrono_literals;

TEST(Metrics, LabelValuesAreEscaped) {
  EXPECT_EQ(metrics::escape_label_value("web-1"), "web-1");
  EXPECT_EQ(metrics::escape_label_value("a\"b\\c\nd"), "a\\\"b\\\\c\\nd");
  // A launcher's id that tries to close the label and add a series of its own stays a value.
  EXPECT_EQ(metrics::escape_label_value("x\"} 1\nsysvisor_containers 99"),
            "x\\\"} 1\\nsysvisor_containers 99");
}

TEST(Metrics, InvalidUtf8BecomesReplacementCharacter) {
  EXPECT_EQ(metrics::escape_label_value("caf\xc3\xa9"), "caf\xc3\xa9");  // valid: kept
  EXPECT_EQ(metrics::escape_label_value("a\xff"
                                        "b"),
            "a\xef\xbf\xbd"
            "b");
  EXPECT_EQ(metrics::escape_label_value("\xc0\xaf"), "\xef\xbf\xbd\xef\xbf\xbd");  // overlong '/'
  EXPECT_EQ(metrics::escape_label_value("\xed\xa0\x80"),
            "\xef\xbf\xbd\xef\xbf\xbd\xef\xbf\xbd");                               // a surrogate
  EXPECT_EQ(metrics::escape_label_value("\xe2\x82"), "\xef\xbf\xbd\xef\xbf\xbd");  // cut short
}

TEST(Metrics, Values) {
  EXPECT_EQ(metrics::format_value(3), "3");
  EXPECT_EQ(metrics::format_value(0.25), "0.25");
  EXPECT_EQ(metrics::format_value(2.5e-6), "2.5e-06");
  EXPECT_EQ(metrics::format_value(1.0 / 0.0), "+Inf");
}

TEST(Metrics, HistogramBucketsAreInclusiveAndCumulative) {
  metrics::Histogram h;
  h.observe(1e-6);    // exactly the first bound: le="1e-06"
  h.observe(1.5e-6);  // second bucket
  h.observe(0.5);     // le="1"
  h.observe(2.0);     // only +Inf
  EXPECT_EQ(h.bucket(0), 1u);
  EXPECT_EQ(h.bucket(1), 1u);
  EXPECT_EQ(h.bucket(metrics::kLatencyBuckets.size() - 1), 1u);
  EXPECT_EQ(h.bucket(metrics::kLatencyBuckets.size()), 1u);
  EXPECT_EQ(h.count(), 4u);
  std::string out;
  h.render(out, "x_seconds", "action=\"deny\"");
  EXPECT_NE(out.find("x_seconds_bucket{action=\"deny\",le=\"1e-06\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{action=\"deny\",le=\"2.5e-06\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{action=\"deny\",le=\"0.1\"} 2\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{action=\"deny\",le=\"1\"} 3\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_bucket{action=\"deny\",le=\"+Inf\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_count{action=\"deny\"} 4\n"), std::string::npos) << out;
  EXPECT_NE(out.find("x_seconds_sum{action=\"deny\"} 2.5000025\n"), std::string::npos) << out;
}

TEST(Metrics, RecorderCountsByContainerSyscallAndAction) {
  metrics::Metrics m;
  const int mknod = policy::syscall_from_name("mknod").value();
  m.record("web-1", mknod, policy::Action::Emulate, 3us);
  m.record("web-1", mknod, policy::Action::Emulate, 3us);
  m.record("web-1", mknod, policy::Action::Deny, 40us);
  m.record("db\"2", -1, policy::Action::Kill, 1ms);
  m.error("web-1");
  const std::string out = m.render({2, 10, 1.5, 3});
  EXPECT_NE(out.find("sysvisor_calls_total{container=\"web-1\",syscall=\"mknod\",action=\"emulate\"} 2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("sysvisor_calls_total{container=\"web-1\",syscall=\"mknod\",action=\"deny\"} 1\n"),
            std::string::npos);
  EXPECT_NE(out.find("sysvisor_calls_total{container=\"db\\\"2\",syscall=\"unknown\",action=\"kill\"} 1\n"),
            std::string::npos);
  EXPECT_NE(out.find("sysvisor_errors_total{container=\"web-1\"} 1\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_errors_total{container=\"db\\\"2\"} 0\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_call_latency_seconds_count{action=\"emulate\"} 2\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_call_latency_seconds_bucket{action=\"emulate\",le=\"2.5e-06\"} 0\n"),
            std::string::npos);
  EXPECT_NE(out.find("sysvisor_call_latency_seconds_bucket{action=\"emulate\",le=\"5e-06\"} 2\n"),
            std::string::npos);
  EXPECT_NE(out.find("# TYPE sysvisor_call_latency_seconds histogram\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_containers 2\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_notifications_total 10\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_uptime_seconds 1.5\n"), std::string::npos);
  EXPECT_NE(out.find("sysvisor_policy_set_generation 3\n"), std::string::npos);

  m.forget("web-1");
  const std::string after = m.render({1, 10, 2, 3});
  EXPECT_EQ(after.find("container=\"web-1\""), std::string::npos) << after;
  EXPECT_NE(after.find("container=\"db\\\"2\""), std::string::npos);
  // The histogram is not per container: it keeps what it saw.
  EXPECT_NE(after.find("sysvisor_call_latency_seconds_count{action=\"emulate\"} 2\n"), std::string::npos);
}

TEST(Metrics, EveryLineIsACommentOrASample) {
  metrics::Metrics m;
  m.record("a\nb", 0, policy::Action::Allow, 1us);
  for (const auto& line : [&] {
         std::vector<std::string> out;
         std::string text = m.render({});
         std::size_t start = 0;
         for (std::size_t nl; (nl = text.find('\n', start)) != std::string::npos; start = nl + 1) {
           out.push_back(text.substr(start, nl - start));
         }
         return out;
       }()) {
    ASSERT_FALSE(line.empty());
    EXPECT_TRUE(line.starts_with("# HELP sysvisor_") || line.starts_with("# TYPE sysvisor_") ||
                line.starts_with("sysvisor_"))
        << line;
  }
}

TEST(Metrics, ListenAddresses) {
  auto v4 = metrics::parse_listen("127.0.0.1:9464");
  ASSERT_TRUE(v4) << v4.error();
  EXPECT_EQ(v4->address, "127.0.0.1");
  EXPECT_EQ(v4->port, 9464);
  auto v6 = metrics::parse_listen("[::1]:0");
  ASSERT_TRUE(v6) << v6.error();
  EXPECT_EQ(v6->address, "::1");
  EXPECT_EQ(v6->port, 0);
  for (const char* bad : {"", "9464", "localhost:9464", "127.0.0.1:", "127.0.0.1:65536", "127.0.0.1:x",
                          "::1:9464", "[::1]9464", "[::1]"}) {
    auto r = metrics::parse_listen(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().find("metrics address"), std::string::npos) << r.error();
    }
  }
}

TEST(ControlLogic, OnlyRootOrTheControlGroup) {
  EXPECT_TRUE(control::may_control({1, 0, 0, {}}, std::nullopt));
  EXPECT_FALSE(control::may_control({1, 1000, 1000, {}}, std::nullopt));
  EXPECT_FALSE(control::may_control({1, 1000, 1000, {27}}, std::nullopt));
  EXPECT_TRUE(control::may_control({1, 1000, 1000, {27}}, 27));  // supplementary
  EXPECT_TRUE(control::may_control({1, 1000, 27, {}}, 27));      // primary
  EXPECT_FALSE(control::may_control({1, 1000, 1000, {26, 28}}, 27));
}

TEST(ControlLogic, RateOverTheLastTenSeconds) {
  control::RateWindow w;
  EXPECT_EQ(w.per_second(), 0);
  w.sample(100);
  EXPECT_EQ(w.per_second(), 0);  // one sample: no interval yet
  w.sample(110);
  EXPECT_EQ(w.per_second(), 10);
  for (int i = 0; i < 20; ++i) w.sample(110 + 5 * static_cast<std::uint64_t>(i + 1));
  EXPECT_EQ(w.per_second(), 5);  // the old burst has left the window
  for (int i = 0; i < 10; ++i) w.sample(210);
  EXPECT_EQ(w.per_second(), 0);
}

TEST(ControlLogic, Rfc3339) {
  EXPECT_EQ(control::rfc3339({}), "");
  const auto t = std::chrono::system_clock::time_point(std::chrono::milliseconds(1'700'000'000'123));
  EXPECT_EQ(control::rfc3339(t), "2023-11-14T22:13:20.123Z");
}

TEST(ControlLogic, SessionsOfOneContainerAreSummed) {
  stats::Counters a;
  a.notifications = 3;
  a.emulated = 2;
  a.denied = 1;
  a.last_activity = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'000));
  stats::Counters b;
  b.notifications = 4;
  b.allowed = 1;
  b.returned = 1;
  b.killed = 1;
  b.errors = 1;
  b.last_activity = std::chrono::system_clock::time_point(std::chrono::seconds(1'700'000'005));
  const auto reply = control::containers_reply({
      {"web", "runc", 0, "p", "v1", a},  // an exec first: no pid
      {"db", "sysvisor-agent", 77, "q", "v2", {}},
      {"web", "runc", 4711, "p", "v1", b},
  });
  ASSERT_EQ(reply.containers_size(), 2);
  const auto& db = reply.containers(0);
  EXPECT_EQ(db.id(), "db");
  EXPECT_EQ(db.last_activity(), "");
  const auto& web = reply.containers(1);
  EXPECT_EQ(web.id(), "web");
  EXPECT_EQ(web.engine(), "runc");
  EXPECT_EQ(web.pid(), 4711u);
  EXPECT_EQ(web.sessions(), 2u);
  EXPECT_EQ(web.notifications(), 7u);
  EXPECT_EQ(web.emulated(), 2u);
  EXPECT_EQ(web.allowed(), 1u);
  EXPECT_EQ(web.denied(), 1u);
  EXPECT_EQ(web.returned(), 1u);
  EXPECT_EQ(web.killed(), 1u);
  EXPECT_EQ(web.errors(), 1u);
  EXPECT_EQ(web.last_activity(), "2023-11-14T22:13:25.000Z");
}

TEST(ControlLogic, JsonUsesSnakeCaseAndPrintsZeros) {
  control::v1::Response r;
  r.mutable_status()->set_notifications_per_second(0);
  const std::string json = control::to_json(r);
  EXPECT_NE(json.find("\"notifications_per_second\":0"), std::string::npos) << json;
  EXPECT_NE(json.find("\"errors_total\":\"0\""), std::string::npos) << json;
}

// The servers on a real loop and real sockets, with short timeouts.
TEST(Metrics, ARenderInProgressDoesNotBlockRecording) {
  metrics::Metrics m;
  const int mknod = policy::syscall_from_name("mknod").value();
  m.record("a", mknod, policy::Action::Deny, 3us);
  m.record("b", mknod, policy::Action::Deny, 3us);
  constexpr int kCalls = 1000;
  bool finished = false;
  std::thread recorder;
  m.set_render_hook([&] {
    // Mid-render: another thread records into the containers being rendered, into a new one,
    // and forgets one; with a lock held by render() it would wait for the render to end, i.e.
    // for ever. The wait below is only a guard that turns such a hang into a failure.
    std::promise<void> done;
    auto f = done.get_future();
    recorder = std::thread([&m, done = std::move(done), mknod]() mutable {
      for (int i = 0; i < kCalls; ++i) {
        m.record("a", mknod, policy::Action::Deny, 3us);
        m.record("c", mknod, policy::Action::Emulate, 3us);
        m.error("b");
      }
      m.forget("b");
      done.set_value();
    });
    finished = f.wait_for(60s) == std::future_status::ready;
  });
  const std::string during = m.render({});
  recorder.join();
  EXPECT_TRUE(finished) << "record() waited for the render in progress";
  m.set_render_hook({});
  const std::string after = m.render({});
  EXPECT_NE(after.find("sysvisor_calls_total{container=\"a\",syscall=\"mknod\",action=\"deny\"} 1001\n"),
            std::string::npos)
      << after;
  EXPECT_NE(after.find("sysvisor_calls_total{container=\"c\",syscall=\"mknod\",action=\"emulate\"} 1000\n"),
            std::string::npos)
      << after;
  EXPECT_EQ(after.find("container=\"b\""), std::string::npos) << after;
  EXPECT_NE(after.find("sysvisor_call_latency_seconds_count{action=\"deny\"} 1002\n"), std::string::npos);
  // The render in progress is a snapshot: consistent, whatever it caught of the new calls.
  EXPECT_NE(during.find("sysvisor_calls_total{container=\"b\",syscall=\"mknod\",action=\"deny\"} 1\n"),
            std::string::npos)
      << during;
}

TEST(Metrics, SeriesBeyondTheLimitAreCountedAsOverflow) {
  metrics::Metrics m(5);
  const int mknod = policy::syscall_from_name("mknod").value();
  const int mount = policy::syscall_from_name("mount").value();
  m.record("a", mknod, policy::Action::Deny, 3us);   // a's errors + (mknod, deny): 2
  m.record("a", mount, policy::Action::Deny, 3us);   // 3
  m.record("b", mknod, policy::Action::Allow, 3us);  // b's errors + (mknod, allow): 5
  EXPECT_EQ(m.series(), 5u);
  // A container id (or syscall) per call from a launcher does not grow the daemon's memory
  // or the scrape: beyond the limit the calls are counted by action only.
  for (int i = 0; i < 1000; ++i) m.record("x-" + std::to_string(i), mknod, policy::Action::Deny, 3us);
  m.record("a", mknod, policy::Action::Emulate, 3us);  // a new series of a known container
  m.record("a", mknod, policy::Action::Deny, 3us);     // an existing one still counts
  m.error("y");
  EXPECT_EQ(m.series(), 5u);
  std::string out = m.render({});
  EXPECT_EQ(out.find("container=\"x-"), std::string::npos);
  EXPECT_EQ(out.find("sysvisor_calls_total{container=\"a\",syscall=\"mknod\",action=\"emulate\"}"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("sysvisor_calls_total{container=\"a\",syscall=\"mknod\",action=\"deny\"} 2\n"),
            std::string::npos)
      << out;
  EXPECT_NE(out.find("sysvisor_calls_overflow_total{action=\"deny\"} 1000\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sysvisor_calls_overflow_total{action=\"emulate\"} 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sysvisor_errors_overflow_total 1\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sysvisor_series 5\n"), std::string::npos) << out;
  EXPECT_NE(out.find("sysvisor_series_limit 5\n"), std::string::npos) << out;
  // Every call is in the histogram, overflow or not.
  EXPECT_NE(out.find("sysvisor_call_latency_seconds_count{action=\"deny\"} 1003\n"), std::string::npos);
  // A container that goes frees its series for others.
  m.forget("a");
  EXPECT_EQ(m.series(), 2u);
  m.record("z", mount, policy::Action::Kill, 3us);
  EXPECT_EQ(m.series(), 4u);
  out = m.render({});
  EXPECT_NE(out.find("sysvisor_calls_total{container=\"z\",syscall=\"mount\",action=\"kill\"} 1\n"),
            std::string::npos)
      << out;
}

TEST(Metrics, UnixListenAddresses) {
  auto plain = metrics::parse_listen("unix:/run/sysvisor/metrics.sock");
  ASSERT_TRUE(plain) << plain.error();
  EXPECT_TRUE(plain->is_unix());
  EXPECT_EQ(plain->path, "/run/sysvisor/metrics.sock");
  EXPECT_EQ(plain->mode, 0600u);
  EXPECT_FALSE(plain->group);
  auto grouped = metrics::parse_listen("unix:/run/m.sock?group=0");
  ASSERT_TRUE(grouped) << grouped.error();
  EXPECT_EQ(grouped->mode, 0660u);
  EXPECT_EQ(grouped->group, 0u);
  auto named = metrics::parse_listen("unix:/run/m.sock?mode=0640&group=root");
  ASSERT_TRUE(named) << named.error();
  EXPECT_EQ(named->mode, 0640u);
  EXPECT_EQ(named->group, 0u);
  for (const char* bad : {"unix:", "unix:run/m.sock", "unix:/m.sock?mode=0999", "unix:/m.sock?mode=",
                          "unix:/m.sock?group=no-such-group-here", "unix:/m.sock?owner=1"}) {
    auto r = metrics::parse_listen(bad);
    EXPECT_FALSE(r) << bad;
    if (!r) {
      EXPECT_NE(r.error().find("metrics address"), std::string::npos) << r.error();
    }
  }
}

class Loop {
 public:
  Loop() = default;
  ~Loop() { stop(); }
  Loop(const Loop&) = delete;
  Loop& operator=(const Loop&) = delete;
  void run() {
    thread_ = std::thread([this] { io.run(); });
  }
  void stop() {
    io.stop();
    if (thread_.joinable()) thread_.join();
  }
  boost::asio::io_context io;

 private:
  std::thread thread_;
};

// Milliseconds until the peer closes `fd` (reading and dropping what it sends), -1 if not
// within 5 s.
long long ms_until_closed(int fd) {
  const auto start = std::chrono::steady_clock::now();
  char buf[4096];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 5000) <= 0) return -1;
    if (::recv(fd, buf, sizeof buf, 0) <= 0) break;
  }
  return std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - start)
      .count();
}

TEST(MetricsHttp, ASilentClientIsClosedAfterTheTimeout) {
  Loop loop;
  metrics::HttpServer server(loop.io, {{"127.0.0.1", 0}, std::chrono::milliseconds(300)},
                             [] { return std::string("x_total 1\n"); });
  server.start();
  loop.run();
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(server.port());
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const long long ms = ms_until_closed(fd);
  ::close(fd);
  EXPECT_GE(ms, 200);
  EXPECT_LT(ms, 3000);
  loop.stop();  // before the server goes: its handlers run on the loop's thread
}

int connect_tcp(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Sends `request` on `fd` and reads until the peer closes (or 10 s of silence).
std::string send_and_read(int fd, const std::string& request) {
  if (::send(fd, request.data(), request.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(request.size()))
    return {};
  std::string out;
  char buf[4096];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 10000) <= 0) break;
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  return out;
}

std::size_t occurrences(const std::string& text, const std::string& what) {
  std::size_t n = 0;
  for (std::size_t at = text.find(what); at != std::string::npos; at = text.find(what, at + 1)) ++n;
  return n;
}

TEST(MetricsHttp, IdleConnectionsDoNotLockAScraperOut) {
  Loop loop;
  metrics::HttpServer::Config config{{"127.0.0.1", 0}};
  config.max_connections = 4;
  metrics::HttpServer server(loop.io, config, [] { return std::string("x_total 1\n"); });
  server.start();
  loop.run();
  // M + k silent connections, and one keep-alive connection left idle after one answer.
  std::vector<int> idle;
  for (int i = 0; i < 6; ++i) {
    const int fd = connect_tcp(server.port());
    ASSERT_GE(fd, 0);
    idle.push_back(fd);
  }
  const std::string scrape = "GET /metrics HTTP/1.0\r\nHost: a\r\n\r\n";
  for (int i = 0; i < 3; ++i) {
    const int fd = connect_tcp(server.port());
    ASSERT_GE(fd, 0);
    const std::string answer = send_and_read(fd, scrape);
    ::close(fd);
    EXPECT_NE(answer.find("HTTP/1.0 200 OK"), std::string::npos) << "scrape " << i << ": " << answer;
    EXPECT_NE(answer.find("x_total 1\n"), std::string::npos);
  }
  // The oldest idle ones made room: they are closed, not left hanging.
  EXPECT_GE(ms_until_closed(idle.front()), 0);
  for (const int fd : idle) ::close(fd);
  loop.stop();  // before the server goes: its handlers run on the loop's thread
}

TEST(MetricsHttp, PipelinedRequestsPerConnectionAreLimited) {
  Loop loop;
  metrics::HttpServer::Config config{{"127.0.0.1", 0}};
  config.max_requests = 3;
  metrics::HttpServer server(loop.io, config, [] { return std::string("x_total 1\n"); });
  server.start();
  loop.run();
  const int fd = connect_tcp(server.port());
  ASSERT_GE(fd, 0);
  std::string burst;
  for (int i = 0; i < 50; ++i) burst += "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\n";
  const std::string answers = send_and_read(fd, burst);  // until the server closes
  ::close(fd);
  EXPECT_EQ(occurrences(answers, "HTTP/1.1 200 OK"), 3u) << answers;
  EXPECT_EQ(occurrences(answers, "Connection: close"), 1u) << answers;
  loop.stop();  // before the server goes: its handlers run on the loop's thread
}

class MetricsUnix : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the socket's owner and group are set as root, as the daemon is";
    char templ[] = "/tmp/sysvisor-metrics-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
    ::chmod(dir_.c_str(), 0755);
  }
  void TearDown() override {
    std::error_code ec;
    if (!dir_.empty()) std::filesystem::remove_all(dir_, ec);
  }
  // GET /metrics over the unix socket at `path` as uid/gid (in a child), "" if it could not
  // connect; the child's exit status carries errno of connect().
  static std::string scrape_as(const std::filesystem::path& path, uid_t uid, gid_t gid, int& connect_errno) {
    int pipefd[2];
    if (::pipe2(pipefd, O_CLOEXEC) != 0) return {};
    const pid_t pid = ::fork();
    if (pid == 0) {
      ::close(pipefd[0]);
      if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(250);
      const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
      sockaddr_un addr{};
      addr.sun_family = AF_UNIX;
      std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
      if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) ::_exit(errno);
      const std::string answer = send_and_read(fd, "GET /metrics HTTP/1.0\r\n\r\n");
      (void)!::write(pipefd[1], answer.data(), answer.size());
      ::_exit(0);
    }
    ::close(pipefd[1]);
    std::string out;
    char buf[4096];
    for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;)
      out.append(buf, static_cast<std::size_t>(n));
    ::close(pipefd[0]);
    int status = 0;
    ::waitpid(pid, &status, 0);
    connect_errno = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
    return out;
  }
  std::filesystem::path dir_;
};

TEST_F(MetricsUnix, RootOnlyByDefault) {
  Loop loop;
  const auto path = dir_ / "metrics.sock";
  auto listen = metrics::parse_listen("unix:" + path.string());
  ASSERT_TRUE(listen) << listen.error();
  metrics::HttpServer server(loop.io, {*listen}, [] { return std::string("x_total 1\n"); });
  server.start();
  loop.run();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  int err = 0;
  const std::string root = scrape_as(path, 0, 0, err);
  EXPECT_EQ(err, 0);
  EXPECT_NE(root.find("HTTP/1.0 200 OK"), std::string::npos) << root;
  EXPECT_NE(root.find("x_total 1\n"), std::string::npos) << root;
  // Another user gets the kernel's answer for a socket it may not write: EACCES.
  const std::string nobody = scrape_as(path, 65534, 65534, err);
  EXPECT_EQ(err, EACCES);
  EXPECT_EQ(nobody, "");
  loop.stop();  // the server is the loop's: shut down with the loop stopped, as on the loop
  server.shutdown();
  EXPECT_FALSE(std::filesystem::exists(path));  // the socket goes with the server
}

TEST_F(MetricsUnix, AGroupMayScrape) {
  Loop loop;
  const auto path = dir_ / "metrics.sock";
  auto listen = metrics::parse_listen("unix:" + path.string() + "?group=65533");
  ASSERT_TRUE(listen) << listen.error();
  metrics::HttpServer server(loop.io, {*listen}, [] { return std::string("x_total 1\n"); });
  server.start();
  loop.run();
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_uid, 0u);
  EXPECT_EQ(st.st_gid, 65533u);
  int err = 0;
  const std::string member = scrape_as(path, 65534, 65533, err);
  EXPECT_EQ(err, 0);
  EXPECT_NE(member.find("x_total 1\n"), std::string::npos) << member;
  (void)scrape_as(path, 65534, 65534, err);
  EXPECT_EQ(err, EACCES);
  loop.stop();  // before the server goes: its handlers run on the loop's thread
}

class ControlSocket : public ::testing::Test {
 protected:
  void SetUp() override {
    char templ[] = "/tmp/sysvisor-control-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(templ), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    std::error_code ec;
    std::filesystem::remove_all(dir_, ec);
  }
  std::filesystem::path dir_;
};

TEST_F(ControlSocket, RequestAndAnswerAndASilentClient) {
  Loop loop;
  control::ControlServer server(loop.io,
                                {dir_ / "control.sock", std::nullopt, -1, std::chrono::milliseconds(300)},
                                [](const control::v1::Request& r, const config::Peer&) {
                                  control::v1::Response out;
                                  if (r.has_status()) out.mutable_status()->set_version("unit");
                                  return out;
                                });
  server.start();
  loop.run();
  control::v1::Request req;
  req.mutable_status();
  auto answer = control::request(dir_ / "control.sock", req, std::chrono::seconds(5));
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_EQ(answer->status().version(), "unit");

  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, (dir_ / "control.sock").c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr), 0);
  const long long ms = ms_until_closed(fd);
  ::close(fd);
  EXPECT_GE(ms, 200);
  EXPECT_LT(ms, 3000);
  loop.stop();  // before the server goes: its handlers run on the loop's thread
}

TEST_F(ControlSocket, AnAnswerLargerThanTheSocketBuffer) {
  if (::geteuid() != 0) GTEST_SKIP() << "SO_SNDBUFFORCE needs root, as the daemon is";
  Loop loop;
  control::ControlServer server(loop.io,
                                {dir_ / "control.sock", std::nullopt, -1, std::chrono::milliseconds(5000)},
                                [](const control::v1::Request&, const config::Peer&) {
                                  control::v1::Response out;
                                  for (int i = 0; i < 20000; ++i) {
                                    auto* c = out.mutable_containers()->add_containers();
                                    c->set_id("container-" + std::to_string(i) + std::string(64, 'x'));
                                    c->set_policy("rootless-devices");
                                  }
                                  return out;
                                });
  server.start();
  loop.run();
  control::v1::Request req;
  req.mutable_containers();
  auto answer = control::request(dir_ / "control.sock", req, std::chrono::seconds(10));
  ASSERT_TRUE(answer) << answer.error().message;
  EXPECT_GT(answer->ByteSizeLong(), 1u << 20);
  ASSERT_EQ(answer->containers().containers_size(), 20000);
  EXPECT_EQ(answer->containers().containers(19999).id(), "container-19999" + std::string(64, 'x'));
}

}  // namespace
}  // namespace sysvisor
