// The privilege boundary of emulated mknod (issue 13), on the real kernel: each kind of caller
// gets what the rule "CAP_MKNOD in the user namespace that owns the mount namespace the node
// lands in" gives it, and the host's mount table, files and the daemon's threads keep nothing
// of it. Needs root (setpriv, unshare, user namespaces with a 100000 map).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <fstream>
#include <set>
#include <sstream>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

constexpr uid_t kNobody = 65534;

// rootless-devices as shipped, and a grant scoped by path (finding 14).
constexpr const char* kFuseInDev = R"(name: fuse-in-dev
rules:
  - name: fuse-in-dev
    syscalls: [mknod, mknodat]
    match:
      type: char
      devices: ["10:229"]
      path: [/dev/*]
    action: emulate
    audit: true
  - name: other-devices
    syscalls: [mknod, mknodat]
    action: deny
    audit: true
)";

void write(const fs::path& p, const std::string& text) {
  std::ofstream out(p);
  out << text;
}

std::string mountinfo() {
  return read_file("/proc/self/mountinfo");
}

// What a regression would leave in the host's mount table below `dir`: detached again, so one
// failing test does not leave the host changed.
void detach_below(const fs::path& dir) {
  std::istringstream in(mountinfo());
  for (std::string line; std::getline(in, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point.starts_with(dir.string() + "/")) ::umount2(point.c_str(), MNT_DETACH);
  }
}

std::vector<std::string> setpriv_nobody() {
  return {"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"};
}

std::vector<std::string> operator+(std::vector<std::string> a, const std::vector<std::string>& b) {
  a.insert(a.end(), b.begin(), b.end());
  return a;
}

class BoundaryMknod : public DaemonSuite<BoundaryMknod> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    dir_ = new TempDir("sysvisor-bmk");
    fs::create_directories(policies());
    fs::copy_file(source_dir() / "policies" / "rootless-devices.yaml", policies() / "rootless-devices.yaml");
    write(policies() / "fuse-in-dev.yaml", kFuseInDev);
    // Every host user may ask for these (the finding's set-up: the configuration grants it).
    write(config(),
          "access:\n"
          "  - users: [\"*\"]\n"
          "    policies: [rootless-devices, fuse-in-dev]\n");
    // The agent and the probe where an unprivileged user can run them.
    fs::create_directories(bin());
    for (const char* exe : {"sysvisor-agent", "probe"}) fs::copy_file(bin_dir() / exe, bin() / exe);
    daemon_ = new Daemon(runtime(), policies(), audit_log(), daemon_log(), {"--config", config().string()});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(runtime() / "agent.sock"); }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path config() { return dir_->path() / "sysvisor.yaml"; }
  static fs::path bin() { return dir_->path() / "bin"; }
  static fs::path audit_log() { return dir_->path() / "audit.jsonl"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }
  static std::string agent() { return (bin() / "sysvisor-agent").string(); }
  static std::string probe() { return (bin() / "probe").string(); }

  // `sysvisor-agent exec --policy POLICY -- CMD...`, in place, as the caller runs it.
  static std::vector<std::string> exec(const std::vector<std::string>& cmd,
                                       const std::string& policy = "rootless-devices") {
    return std::vector<std::string>{agent(), "exec", "--runtime-dir", runtime().string(), "--policy",
                                    policy,  "--"} +
           cmd;
  }

  // The daemon's device store, seen through its mount namespace.
  static std::size_t store_nodes() {
    const fs::path store =
        fs::path("/proc") / std::to_string(daemon_->pid()) / "root" / runtime().relative_path() / "devices";
    std::size_t n = 0;
    for (const auto& e : fs::directory_iterator(store)) {
      (void)e;
      ++n;
    }
    return n;
  }

  // Runs `script` in a container that touches /tmp/made when it is ready to be looked at, and
  // waits for /tmp/go; `look` runs in between.
  template <class Look>
  Outcome container_paused(const std::string& script, const std::string& policy, Look look) {
    Outcome o;
    std::thread t([&] {
      o = run_container(runtime(), policy, rootfs_,
                        script + "; touch /tmp/made; while [ ! -e /tmp/go ]; do sleep 0.05; done");
    });
    for (int i = 0; i < 1200 && !fs::exists(rootfs_ / "tmp" / "made"); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    const bool ready = fs::exists(rootfs_ / "tmp" / "made");
    if (ready) look();
    std::ofstream(rootfs_ / "tmp" / "go").put('x');
    t.join();
    EXPECT_TRUE(ready) << o.out << o.err;
    return o;
  }
};

// A directory the host user `nobody` may write to, and a file name in it.
struct UserDir {
  TempDir dir{"sysvisor-bmk-user"};
  UserDir() {
    if (::chown(dir.path().c_str(), kNobody, kNobody) != 0) {
      throw std::system_error(errno, std::generic_category(), "chown " + dir.path().string());
    }
  }
  ~UserDir() { detach_below(dir.path()); }
  UserDir(const UserDir&) = delete;
  UserDir& operator=(const UserDir&) = delete;
  [[nodiscard]] std::string at(const char* name) const { return (dir.path() / name).string(); }
};

TEST_F(BoundaryMknod, HostRootGetsTheKernelsOwnAnswer) {
  TempDir dir("sysvisor-bmk-root");
  const std::string node = (dir.path() / "null").string();
  const std::string before = mountinfo();
  const auto o = run(exec({probe(), "mknod", node, "c", "1", "3"}));
  EXPECT_EQ(o.out, "ok\n") << o.err;
  // The kernel made a real node (root holds CAP_MKNOD where the kernel asks for it), and the
  // daemon attached nothing to the host's mount table.
  struct stat st {};
  ASSERT_EQ(::lstat(node.c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, ::makedev(1, 3));
  EXPECT_EQ(mountinfo(), before);
  detach_below(dir.path());
}

TEST_F(BoundaryMknod, HostUserWithoutAUserNamespaceGetsEperm) {
  UserDir d;
  const std::string before = mountinfo();
  const auto kernel =
      run(setpriv_nobody() + std::vector<std::string>{probe(), "mknod", d.at("k"), "c", "1", "3"});
  ASSERT_EQ(kernel.out, "EPERM\n") << kernel.err;
  const auto o = run(setpriv_nobody() + exec({probe(), "mknod", d.at("x"), "c", "1", "3"}));
  EXPECT_EQ(o.out, kernel.out) << o.err;
  EXPECT_FALSE(fs::exists(d.at("x")));
  EXPECT_EQ(mountinfo(), before);
}

// Finding 4: a user namespace of its own, the host's mount namespace.
TEST_F(BoundaryMknod, UnshareUrGetsEpermAndTheHostMountTableGainsNothing) {
  UserDir d;
  const std::vector<std::string> unshare{"/usr/bin/unshare", "-Ur"};
  const std::string before = mountinfo();
  const auto kernel =
      run(setpriv_nobody() + unshare + std::vector<std::string>{probe(), "mknod", d.at("k"), "c", "1", "3"});
  ASSERT_EQ(kernel.out, "EPERM\n") << kernel.err;
  for (const char* name : {"null", "zero"}) {
    const auto o =
        run(setpriv_nobody() + unshare +
            exec({probe(), "mknod", d.at(name), "c", "1", std::string(name) == "null" ? "3" : "5"}));
    EXPECT_EQ(o.out, kernel.out) << name << ": " << o.err;
    EXPECT_FALSE(fs::exists(d.at(name))) << name;
  }
  EXPECT_EQ(mountinfo(), before);
}

// Its own user and mount namespaces: CAP_MKNOD in the user namespace that owns the mount
// namespace, so the node is made, and mounted there only.
TEST_F(BoundaryMknod, UnshareUrmIsEmulatedInItsOwnMountNamespaceOnly) {
  UserDir d;
  const std::string node = d.at("n");
  const std::string before = mountinfo();
  const auto o = run(
      setpriv_nobody() + std::vector<std::string>{"/usr/bin/unshare", "-Urm"} +
      exec({"/bin/sh", "-c",
            "umask 022; " + probe() + " mknod " + node + " c 1 3; " + probe() + " stat " + node +
                "; echo x > " + node + " && echo written; grep -c ' " + node + " ' /proc/self/mountinfo"}));
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "c 1:3 0 0 644", "written", "1"}))
      << o.out << o.err;
  EXPECT_EQ(mountinfo(), before);
  // On the host: the caller's own empty placeholder, no device.
  struct stat st {};
  ASSERT_EQ(::lstat(node.c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(st.st_size, 0);
  EXPECT_EQ(st.st_uid, kNobody);
}

TEST_F(BoundaryMknod, RootlessContainerGetsItsNodes) {
  const auto o = run_container(runtime(), "rootless-devices", rootfs_,
                               "mknod /dev/null c 1 3 && echo x > /dev/null && probe stat /dev/null");
  EXPECT_EQ(o.out, "c 1:3 0 0 644\n") << o.err;
}

// Podman's default: CAP_MKNOD without CAP_SYS_ADMIN.
TEST_F(BoundaryMknod, ContainerWithMknodButNotSysAdminGetsItsNodes) {
  const auto o = run_container(runtime(), "rootless-devices", rootfs_,
                               "probe as 0 0 1 -- probe mknod /dev/zero c 1 5; head -c 3 /dev/zero | wc -c; "
                               "probe stat /dev/zero");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "3", "c 1:5 0 0 644"})) << o.out << o.err;
}

// Finding 8: 5:1 is the host's console; the shipped policy no longer emulates it.
TEST_F(BoundaryMknod, TheHostsConsoleIsNotEmulated) {
  const auto o = run_container(runtime(), "rootless-devices", rootfs_,
                               "probe mknod /dev/console c 5 1; probe mknod /dev/tty c 5 0");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EPERM", "ok"})) << o.out << o.err;
}

// Finding 14: a grant scoped to /dev/* holds for the directory the node really lands in.
TEST_F(BoundaryMknod, ASymlinkDoesNotCarryAPathGrantElsewhere) {
  const auto o = run_container(runtime(), "fuse-in-dev", rootfs_,
                               "ln -s /tmp /dev/tl; probe mknod /dev/tl/fuse c 10 229; "
                               "cd /dev/tl && probe mknod fuse2 c 10 229; cd /; "
                               "probe mknod /dev/tl/../fuse3 c 10 229; "
                               "probe mknod /dev/fuse c 10 229; probe stat /dev/fuse");
  // EPERM: what the kernel gives a rootless caller that has no grant.
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EPERM", "EPERM", "EPERM", "ok", "c 10:229 0 0 644"}))
      << o.out << o.err;
  for (const char* name : {"tmp/fuse", "tmp/fuse2", "fuse3"})
    EXPECT_FALSE(fs::exists(rootfs_ / name)) << name;
}

// Finding 9: a node's store entry goes when its mount goes, not at the container's exit.
TEST_F(BoundaryMknod, TheStoreIsReclaimedWhenANodesMountGoes) {
  std::size_t held = 0;
  const auto o = container_paused(
      "i=0; while [ $i -lt 40 ]; do mknod /dev/n c 1 3 && umount /dev/n && rm /dev/n || echo failed; "
      "i=$((i+1)); done; "
      // A directory only CAP_DAC_OVERRIDE opens: the helpers make these nodes.
      "mkdir /dev/x && chown 1000:1000 /dev/x && chmod 700 /dev/x; "
      "i=0; while [ $i -lt 10 ]; do mknod /dev/x/n c 1 3 && umount /dev/x/n && rm /dev/x/n || echo failed; "
      "i=$((i+1)); done; mknod /dev/keep c 1 5 && echo made",
      "rootless-devices", [&] { held = store_nodes(); });
  EXPECT_EQ(o.out, "made\n") << o.err;
  // /dev/keep, and the direct thread's spare for the next call.
  EXPECT_LE(held, 2U);
}

// Finding 9: a cap on one container's emulated nodes; ENOSPC beyond it, room again once one goes.
TEST_F(BoundaryMknod, ManyNodesGetEnospcBeyondTheCap) {
  std::size_t held = 0;
  const auto o = container_paused(
      "probe mknod-many /dev/m 1100; umount /dev/m0 && rm /dev/m0 && probe mknod /dev/again c 1 3",
      "rootless-devices", [&] { held = store_nodes(); });
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"1024 ENOSPC", "ok"})) << o.out << o.err;
  EXPECT_LE(held, 1024U + 1U);
}

// Finding 9: a node still held by a copy of its mount counts against the cap until the last
// copy goes, though its own mount and its store name are gone.
TEST_F(BoundaryMknod, NodesHeldByCopiesOfTheirMountStillCount) {
  std::size_t held = 0;
  const auto o =
      container_paused("probe mknod-copy /dev 1100; umount /dev/k0 && probe mknod /dev/again c 1 3",
                       "rootless-devices", [&] { held = store_nodes(); });
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"1024 ENOSPC", "ok"})) << o.out << o.err;
  // The names of the released nodes are gone: /dev/again, and perhaps a spare.
  EXPECT_LE(held, 2U);
}

// Finding 10: after requests the direct thread refuses (its own EACCES; one it declines for the
// helpers, last), no thread of the daemon is left in the container's mount namespace.
TEST_F(BoundaryMknod, TheDirectThreadLeavesTheContainersMountNamespace) {
  std::set<std::string> daemon_ns;
  const auto o = container_paused(
      "readlink /proc/self/ns/mnt > /tmp/ns; "
      "probe as 1000 1000 0 -- probe mknod /dev/nope c 1 3; "
      "probe as 1000 1000 1 -- probe mknod /dev/nope c 1 3; "
      "mkdir /dev/x && chown 1000:1000 /dev/x && chmod 700 /dev/x && "
      "mknod /dev/x/null c 1 3 && probe stat /dev/x/null",
      "rootless-devices", [&] {
        const fs::path tasks = fs::path("/proc") / std::to_string(daemon_->pid()) / "task";
        for (const auto& t : fs::directory_iterator(tasks)) {
          std::error_code ec;
          daemon_ns.insert(fs::read_symlink(t.path() / "ns" / "mnt", ec).string());
        }
      });
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EACCES", "EACCES", "c 1:3 0 0 644"})) << o.out << o.err;
  std::string ns = read_file(rootfs_ / "tmp" / "ns");
  while (!ns.empty() && ns.back() == '\n') ns.pop_back();
  ASSERT_TRUE(ns.starts_with("mnt:[")) << ns;
  EXPECT_FALSE(daemon_ns.contains(ns)) << ns;
}

}  // namespace
}  // namespace sysvisor::it
