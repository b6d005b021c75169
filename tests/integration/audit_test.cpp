// Audit and learning on the real kernel: sysvisor serve + sysvisor-agent run + busybox
// containers. The record's fields against the container process, the per-container rate
// limit, the log reopened on SIGHUP, syslog, audit mode, and the learn round trip.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using json = nlohmann::json;

// Polls `done` for up to `limit`: for what the daemon writes after the container has exited
// (the rate-limit summary at session close, a reload).
template <class F>
bool eventually(F done, std::chrono::seconds limit = std::chrono::seconds(10)) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (done()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return done();
}

std::vector<json> records(const fs::path& log, const std::string& container) {
  std::vector<json> out;
  for (const auto& l : audit_lines(log, container)) out.push_back(json::parse(l));
  return out;
}

class Audit : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = std::make_unique<TempDir>("sysvisor-audit");
    fs::create_directories(policies());
    for (const auto& e : fs::directory_iterator(source_dir() / "policies")) {
      if (e.path().extension() == ".yaml") fs::copy_file(e.path(), policies() / e.path().filename());
    }
    rootfs_ = dir_->path() / "rootfs";
    fs::create_directories(rootfs_);
    make_rootfs(rootfs_, kHostRoot);
  }

  // `audit`: the --audit argument (default: the file audit_log()).
  void start(const std::vector<std::string>& extra = {}, const fs::path& audit = {}) {
    daemon_ = std::make_unique<Daemon>(runtime(), policies(), audit.empty() ? audit_log() : audit,
                                       daemon_log(), extra);
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }

  Outcome container(const std::string& script, const std::string& policy, const std::string& id,
                    const std::vector<std::string>& options = {}) {
    return run_container(runtime(), policy, rootfs_, script, id, options);
  }

  fs::path runtime() const { return dir_->path() / "run"; }
  fs::path policies() const { return dir_->path() / "policies"; }
  fs::path audit_log() const { return dir_->path() / "audit.jsonl"; }
  fs::path daemon_log() const { return dir_->path() / "daemon.log"; }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  fs::path rootfs_;
};

TEST_F(Audit, RecordDescribesTheCallerAsItIs) {
  start();
  // A second thread, under container uid 1000: the record must tell thread from process and
  // the container's ids from the host's. `$$` is the probe's pid as the container sees it.
  const auto o = container("sh -c 'echo $$; exec probe as 1000 1000 0 -- probe thread /dev/sda b 8 0'",
                           "rootless-devices", "fields");
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 2U) << o.out << o.err;
  EXPECT_EQ(out[1], "EPERM");
  const int container_pid = std::stoi(out[0]);
  const auto recs = records(audit_log(), "fields");
  ASSERT_EQ(recs.size(), 1U);
  const json& r = recs[0];
  EXPECT_EQ(r["event"], "call");
  EXPECT_EQ(r["engine"], "sysvisor-agent");
  EXPECT_EQ(r["policy"], "rootless-devices");
  EXPECT_EQ(r["policy_version"].get<std::string>().size(), 16U);
  EXPECT_EQ(r["container_pid"], container_pid);
  EXPECT_NE(r["container_tid"], container_pid) << "the call came from the second thread";
  EXPECT_NE(r["host_pid"], r["host_tid"]);
  EXPECT_NE(r["host_pid"], container_pid) << "the container has its own pid namespace";
  EXPECT_GT(r["host_tid"].get<int>(), 0);
  EXPECT_EQ(r["comm"], "probe");
  EXPECT_EQ(r["exe"], "/bin/probe");
  EXPECT_EQ(r["host_uid"], kHostRoot + 1000);
  EXPECT_EQ(r["container_uid"], 1000);
  EXPECT_EQ(r["syscall"], "mknodat");  // glibc mknod
  EXPECT_EQ(r["arch"], "x86_64");
  EXPECT_EQ(r["args"]["path"], "/dev/sda");
  EXPECT_EQ(r["args"]["paths"], json::array({"/dev/sda"}));
  EXPECT_EQ(r["args"]["type"], "block");
  EXPECT_EQ(r["args"]["device"], "8:0");
  EXPECT_EQ(r["args"]["mode"], "0666");
  EXPECT_EQ(r["args"]["raw"].size(), 6U);
  EXPECT_EQ(r["action"], "deny");
  EXPECT_EQ(r["rule"], "other-devices");
  EXPECT_EQ(r["result"], "EPERM");
  EXPECT_EQ(r["errno"], EPERM);
  EXPECT_FALSE(r.contains("would"));
  EXPECT_TRUE(r["latency_us"].is_number());
  // RFC 3339 in UTC with nanoseconds (protobuf prints 3, 6 or 9 digits; 9 unless they end in 0).
  const std::string t = r["time"];
  EXPECT_EQ(t.size() >= 20 ? t.substr(4, 1) + t.substr(10, 1) + t.substr(t.size() - 1) : "", "-TZ") << t;
}

