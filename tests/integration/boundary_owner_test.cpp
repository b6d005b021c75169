// Container identity and per-user bounds, on the real kernel with the real daemon, as the user
// who attacks (issue 14, findings 3 and 4): a container id belongs to the uid whose handoff first
// used it while any of its sessions lives; `policy learn` takes root's records only unless told;
// a user's sessions are bounded; a listener is adopted once; the audit rate limit holds per uid,
// however many sessions the user opens.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <optional>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr uid_t kUser = 4242;  // an unprivileged user, granted every policy and learn mode

// A process in the background (a container that stays up), killed at destruction.
class Background {
 public:
  Background(const std::vector<std::string>& argv, const fs::path& out) {
    pid_ = ::fork();
    if (pid_ == 0) {
      const int fd = ::open(out.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      ::dup2(fd, 1);
      ::dup2(fd, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
  }
  ~Background() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Background(const Background&) = delete;
  Background& operator=(const Background&) = delete;

 private:
  pid_t pid_ = -1;
};

class BoundaryOwner : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root (the daemon, other users)";
    dir_ = std::make_unique<TempDir>("sysvisor-owner");
    fs::create_directories(policies());
    for (const char* name : {"deny-dangerous.yaml", "rootless-devices.yaml"}) {
      fs::copy_file(source_dir() / "policies" / name, policies() / name);
    }
    fs::create_directories(scratch());
    ::chmod(scratch().c_str(), 01777);
  }
  void TearDown() override {
    background_.clear();  // the containers go before the daemon
    if (daemon_) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << "clean shutdown on SIGTERM\n" << tail_of_log();
    }
  }

  // The configuration: root and kUser may use every policy, in learn mode too; `more` is
  // appended (limits, audit_rate).
  void start(const std::string& more = "") {
    const fs::path file = dir_->path() / "sysvisor.yaml";
    std::ofstream(file) << "access:\n"
                           "  - users: [root, \"4242\"]\n"
                           "    policies: [\"*\"]\n"
                           "    learn: true\n"
                        << more;
    daemon_ = std::make_unique<Daemon>(runtime(), policies(), audit_log(), daemon_log(),
                                       std::vector<std::string>{"--config", file.string()});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
    ::chmod(runtime().c_str(), 0755);
  }

  // `sysvisor-agent exec` of `cmd` as `uid` (0: root) under `policy`, container id `id`.
  [[nodiscard]] std::vector<std::string> exec_argv(uid_t uid, const std::string& policy,
                                                   const std::string& id, const std::vector<std::string>& cmd,
                                                   bool learn = false) const {
    std::vector<std::string> argv;
    if (uid != 0) {
      argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(uid), "--regid=" + std::to_string(uid),
              "--clear-groups"};
    }
    argv.insert(argv.end(), {public_bin("sysvisor-agent").string(), "exec", "--runtime-dir",
                             runtime().string(), "--policy", policy, "--id", id});
    if (learn) argv.emplace_back("--learn");
    argv.emplace_back("--");
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return argv;
  }
  // A container that stays up (sleep) until the test ends.
  void keep_up(uid_t uid, const std::string& id) {
    background_.push_back(
        std::make_unique<Background>(exec_argv(uid, "deny-dangerous", id, {"/bin/sleep", "120"}),
                                     dir_->path() / ("bg-" + std::to_string(background_.size()) + ".out")));
  }
  [[nodiscard]] std::size_t supervised_count(const std::string& id) const {
    const std::string log = read_file(daemon_log());
    const std::string needle = "[c=" + id + "] supervised with policy";
    std::size_t n = 0;
    for (auto at = log.find(needle); at != std::string::npos; at = log.find(needle, at + 1)) ++n;
    return n;
  }
  [[nodiscard]] json containers() const {
    const auto o =
        run({(bin_dir() / "sysvisor").string(), "containers", "--json", "--runtime-dir", runtime().string()});
    EXPECT_EQ(o.status, 0) << o.err;
    return json::parse(o.out.empty() ? "{}" : o.out);
  }
  [[nodiscard]] std::string tail_of_log() const {
    const std::string log = read_file(daemon_log());
    return log.size() > 4000 ? log.substr(log.size() - 4000) : log;
  }
  [[nodiscard]] bool logged(const std::string& text) const {
    return wait_for([&] { return read_file(daemon_log()).find(text) != std::string::npos; }, 5s);
  }
  [[nodiscard]] std::vector<json> audit_of(const std::string& id) const {
    std::vector<json> out;
    for (const auto& l : audit_lines(audit_log(), id)) out.push_back(json::parse(l));
    return out;
  }

  [[nodiscard]] fs::path runtime() const { return dir_->path() / "run"; }
  [[nodiscard]] fs::path policies() const { return dir_->path() / "policies"; }
  [[nodiscard]] fs::path audit_log() const { return dir_->path() / "audit.jsonl"; }
  [[nodiscard]] fs::path daemon_log() const { return dir_->path() / "daemon.log"; }
  [[nodiscard]] fs::path scratch() const { return dir_->path() / "scratch"; }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  std::vector<std::unique_ptr<Background>> background_;
};

