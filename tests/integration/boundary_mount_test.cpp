// The privilege boundary of the mount and umount2 emulation (issue 13), per kind of caller, on
// the real kernel, under the shipped mount-images policy and a configuration that grants it to
// an unprivileged host user (nobody). The one rule: a mount is emulated only for a caller that
// holds CAP_SYS_ADMIN over the mount namespace the mount goes into; everyone else gets the
// kernel's own answer, and the host's mount table never changes for a caller that does not own
// it. Each supervised answer is compared with the answer the same caller gets unsupervised.
// Needs root, mkfs.ext4, unshare, setpriv and chroot (util-linux, coreutils).
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <fstream>
#include <sstream>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

constexpr uid_t kNobody = 65534;

// The host's mount table (this test runs in the host's mount namespace): the mount points under
// `dir`, one per line.
std::string host_mounts_under(const fs::path& dir) {
  std::string out;
  for (const auto& line : lines(read_file("/proc/self/mountinfo"))) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, point;
    fields >> id >> parent >> dev >> root >> point;
    if (point.starts_with(dir.string())) out += point + "\n";
  }
  return out;
}

class BoundaryMount : public DaemonSuite<BoundaryMount> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    for (const char* tool : {"mkfs.ext4", "unshare", "setpriv", "chroot", "losetup"}) {
      if (!fs::exists(sbin(tool))) GTEST_SKIP() << tool << " missing";
    }
    dir_ = new TempDir("sysvisor-boundary-mount");
    fs::create_directories(policies());
    fs::copy_file(source_dir() / "policies" / "mount-images.yaml", policies() / "mount-images.yaml");
    // A rule that names its targets: emulated only onto directories under /mnt.
    std::ofstream(policies() / "mount-under-mnt.yaml")
        << "name: mount-under-mnt\nrules:\n"
           "  - syscalls: [mount]\n    match: {fstype: [ext4], target: [\"/mnt/*\"]}\n    action: emulate\n"
           "    emulate: {images: [\"/images/*.img\"]}\n"
           "  - syscalls: [umount2]\n    action: emulate\n";
    // The unprivileged host user is granted the policy (agent.sock is open to every user).
    std::ofstream(config()) << "default_policy: mount-images\n"
                               "access:\n"
                               "  - users: [root]\n"
                               "    policies: [\"*\"]\n"
                               "  - users: [nobody]\n"
                               "    policies: [mount-images]\n";
    // The agent and the probe, where nobody may execute it (the checkout need not be traversable).
    fs::create_directories(bin());
    fs::copy_file(bin_dir() / "sysvisor-agent", bin() / "sysvisor-agent");
    fs::copy_file(bin_dir() / "probe", bin() / "probe");
    daemon_ = new Daemon(runtime(), policies(), audit_log(), daemon_log(), {"--config", config().string()});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(); }
  // What a failure left on the host (the mounts the attack made) goes before the root.
  void TearDown() override {
    for (const auto& point : lines(host_mounts_under(rootfs_holder_->path()))) {
      ::umount2(point.c_str(), MNT_DETACH);
    }
  }

  // A root for `chroot` by a host user: owned by host root (as the target directory
  // was), with /images/x.img (an ext4 image owned by `image_owner`) and the directory /mnt/a.
  void make_root(uid_t owner, uid_t image_owner) {
    fs::remove_all(rootfs_);
    fs::create_directories(rootfs_);
    make_rootfs(rootfs_, owner);
    fs::create_directories(rootfs_ / "images");
    fs::create_directories(rootfs_ / "mnt" / "a");
    for (const auto& dir : {rootfs_ / "images", rootfs_ / "mnt", rootfs_ / "mnt" / "a"}) {
      ASSERT_EQ(::chown(dir.c_str(), owner, owner), 0) << dir << ": " << std::strerror(errno);
    }
    image_ = rootfs_ / "images" / "x.img";
    { std::ofstream(image_).close(); }
    fs::resize_file(image_, 16U << 20U);
    const auto o = run({sbin("mkfs.ext4"), "-q", "-F", image_.string()});
    ASSERT_EQ(o.status, 0) << o.err;
    ASSERT_EQ(::chown(image_.c_str(), image_owner, image_owner), 0);
    ASSERT_EQ(::chmod(image_.c_str(), 0644), 0);
  }

  // `cmd` as `who` (a prefix: setpriv, unshare), under `sysvisor-agent exec` or not.
  static Outcome as(const std::vector<std::string>& who, const std::vector<std::string>& cmd,
                    bool supervised) {
    std::vector<std::string> argv = who;
    if (supervised) {
      argv.insert(argv.end(), {(bin() / "sysvisor-agent").string(), "exec", "--runtime-dir",
                               runtime().string(), "--policy", "mount-images", "--"});
    }
    argv.insert(argv.end(), cmd.begin(), cmd.end());
    return run(argv, std::chrono::seconds(60));
  }
  static std::vector<std::string> nobody(std::vector<std::string> then = {}) {
    std::vector<std::string> argv{sbin("setpriv"), "--reuid=65534", "--regid=65534", "--clear-groups"};
    argv.insert(argv.end(), then.begin(), then.end());
    return argv;
  }
  // The probe, chrooted into the test's root: the image is /images/x.img there.
  std::vector<std::string> in_root(const std::string& script) const {
    return {sbin("chroot"), rootfs_.string(), "/bin/sh", "-c", script};
  }

  // Nothing of this test mounted on the host, no loop device left on the image.
  void expect_host_untouched(const std::string& why) const {
    EXPECT_EQ(host_mounts_under(rootfs_holder_->path()), "") << why << "\n" << read_file(daemon_log());
    // An autoclear loop device goes when its last mount does; the mounts of a caller's own,
    // now dead, mount namespace go a moment after its last process (the kernel tears the
    // namespace down asynchronously): give it 5 s.
    std::string attached;
    (void)wait_for(
        [&] {
          return (attached = run({sbin("losetup"), "-j", image_.string()}).out).empty();
        },
        std::chrono::seconds(5));
    EXPECT_EQ(attached, "") << why;
  }

  static fs::path bin() { return dir_->path() / "bin"; }
  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path config() { return dir_->path() / "sysvisor.yaml"; }
  static fs::path audit_log() { return dir_->path() / "audit.jsonl"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }

  fs::path image_;
};

