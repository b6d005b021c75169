// mount and umount2 emulation on the real kernel: an ext4 image mounted through a loop device in
// a rootless busybox container under `sysvisor serve` with the shipped mount-images policy.
// Needs root, mkfs.ext4 and debugfs (e2fsprogs).
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <future>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

class MountEmulation : public DaemonSuite<MountEmulation> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    if (!fs::exists(sbin("mkfs.ext4")))
      GTEST_SKIP() << "mkfs.ext4 missing (scripts/install-deps installs e2fsprogs)";
    dir_ = new TempDir("sysvisor-mount");
    fs::create_directories(policies());
    for (const auto& e : fs::directory_iterator(source_dir() / "policies")) {
      if (e.path().extension() == ".yaml" && !e.path().string().ends_with(".cases.yaml")) {
        fs::copy_file(e.path(), policies() / e.path().filename());
      }
    }
    // Host paths for bind mounts: one read-only (the default), one writable.
    fs::create_directories(host_ro());
    fs::create_directories(host_rw());
    std::ofstream(host_ro() / "hello") << "hello\n";
    ASSERT_EQ(::chown(host_rw().c_str(), kHostRoot, kHostRoot), 0);
    std::ofstream(policies() / "mount-bind-test.yaml")
        << "name: mount-bind-test\ninclude: [mount-images]\nrules:\n"
           "  - syscalls: [mount]\n    match: {flags: {set: [MS_BIND]}}\n    action: emulate\n"
           "    emulate: {bind: [{host: \""
        << host_ro().string() << "\"}, {host: \"" << host_rw().string() << "\", readonly: false}]}\n";
    // Data options: a few ext4 ones, and a glob that covers every errors= value.
    std::ofstream(policies() / "mount-options-test.yaml")
        << "name: mount-options-test\nrules:\n"
           "  - syscalls: [mount]\n    match: {fstype: [ext4]}\n    action: emulate\n"
           "    emulate: {images: [\"/images/*.img\"], options: [\"errors=*\", discard, \"commit=*\", ro, "
           "rw]}\n"
           "  - syscalls: [umount2]\n    action: emulate\n";
    daemon_ = new Daemon(runtime(), policies(), audit_log(), daemon_log());
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(); }

  void SetUp() override {
    rootfs_holder_ = std::make_unique<TempDir>("sysvisor-rootfs");
    rootfs_ = rootfs_holder_->path() / "rootfs";
    fs::create_directories(rootfs_ / "images");
    fs::create_directories(rootfs_ / "mnt" / "a");
    make_rootfs(rootfs_, kHostRoot);
    image_ = rootfs_ / "images" / "x.img";
    make_image(image_, kHostRoot);
  }

  static void make_image(const fs::path& p, uid_t owner) {
    { std::ofstream(p).close(); }
    fs::resize_file(p, 16U << 20U);
    const auto o = run({sbin("mkfs.ext4"), "-q", "-F", p.string()});
    ASSERT_EQ(o.status, 0) << o.err;
    ASSERT_EQ(::chown(p.c_str(), owner, owner), 0);
  }

  static fs::path host_ro() { return dir_->path() / "host-ro"; }
  static fs::path host_rw() { return dir_->path() / "host-rw"; }
  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path audit_log() { return dir_->path() / "audit.jsonl"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }

  Outcome container(const std::string& script, const std::string& policy = "mount-images") {
    std::vector<std::string> argv{(bin_dir() / "sysvisor-agent").string(),
                                  "run",
                                  "--runtime-dir",
                                  runtime().string(),
                                  "--policy",
                                  policy,
                                  "--rootfs",
                                  rootfs_.string(),
                                  "--",
                                  "/bin/sh",
                                  "-c",
                                  script};
    auto o = run(argv, std::chrono::seconds(120));
    if (o.timed_out) ADD_FAILURE() << "container timed out: " << script << "\n" << o.err;
    return o;
  }

  // Loop devices backed by `image`, as the host sees them.
  static std::string loops_of(const fs::path& image) {
    return run({sbin("losetup"), "-j", image.string()}).out;
  }

  fs::path image_;
};