TEST_F(Audit, AFloodIsRateLimitedPerContainerAndCountedExactly) {
  const fs::path config = dir_->path() / "sysvisor.yaml";
  std::ofstream(config) << "audit_rate: {per_second: 5, burst: 50}\n";
  start({"--config", config.string()});
  constexpr int kFlood = 300;
  const auto flood =
      container("i=0; while [ $i -lt " + std::to_string(kFlood) +
                    " ]; do probe mknod /dev/sda b 8 0 >/dev/null; i=$((i+1)); done; probe mknod "
                    "/dev/sda b 8 0",
                "rootless-devices", "flood");
  // The answer is never changed by the limit: the last call was refused like the first.
  EXPECT_EQ(flood.out, "EPERM\n") << flood.err;
  // Right after, another container: its own bucket, every record written.
  const auto quiet =
      container("i=0; while [ $i -lt 20 ]; do probe mknod /dev/sdb b 8 16 >/dev/null; i=$((i+1)); done",
                "rootless-devices", "quiet");
  EXPECT_EQ(quiet.status, 0) << quiet.err;
  std::size_t written = 0;
  std::uint64_t suppressed = 0;
  std::size_t summaries = 0;
  const auto count = [&] {
    written = suppressed = summaries = 0;
    for (const auto& r : records(audit_log(), "flood")) {
      if (r["event"] == "call") {
        ++written;
      } else if (r["event"] == "suppressed") {
        ++summaries;
        suppressed += r["count"].get<std::uint64_t>();
        EXPECT_LE(r["since"].get<std::string>(), r["until"].get<std::string>());
      }
    }
    return written + suppressed == kFlood + 1;
  };
  // The last summary is written when the session closes, just after the container exits.
  EXPECT_TRUE(eventually(count)) << written << " written + " << suppressed << " suppressed";
  EXPECT_EQ(written + suppressed, static_cast<std::uint64_t>(kFlood + 1));
  EXPECT_GE(summaries, 1U);
  EXPECT_GE(written, 50U) << "the burst";
  EXPECT_LT(written, 150U) << "5 a second beyond the burst";
  const auto q = records(audit_log(), "quiet");
  EXPECT_EQ(q.size(), 20U);
  for (const auto& r : q) EXPECT_EQ(r["event"], "call");
}

TEST_F(Audit, TheSummaryComesWithinASecondWhileTheContainerGoesOn) {
  const fs::path config = dir_->path() / "sysvisor.yaml";
  std::ofstream(config) << "audit_rate: {per_second: 1, burst: 5}\n";
  start({"--config", config.string()});
  // 30 refused calls, then the container stays alive (and quiet): the summary of what was held
  // back must come from the timer, not from the session's end.
  std::atomic<bool> done{false};
  std::thread run([&] {
    container("i=0; while [ $i -lt 30 ]; do probe mknod /dev/sda b 8 0 >/dev/null; i=$((i+1)); done; sleep 4",
              "rootless-devices", "timer");
    done = true;
  });
  std::uint64_t suppressed = 0;
  const bool seen = eventually([&] {
    for (const auto& r : records(audit_log(), "timer"))
      if (r["event"] == "suppressed") suppressed += r["count"].get<std::uint64_t>();
    return suppressed > 0;
  });
  const bool still_running = !done;
  run.join();
  EXPECT_TRUE(seen);
  EXPECT_TRUE(still_running) << "the summary came only at the end";
  EXPECT_GE(suppressed, 20U);
}

TEST_F(Audit, LogIsReopenedOnSighupAndNothingIsLost) {
  start();
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "before").out, "EPERM\n");
  const fs::path rotated = dir_->path() / "audit.jsonl.1";
  fs::rename(audit_log(), rotated);
  // Until the daemon is told, it writes to the file it has open, now called audit.jsonl.1.
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "moved").out, "EPERM\n");
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] {
    return read_file(daemon_log()).find("reload: in force") != std::string::npos;
  })) << read_file(daemon_log());
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "after").out, "EPERM\n");
  EXPECT_EQ(audit_lines(rotated, "before").size(), 1U);
  EXPECT_EQ(audit_lines(rotated, "moved").size(), 1U);
  EXPECT_EQ(audit_lines(rotated, "after").size(), 0U);
  EXPECT_EQ(audit_lines(audit_log(), "after").size(), 1U);
  EXPECT_EQ(lines(read_file(audit_log())).size(), 1U) << "only the new record in the new file";
  EXPECT_EQ(fs::status(audit_log()).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

// logrotate's SIGHUP while a policy is broken: the reload fails and the running set stays, but
// the log is reopened all the same, so no record goes on into the file the next rotation deletes.
TEST_F(Audit, LogIsReopenedOnSighupEvenWhenTheReloadFails) {
  start();
  const fs::path rotated = dir_->path() / "audit.jsonl.1";
  std::ofstream(policies() / "broken.yaml")
      << "name: broken\nrules: [{syscalls: [mknod], action: nonsense}]\n";
  fs::rename(audit_log(), rotated);
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return read_file(daemon_log()).find("reload failed") != std::string::npos; }))
      << read_file(daemon_log());
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "after").out, "EPERM\n");
  EXPECT_EQ(audit_lines(rotated, "after").size(), 0U);
  EXPECT_EQ(audit_lines(audit_log(), "after").size(), 1U);
  EXPECT_EQ(fs::status(audit_log()).permissions() & fs::perms::all,
            fs::perms::owner_read | fs::perms::owner_write);
}