constexpr const char* kMount = "probe mount /images/x.img /mnt/a ext4";

// (a) Host root has the real privilege: the kernel acts, and answers as it does without us
// (a regular file is no block device: ENOTBLK; a loop device mounts, with the kernel's options).
TEST_F(BoundaryMount, HostRootGetsTheKernelsOwnAnswer) {
  make_root(0, 0);
  const auto kernel = as({}, in_root(kMount), false);
  const auto supervised = as({}, in_root(kMount), true);
  EXPECT_EQ(kernel.out, "ENOTBLK\n") << kernel.err;
  EXPECT_EQ(supervised.out, kernel.out) << supervised.err << read_file(daemon_log());
  expect_host_untouched("host root's refused mount");

  const auto loop = run({sbin("losetup"), "-f", "--show", image_.string()});
  ASSERT_EQ(loop.status, 0) << loop.err;
  const std::string dev = loop.out.substr(0, loop.out.find('\n'));
  const fs::path target = rootfs_ / "mnt" / "a";
  const auto mounted = as({}, {(bin_dir() / "probe").string(), "mount", dev, target.string(), "ext4"}, true);
  const std::string options =
      run({"/bin/sh", "-c", "awk '$5==\"" + target.string() + "\"{print $6}' /proc/self/mountinfo"}).out;
  run({"/bin/umount", target.string()});
  run({sbin("losetup"), "-d", dev});
  EXPECT_EQ(mounted.out, "ok\n") << mounted.err << read_file(daemon_log());
  EXPECT_TRUE(options.starts_with("rw,relatime"))
      << "the kernel's own mount, not one made for the caller: " << options;
}

// (b) A host user in no user namespace of its own: the kernel's EPERM, nothing mounted.
TEST_F(BoundaryMount, HostUserWithoutAUserNamespaceGetsEperm) {
  make_root(0, kNobody);
  const fs::path probe = bin() / "probe";
  const std::vector<std::string> cmd{probe.string(), "mount", image_.string(),
                                     (rootfs_ / "mnt" / "a").string(), "ext4"};
  const auto unsupervised = as(nobody(), cmd, false);
  const auto supervised = as(nobody(), cmd, true);
  EXPECT_EQ(unsupervised.out, "EPERM\n") << unsupervised.err;
  EXPECT_EQ(supervised.out, unsupervised.out) << supervised.err << read_file(daemon_log());
  expect_host_untouched("a host user's mount");
}

// (c) The attack: `unshare -Ur` (every capability in a user namespace of its own, the
// host's mount namespace) mounting an image onto a directory owned by host root. The kernel
// says EPERM (may_mount: no CAP_SYS_ADMIN over the host's mount namespace), and so do we.
TEST_F(BoundaryMount, UserNamespaceWithoutAMountNamespaceGetsEpermAndTheHostIsUntouched) {
  make_root(0, kNobody);
  const auto kernel = as(nobody({sbin("unshare"), "-Ur"}), in_root(kMount), false);
  const auto supervised = as(nobody({sbin("unshare"), "-Ur"}), in_root(kMount), true);
  EXPECT_EQ(kernel.out, "EPERM\n") << kernel.err;
  EXPECT_EQ(supervised.out, kernel.out) << supervised.err << read_file(daemon_log());
  expect_host_untouched("mounted into the host's mount namespace");
}

// (d) `unshare -Urm`: the caller owns its mount namespace: the mount is emulated there, and only
// there.
TEST_F(BoundaryMount, UserNamespaceWithItsOwnMountNamespaceMountsOnlyThere) {
  make_root(0, kNobody);
  const auto o = as(nobody({sbin("unshare"), "-Urm"}), in_root(std::string(kMount) + "; ls /mnt/a"), true);
  EXPECT_EQ(o.out, "ok\nlost+found\n") << o.err << read_file(daemon_log());
  expect_host_untouched("the caller's own mount namespace leaked onto the host");
}