TEST_F(MountEmulation, Ext4ImageMountedIdmappedNosuidNodevAndUnmounted) {
  // Run in the background: the host looks at the loop device while the container holds the
  // mount, and again after its umount (before the container exits).
  auto done = std::async(std::launch::async, [&] {
    return container(
        "probe mount /images/x.img /mnt/a ext4; touch /mnt/a/f && mkdir /mnt/a/d; "
        "stat -c '%u %g' /mnt/a /mnt/a/f; awk '$5==\"/mnt/a\"{for(i=7;$i!=\"-\";i++);print $6, $(i+1), "
        "$(i+2)}' /proc/self/mountinfo; "
        "touch /tmp/mounted; while [ ! -e /tmp/go ]; do sleep 0.1; done; "
        "probe umount /mnt/a; grep -c ' /mnt/a ' /proc/self/mountinfo; touch /tmp/umounted; "
        "while [ ! -e /tmp/go2 ]; do sleep 0.1; done");
  });
  const auto wait_for = [&](const fs::path& p) {
    for (int i = 0; i < 300 && !fs::exists(p); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    return fs::exists(p);
  };
  const bool mounted = wait_for(rootfs_ / "tmp" / "mounted");
  const std::string while_mounted = loops_of(image_);
  std::ofstream(rootfs_ / "tmp" / "go").close();
  const bool umounted = wait_for(rootfs_ / "tmp" / "umounted");
  std::string after_umount = loops_of(image_);
  for (int i = 0; i < 20 && !after_umount.empty(); ++i) {  // AUTOCLEAR may run a moment later
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    after_umount = loops_of(image_);
  }
  std::ofstream(rootfs_ / "tmp" / "go2").close();
  const Outcome o = done.get();
  ASSERT_TRUE(mounted && umounted) << o.out << o.err << read_file(daemon_log());
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 6U) << o.out << o.err << read_file(daemon_log());
  EXPECT_EQ(out[0], "ok");
  EXPECT_EQ(out[1], "0 0") << "the image's root shows its in-container owner (idmapped)";
  EXPECT_EQ(out[2], "0 0") << "a file made by the container's root is owned by it";
  // mount options, fstype, source
  EXPECT_TRUE(out[3].starts_with("rw,nosuid,nodev")) << out[3];
  EXPECT_NE(out[3].find(" ext4 /dev/loop"), std::string::npos) << out[3];
  EXPECT_EQ(out[4], "ok");
  EXPECT_EQ(out[5], "0") << "still mounted after umount";
  EXPECT_NE(while_mounted.find("/dev/loop"), std::string::npos) << while_mounted;
  EXPECT_EQ(after_umount, "") << "the loop device was not released";
  // On disk (no idmapping): the container's root is uid 0 there, not host uid 100000.
  const auto stat = run({sbin("debugfs"), "-R", "stat /f", image_.string()});
  EXPECT_NE(stat.out.find("User:     0   Group:     0"), std::string::npos) << stat.out << stat.err;
}