// Mounts in this process's own mount namespace: what gtest runs next is another process
// under ctest, and even run together nothing else depends on /dev/log.
TEST_F(Audit, SyslogGetsOneMessagePerRecord) {
  ASSERT_EQ(::unshare(CLONE_NEWNS), 0);
  ASSERT_EQ(::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr), 0);
  const fs::path sock_path = dir_->path() / "log.sock";
  const int sock = bind_datagram(sock_path);
  ASSERT_GE(sock, 0) << sock_path;
  // /dev/log must exist to be mounted over. Without a syslog daemon it does not: a tmpfs over
  // /dev (in this namespace only) holds it, with every entry of the real /dev bound in through
  // O_PATH fds taken before. The real /dev is never reachable below a directory this test
  // removes (the host's devtmpfs is shared: removing there removes on the host).
  bool own_dev = false;
  if (!fs::exists("/dev/log")) {
    struct Entry {
      std::string name;
      fs::path link;  // symlinks: their target
      bool dir = false;
      int fd = -1;
    };
    std::vector<Entry> entries;
    for (const auto& e : fs::directory_iterator("/dev")) {
      Entry x{e.path().filename().string(), {}, false, -1};
      if (e.is_symlink()) {
        x.link = fs::read_symlink(e.path());
      } else {
        x.dir = e.is_directory();
        x.fd = ::open(e.path().c_str(), O_PATH | O_CLOEXEC | O_NOFOLLOW);
        if (x.fd < 0) continue;
      }
      entries.push_back(std::move(x));
    }
    ASSERT_EQ(::mount("tmpfs", "/dev", "tmpfs", MS_NOSUID, "mode=0755"), 0);
    own_dev = true;
    for (const auto& x : entries) {
      const fs::path at = fs::path("/dev") / x.name;
      if (x.fd < 0) {
        fs::create_symlink(x.link, at);
        continue;
      }
      if (x.dir) {
        fs::create_directory(at);
      } else {
        std::ofstream{at};
      }
      const std::string from = "/proc/self/fd/" + std::to_string(x.fd);
      EXPECT_EQ(::mount(from.c_str(), at.c_str(), nullptr, MS_BIND | MS_REC, nullptr), 0) << at;
      ::close(x.fd);
    }
    std::ofstream{"/dev/log"};
  }
  ASSERT_EQ(::mount(sock_path.c_str(), "/dev/log", nullptr, MS_BIND, nullptr), 0);
  start({}, "syslog");
  EXPECT_EQ(
      container("probe mknod /dev/sda b 8 0; probe mknod /dev/sdb b 8 16", "rootless-devices", "sl").out,
      "EPERM\nEPERM\n");
  std::vector<std::string> got;
  timeval tv{5, 0};
  ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  while (got.size() < 2) {
    std::array<char, 65536> buf{};
    const ssize_t n = ::recv(sock, buf.data(), buf.size(), 0);
    if (n <= 0) break;
    const std::string msg(buf.data(), static_cast<std::size_t>(n));
    if (msg.find("\"container\":\"sl\"") != std::string::npos) got.push_back(msg);
  }
  ::close(sock);
  ASSERT_EQ(got.size(), 2U);
  for (const auto& m : got) {
    // <PRI>: LOG_AUTHPRIV (10 << 3) | LOG_INFO (6) = 86, then the ident, then the JSON.
    EXPECT_TRUE(m.starts_with("<86>")) << m;
    EXPECT_NE(m.find("sysvisor-audit"), std::string::npos) << m;
    const auto brace = m.find('{');
    ASSERT_NE(brace, std::string::npos) << m;
    const json r = json::parse(m.substr(brace));
    EXPECT_EQ(r["result"], "EPERM");
  }
  EXPECT_NE(got[0].find("/dev/sda"), std::string::npos);
  EXPECT_NE(got[1].find("/dev/sdb"), std::string::npos);
  EXPECT_FALSE(fs::exists(audit_log()) && !read_file(audit_log()).empty()) << "nothing written elsewhere";
  daemon_.reset();
  if (own_dev) ::umount2("/dev", MNT_DETACH);
}

TEST_F(Audit, AuditModeAllowsAndSaysWhatWouldHaveBeenDone) {
  start();
  // Enforcing, the mount is refused; in audit mode the kernel decides (and lets container
  // root mount a tmpfs in its own namespaces), and the record says it would have been denied.
  EXPECT_EQ(container("probe mount none /tmp tmpfs", "deny-dangerous", "enforced").out, "EPERM\n");
  EXPECT_EQ(container("probe mount none /tmp tmpfs", "audit-only-dangerous", "audited").out, "ok\n");
  const auto recs = records(audit_log(), "audited");
  ASSERT_EQ(recs.size(), 1U);
  EXPECT_EQ(recs[0]["syscall"], "mount");
  EXPECT_EQ(recs[0]["action"], "allow");
  EXPECT_EQ(recs[0]["would"], "deny");
  EXPECT_EQ(recs[0]["rule"], "dangerous-calls");
  EXPECT_EQ(recs[0]["rule_policy"], "deny-dangerous");
  EXPECT_EQ(recs[0]["result"], "continue");
  EXPECT_FALSE(recs[0].contains("errno"));
  // Every argument is decoded for the record, although no rule reads them.
  EXPECT_EQ(recs[0]["args"]["fstype"], "tmpfs");
  EXPECT_EQ(recs[0]["args"]["target"], "/tmp");
}

