// The control socket, the metrics endpoint, socket activation and the journald log format,
// against a real daemon and real rootless busybox containers. Needs root.
#include <arpa/inet.h>
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using nlohmann::json;

// Polls `done` every 20 ms for up to `limit`.
template <class F>
bool eventually(F&& done, std::chrono::milliseconds limit = std::chrono::seconds(20)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

std::vector<std::string> fields(const std::string& line) {
  std::istringstream in(line);
  std::vector<std::string> out;
  for (std::string f; in >> f;) out.push_back(f);
  return out;
}

// One plain HTTP/1.0 exchange over loopback: what the server sent until it closed.
std::string http(std::uint16_t port, const std::string& request) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return "connect: " + std::string(std::strerror(errno));
  }
  (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
  std::string out;
  char buf[65536];
  for (;;) {
    pollfd pfd{fd, POLLIN, 0};
    if (::poll(&pfd, 1, 15000) <= 0) {
      out += "<timeout>";
      break;
    }
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    out.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return out;
}

std::string scrape(std::uint16_t port) {
  return http(port, "GET /metrics HTTP/1.0\r\nHost: localhost\r\n\r\n");
}

// A raw SEQPACKET client of control.sock.
int connect_control(const fs::path& sock) {
  const int fd = ::socket(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd);
    return -1;
  }
  return fd;
}

// Waits for a packet or the end: the packet's bytes, "" at EOF, "<timeout>".
std::string receive(int fd, int timeout_ms) {
  pollfd pfd{fd, POLLIN, 0};
  if (::poll(&pfd, 1, timeout_ms) <= 0) return "<timeout>";
  char buf[65536];
  const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
  return n <= 0 ? std::string() : std::string(buf, static_cast<std::size_t>(n));
}

class Control : public DaemonSuite<Control> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = new TempDir("sysvisor-ctl");
    fs::create_directories(policies());
    for (const auto& src : {source_dir() / "policies", source_dir() / "tests" / "integration" / "policies"}) {
      for (const auto& e : fs::directory_iterator(src)) {
        const std::string name = e.path().filename().string();
        if (e.path().extension() == ".yaml" && name.find(".cases.") == std::string::npos) {
          fs::copy_file(e.path(), policies() / e.path().filename());
        }
      }
    }
    daemon_ = new Daemon(runtime(), policies(), dir_->path() / "audit.jsonl", log(),
                         {"--metrics-listen", "127.0.0.1:0"});
    ASSERT_TRUE(daemon_->ready()) << read_file(log());
    std::smatch m;
    const std::string text = read_file(log());
    static const std::regex re("serving metrics on http://127\\.0\\.0\\.1:([0-9]+)/metrics");
    ASSERT_TRUE(std::regex_search(text, m, re)) << text;
    port_ = static_cast<std::uint16_t>(std::stoi(m[1]));
  }
  static void TearDownTestSuite() { stop_suite_daemon(runtime() / "control.sock"); }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path log() { return dir_->path() / "daemon.log"; }

  static Outcome cli(std::vector<std::string> args, const fs::path& rt = runtime()) {
    args.insert(args.begin(), (bin_dir() / "sysvisor").string());
    args.insert(args.end(), {"--runtime-dir", rt.string()});
    return run(args);
  }
  static json cli_json(const std::vector<std::string>& args, const fs::path& rt = runtime()) {
    auto args_json = args;
    args_json.push_back("--json");
    const Outcome o = cli(args_json, rt);
    EXPECT_EQ(o.status, 0) << o.err;
    return json::parse(o.out);  // throws (and fails the test) on anything but JSON
  }

  // A container that makes its calls, says so in /tmp/ready and waits for /tmp/stop.
  std::thread start_container(const std::string& id, const std::string& policy, const std::string& calls,
                              Outcome& outcome, const fs::path& rt = runtime()) {
    const std::string script =
        calls + "; touch /tmp/ready; while [ ! -e /tmp/stop ]; do sleep 0.05; done; echo stopped";
    return std::thread([=, this, &outcome] { outcome = run_container(rt, policy, rootfs_, script, id); });
  }
  bool wait_ready() {
    return eventually([&] { return fs::exists(rootfs_ / "tmp" / "ready"); });
  }
  void stop_container(std::thread& t) {
    std::ofstream(rootfs_ / "tmp" / "stop").close();
    t.join();
  }

  static std::uint16_t port_;
};

std::uint16_t Control::port_ = 0;