TEST_F(MountEmulation, RefusedTypesImagesTargetsAndSources) {
  const fs::path victim = rootfs_holder_->path() / "victim";
  fs::create_directories(victim);
  fs::copy_file(image_, rootfs_ / "tmp" / "y.img");
  ASSERT_EQ(::chown((rootfs_ / "tmp" / "y.img").c_str(), kHostRoot, kHostRoot), 0);
  fs::copy_file(image_, rootfs_ / "images" / "host-owned.img");
  ASSERT_EQ(::chown((rootfs_ / "images" / "host-owned.img").c_str(), 0, 0), 0);
  ASSERT_EQ(::chmod((rootfs_ / "images" / "host-owned.img").c_str(), 0600), 0);
  const auto o = container(
      // a type the policy does not name: the kernel's answer for a user namespace
      "probe mount /images/x.img /mnt/a squashfs; "
      // an image outside the policy's pattern
      "probe mount /tmp/y.img /mnt/a ext4; "
      // targets: symlinks out of the root, /proc, /sys, a symlink to /proc
      "ln -s " +
      victim.string() +
      " /mnt/out; ln -s ../../../../../../../victim /mnt/up; ln -s /proc /mnt/p; "
      "probe mount /images/x.img /mnt/out ext4; probe mount /images/x.img /mnt/up ext4; "
      "probe mount /images/x.img /proc ext4; probe mount /images/x.img /sys ext4; "
      "probe mount /images/x.img /mnt/p ext4; "
      // sources the caller cannot open; a caller without CAP_SYS_ADMIN
      "probe mount /images/missing.img /mnt/a ext4; probe mount /images/host-owned.img /mnt/a ext4; "
      "probe as 1000 1000 0 -- probe mount /images/x.img /mnt/a ext4; "
      // umount2 of what sysvisor did not mount: the kernel's answer (not a mount point)
      "probe umount /mnt/a; "
      // no source at all: the kernel's EINVAL
      "probe mount - /mnt/a ext4; "
      // an allowed image that holds no ext4: the kernel's EINVAL, and its loop device released
      "yes | head -c 262144 > /images/garbage.img; "
      "probe mount /images/garbage.img /mnt/a ext4; "
      "grep -c /dev/loop /proc/self/mountinfo");
  EXPECT_EQ(lines(o.out),
            (std::vector<std::string>{"EPERM", "EPERM", "ENOENT", "ENOENT", "EPERM", "EPERM", "EPERM",
                                      "ENOENT", "EACCES", "EPERM", "EINVAL", "EINVAL", "EINVAL", "0"}))
      << o.err << read_file(daemon_log());
  EXPECT_TRUE(fs::is_empty(victim));
  EXPECT_EQ(loops_of(image_), "");
  std::string garbage = loops_of(rootfs_ / "images" / "garbage.img");
  for (int i = 0; i < 20 && !garbage.empty(); ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    garbage = loops_of(rootfs_ / "images" / "garbage.img");
  }
  EXPECT_EQ(garbage, "") << "a failed mount left its loop device";
}

TEST_F(MountEmulation, HostileArguments) {
  // Bad pointers (source, target, type, umount2's target); a target longer than PATH_MAX; a
  // thread rewriting the target between /mnt/aa and /sys/fs while the call is trapped.
  const auto o = container(
      "probe mount-badptr; probe mount /images/x.img /$(printf '%05000d' 0) ext4; "
      "mkdir -p /mnt/aa /sys/fs; probe mount-race /images/x.img /mnt/aa /sys/fs ext4 100; "
      "grep -c /dev/loop /proc/self/mountinfo; grep /dev/loop /proc/self/mountinfo >&2");
  EXPECT_EQ(lines(o.out),
            (std::vector<std::string>{"EFAULT", "EFAULT", "EFAULT", "EFAULT", "ENAMETOOLONG", "done", "0"}))
      << o.err << read_file(daemon_log());
}