// Issue 19, item 4: what a forensic reader needs, decoded. In audit mode every record names the
// register values (namespace flags, setns's type, ptrace's request and pid, bpf's command) and
// carries execve's argv; an enforcing policy's records do only with `audit_arguments: all`.
TEST_F(Audit, ForensicArgumentsAreDecodedInAuditModeAndOnRequestWhenEnforcing) {
  const std::string rules =
      "rules:\n  - {name: watch, syscalls: [unshare, setns, ptrace, bpf, execve], action: allow, audit: "
      "true}\n";
  std::ofstream(policies() / "forensic-audit.yaml") << "name: forensic-audit\nmode: audit\n" << rules;
  std::ofstream(policies() / "forensic-all.yaml") << "name: forensic-all\naudit_arguments: all\n" << rules;
  std::ofstream(policies() / "forensic-matched.yaml") << "name: forensic-matched\n" << rules;
  start();
  // unshare(CLONE_NEWUSER|CLONE_NEWNS), setns(-1, CLONE_NEWNET), ptrace(PTRACE_PEEKDATA, 99999),
  // bpf(BPF_PROG_LOAD, NULL, 0): the kernel answers (EINVAL or so); the records say what was asked.
  const std::string script =
      "probe call 272 0x10020000; probe call 308 -1 0x40000000; probe call 101 2 99999 0 0; "
      "probe call 321 5 0 0; probe stat /dev/../bin/probe; true";
  for (const std::string policy : {"forensic-audit", "forensic-all", "forensic-matched"}) {
    SCOPED_TRACE(policy);
    const auto o = container(script, policy, policy);
    ASSERT_EQ(o.status, 0) << o.err;
    const auto recs = records(audit_log(), policy);
    const auto of = [&](const std::string& syscall, const std::string& field) -> json {
      for (const auto& r : recs) {
        if (r["syscall"] == syscall && r["args"].contains(field)) return r["args"][field];
      }
      return nullptr;
    };
    const bool decoded = policy != "forensic-matched";
    if (!decoded) {
      for (const auto& r : recs) {
        for (const char* f : {"clone_flags", "ns_type", "ptrace_request", "target_pid", "bpf_cmd"})
          EXPECT_FALSE(r["args"].contains(f)) << r.dump();
        EXPECT_TRUE(r["args"].value("argv", json::array()).empty()) << r.dump();
        EXPECT_TRUE(r["args"].contains("raw")) << r.dump();
      }
      continue;
    }
    EXPECT_EQ(of("unshare", "clone_flags"), "CLONE_NEWNS|CLONE_NEWUSER") << o.out;
    EXPECT_EQ(of("setns", "ns_type"), "CLONE_NEWNET");
    EXPECT_EQ(of("ptrace", "ptrace_request"), "PTRACE_PEEKDATA");
    EXPECT_EQ(of("ptrace", "target_pid"), 99999);
    EXPECT_EQ(of("bpf", "bpf_cmd"), "BPF_PROG_LOAD");
    // busybox sh execs the probe with its arguments as written.
    bool argv_seen = false;
    for (const auto& r : recs) {
      if (r["syscall"] == "execve" && r["args"].contains("argv") &&
          r["args"]["argv"] == json::array({"probe", "stat", "/dev/../bin/probe"})) {
        argv_seen = true;
        EXPECT_EQ(r["args"]["path"], "/bin/probe");
      }
    }
    EXPECT_TRUE(argv_seen) << o.out;
  }
}

// Issue 19, item 3: a rule that records what it matches on a path and refuses nothing. The
// kernel answers every open (the file is read); the records are those of the rule's matches only,
// `allow` with `memory_reread`, since the kernel read the path again after sysvisor's copy. A
// refusal (here mknod's) is answered on sysvisor's copy: no such mark. `policy check` says the
// rule only records.
TEST_F(Audit, AnAllowAuditRuleOnAPathRecordsItsMatchesAndRefusesNothing) {
  const fs::path file = policies() / "watch-etc.yaml";
  std::ofstream(file)
      << "name: watch-etc\nrules:\n"
         "  - {name: watch, syscalls: [open, openat], match: {path: [\"/etc/*\"]}, action: allow, "
         "audit: true}\n"
         "  - {name: no-disks, syscalls: [mknod], match: {type: block}, action: deny, audit: true}\n";
  const auto check = run({(bin_dir() / "sysvisor").string(), "policy", "check", file.string()});
  EXPECT_EQ(check.status, 0) << check.err;
  EXPECT_NE((check.out + check.err).find("warning: [record-only] rule `watch` only records"),
            std::string::npos)
      << check.out << check.err;
  start();
  std::ofstream(rootfs_ / "etc" / "motd") << "hello\n";
  const auto o = container(
      "cat /etc/motd; cat /bin/busybox >/dev/null; ln -s /etc/motd /tmp/l; cat /tmp/l; "
      "probe mknod /tmp/sda b 8 0",
      "watch-etc", "watch");
  EXPECT_EQ(o.out, "hello\nhello\nEPERM\n") << o.err;
  const auto recs = records(audit_log(), "watch");
  std::vector<std::string> opened;
  for (const auto& r : recs) {
    if (r["syscall"] == "mknod") {
      EXPECT_EQ(r["action"], "deny");
      EXPECT_FALSE(r.contains("memory_reread")) << r.dump();
      continue;
    }
    EXPECT_EQ(r["action"], "allow") << r.dump();
    EXPECT_EQ(r["rule"], "watch") << r.dump();
    EXPECT_EQ(r["result"], "continue") << r.dump();
    EXPECT_EQ(r.value("memory_reread", false), true) << r.dump();
    opened.push_back(r["args"]["paths"][0]);
  }
  // Only the rule's matches: /etc/motd (twice: by name; the link's own path is /tmp/l, which the
  // record shows as the caller passed it, and the kernel followed).
  EXPECT_TRUE(std::ranges::count(opened, "/etc/motd") >= 1) << o.out;
  EXPECT_EQ(std::ranges::count(opened, "/bin/busybox"), 0);
}

