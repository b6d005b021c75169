// Path rules on open, made enforceable (issue 19): under a policy that emulates open, openat,
// openat2 and creat, sysvisor resolves the path as the caller, decides on the file it resolves
// to, and hands over the descriptor it opened. The shipped example keep-secrets: /etc/shadow and
// /root/.ssh/* refused with EACCES, however they are named (a symlink, `..`, a relative path, a
// racing thread), everything else opened with the kernel's own answer for the caller.
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include <csignal>
#include <cstdio>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using json = nlohmann::json;

class OpenEmulation : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = std::make_unique<TempDir>("sysvisor-open");
    fs::create_directories(policies());
    fs::copy_file(source_dir() / "policies" / "examples" / "keep-secrets.yaml",
                  policies() / "keep-secrets.yaml");
    rootfs_ = dir_->path() / "rootfs";
    fs::create_directories(rootfs_);
    make_rootfs(rootfs_, kHostRoot);
    fs::create_directories(rootfs_ / "root" / ".ssh");
    std::ofstream(rootfs_ / "etc" / "shadow") << "root:secret\n";
    std::ofstream(rootfs_ / "root" / ".ssh" / "id_ed25519") << "private key\n";
    std::ofstream(rootfs_ / "etc" / "motd") << "hello\n";
    std::ofstream(rootfs_ / "etc" / "private") << "only root\n";
    for (const auto& p :
         {rootfs_ / "etc" / "shadow", rootfs_ / "root" / ".ssh" / "id_ed25519", rootfs_ / "etc" / "motd",
          rootfs_ / "etc" / "private", rootfs_ / "root", rootfs_ / "root" / ".ssh"}) {
      EXPECT_EQ(::chown(p.c_str(), kHostRoot, kHostRoot), 0);
    }
    fs::permissions(rootfs_ / "etc" / "private", fs::perms::owner_read | fs::perms::owner_write);
    daemon_ = std::make_unique<Daemon>(runtime(), policies(), audit_log(), daemon_log());
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }

  Outcome container(const std::string& script, const std::string& id = "open") {
    return run_container(runtime(), "keep-secrets", rootfs_, script, id);
  }

  fs::path runtime() const { return dir_->path() / "run"; }
  fs::path policies() const { return dir_->path() / "policies"; }
  fs::path audit_log() const { return dir_->path() / "audit.jsonl"; }
  fs::path daemon_log() const { return dir_->path() / "daemon.log"; }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  fs::path rootfs_;
};

TEST_F(OpenEmulation, SecretsAreRefusedByEveryNameAndEverythingElseOpens) {
  const auto o = container(
      "probe open /etc/motd rdonly; "
      "probe open /etc/shadow rdonly; "
      "probe open /etc/../etc/./shadow rdonly 0 open; "
      "ln -s /etc/shadow /tmp/s; probe open /tmp/s rdonly 0 openat2; "
      "ln -s ../etc /tmp/e; probe open /tmp/e/shadow rdonly; "
      "cd /etc && probe open shadow rdonly; cd /; "
      "probe open /root/.ssh/id_ed25519 rdonly; "
      "probe open /root/.ssh rdonly,directory; "
      "probe open /tmp/s rdonly,nofollow; "
      "cat /etc/motd; true");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok hello", "EACCES", "EACCES", "EACCES", "EACCES",
                                                    "EACCES", "EACCES", "EACCES", "ELOOP", "hello"}))
      << o.out << o.err << read_file(daemon_log());
  // The records name the file resolved, not the string passed.
  bool link_recorded = false;
  for (const auto& l : audit_lines(audit_log(), "open")) {
    const json r = json::parse(l);
    if (r["args"]["path"] == "/tmp/s" && r["result"] == "EACCES") {
      link_recorded = true;
      EXPECT_EQ(r["args"]["paths"][0], "/etc/shadow") << l;
      EXPECT_EQ(r["rule"], "secrets") << l;
    }
  }
  EXPECT_TRUE(link_recorded) << read_file(audit_log());
}