TEST_F(MountEmulation, FromABlockDeviceTheCallerCanOpen) {
  // A loop device the host set up, as a block device node in the container's root: opened by the
  // caller (mode 0600, owned by the container's root; its user 1000, without CAP_SYS_ADMIN, gets EPERM).
  const auto setup = run({sbin("losetup"), "-f", "--show", image_.string()});
  ASSERT_EQ(setup.status, 0) << setup.err;
  std::string loop = setup.out.substr(0, setup.out.find('\n'));
  struct stat dev {};
  ASSERT_EQ(::stat(loop.c_str(), &dev), 0) << loop;
  fs::create_directories(rootfs_ / "blk");
  const fs::path node = rootfs_ / "blk" / "disk";
  ASSERT_EQ(::mknod(node.c_str(), S_IFBLK | 0600, dev.st_rdev), 0);
  ASSERT_EQ(::chown(node.c_str(), kHostRoot, kHostRoot), 0);
  const fs::path hosts = rootfs_ / "blk" / "hosts";  // the host's root's: the caller may not open it
  ASSERT_EQ(::mknod(hosts.c_str(), S_IFBLK | 0600, dev.st_rdev), 0);
  const auto o = container(
      "probe mount /blk/hosts /mnt/a ext4; "
      "probe as 1000 1000 0 -- probe mount /blk/disk /mnt/a ext4; "
      "probe mount /blk/disk /mnt/a ext4; touch /mnt/a/g && stat -c %u /mnt/a/g; "
      "awk '$5==\"/mnt/a\"{print $6}' /proc/self/mountinfo | cut -d, -f1-3; probe umount /mnt/a");
  run({sbin("losetup"), "-d", loop});
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"EACCES", "EPERM", "ok", "0", "rw,nosuid,nodev", "ok"}))
      << o.err << read_file(daemon_log());
}

TEST_F(MountEmulation, BindMountsOfTheHostPathsThePolicyNames) {
  const fs::path other = rootfs_holder_->path() / "not-granted";
  fs::create_directories(other);
  const auto o =
      container("mkdir -p /mnt/r /mnt/w; probe mount " + host_ro().string() +
                    " /mnt/r - bind; cat /mnt/r/hello; "
                    "touch /mnt/r/x 2>/dev/null || echo refused; "
                    "awk '$5==\"/mnt/r\"{print $6}' /proc/self/mountinfo | cut -d, -f1-3; "
                    "probe mount " +
                    host_rw().string() +
                    "/ /mnt/w - bind; touch /mnt/w/made && echo written; "
                    "probe umount /mnt/r; probe umount /mnt/w; "
                    // a host path the policy does not name: the kernel's answer (it does not exist inside)
                    "probe mount " +
                    other.string() + " /mnt/r - bind",
                "mount-bind-test");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"ok", "hello", "refused", "ro,nosuid,nodev", "ok",
                                                    "written", "ok", "ok", "ENOENT"}))
      << o.err << read_file(daemon_log());
  EXPECT_FALSE(fs::exists(host_ro() / "x"));
  EXPECT_TRUE(fs::exists(host_rw() / "made"));
  struct stat st {};
  ASSERT_EQ(::stat((host_rw() / "made").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, kHostRoot) << "not idmapped: the container's root writes as host uid 100000";
}

// A cap on one container's emulated mounts: ENOSPC beyond it, room again once one is unmounted.
TEST_F(MountEmulation, MountsBeyondTheCapGetEnospc) {
  const auto o = container(
      "i=0; while [ $i -lt 257 ]; do mkdir -p /mnt/c$i; "
      "probe mount " +
          host_ro().string() +
          " /mnt/c$i - bind > /tmp/rc; r=$(cat /tmp/rc); "
          "[ \"$r\" = ok ] || echo \"$i $r\"; i=$((i+1)); done; "
          "probe umount /mnt/c0; probe mount " +
          host_ro().string() +
          " /mnt/c0 - bind; "
          "grep -c ' /mnt/c' /proc/self/mountinfo",
      "mount-bind-test");
  EXPECT_EQ(lines(o.out), (std::vector<std::string>{"256 ENOSPC", "ok", "ok", "256"}))
      << o.err << read_file(daemon_log());
}