// execve's argv is bounded (32 strings of 256 bytes) and says so; an unreadable argv is named,
// and the call is the kernel's (EFAULT), not refused for the record's sake.
TEST_F(Audit, ExecveArgvIsBoundedAndAnUnreadableOneIsNamed) {
  std::ofstream(policies() / "forensic-audit.yaml")
      << "name: forensic-audit\nmode: audit\nrules:\n  - {syscalls: [execve], action: allow, audit: true}\n";
  start();
  std::string many = "probe stat /";
  for (int i = 0; i < 40; ++i) many += " a" + std::to_string(i);
  const std::string longarg(300, 'x');
  // execve("/bin/probe", (char **)8, NULL): EFAULT from the kernel.
  const auto o = container(
      many + " >/dev/null; probe stat " + longarg + " >/dev/null; probe call 59 s:/bin/probe 8 0; true",
      "forensic-audit", "argv");
  ASSERT_EQ(o.status, 0) << o.err;
  EXPECT_NE(o.out.find("EFAULT"), std::string::npos) << o.out;
  const auto recs = records(audit_log(), "argv");
  bool bounded = false, cut = false, unreadable = false;
  for (const auto& r : recs) {
    if (r["syscall"] != "execve") continue;
    const json& a = r["args"];
    if (a.contains("argv") && a["argv"].size() == 32 && a.value("argv_truncated", false)) bounded = true;
    if (a.contains("argv") && a["argv"].size() == 3 && a["argv"][2] == std::string(256, 'x') &&
        a.value("argv_truncated", false))
      cut = true;
    if (a.value("argv_error", "") == "EFAULT") unreadable = true;
  }
  EXPECT_TRUE(bounded);
  EXPECT_TRUE(cut);
  EXPECT_TRUE(unreadable);
}

TEST_F(Audit, LearnFlagAtLaunchAllowsAndRecords) {
  // Learn mode at launch lifts enforcement: only where the configuration grants it.
  const fs::path config = dir_->path() / "sysvisor.yaml";
  std::ofstream(config) << "access:\n  - users: [root]\n    policies: [\"*\"]\n    learn: true\n";
  start({"--config", config.string()});
  // rootless-devices enforcing would emulate 1:3; learning, the kernel decides (a rootless
  // container may not make devices) and the record says what the rules would have done.
  const auto o = container("probe mknod /dev/null c 1 3; probe mknod /dev/sda b 8 0", "rootless-devices",
                           "lrn", {"--learn"});
  EXPECT_EQ(o.out, "EPERM\nEPERM\n") << o.err;
  const auto recs = records(audit_log(), "lrn");
  ASSERT_EQ(recs.size(), 2U);
  EXPECT_EQ(recs[0]["action"], "learn");
  EXPECT_EQ(recs[0]["would"], "emulate");
  EXPECT_EQ(recs[0]["args"]["device"], "1:3");
  EXPECT_EQ(recs[1]["action"], "learn");
  EXPECT_EQ(recs[1]["would"], "deny");
  // The kernel decides (its EPERM above): the record cannot know its answer.
  for (const auto& r : recs) EXPECT_EQ(r["result"], "continue");
}

TEST_F(Audit, LearnRoundTrip) {
  start();
  // 1. The workload under the learn policy: the kernel answers (EPERM, rootless), so the
  //    script goes on whatever happens.
  const auto learning = container("mknod /dev/null c 1 3; mknod /dev/zero c 1 5; true", "learn", "rt-learn");
  EXPECT_EQ(learning.status, 0) << learning.err;
  ASSERT_EQ(records(audit_log(), "rt-learn").size(), 2U);
  // 2. Its policy.
  const fs::path learned = dir_->path() / "learned-rt.yaml";
  const auto gen = run({(bin_dir() / "sysvisor").string(), "policy", "learn", audit_log().string(),
                        "--container", "rt-learn", "--name", "learned-rt", "--output", learned.string()});
  ASSERT_EQ(gen.status, 0) << gen.err;
  const fs::path cases = dir_->path() / "learned-rt.cases.yaml";
  ASSERT_TRUE(fs::exists(cases));
  const auto check = run({(bin_dir() / "sysvisor").string(), "policy", "check", learned.string()});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  EXPECT_EQ(check.err.find("warning"), std::string::npos) << check.err;
  const auto test =
      run({(bin_dir() / "sysvisor").string(), "policy", "test", learned.string(), cases.string()});
  EXPECT_EQ(test.status, 0) << test.out << test.err;
  // 3. The daemon again, with that policy; a fresh root filesystem.
  daemon_.reset();
  fs::copy_file(learned, policies() / "learned-rt.yaml");
  start();
  fs::remove_all(rootfs_);
  fs::create_directories(rootfs_);
  make_rootfs(rootfs_, kHostRoot);
  const auto again = container(
      "mknod /dev/null c 1 3 && mknod /dev/zero c 1 5 && probe stat /dev/null && probe stat /dev/zero; "
      "probe mknod /dev/sda b 8 0; probe mknod /tmp/null c 1 3",
      "learned-rt", "rt-enforce");
  EXPECT_EQ(lines(again.out), (std::vector<std::string>{"c 1:3 0 0 644", "c 1:5 0 0 644", "EPERM", "EPERM"}))
      << again.out << again.err << "\n"
      << read_file(learned);
}