const json* find_container(const json& reply, const std::string& id) {
  for (const auto& c : reply.at("containers").at("containers")) {
    if (c.at("id") == id) return &c;
  }
  return nullptr;
}

TEST_F(Control, StatusAndContainersShowARunningContainerAndItsCounts) {
  Outcome outcome;
  auto t = start_container(
      "ctl-counts", "rootless-devices",
      "probe mknod /tmp/null c 1 3; probe mknod /tmp/zero c 1 5; probe mknod /tmp/sda b 8 0", outcome);
  ASSERT_TRUE(wait_ready());

  const json containers = cli_json({"containers"});
  const json* c = find_container(containers, "ctl-counts");
  ASSERT_NE(c, nullptr) << containers.dump();
  EXPECT_EQ(c->at("engine"), "sysvisor-agent");
  EXPECT_EQ(c->at("owner"), 0) << "root launched it";
  EXPECT_GT(c->at("pid").get<int>(), 0);
  EXPECT_EQ(c->at("policy"), "rootless-devices");
  EXPECT_FALSE(c->at("policy_version").get<std::string>().empty());
  EXPECT_EQ(c->at("sessions"), 1);
  // Protobuf's JSON mapping writes 64-bit integers as strings.
  EXPECT_EQ(c->at("notifications"), "3");
  EXPECT_EQ(c->at("emulated"), "2");
  EXPECT_EQ(c->at("denied"), "1");
  EXPECT_EQ(c->at("allowed"), "0");
  EXPECT_EQ(c->at("returned"), "0");
  EXPECT_EQ(c->at("killed"), "0");
  EXPECT_EQ(c->at("errors"), "0");
  EXPECT_TRUE(std::regex_match(c->at("last_activity").get<std::string>(),
                               std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z)")))
      << c->dump();
  // The pid is the container's init: a live process of the container's user.
  struct stat st {};
  ASSERT_EQ(::stat(("/proc/" + std::to_string(c->at("pid").get<int>())).c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kHostRoot);

  // The table: a header and one aligned row per container.
  const Outcome table = cli({"containers"});
  ASSERT_EQ(table.status, 0) << table.err;
  const auto rows = lines(table.out);
  ASSERT_GE(rows.size(), 2u) << table.out;
  EXPECT_EQ(fields(rows[0]),
            (std::vector<std::string>{"ID", "OWNER", "ENGINE", "PID", "POLICY", "EMULATED", "ALLOWED",
                                      "DENIED", "RETURNED", "KILLED", "ERRORS", "LAST", "ACTIVITY"}));
  bool found = false;
  for (const auto& row : rows) {
    const auto f = fields(row);
    if (f.empty() || f[0] != "ctl-counts") continue;
    found = true;
    ASSERT_EQ(f.size(), 13u) << row;
    EXPECT_EQ(f[1], "0") << row;  // owner: root
    EXPECT_EQ(f[2], "sysvisor-agent");
    EXPECT_EQ(f[4], "rootless-devices");
    EXPECT_EQ(f[6], "2") << row;  // emulated
    EXPECT_EQ(f[7], "0") << row;  // allowed
    EXPECT_EQ(f[8], "1") << row;  // denied
    EXPECT_EQ(row.find(f[6], rows[0].find("EMULATED")), rows[0].find("EMULATED")) << "aligned:\n"
                                                                                  << table.out;
  }
  EXPECT_TRUE(found) << table.out;

  const json status = cli_json({"status"});
  const json& s = status.at("status");
  EXPECT_EQ(s.at("version"), "0.1.0");
  EXPECT_EQ(s.at("pid"), daemon_->pid());
  EXPECT_GE(s.at("containers").get<int>(), 1);
  EXPECT_GE(std::stoull(s.at("notifications_total").get<std::string>()), 3u);
  EXPECT_EQ(s.at("errors_total"), "0");
  EXPECT_GT(s.at("uptime_seconds").get<double>(), 0);
  EXPECT_GE(s.at("notifications_per_second").get<double>(), 0);
  bool listed = false;
  for (const auto& p : s.at("policy_set").at("policies")) listed |= p.at("name") == "rootless-devices";
  EXPECT_TRUE(listed) << status.dump();
  const Outcome human = cli({"status"});
  ASSERT_EQ(human.status, 0) << human.err;
  EXPECT_NE(human.out.find("version          0.1.0\n"), std::string::npos) << human.out;
  EXPECT_NE(human.out.find("rootless-devices v"), std::string::npos) << human.out;

  // The same counts in the metrics, with the latency histogram.
  const std::string metrics = scrape(port_);
  EXPECT_NE(metrics.find("HTTP/1.0 200 OK"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("Content-Type: text/plain; version=0.0.4"), std::string::npos) << metrics;
  EXPECT_NE(metrics.find("sysvisor_calls_total{container=\"ctl-counts\",owner=\"0\",syscall=\"mknodat\","
                         "action=\"emulate\"} 2\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("sysvisor_calls_total{container=\"ctl-counts\",owner=\"0\",syscall=\"mknodat\","
                         "action=\"deny\"} 1\n"),
            std::string::npos)
      << metrics;
  EXPECT_NE(metrics.find("sysvisor_errors_total{container=\"ctl-counts\",owner=\"0\"} 0\n"),
            std::string::npos);
  std::smatch m;
  ASSERT_TRUE(std::regex_search(
      metrics, m,
      std::regex("sysvisor_call_latency_seconds_bucket\\{action=\"emulate\",le=\"\\+Inf\"\\} "
                 "([0-9]+)\n")))
      << metrics;
  EXPECT_GE(std::stoi(m[1]), 2);
  EXPECT_NE(metrics.find("sysvisor_call_latency_seconds_count{action=\"emulate\"} "), std::string::npos);
  EXPECT_NE(metrics.find("sysvisor_call_latency_seconds_sum{action=\"deny\"} "), std::string::npos);
  EXPECT_TRUE(std::regex_search(metrics, std::regex("\nsysvisor_containers [1-9]")));
  EXPECT_NE(metrics.find("\nsysvisor_uptime_seconds "), std::string::npos);
  EXPECT_NE(metrics.find("\nsysvisor_policy_set_generation "), std::string::npos);

  stop_container(t);
  EXPECT_EQ(outcome.status, 0) << outcome.err;
  EXPECT_NE(outcome.out.find("stopped"), std::string::npos) << outcome.out;
  // Gone from the list and from the metrics once its last process is.
  EXPECT_TRUE(eventually([&] { return find_container(cli_json({"containers"}), "ctl-counts") == nullptr; }));
  EXPECT_TRUE(eventually([&] { return scrape(port_).find("ctl-counts") == std::string::npos; }));
  // Its calls stay in the daemon's totals.
  EXPECT_GE(std::stoull(cli_json({"status"}).at("status").at("notifications_total").get<std::string>()), 3u);
}

TEST_F(Control, MetricsEndpointAnswersOnlyGetAndHeadOfMetrics) {
  EXPECT_NE(http(port_, "GET /other HTTP/1.0\r\n\r\n").find("HTTP/1.0 404"), std::string::npos);
  EXPECT_NE(http(port_, "POST /metrics HTTP/1.0\r\nContent-Length: 0\r\n\r\n").find("HTTP/1.0 405"),
            std::string::npos);
  // HEAD: the GET's headers, Content-Length included, and no body (a monitor's liveness check).
  const std::string head = http(port_, "HEAD /metrics HTTP/1.0\r\n\r\n");
  EXPECT_NE(head.find("HTTP/1.0 200"), std::string::npos) << head;
  EXPECT_EQ(head.find("sysvisor_"), std::string::npos) << "a body in the answer to HEAD: " << head;
  const auto length = head.find("Content-Length: ");
  ASSERT_NE(length, std::string::npos) << head;
  EXPECT_GT(std::stoul(head.substr(length + 16)), 100u) << head;
  // Garbage: closed without an answer, and the daemon goes on.
  EXPECT_EQ(http(port_, "\x01\x02 garbage\r\n\r\n"), "");
  EXPECT_EQ(http(port_, "GET /metrics HTTP/1.1\r\nX: " + std::string(20000, 'a') + "\r\n\r\n"), "");
  // Keep-alive: two requests on one connection.
  const std::string two = http(port_,
                               "GET /metrics HTTP/1.1\r\nHost: a\r\n\r\nGET /metrics HTTP/1.1\r\nHost: "
                               "a\r\nConnection: close\r\n\r\n");
  std::size_t answers = 0;
  for (std::size_t at = 0; (at = two.find("HTTP/1.1 200 OK", at)) != std::string::npos; ++at) ++answers;
  EXPECT_EQ(answers, 2u) << two.substr(0, 300);
  EXPECT_NE(scrape(port_).find("sysvisor_uptime_seconds"), std::string::npos);
}

TEST_F(Control, ABusyMetricsPortStopsTheStartCleanly) {
  const fs::path rt = dir_->path() / "busy" / "run";
  const Outcome o =
      run({(bin_dir() / "sysvisor").string(), "serve", "--runtime-dir", rt.string(), "--policies",
           policies().string(), "--metrics-listen", "127.0.0.1:" + std::to_string(port_)},
          std::chrono::seconds(20));
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err,
            "sysvisor: metrics: bind `127.0.0.1:" + std::to_string(port_) + "`: Address already in use\n");
  for (const char* sock : {"agent.sock", "oci.sock", "control.sock"}) {
    EXPECT_FALSE(fs::exists(rt / sock)) << sock << " left behind";
  }
}

TEST_F(Control, ReloadPicksUpTheDirectoryAndReportsErrors) {
  const fs::path dir = dir_->path() / "reload";
  const fs::path pols = dir / "policies";
  fs::create_directories(pols);
  fs::copy_file(source_dir() / "tests" / "integration" / "policies" / "deny-devices.yaml",
                pols / "deny-devices.yaml");
  Daemon d(dir / "run", pols, dir / "audit.jsonl", dir / "daemon.log");
  ASSERT_TRUE(d.ready()) << read_file(dir / "daemon.log");

  fs::copy_file(source_dir() / "tests" / "integration" / "policies" / "kill-block.yaml",
                pols / "kill-block.yaml");
  const Outcome ok = cli({"reload"}, dir / "run");
  EXPECT_EQ(ok.status, 0) << ok.err;
  EXPECT_NE(ok.out.find("reloaded: generation 1: deny-devices v"), std::string::npos) << ok.out;
  EXPECT_NE(ok.out.find("kill-block v"), std::string::npos) << ok.out;

  // A broken file: its error with FILE:LINE:COL, exit 1, the previous set stays.
  {
    std::ofstream broken(pols / "broken.yaml");
    broken << "name: broken\nrules:\n  - syscalls: [mknod]\n    action: explode\n";
  }
  const Outcome bad = cli({"reload"}, dir / "run");
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find((pols / "broken.yaml").string() + ":4:"), std::string::npos) << bad.err;
  EXPECT_NE(bad.err.find("explode"), std::string::npos) << bad.err;
  // With its [code], as `policy check` prints it.
  EXPECT_NE(bad.err.find((pols / "broken.yaml").string() + ":4:13: error: [bad-value] unknown action"),
            std::string::npos)
      << bad.err;
  EXPECT_NE(bad.err.find("reload failed with 1 error(s); still in force: generation 1: deny-devices v"),
            std::string::npos)
      << bad.err;
  const json bad_json = [&] {
    const Outcome o = cli({"reload", "--json"}, dir / "run");
    EXPECT_EQ(o.status, 1);
    return json::parse(o.out);
  }();
  EXPECT_EQ(bad_json.at("reload").at("ok"), false);
  ASSERT_EQ(bad_json.at("reload").at("errors").size(), 1u);
  EXPECT_EQ(bad_json.at("reload").at("policy_set").at("generation"), "1");

  const json status = cli_json({"status"}, dir / "run");
  EXPECT_EQ(status.at("status").at("policy_set").at("generation"), "1");
  EXPECT_EQ(status.at("status").at("policy_set").at("policies").size(), 2u) << status.dump();
  // The old set really is in force: a container gets kill-block.
  Outcome o =
      run_container(dir / "run", "kill-block", rootfs_, "probe mknod /tmp/b b 8 0; echo rc=$?", "ctl-kb");
  std::smatch rc;
  ASSERT_TRUE(std::regex_search(o.out, rc, std::regex("rc=([0-9]+)"))) << o.out << o.err;
  EXPECT_GT(std::stoi(rc[1]), 128) << "killed by kill-block: " << o.out;

  fs::remove(pols / "broken.yaml");
  // A new file that takes the name of a policy in force is the one blamed, though it sorts first.
  {
    std::ofstream taken(pols / "a-taken.yaml");
    taken << "name: deny-devices\nrules: []\n";
  }
  const Outcome dup = cli({"reload"}, dir / "run");
  EXPECT_EQ(dup.status, 1);
  EXPECT_NE(dup.err.find((pols / "a-taken.yaml").string() +
                         ":1:1: error: [duplicate-policy] policy `deny-devices` is defined twice: in `" +
                         (pols / "a-taken.yaml").string() + "` and in `" +
                         (pols / "deny-devices.yaml").string() + "`"),
            std::string::npos)
      << dup.err;
  EXPECT_NE(dup.err.find("whose policy is in force"), std::string::npos) << dup.err;
  fs::remove(pols / "a-taken.yaml");
  const json fixed = cli_json({"reload"}, dir / "run");
  EXPECT_EQ(fixed.at("reload").at("ok"), true);
  EXPECT_EQ(fixed.at("reload").at("policy_set").at("generation"), "2");
  EXPECT_NE(read_file(dir / "daemon.log").find("control: reload requested by uid 0"), std::string::npos);
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

TEST_F(Control, ErrorsWhenTheDaemonIsNotRunning) {
  const fs::path nowhere = dir_->path() / "nowhere";
  for (const char* command : {"status", "containers", "reload"}) {
    const Outcome o = cli({command}, nowhere);
    EXPECT_EQ(o.status, 1) << command;
    EXPECT_EQ(o.out, "");
    EXPECT_EQ(o.err, "sysvisor: cannot reach the daemon at " + (nowhere / "control.sock").string() +
                         ": No such file or directory (is `sysvisor serve` running?)\n")
        << command;
    const Outcome j = cli({command, "--json"}, nowhere);
    EXPECT_EQ(j.status, 1);
    EXPECT_EQ(j.out, "");
  }
  // A daemon that died: its socket is left, nobody listens.
  const fs::path dir = dir_->path() / "dead";
  fs::create_directories(dir);
  Daemon d(dir / "run", policies(), dir / "audit.jsonl", dir / "daemon.log");
  ASSERT_TRUE(d.ready());
  EXPECT_EQ(cli({"status"}, dir / "run").status, 0);
  d.stop(SIGKILL);
  ASSERT_TRUE(fs::exists(dir / "run" / "control.sock"));
  const Outcome o = cli({"status"}, dir / "run");
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err, "sysvisor: cannot reach the daemon at " + (dir / "run" / "control.sock").string() +
                       ": Connection refused (is `sysvisor serve` running?)\n");
}

std::vector<std::string> as_nobody(std::vector<std::string> argv) {
  argv.insert(argv.begin(), {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"});
  return argv;
}

TEST_F(Control, RootOnlyByDefault) {
  const fs::path sock = runtime() / "control.sock";
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  const std::string exe = public_bin("sysvisor").string();  // reachable by nobody
  // The socket's mode keeps others out...
  const Outcome o = run(as_nobody({exe, "status", "--runtime-dir", runtime().string()}));
  EXPECT_EQ(o.status, 1);
  EXPECT_EQ(o.err, "sysvisor: cannot reach the daemon at " + sock.string() +
                       ": Permission denied (the control socket is for root, or for the group named by "
                       "control_group in the configuration)\n");
  // ... and the daemon checks the peer too, should the mode be widened.
  ASSERT_EQ(::chmod(sock.c_str(), 0666), 0);
  const Outcome refused = run(as_nobody({exe, "reload", "--runtime-dir", runtime().string()}));
  ::chmod(sock.c_str(), 0600);
  EXPECT_EQ(refused.status, 1);
  EXPECT_EQ(refused.err, "sysvisor: the daemon at " + sock.string() +
                             " refused: permission denied: uid 65534 is not root (no control_group is "
                             "configured)\n");
  EXPECT_EQ(read_file(log()).find("control: reload requested by uid 65534"), std::string::npos);
}

TEST_F(Control, ControlGroupOpensTheSocketToOneGroup) {
  const fs::path dir = dir_->path() / "group";
  fs::create_directories(dir);
  {
    std::ofstream cfg(dir / "sysvisor.yaml");
    cfg << "control_group: nogroup\n";
  }
  Daemon d(dir / "run", policies(), dir / "audit.jsonl", dir / "daemon.log",
           {"--config", (dir / "sysvisor.yaml")});
  ASSERT_TRUE(d.ready()) << read_file(dir / "daemon.log");
  struct stat st {};
  ASSERT_EQ(::stat((dir / "run" / "control.sock").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0660u);
  EXPECT_EQ(st.st_gid, 65534u);
  const std::string exe = public_bin("sysvisor").string();  // reachable by nobody
  const Outcome o = run(as_nobody({exe, "status", "--runtime-dir", (dir / "run").string()}));
  EXPECT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("version"), std::string::npos);
  // Another unprivileged group is still kept out.
  const Outcome other = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=100", "--clear-groups", exe,
                             "status", "--runtime-dir", (dir / "run").string()});
  EXPECT_EQ(other.status, 1);
  EXPECT_NE(other.err.find("Permission denied"), std::string::npos) << other.err;
  // The configuration's runtime_dir is where the CLI looks without --runtime-dir.
  {
    std::ofstream cfg(dir / "client.yaml");
    cfg << "runtime_dir: " << (dir / "run").string() << "\n";
  }
  const Outcome by_config = run({exe, "status", "--config", (dir / "client.yaml").string()});
  EXPECT_EQ(by_config.status, 0) << by_config.err;
  EXPECT_EQ(d.stop(SIGTERM), 0);
}

TEST_F(Control, BadClientsGetAnErrorOrATimeoutAndTheDaemonGoesOn) {
  const fs::path sock = runtime() / "control.sock";
  {
    const int fd = connect_control(sock);
    ASSERT_GE(fd, 0);
    ASSERT_EQ(::send(fd, "\xff\xff\xff\xff garbage", 12, 0), 12);
    const std::string reply = receive(fd, 5000);
    EXPECT_NE(reply.find("bad request"), std::string::npos) << reply;
    EXPECT_EQ(receive(fd, 5000), "") << "closed after the error";
    ::close(fd);
  }
  {
    const int fd = connect_control(sock);
    ASSERT_GE(fd, 0);
    // A Request with only a field this daemon does not know: no command in it.
    ASSERT_EQ(::send(fd, "\x78\x01", 2, 0), 2);
    EXPECT_NE(receive(fd, 5000).find("empty or unknown request"), std::string::npos);
    ::close(fd);
  }
  {
    const int fd = connect_control(sock);
    ASSERT_GE(fd, 0);
    const std::string big(100000, 'x');  // over the 64 KiB limit
    (void)::send(fd, big.data(), big.size(), 0);
    EXPECT_NE(receive(fd, 5000).find("bad request"), std::string::npos);
    ::close(fd);
  }
  // Silent: closed after the timeout (5 s), while others are answered meanwhile.
  const int silent = connect_control(sock);
  ASSERT_GE(silent, 0);
  const auto started = std::chrono::steady_clock::now();
  EXPECT_EQ(cli({"status"}).status, 0);
  EXPECT_EQ(receive(silent, 15000), "");
  EXPECT_GE(std::chrono::steady_clock::now() - started, std::chrono::seconds(4));
  ::close(silent);
  EXPECT_EQ(cli({"status"}).status, 0);
}

// systemd-socket-activate stands in for systemd: it binds, listens, and starts the daemon at
// the first connection with LISTEN_FDS / LISTEN_FDNAMES, as a .socket unit does.
pid_t socket_activate(const std::vector<std::string>& listen, const fs::path& log,
                      const std::vector<std::string>& serve) {
  std::vector<std::string> args{"/usr/bin/systemd-socket-activate", "--seqpacket"};
  args.insert(args.end(), listen.begin(), listen.end());
  args.push_back((bin_dir() / "sysvisor").string());
  args.push_back("serve");
  args.insert(args.end(), serve.begin(), serve.end());
  const int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(logfd, 1);
    ::dup2(logfd, 2);
    std::vector<char*> argv;
    for (const auto& a : args) argv.push_back(const_cast<char*>(a.c_str()));
    argv.push_back(nullptr);
    ::execv(argv[0], argv.data());
    ::_exit(127);
  }
  ::close(logfd);
  return pid;
}

int wait_exit(pid_t pid) {
  int wstatus = 0;
  ::waitpid(pid, &wstatus, 0);
  return WIFEXITED(wstatus) ? WEXITSTATUS(wstatus) : 128 + WTERMSIG(wstatus);
}

TEST_F(Control, SocketActivation) {
  // By FileDescriptorName=, and by the socket's file name (one .socket unit, one name).
  for (const bool named : {true, false}) {
    SCOPED_TRACE(named ? "named" : "by path");
    const fs::path dir = dir_->path() / (named ? "activated-named" : "activated-path");
    const fs::path rt = dir / "run";
    fs::create_directories(rt);
    const fs::path daemon_log = dir / "daemon.log";
    std::vector<std::string> listen{"-l", (rt / "agent.sock").string(), "-l", (rt / "control.sock").string()};
    if (named) listen.push_back("--fdname=agent:control");
    const pid_t pid = socket_activate(listen, daemon_log,
                                      {"--runtime-dir", rt.string(), "--policies", policies().string(),
                                       "--audit", (dir / "audit.jsonl").string()});
    ASSERT_TRUE(eventually([&] { return fs::exists(rt / "control.sock"); }));
    // The first connection starts the daemon, which answers it on the inherited socket.
    const Outcome status = cli({"status"}, rt);
    EXPECT_EQ(status.status, 0) << status.err << read_file(daemon_log);
    // The agent socket is systemd's too: a real container is supervised through it.
    const std::string node = named ? "/tmp/null-named" : "/tmp/null-path";
    const Outcome c = run_container(rt, "rootless-devices", rootfs_,
                                    "probe mknod " + node + " c 1 3; probe stat " + node, "ctl-activated");
    EXPECT_EQ(c.status, 0) << c.err;
    EXPECT_NE(c.out.find("ok\nc 1:3"), std::string::npos) << c.out << c.err;
    const std::string text = read_file(daemon_log);
    EXPECT_NE(text.find("[c=ctl-activated] supervised with policy `rootless-devices`"), std::string::npos)
        << text;
    EXPECT_TRUE(fs::exists(rt / "oci.sock")) << "not passed: bound as usual";
    ::kill(pid, SIGTERM);
    EXPECT_EQ(wait_exit(pid), 0) << read_file(daemon_log);
    // systemd's sockets stay for the next start; the one the daemon bound goes.
    EXPECT_TRUE(fs::exists(rt / "agent.sock"));
    EXPECT_TRUE(fs::exists(rt / "control.sock"));
    EXPECT_FALSE(fs::exists(rt / "oci.sock"));
  }
}

TEST_F(Control, SocketActivationRefusesAnUnknownSocket) {
  const fs::path dir = dir_->path() / "misnamed";
  fs::create_directories(dir / "run");
  const fs::path sock = dir / "run" / "other.sock";
  const pid_t pid =
      socket_activate({"-l", sock.string(), "--fdname=agnet"}, dir / "daemon.log",
                      {"--runtime-dir", (dir / "run").string(), "--policies", policies().string()});
  // The name exists from bind(), connections succeed from listen(): retry until one does.
  int trigger = -1;
  if (!eventually([&] { return (trigger = connect_control(sock)) >= 0; })) {
    ::kill(pid, SIGKILL);
    (void)wait_exit(pid);
    FAIL() << "no connection to the activation socket " << sock;
  }
  EXPECT_EQ(wait_exit(pid), 1);
  ::close(trigger);
  EXPECT_NE(
      read_file(dir / "daemon.log")
          .find("sysvisor: socket activation: fd 3 is named `agnet` and bound to `other.sock`; expected "
                "FileDescriptorName=agent, oci or control, or a socket at agent.sock, oci.sock or "
                "control.sock"),
      std::string::npos)
      << read_file(dir / "daemon.log");
}

TEST_F(Control, NotifiesSystemdWhenReadyAndWhenStopping) {
  const fs::path dir = dir_->path() / "notify";
  fs::create_directories(dir);
  const fs::path where = dir / "notify.sock";
  const int sock = bind_datagram(where);
  ASSERT_GE(sock, 0) << where;
  ::setenv("NOTIFY_SOCKET", where.c_str(), 1);
  Daemon d(dir / "run", policies(), dir / "audit.jsonl", dir / "daemon.log");
  ::unsetenv("NOTIFY_SOCKET");
  ASSERT_TRUE(d.ready());
  // First the daemon's mount namespace goes to the file descriptor store (docs/control.md,
  // "Restart and upgrade"), then it says it is ready.
  const std::string stored = receive(sock, 10000);
  EXPECT_NE(stored.find("FDSTORE=1\nFDNAME=sysvisor.mntns"), std::string::npos) << stored;
  const std::string ready = receive(sock, 10000);
  EXPECT_NE(ready.find("READY=1"), std::string::npos) << ready;
  // Ready means every socket accepts: the control socket answers.
  EXPECT_EQ(cli({"status"}, dir / "run").status, 0);
  EXPECT_EQ(d.stop(SIGTERM), 0);
  EXPECT_NE(receive(sock, 10000).find("STOPPING=1"), std::string::npos);
  ::close(sock);
}

TEST_F(Control, JournaldFormatWhenStderrIsTheJournal) {
  for (const bool journal : {true, false}) {
    const fs::path dir = dir_->path() / (journal ? "journal" : "not-journal");
    fs::create_directories(dir);
    const fs::path daemon_log = dir / "daemon.log";
    std::ofstream(daemon_log).close();
    struct stat st {};
    ASSERT_EQ(::stat(daemon_log.c_str(), &st), 0);
    // Another file's identity must not count as the journal.
    const std::string stream = journal ? std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino)
                                       : std::to_string(st.st_dev) + ":1";
    ::setenv("JOURNAL_STREAM", stream.c_str(), 1);
    Daemon d(dir / "run", policies(), dir / "audit.jsonl", daemon_log);
    ::unsetenv("JOURNAL_STREAM");
    ASSERT_TRUE(d.ready());
    // A warning: a garbage control request.
    const int fd = connect_control(dir / "run" / "control.sock");
    ASSERT_GE(fd, 0);
    (void)::send(fd, "\xff", 1, 0);
    (void)receive(fd, 5000);
    ::close(fd);
    EXPECT_EQ(d.stop(SIGTERM), 0);
    const auto text = lines(read_file(daemon_log));
    ASSERT_FALSE(text.empty());
    bool info = false;
    bool warn = false;
    for (const auto& line : text) {
      if (journal) {
        EXPECT_TRUE(std::regex_match(line, std::regex("<[2-7]>[^<].*"))) << line;
        info |= line.starts_with("<6>serving ");
        warn |= line.starts_with("<4>control: uid 0");
      } else {
        EXPECT_TRUE(
            std::regex_match(line, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3} sysvisor \w+: .*)")))
            << line;
        info |= line.find(" sysvisor info: serving ") != std::string::npos;
        warn |= line.find(" sysvisor warning: control: uid 0") != std::string::npos;
      }
    }
    EXPECT_TRUE(info) << read_file(daemon_log);
    EXPECT_TRUE(warn) << read_file(daemon_log);
  }
}

}  // namespace
}  // namespace sysvisor::it

