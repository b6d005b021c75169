// The example policies of policies/examples/ (issue 19's authoring tasks), end to end: each one
// loaded by a real daemon, a busybox container doing what the example is for, and the kernel's
// (or the emulator's) answers asserted. Their decision cases run in scripts/test.
#include <gtest/gtest.h>
#include <unistd.h>

#include <csignal>
#include <fstream>
#include <nlohmann/json.hpp>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using json = nlohmann::json;

class Examples : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = std::make_unique<TempDir>("sysvisor-examples");
    fs::create_directories(policies());
    for (const auto& e : fs::directory_iterator(source_dir() / "policies" / "examples")) {
      if (e.path().extension() == ".yaml" && !e.path().string().ends_with(".cases.yaml"))
        fs::copy_file(e.path(), policies() / e.path().filename());
    }
    rootfs_ = dir_->path() / "rootfs";
    fs::create_directories(rootfs_);
    make_rootfs(rootfs_, kHostRoot);
    daemon_ = std::make_unique<Daemon>(runtime(), policies(), audit_log(), daemon_log());
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }

  Outcome container(const std::string& policy, const std::string& script) {
    return run_container(runtime(), policy, rootfs_, script, policy);
  }

  std::vector<json> records(const std::string& id) const {
    std::vector<json> out;
    for (const auto& l : audit_lines(audit_log(), id)) out.push_back(json::parse(l));
    return out;
  }

  fs::path runtime() const { return dir_->path() / "run"; }
  fs::path policies() const { return dir_->path() / "policies"; }
  fs::path audit_log() const { return dir_->path() / "audit.jsonl"; }
  fs::path daemon_log() const { return dir_->path() / "daemon.log"; }

  std::unique_ptr<TempDir> dir_;
  std::unique_ptr<Daemon> daemon_;
  fs::path rootfs_;
};

// Device nodes for FUSE and tun: made at their paths, each only at its own, other devices refused.
TEST_F(Examples, FuseAndTunDevices) {
  const auto o = container("fuse-tun-devices",
                           "probe mknod /dev/fuse c 10 229; probe stat /dev/fuse; mkdir -p /dev/net; "
                           "probe mknod /dev/net/tun c 10 200; probe stat /dev/net/tun; "
                           "probe mknod /dev/tun c 10 200; probe mknod /tmp/fuse c 10 229; "
                           "probe mknod /dev/null c 1 3; probe mknod /dev/sda b 8 0; true");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "c 10:229 0 0 644", "ok", "c 10:200 0 0 644",
                                                    "EPERM", "EPERM", "ok", "EPERM"}))
      << o.out << o.err << read_file(daemon_log());
}

// Bounded real-time tuning: up to SCHED_FIFO 20 and nice -10, refused above, as the kernel refuses.
TEST_F(Examples, RealtimeBounded) {
  const auto o = container("realtime-bounded",
                           "probe sched fifo 20; probe sched rr 1; probe sched fifo 21; probe nice -10; "
                           "probe nice -11; probe sched deadline 0; true");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "ok", "EPERM", "ok", "EPERM", "EPERM"}))
      << o.out << o.err << read_file(daemon_log());
}

// Forensics: nothing refused (the same answers as the kernel's without sysvisor), and the records
// carry what an auditor needs.
TEST_F(Examples, ForensicsRefusesNothingAndRecordsTheArguments) {
  std::ofstream(rootfs_ / "etc" / "shadow") << "root:secret\n";
  std::ofstream(policies() / "plain.yaml") << "name: plain\nrules: []\n";
  ASSERT_EQ(::kill(daemon_->pid(), SIGHUP), 0);
  const std::string script = "probe call 272 0x10000000; probe call 101 16 99999 0 0; cat /etc/shadow; true";
  Outcome plain;
  for (int i = 0; i < 50; ++i) {  // the reload is asynchronous
    plain = container("plain", script);
    if (plain.status == 0) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  const auto o = container("forensics", script);
  EXPECT_EQ(o.out, plain.out) << o.err;
  EXPECT_EQ(lines(o.out).back(), "root:secret");
  bool unshare = false, ptrace = false, exec = false, shadow = false;
  for (const auto& r : records("forensics")) {
    EXPECT_EQ(r["action"], "allow") << r.dump();
    const json& a = r["args"];
    if (r["syscall"] == "unshare") unshare = a.value("clone_flags", "") == "CLONE_NEWUSER";
    if (r["syscall"] == "ptrace")
      ptrace = a.value("ptrace_request", "") == "PTRACE_ATTACH" && a["target_pid"] == 99999;
    if (r["syscall"] == "execve" && a["argv"] == json::array({"cat", "/etc/shadow"})) exec = true;
    if (r["syscall"] == "openat" && a["paths"][0] == "/etc/shadow") {
      shadow = r["rule"] == "secrets-opened" && r.value("memory_reread", false);
    }
  }
  EXPECT_TRUE(unshare && ptrace && exec && shadow) << unshare << ptrace << exec << shadow << "\n"
                                                   << read_file(audit_log());
}

// The learned example: the workload it was learned from works under it, the disk it tried
// stays refused (its rule is commented out).
TEST_F(Examples, LearnedPolicyRunsItsWorkload) {
  if (!fs::exists(sbin("mkfs.ext4")))
    GTEST_SKIP() << "mkfs.ext4 missing (scripts/install-deps installs e2fsprogs)";
  fs::create_directories(rootfs_ / "images");
  fs::create_directories(rootfs_ / "var" / "lib" / "data");
  fs::create_directories(rootfs_ / "run");
  const fs::path image = rootfs_ / "images" / "data.img";
  { std::ofstream(image).close(); }
  fs::resize_file(image, 16U << 20U);
  ASSERT_EQ(run({sbin("mkfs.ext4"), "-q", "-F", image.string()}).status, 0);
  for (const auto& p : {image, rootfs_ / "images", rootfs_ / "var", rootfs_ / "var" / "lib",
                        rootfs_ / "var" / "lib" / "data", rootfs_ / "run"}) {
    ASSERT_EQ(::chown(p.c_str(), kHostRoot, kHostRoot), 0);
  }
  const auto o =
      container("learned-web",
                "probe mknod /dev/null c 1 3; probe mknod /dev/zero c 1 5; probe mknod /dev/sdb b 8 16; "
                "probe mount tmpfs /run tmpfs 6; probe umount /run; "
                "probe mount /images/data.img /var/lib/data ext4; mkdir -p /var/lib/data/upper/d; "
                "probe setxattr /var/lib/data/upper/d trusted.overlay.opaque y; "
                "probe umount /var/lib/data; probe sched fifo 5; probe nice -5; true");
  EXPECT_EQ(lines(o.out),
            (std::vector<std::string>{"ok", "ok", "EPERM", "ok", "ok", "ok", "ok", "ok", "ok", "ok"}))
      << o.out << o.err << read_file(daemon_log());
}

}  // namespace
}  // namespace sysvisor::it