// Issue 19: a learned policy keeps what worked while learning working, for every family. The
// same workload runs under `learn` and then under the policy learned from it: a tmpfs mount
// (the kernel's in a user namespace) and its umount give the same answers; what the kernel
// refused a rootless container and an emulator can do (an ext4 image, /dev/null, a trusted.*
// xattr, real-time priority, a lower nice) now works; a disk tried while learning stays refused.
TEST_F(Audit, LearnRoundTripOfEveryFamilyKeepsWhatWorkedAndGrantsNoDisk) {
  if (!fs::exists(sbin("mkfs.ext4")))
    GTEST_SKIP() << "mkfs.ext4 missing (scripts/install-deps installs e2fsprogs)";
  const auto make_image = [&] {
    fs::create_directories(rootfs_ / "images");
    const fs::path image = rootfs_ / "images" / "x.img";
    { std::ofstream(image).close(); }
    fs::resize_file(image, 16U << 20U);
    ASSERT_EQ(run({sbin("mkfs.ext4"), "-q", "-F", image.string()}).status, 0);
    ASSERT_EQ(::chown(image.c_str(), kHostRoot, kHostRoot), 0);
  };
  make_image();
  const std::string workload =
      "mkdir -p /mnt /srv; touch /tmp/f; "
      "probe mount none /mnt tmpfs; probe umount /mnt; "
      "probe mount /images/x.img /srv ext4; probe umount /srv; "
      "probe mknod /dev/null c 1 3; probe mknod /dev/sdb b 8 16; "
      "probe setxattr /tmp/f trusted.overlay.opaque y; "
      "probe sched fifo 5; probe nice -5; true";
  start();
  const auto learning = container(workload, "learn", "rtf-learn");
  ASSERT_EQ(learning.status, 0) << learning.err;
  using V = std::vector<std::string>;
  EXPECT_EQ(lines(learning.out),
            (V{"ok", "ok", "EPERM", "EINVAL", "EPERM", "EPERM", "EPERM", "EPERM", "EACCES"}))
      << "the kernel's answers to a rootless container\n"
      << learning.out << learning.err;
  const fs::path learned = dir_->path() / "learned-rtf.yaml";
  const auto gen = run({(bin_dir() / "sysvisor").string(), "policy", "learn", audit_log().string(),
                        "--container", "rtf-learn", "--name", "learned-rtf", "--output", learned.string()});
  ASSERT_EQ(gen.status, 0) << gen.err;
  EXPECT_NE(gen.err.find("warning: block device 8:16 (/dev/sdb) was refused by the kernel while learning"),
            std::string::npos)
      << gen.err;
  const auto check = run({(bin_dir() / "sysvisor").string(), "policy", "check", learned.string()});
  EXPECT_EQ(check.status, 0) << check.out << check.err;
  const auto test = run({(bin_dir() / "sysvisor").string(), "policy", "test", learned.string(),
                         (dir_->path() / "learned-rtf.cases.yaml").string()});
  EXPECT_EQ(test.status, 0) << test.out << test.err;

  daemon_.reset();
  fs::copy_file(learned, policies() / "learned-rtf.yaml");
  start();
  fs::remove_all(rootfs_);
  fs::create_directories(rootfs_);
  make_rootfs(rootfs_, kHostRoot);
  make_image();
  const auto again = container(workload + "; probe stat /dev/null; true", "learned-rtf", "rtf-enforce");
  EXPECT_EQ(lines(again.out), (V{"ok", "ok", "ok", "ok", "ok", "EPERM", "ok", "ok", "ok", "c 1:3 0 0 644"}))
      << again.out << again.err << "\n"
      << read_file(learned) << read_file(daemon_log());
}

// ---- issue 14: the audit file is root's alone, and no record is lost silently ----

// A sink that would lose every record is an error at the start, not silence: a relative path
// (relative to the daemon's cwd, not the operator's), and syslog with nobody on /dev/log.
TEST_F(Audit, ASinkThatWouldLoseEveryRecordIsRefusedAtStart) {
  const std::string exe = (bin_dir() / "sysvisor").string();
  const Outcome relative = run({exe, "serve", "--runtime-dir", runtime().string(), "--policies",
                                policies().string(), "--audit", "audit.jsonl"},
                               std::chrono::seconds(20));
  EXPECT_EQ(relative.status, 1) << relative.err;
  EXPECT_NE(relative.err.find("audit file `audit.jsonl`: not an absolute path"), std::string::npos)
      << relative.err;
  // In a mount namespace of its own where /dev/log is a plain file (or absent): nobody listens.
  const fs::path plain = dir_->path() / "not-a-socket";
  std::ofstream{plain};
  const std::string script = "if [ -e /dev/log ]; then mount --bind " + plain.string() +
                             " /dev/log || exit 99; fi; exec " + exe + " serve --runtime-dir " +
                             runtime().string() + " --policies " + policies().string() + " --audit syslog";
  const Outcome syslog = run({"/usr/bin/unshare", "-m", "/bin/sh", "-c", script}, std::chrono::seconds(20));
  EXPECT_EQ(syslog.status, 1) << syslog.err;
  EXPECT_NE(syslog.err.find("audit sink `syslog`: nothing listens on /dev/log"), std::string::npos)
      << syslog.err;
  EXPECT_FALSE(fs::exists(runtime() / "agent.sock"));
}