// (e) A rootless container (`sysvisor-agent run`: its own user and mount namespaces): works.
TEST_F(BoundaryMount, RootlessContainerStillMounts) {
  make_root(kHostRoot, kHostRoot);
  const auto o = run_container(runtime(), "mount-images", rootfs_,
                               std::string(kMount) + "; ls /mnt/a; probe umount /mnt/a; ls /mnt/a | wc -l");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "lost+found", "ok", "0"}))
      << o.err << read_file(daemon_log());
  expect_host_untouched("a container's mount");
}

// (f) A container without CAP_SYS_ADMIN (its root, and its user 1000, with every capability
// dropped): the kernel's EPERM.
TEST_F(BoundaryMount, ContainerWithoutCapSysAdminGetsEperm) {
  make_root(kHostRoot, kHostRoot);
  const auto o = run_container(runtime(), "mount-images", rootfs_,
                               std::string("probe as 0 0 0 -- ") + kMount + "; probe as 1000 1000 0 -- " +
                                   kMount + "; grep -c ' /mnt/a ' /proc/self/mountinfo");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EPERM", "EPERM", "0"}))
      << o.err << read_file(daemon_log());
  expect_host_untouched("a mount without CAP_SYS_ADMIN");
}

// Finding 2: the /images check and the mount act on one opened root. A second thread of the
// caller flips its root between / and /tmp/jail (chroot) while mount is trapped, and asks for
// /tmp/jail/images/x.img: a file of its own outside /images under /, and no file at all under
// the jail. Were the root read once as a name (jail: "/images/x.img", allowed) and opened again
// (/: the file outside /images), that file would be mounted. It never is: every attempt is
// refused (EPERM or ENOENT), nothing is left mounted, no loop device holds the file.
TEST_F(BoundaryMount, RootFlippedByAnotherThreadNeverMountsAFileOutsideImages) {
  make_root(kHostRoot, kHostRoot);
  const fs::path jail = rootfs_ / "tmp" / "jail";
  fs::create_directories(jail / "images");
  fs::create_directories(jail / "mnt" / "a");
  const fs::path own = jail / "images" / "x.img";
  fs::copy_file(image_, own);
  for (const fs::path& p : {jail, jail / "images", jail / "mnt", jail / "mnt" / "a", own}) {
    ASSERT_EQ(::chown(p.c_str(), kHostRoot, kHostRoot), 0);
  }
  const auto o = run_container(runtime(), "mount-images", rootfs_,
                               // the emulation works here: /images/x.img mounts and unmounts
                               std::string(kMount) +
                                   "; probe umount /mnt/a; "
                                   "probe mount-root-race /tmp/jail/images/x.img /mnt/a ext4 /tmp/jail 250; "
                                   "grep -c /dev/loop /proc/self/mountinfo");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "ok", "0", "0"}))
      << o.err << read_file(daemon_log());
  expect_host_untouched("a mount of the flipped root");
  EXPECT_EQ(run({sbin("losetup"), "-j", own.string()}).out, "") << "the caller's own file was attached";
}

// The rule's `target` patterns hold for the directory the mount really lands on, not only for
// the name the caller wrote: /mnt/etc, a symlink to /etc, matches "/mnt/*" as a name; the
// target it resolves to does not, and is refused (EPERM); /etc stays as it was.
TEST_F(BoundaryMount, TargetPatternsHoldForTheDirectoryTheNameResolvesTo) {
  make_root(kHostRoot, kHostRoot);
  const auto o =
      run_container(runtime(), "mount-under-mnt", rootfs_,
                    "ln -s /etc /mnt/etc; ln -s ../etc /mnt/up; mkdir /mnt/b; ln -s b /mnt/c; "
                    "probe mount /images/x.img /mnt/etc ext4; probe mount /images/x.img /mnt/up ext4; "
                    "ls /etc; probe mount /images/x.img /mnt/c ext4; ls /mnt/b; probe umount /mnt/b");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EPERM", "EPERM", "passwd", "ok", "lost+found", "ok"}))
      << o.err << read_file(daemon_log());
  expect_host_untouched("a container's mount");
}

// The same with the cwd: a second thread flips it between /mnt and /etc while mount(.., "a", ..)
// is trapped. The rule's target pattern /mnt/* is decided on the directory the opened cwd
// gives, so nothing is ever mounted on /etc/a.
TEST_F(BoundaryMount, CwdFlippedByAnotherThreadNeverMountsOutsideTheTargetPatterns) {
  make_root(kHostRoot, kHostRoot);
  const auto o =
      run_container(runtime(), "mount-under-mnt", rootfs_,
                    "mkdir /etc/a; probe mount-cwd-race /images/x.img a ext4 /mnt /etc 400; "
                    "grep -c ' /etc/a ' /proc/self/mountinfo; grep -c /dev/loop /proc/self/mountinfo");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"done", "0", "0"})) << o.err << read_file(daemon_log());
  expect_host_untouched("a container's mount");
}

}  // namespace
}  // namespace sysvisor::it