// (a) A user's agent with root's live container id is refused, naming the id; so is a user's
// OCI state with it. Root's container stays one entry, owned by 0, with one session.
TEST_F(BoundaryOwner, AnotherUsersHandoffWithRootsLiveIdIsRefused) {
  start();
  keep_up(0, "prod-db");
  ASSERT_TRUE(wait_for([&] { return supervised_count("prod-db") == 1; })) << tail_of_log();

  const auto agent = run(exec_argv(kUser, "deny-dangerous", "prod-db", {"/bin/echo", "ran"}));
  EXPECT_NE(agent.status, 0);
  EXPECT_EQ(agent.out.find("ran"), std::string::npos) << "nothing runs";
  EXPECT_NE(agent.err.find("container id `prod-db` is in use by another user's container"), std::string::npos)
      << agent.err;

  // From a user namespace of its own (root in there) the user is still the user.
  auto in_namespace = exec_argv(kUser, "deny-dangerous", "prod-db", {"/bin/echo", "ran"});
  in_namespace.insert(in_namespace.begin() + 4, {"/usr/bin/unshare", "-Ur"});
  const auto namespaced = run(in_namespace);
  EXPECT_NE(namespaced.status, 0);
  EXPECT_EQ(namespaced.out.find("ran"), std::string::npos) << "nothing runs";
  EXPECT_NE(namespaced.err.find("container id `prod-db` is in use by another user's container"),
            std::string::npos)
      << namespaced.err;

  EXPECT_EQ(oci_handoff_as(runtime() / "oci.sock", kUser, "prod-db"), ENOSYS)
      << "refused: the listener is closed, nobody answers\n"
      << tail_of_log();
  EXPECT_TRUE(logged("container id `prod-db` is in use by another user's container")) << tail_of_log();
  EXPECT_EQ(read_file(daemon_log()).find("joins the container"), std::string::npos) << tail_of_log();
  EXPECT_EQ(supervised_count("prod-db"), 1U) << tail_of_log();

  const json reply = containers();
  ASSERT_TRUE(reply.contains("containers") && reply["containers"].contains("containers")) << reply.dump();
  const json& list = reply["containers"]["containers"];
  ASSERT_EQ(list.size(), 1U) << reply.dump();
  EXPECT_EQ(list[0]["id"], "prod-db");
  EXPECT_EQ(list[0]["owner"], 0);
  EXPECT_EQ(list[0]["sessions"], 1);

  // The user's own id is the user's; root's handoff with it is refused the same way.
  EXPECT_EQ(oci_handoff_as(runtime() / "oci.sock", kUser, "users-own"), EPERM) << tail_of_log();
  const auto table =
      run({(bin_dir() / "sysvisor").string(), "containers", "--runtime-dir", runtime().string()});
  EXPECT_NE(table.out.find("OWNER"), std::string::npos) << table.out;
}