// mount's data: the options the rule allows reach the filesystem (the caller's mountinfo shows
// them), the others are EINVAL, and sysvisor's own (nosuid,nodev, errors=remount-ro) remain.
TEST_F(MountEmulation, DataOptionsTheRuleAllowsAndNoOthers) {
  // The mount's options and the superblock's, as the caller sees them.
  const std::string show =
      "awk '$5==\"/mnt/a\"{for(i=7;$i!=\"-\";i++);print $6, $(i+3)}' /proc/self/mountinfo; ";
  const auto o =
      container("probe mount /images/x.img /mnt/a ext4 0 discard,commit=30; " + show +
                    "probe umount /mnt/a; "
                    "probe mount /images/x.img /mnt/a ext4 0 errors=remount-ro,,commit=7,ro; " +
                    show +
                    "probe umount /mnt/a; "
                    // not in the rule; contradicting a forced option; a value the filesystem refuses;
                    // never passed (another device, a path), whatever the rule; rw under a forced ro
                    "probe mount /images/x.img /mnt/a ext4 0 nodelalloc; "
                    "probe mount /images/x.img /mnt/a ext4 0 errors=continue; "
                    "probe mount /images/x.img /mnt/a ext4 0 errors=panic; "
                    "probe mount /images/x.img /mnt/a ext4 0 commit=abc; "
                    "probe mount /images/x.img /mnt/a ext4 0 commit=/dev/sda; "
                    "probe mount /images/x.img /mnt/a ext4 0 journal_path=/dev/sda; "
                    "probe mount /images/x.img /mnt/a ext4 ro rw; "
                    "grep -c /dev/loop /proc/self/mountinfo",
                "mount-options-test");
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 14U) << o.out << o.err << read_file(daemon_log());
  EXPECT_EQ(out[0], "ok");
  EXPECT_TRUE(out[1].starts_with("rw,nosuid,nodev")) << out[1];
  const std::string super1 = out[1].substr(out[1].find(' ') + 1);
  EXPECT_NE(super1.find("discard"), std::string::npos) << super1;
  EXPECT_NE(super1.find("commit=30"), std::string::npos) << super1;
  EXPECT_NE(super1.find("errors=remount-ro"), std::string::npos) << "the forced option: " << super1;
  EXPECT_EQ(out[2], "ok");
  EXPECT_EQ(out[3], "ok");
  EXPECT_TRUE(out[4].starts_with("ro,nosuid,nodev")) << "`ro` in the data: " << out[4];
  const std::string super2 = out[4].substr(out[4].find(' ') + 1);
  EXPECT_NE(super2.find("commit=7"), std::string::npos) << super2;
  EXPECT_NE(super2.find("errors=remount-ro"), std::string::npos) << super2;
  EXPECT_EQ(out[5], "ok");
  EXPECT_EQ(std::vector<std::string>(out.begin() + 6, out.end() - 1),
            (std::vector<std::string>{"EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL", "EINVAL"}))
      << o.out;
  EXPECT_EQ(out[13], "0") << "a refused mount is left mounted";
  // A thread rewrites the data between an allowed option and a refused one while the call is
  // trapped: the options are copied once, and the copy is what reaches the filesystem.
  const auto raced = container(
      "probe mount-data-race /images/x.img /mnt/a ext4 200 commit=111 nodelalloc; "
      "grep -c /dev/loop /proc/self/mountinfo",
      "mount-options-test");
  const auto race = lines(raced.out);
  ASSERT_EQ(race.size(), 2U) << raced.out << raced.err;
  EXPECT_TRUE(race[0].starts_with("mounted ") && race[0].ends_with(" leaked 0")) << race[0];
  EXPECT_NE(race[0], "mounted 0 leaked 0") << "no call was allowed: the race tested nothing";
  EXPECT_EQ(race[1], "0");
  // The shipped policy: a few options, not every one.
  const auto shipped = container(
      "probe mount /images/x.img /mnt/a ext4 0 discard,commit=9; probe umount /mnt/a; "
      "probe mount /images/x.img /mnt/a ext4 0 nodelalloc");
  EXPECT_EQ(lines(shipped.out), (std::vector<std::string>{"ok", "ok", "EINVAL"})) << shipped.err;
  EXPECT_EQ(loops_of(image_), "");
}

}  // namespace
}  // namespace sysvisor::it