// A user's directory holds a link named like the audit log, to a file of root's: the daemon
// refuses to start, names the file, and the link's target is unchanged.
TEST_F(Audit, ASymlinkInAUsersDirectoryIsRefusedAtStart) {
  const fs::path target = dir_->path() / "rootrc";
  std::ofstream(target) << "echo hello\n";
  fs::permissions(target, fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                              fs::perms::others_read);
  const fs::path users = dir_->path() / "users";
  fs::create_directory(users);
  ASSERT_EQ(::chown(users.c_str(), 65534, 65534), 0);
  const fs::path link = users / "audit.jsonl";
  const auto made = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         "/usr/bin/ln", "-s", target.string(), link.string()});
  ASSERT_EQ(made.status, 0) << made.err;
  Daemon d(runtime(), policies(), link, daemon_log());
  EXPECT_FALSE(d.ready());
  EXPECT_EQ(d.pid(), -1) << "the daemon exited";
  const std::string log = read_file(daemon_log());
  EXPECT_NE(log.find("audit log `" + link.string() + "`: refused"), std::string::npos) << log;
  EXPECT_EQ(read_file(target), "echo hello\n");
  EXPECT_TRUE(fs::is_symlink(fs::symlink_status(link)));
}

// Logrotate moved the log; before the SIGHUP a link to root's file took its name, then a file
// others may read. Both reopens are refused (named in the daemon's log), and the records keep
// going to the file the daemon has open, now audit.jsonl.1: none is lost, none goes elsewhere.
TEST_F(Audit, ASwappedFileIsRefusedAtSighupAndRecordsGoToTheOldFile) {
  start();
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "before").out, "EPERM\n");
  const fs::path rotated = dir_->path() / "audit.jsonl.1";
  fs::rename(audit_log(), rotated);
  const fs::path victim = dir_->path() / "victim";
  std::ofstream(victim) << "secret\n";
  fs::create_symlink(victim, audit_log());
  const auto refusals = [&] {
    const std::string log = read_file(daemon_log());
    std::size_t n = 0;
    for (std::size_t at = 0;
         (at = log.find("audit log `" + audit_log().string() + "`: refused", at)) != std::string::npos; ++at)
      ++n;
    return n;
  };
  const std::size_t before = refusals();
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return refusals() > before; })) << read_file(daemon_log());
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "after-link").out, "EPERM\n");
  // Now a regular file that others may read (it was a user's pre-created file in the report).
  fs::remove(audit_log());
  std::ofstream(audit_log()).flush();
  fs::permissions(audit_log(), fs::perms::owner_read | fs::perms::owner_write | fs::perms::group_read |
                                   fs::perms::others_read);
  ASSERT_EQ(::chown(audit_log().c_str(), 65534, 65534), 0);
  const std::size_t second = refusals();
  ::kill(daemon_->pid(), SIGHUP);
  ASSERT_TRUE(eventually([&] { return refusals() > second; })) << read_file(daemon_log());
  ASSERT_EQ(container("probe mknod /dev/sda b 8 0", "rootless-devices", "after-file").out, "EPERM\n");
  EXPECT_EQ(read_file(victim), "secret\n");
  EXPECT_EQ(fs::file_size(audit_log()), 0U) << read_file(audit_log());
  EXPECT_EQ(audit_lines(rotated, "before").size(), 1U);
  EXPECT_EQ(audit_lines(rotated, "after-link").size(), 1U);
  EXPECT_EQ(audit_lines(rotated, "after-file").size(), 1U);
}