// (b) A user's learn-mode container that used root's id (when root's was not running) does not
// write root's learned policy; --owner takes the user's.
TEST_F(BoundaryOwner, PolicyLearnTakesRootsRecordsOnlyUnlessTold) {
  start();
  const std::string probe = public_bin("probe").string();
  const auto users = run(exec_argv(kUser, "rootless-devices", "web-1",
                                   {probe, "mknod", (scratch() / "sda").string(), "b", "8", "0"}, true));
  ASSERT_TRUE(wait_for([&] { return audit_of("web-1").size() == 1; })) << users.err << tail_of_log();
  const auto roots = run(exec_argv(0, "rootless-devices", "web-1",
                                   {probe, "mknod", (scratch() / "null").string(), "c", "1", "3"}, true));
  ASSERT_TRUE(wait_for([&] { return audit_of("web-1").size() == 2; })) << roots.err << tail_of_log();
  const auto records = audit_of("web-1");
  EXPECT_EQ(records[0]["owner_uid"], kUser) << records[0].dump();
  EXPECT_EQ(records[1]["owner_uid"], 0) << records[1].dump();

  const std::string sysvisor = (bin_dir() / "sysvisor").string();
  const auto learned =
      run({sysvisor, "policy", "learn", audit_log().string(), "--container", "web-1", "--output", "-"});
  ASSERT_EQ(learned.status, 0) << learned.err;
  EXPECT_NE(learned.out.find("1:3"), std::string::npos) << learned.out;
  EXPECT_EQ(learned.out.find("8:0"), std::string::npos) << "the user's device is not in root's policy\n"
                                                        << learned.out;
  EXPECT_NE(learned.err.find("left out 1 records of containers of other owners than uid 0"),
            std::string::npos)
      << learned.err;

  const auto theirs = run({sysvisor, "policy", "learn", audit_log().string(), "--container", "web-1",
                           "--owner", std::to_string(kUser), "--output", "-"});
  ASSERT_EQ(theirs.status, 0) << theirs.err;
  EXPECT_NE(theirs.out.find("8:0"), std::string::npos) << theirs.out;
  EXPECT_EQ(theirs.out.find("1:3"), std::string::npos) << theirs.out;
}

// (c) A user at its session bound is refused with a clear error; root is still served.
TEST_F(BoundaryOwner, AUserAtItsSessionBoundIsRefusedAndRootIsServed) {
  start("limits: {sessions_per_uid: 2}\n");
  keep_up(kUser, "u-1");
  keep_up(kUser, "u-2");
  ASSERT_TRUE(wait_for([&] { return supervised_count("u-1") == 1 && supervised_count("u-2") == 1; }))
      << tail_of_log();
  const auto third = run(exec_argv(kUser, "deny-dangerous", "u-3", {"/bin/echo", "ran"}));
  EXPECT_NE(third.status, 0);
  EXPECT_EQ(third.out.find("ran"), std::string::npos);
  EXPECT_NE(third.err.find("uid 4242 has 2 supervised processes, its bound (limits.sessions_per_uid"),
            std::string::npos)
      << third.err;
  EXPECT_EQ(oci_handoff_as(runtime() / "oci.sock", kUser, "u-4"), ENOSYS) << tail_of_log();
  EXPECT_TRUE(logged("refused: uid 4242 has 2 supervised processes")) << tail_of_log();

  const auto root = run(exec_argv(0, "deny-dangerous", "root-1", {"/bin/echo", "ran"}));
  EXPECT_EQ(root.status, 0) << root.err;
  EXPECT_EQ(root.out, "ran\n");
  EXPECT_EQ(oci_handoff_as(runtime() / "oci.sock", 0, "root-2"), EPERM) << tail_of_log();
}

// (d) The same listener handed off twice: the second handoff is refused, the first session
// keeps answering.
TEST_F(BoundaryOwner, AListenerHandedOffTwiceIsAdoptedOnce) {
  start();
  auto child = filtered_child(__NR_unshare, [] { return ::syscall(SYS_unshare, CLONE_NEWUTS); });
  ASSERT_NE(child, nullptr);
  const fs::path oci = runtime() / "oci.sock";
  for (const char* id : {"twice", "twice-again"}) {
    const int s = connect_to(oci, SOCK_STREAM);
    ASSERT_GE(s, 0);
    send_with(s, runc_payload(id, child->pid, "policy=deny-dangerous"), {child->listener});
    EXPECT_TRUE(closed_by_daemon(s));
  }
  EXPECT_TRUE(logged("this seccomp listener is already supervised")) << tail_of_log();
  EXPECT_EQ(supervised_count("twice"), 1U) << tail_of_log();
  EXPECT_EQ(supervised_count("twice-again"), 0U) << tail_of_log();
  child->drop_listener();
  EXPECT_EQ(child->call_errno(), EPERM) << "the first session answers\n" << tail_of_log();
}