namespace sysvisor::it {
namespace {

// GET /metrics over the unix socket `sock` as uid/gid (in a child, no supplementary groups):
// the answer, or "connect: ERRNO-TEXT" with the kernel's answer to connect().
std::string scrape_unix_as(const fs::path& sock, uid_t uid, gid_t gid) {
  int pipefd[2];
  if (::pipe2(pipefd, O_CLOEXEC) != 0) return "pipe";
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::close(pipefd[0]);
    if (::setgroups(0, nullptr) != 0 || ::setgid(gid) != 0 || ::setuid(uid) != 0) ::_exit(1);
    std::string out;
    const int fd = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, sock.c_str(), sizeof addr.sun_path - 1);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      out = "connect: " + std::string(std::strerror(errno));
    } else {
      const std::string request = "GET /metrics HTTP/1.0\r\n\r\n";
      (void)::send(fd, request.data(), request.size(), MSG_NOSIGNAL);
      char buf[65536];
      for (;;) {
        pollfd pfd{fd, POLLIN, 0};
        if (::poll(&pfd, 1, 15000) <= 0) break;
        const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
        if (n <= 0) break;
        out.append(buf, static_cast<std::size_t>(n));
      }
    }
    (void)!::write(pipefd[1], out.data(), out.size());
    ::_exit(0);
  }
  ::close(pipefd[1]);
  std::string out;
  char buf[65536];
  for (ssize_t n; (n = ::read(pipefd[0], buf, sizeof buf)) > 0;) out.append(buf, static_cast<std::size_t>(n));
  ::close(pipefd[0]);
  int status = 0;
  ::waitpid(pid, &status, 0);
  return out;
}