// A 1 MiB tmpfs for a full disk on demand (the daemon's mount namespace shares it).
class SmallTmpfs {
 public:
  explicit SmallTmpfs(fs::path at) : at_(std::move(at)) {
    fs::create_directory(at_);
    mounted_ = ::mount("sysvisor-audit-test", at_.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       "size=1m,mode=0700") == 0;
  }
  ~SmallTmpfs() {
    if (mounted_) ::umount2(at_.c_str(), MNT_DETACH);
  }
  SmallTmpfs(const SmallTmpfs&) = delete;
  SmallTmpfs& operator=(const SmallTmpfs&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }
  [[nodiscard]] const fs::path& path() const { return at_; }
  // Takes every byte left (a file `filler`); remove it for space again.
  [[nodiscard]] bool fill() const {
    const int fd = ::open((at_ / "filler").c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return false;
    const std::string block(4096, 'x');
    while (::write(fd, block.data(), block.size()) > 0) {
    }
    while (::write(fd, block.data(), 1) > 0) {
    }
    ::close(fd);
    return true;
  }

 private:
  fs::path at_;
  bool mounted_ = false;
};

// The audit log's filesystem fills up: every record that cannot be written is counted (status,
// metrics) and logged, none is torn, and `policy learn` reads the file whole afterwards.
TEST_F(Audit, AFullDiskIsCountedAndLeavesNoTornRecord) {
  const SmallTmpfs small(dir_->path() / "small");
  ASSERT_TRUE(small.mounted()) << std::strerror(errno);
  const fs::path mnt = small.path();
  const fs::path log = mnt / "audit.jsonl";
  start({}, log);
  const auto calls = [](int n) {
    return "i=0; while [ $i -lt " + std::to_string(n) +
           " ]; do probe mknod /dev/sda b 8 0 >/dev/null; i=$((i+1)); done; echo done";
  };
  constexpr int kCalls = 200;
  const std::string script = calls(kCalls);
  ASSERT_EQ(container(calls(10), "learn", "warm").out, "done\n");
  // Fill what is left: the daemon's mount namespace shares this tmpfs.
  ASSERT_TRUE(small.fill());
  ASSERT_EQ(container(script, "learn", "full").out, "done\n");
  const std::size_t written_full = audit_lines(log, "full").size();
  ASSERT_LT(written_full, static_cast<std::size_t>(kCalls)) << "the disk was not full";
  const auto status =
      run({(bin_dir() / "sysvisor").string(), "status", "--json", "--runtime-dir", runtime().string()});
  ASSERT_EQ(status.status, 0) << status.err;
  const json a = json::parse(status.out).at("status").at("audit");
  EXPECT_EQ(a.at("sink"), log.string());
  EXPECT_EQ(std::stoull(a.at("write_failures").get<std::string>()), kCalls - written_full) << status.out;
  EXPECT_EQ(a.at("failing"), true);
  EXPECT_NE(a.at("last_error").get<std::string>().find("No space left on device"), std::string::npos);
  EXPECT_EQ(a.at("failure_action"), "keep");
  const std::string daemon_text = read_file(daemon_log());
  EXPECT_NE(daemon_text.find("record(s) lost"), std::string::npos) << daemon_text;
  // Space again: records go in again, and every line of the file is a whole record.
  fs::remove(mnt / "filler");
  ASSERT_EQ(container(script, "learn", "again").out, "done\n");
  EXPECT_EQ(audit_lines(log, "again").size(), static_cast<std::size_t>(kCalls));
  const std::string text = read_file(log);
  for (const auto& l : lines(text)) EXPECT_TRUE(json::accept(l)) << "torn: " << l;
  const auto learned =
      run({(bin_dir() / "sysvisor").string(), "policy", "learn", log.string(), "--output", "-"});
  EXPECT_EQ(learned.status, 0) << learned.err;
  EXPECT_EQ(learned.err.find("skipped"), std::string::npos) << learned.err;
  const auto human = run({(bin_dir() / "sysvisor").string(), "status", "--runtime-dir", runtime().string()});
  EXPECT_NE(human.out.find(std::to_string(kCalls - written_full) + " records lost"), std::string::npos)
      << human.out;
}

// `serve --audit-failure refuse`: a call whose record cannot be written is refused (EPERM), not
// answered as decided; every call answered as decided has its record.
TEST_F(Audit, RefuseAnswersEpermWhenTheRecordCannotBeWritten) {
  std::ofstream(policies() / "audited-return.yaml") << "name: audited-return\n"
                                                       "rules:\n"
                                                       "  - name: swapon-is-a-no-op\n"
                                                       "    syscalls: [swapon]\n"
                                                       "    action: return\n"
                                                       "    value: 0\n"
                                                       "    audit: true\n";
  const SmallTmpfs small(dir_->path() / "small");
  ASSERT_TRUE(small.mounted()) << std::strerror(errno);
  const fs::path mnt = small.path();
  const fs::path log = mnt / "audit.jsonl";
  start({"--audit-failure", "refuse"}, log);
  constexpr int kCalls = 40;
  std::string script;
  for (int i = 0; i < kCalls; ++i) script += "probe call 167 s:/x 0; ";
  ASSERT_EQ(lines(container(script, "audited-return", "warm").out), std::vector<std::string>(kCalls, "ok"));
  ASSERT_TRUE(small.fill());
  const auto out = lines(container(script, "audited-return", "full").out);
  ASSERT_EQ(out.size(), static_cast<std::size_t>(kCalls));
  const auto oks = static_cast<std::size_t>(std::ranges::count(out, std::string("ok")));
  const auto refused = static_cast<std::size_t>(std::ranges::count(out, std::string("EPERM")));
  EXPECT_EQ(oks + refused, static_cast<std::size_t>(kCalls));
  EXPECT_GT(refused, 0U) << "the disk was not full";
  EXPECT_EQ(audit_lines(log, "full").size(), oks) << "an answer as decided without its record";
  fs::remove(mnt / "filler");
  EXPECT_EQ(lines(container(script, "audited-return", "again").out), std::vector<std::string>(kCalls, "ok"));
}

// `serve --audit-failure refuse` is the daemon's setting, and status says so.
TEST_F(Audit, TheFailureActionIsShownInStatus) {
  start({"--audit-failure", "refuse"});
  const auto status =
      run({(bin_dir() / "sysvisor").string(), "status", "--json", "--runtime-dir", runtime().string()});
  ASSERT_EQ(status.status, 0) << status.err;
  const json a = json::parse(status.out).at("status").at("audit");
  EXPECT_EQ(a.at("failure_action"), "refuse");
  EXPECT_EQ(a.at("sink"), audit_log().string());
  EXPECT_EQ(a.at("failing"), false);
  EXPECT_EQ(std::stoull(a.at("write_failures").get<std::string>()), 0U);
}

}  // namespace
}  // namespace sysvisor::it