// (e) Many sessions of one uid share one audit budget: what they write together stays within
// what one session may write in the time, and every call is accounted for (written or counted
// in a `suppressed` summary).
TEST_F(BoundaryOwner, TheAuditRateHoldsPerUidAcrossSessions) {
  constexpr int kSessions = 8;
  constexpr int kCalls = 10;
  constexpr int kBurst = 5;
  start("audit_rate: {per_second: 1, burst: 5}\n");
  const std::string probe = public_bin("probe").string();
  std::string script;
  for (int i = 0; i < kCalls; ++i) {
    script += probe + " mknod " + (scratch() / ("n" + std::to_string(i))).string() + " c 1 3; ";
  }
  script += "true";  // the user's mknods fail (EPERM): the kernel decides in learn mode
  const auto started = std::chrono::steady_clock::now();
  for (int s = 0; s < kSessions; ++s) {
    const auto o = run(
        exec_argv(kUser, "rootless-devices", "rate-" + std::to_string(s), {"/bin/sh", "-c", script}, true));
    ASSERT_EQ(o.status, 0) << o.err << tail_of_log();
  }
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  std::size_t written = 0;
  std::uint64_t suppressed = 0;
  for (int s = 0; s < kSessions; ++s) {
    const std::string id = "rate-" + std::to_string(s);
    // Each session's summary is written when it closes.
    ASSERT_TRUE(wait_for([&] {
      std::uint64_t n = 0;
      for (const auto& r : audit_of(id)) n += r["event"] == "call" ? 1 : r["count"].get<std::uint64_t>();
      return n == kCalls;
    })) << id
        << ": written + suppressed must equal the calls\n"
        << read_file(audit_log());
    for (const auto& r : audit_of(id)) {
      EXPECT_EQ(r["owner_uid"], kUser) << r.dump();
      if (r["event"] == "call") {
        ++written;
      } else {
        EXPECT_EQ(r["event"], "suppressed");
        suppressed += r["count"].get<std::uint64_t>();
      }
    }
  }
  EXPECT_EQ(written + suppressed, static_cast<std::uint64_t>(kSessions * kCalls));
  // One budget: the burst, plus one a second, plus one for the rounding of the clock.
  EXPECT_LE(static_cast<double>(written), kBurst + seconds * 1.0 + 1.0)
      << written << " records in " << seconds << " s across " << kSessions << " sessions";
}

// The sessions of one container (an OCI run and its execs: one id, one owner) share the
// container's budget too, root's included.
TEST_F(BoundaryOwner, TheAuditRateHoldsPerContainerAcrossItsSessions) {
  constexpr int kSessions = 4;
  constexpr int kCalls = 5;
  constexpr int kBurst = 3;
  start("audit_rate: {per_second: 1, burst: 3}\n");
  const auto started = std::chrono::steady_clock::now();
  std::vector<std::unique_ptr<FilteredChild>> children;
  for (int i = 0; i < kSessions; ++i) {
    auto child = filtered_child(__NR_unshare, [] {
      long rc = 0;
      for (int n = 0; n < kCalls; ++n) rc = ::syscall(SYS_unshare, CLONE_NEWUTS);
      return rc;
    });
    ASSERT_NE(child, nullptr);
    const int s = connect_to(runtime() / "oci.sock", SOCK_STREAM);
    ASSERT_GE(s, 0);
    send_with(s, runc_payload("one-container", child->pid, "policy=deny-dangerous"), {child->listener});
    EXPECT_TRUE(closed_by_daemon(s));
    child->drop_listener();
    children.push_back(std::move(child));
  }
  for (auto& child : children) EXPECT_EQ(child->call_errno(), EPERM) << tail_of_log();
  const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - started).count();
  children.clear();  // the processes exit: every session closes and writes its summary
  std::size_t written = 0;
  ASSERT_TRUE(wait_for([&] {
    std::uint64_t n = 0;
    written = 0;
    for (const auto& r : audit_of("one-container")) {
      if (r["event"] == "call") ++written;
      n += r["event"] == "call" ? 1 : r["count"].get<std::uint64_t>();
    }
    return n == static_cast<std::uint64_t>(kSessions * kCalls);
  })) << "written + suppressed must equal the calls\n"
      << read_file(audit_log()) << tail_of_log();
  EXPECT_EQ(supervised_count("one-container"), static_cast<std::size_t>(kSessions));
  EXPECT_LE(static_cast<double>(written), kBurst + seconds * 1.0 + 1.0)
      << written << " records in " << seconds << " s across " << kSessions << " sessions";
}

}  // namespace
}  // namespace sysvisor::it