// The kernel's answers, for the caller: the same script without sysvisor's open (a policy that
// does not trap it) and under keep-secrets give the same answers, but for the one name that
// resolves to a secret. O_CREAT with the caller's umask, O_EXCL, O_TRUNC, O_CLOEXEC, a missing
// file, a directory opened for writing, creat(2), a file the caller may not read (as an
// unprivileged user of the container); a file made under a refused name is never made.
TEST_F(OpenEmulation, FlagsModesAndPermissionsAreTheKernels) {
  std::ofstream(policies() / "plain.yaml") << "name: plain\nrules: []\n";
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  const std::string script =
      "rm -f /tmp/new /tmp/t /tmp/c /etc/shadow2 /etc/sh; "
      "umask 027; probe open /tmp/new wronly,creat 0666 open; stat -c %a /tmp/new; "
      "probe open /tmp/new wronly,creat,excl 0600; "
      "echo data > /tmp/t; probe open /tmp/t wronly,trunc; wc -c < /tmp/t; "
      "probe open /etc/motd rdonly,cloexec; "
      "probe open /nonexistent rdonly; "
      "probe open /etc wronly; "
      "probe open /tmp/c 0 0640 creat; stat -c %a /tmp/c; "
      "probe open /etc/shadow2 wronly,creat 0600; ln -s shadow /etc/sh; probe open /etc/sh wronly,trunc; "
      "probe as 1000 1000 0 -- probe open /etc/private rdonly; "
      "probe as 1000 1000 0 -- probe open /etc/motd rdonly; "
      "probe as 1000 1000 0 -- probe open /tmp/u wronly,creat 0644; true";
  Outcome kernel;
  for (int i = 0; i < 50; ++i) {  // the reload is asynchronous
    kernel = run_container(runtime(), "plain", rootfs_, script, "plain");
    if (kernel.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  std::ofstream(rootfs_ / "etc" / "shadow") << "root:secret\n";  // the kernel's run truncated it
  const auto emulated = container(script);
  std::vector<std::string> expected = lines(kernel.out);
  ASSERT_EQ(expected.size(), 15U) << kernel.out << kernel.err;
  EXPECT_EQ(expected[11], "ok") << "the kernel opened the secret through the link";
  std::vector<std::string> kernels = expected;
  expected[11] = "EACCES";
  EXPECT_EQ(lines(emulated.out), expected) << emulated.out << emulated.err << read_file(daemon_log());
  EXPECT_EQ(kernels,
            (std::vector<std::string>{"ok", "640", "EEXIST", "ok", "0", "ok cloexec hello", "ENOENT",
                                      "EISDIR", "ok", "640", "ok", "ok", "EACCES", "ok hello", "ok"}))
      << "what the kernel answered: " << kernel.out;
  EXPECT_EQ(read_file(rootfs_ / "etc" / "shadow"), "root:secret\n") << "never truncated";
  struct stat st {};
  ASSERT_EQ(::stat((rootfs_ / "tmp" / "new").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kHostRoot);
}

// A thread rewrites the path between a file the container may read and the secret while the
// calls wait: sysvisor decides on the file it opened itself, so some opens are refused (the
// thread steered them to the secret), others open the other file, and none reads the secret.
TEST_F(OpenEmulation, ARacingThreadNeverReadsTheSecret) {
  std::ofstream(rootfs_ / "etc" / "passwd") << "root:x:0:0\n";  // the same length as /etc/shadow
  const auto o = container("probe open-race /etc/passwd /etc/shadow 300 secret");
  int opened = -1, leaked = -1, refused = -1;
  ASSERT_EQ(std::sscanf(o.out.c_str(), "opened %d leaked %d refused %d", &opened, &leaked, &refused), 3)
      << o.out << o.err;
  EXPECT_EQ(leaked, 0) << o.out;
  EXPECT_GT(opened, 0) << "no open got through: " << o.out;
  EXPECT_GT(refused, 0) << "the thread never steered a call to the secret: the race was not run; " << o.out;
}

}  // namespace
}  // namespace sysvisor::it