TEST_F(Control, MetricsOnAUnixSocketAreForRootOnly) {
  // A directory anyone may traverse: what keeps another user out is the socket's own mode.
  TempDir dir("sysvisor-msock");
  ASSERT_EQ(::chmod(dir.path().c_str(), 0755), 0);
  const fs::path sock = dir.path() / "metrics.sock";
  Daemon daemon(dir.path() / "run", policies(), dir.path() / "audit.jsonl", dir.path() / "daemon.log",
                {"--metrics-listen", "unix:" + sock.string()});
  ASSERT_TRUE(daemon.ready()) << read_file(dir.path() / "daemon.log");
  struct stat st {};
  ASSERT_EQ(::stat(sock.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  EXPECT_EQ(st.st_uid, 0u);
  const std::string root = scrape_unix_as(sock, 0, 0);
  EXPECT_NE(root.find("HTTP/1.0 200 OK"), std::string::npos) << root;
  EXPECT_NE(root.find("\nsysvisor_uptime_seconds "), std::string::npos) << root;
  // Any other local user: the kernel's answer for a socket it may not write.
  EXPECT_EQ(scrape_unix_as(sock, 65534, 65534), "connect: " + std::string(std::strerror(EACCES)));
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
  EXPECT_FALSE(fs::exists(sock)) << "the metrics socket outlived the daemon";
}

}  // namespace
}  // namespace sysvisor::it
