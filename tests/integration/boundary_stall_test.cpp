// One container must not stall the daemon (issue 13, finding 5). A trapped call whose pointer
// argument lies in a mapped page of a FUSE file whose READ is never answered makes every read
// or write of that page wait for as long as the FUSE server wants. While it waits, other
// containers' trapped calls, new handoffs and `sysvisor status` must be answered; the stuck
// call gets EFAULT once the emulation timeout passes (what the kernel answers when the page
// cannot be brought in), and the daemon stays healthy once the FUSE server is gone. Needs root.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/wait.h>
#include <unistd.h>

#include <array>
#include <fstream>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

constexpr const char* kPolicy = R"(name: stall-test
rules:
  - name: null-device
    syscalls: [mknod, mknodat]
    match: {type: char, devices: ["1:3"]}
    action: emulate
  - name: other-devices
    syscalls: [mknod, mknodat]
    action: deny
  - name: sysinfo-from-cgroup
    syscalls: [sysinfo]
    action: emulate
)";

// The emulation timeout the test daemon runs with: the stuck call's answer comes after it.
constexpr const char* kTimeoutMs = "1500";

// A child process whose stdout and stderr the test reads line by line while it runs.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv) {
    std::array<int, 2> out{};
    std::array<int, 2> in{};
    if (::pipe2(out.data(), O_CLOEXEC) != 0 || ::pipe2(in.data(), O_CLOEXEC) != 0)
      throw std::runtime_error("pipe");
    std::vector<char*> args;
    for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      ::dup2(out[1], 2);
      ::setpgid(0, 0);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    ::close(out[1]);
    ::close(in[0]);
    out_ = out[0];
    in_ = in[1];
  }
  ~Child() {
    kill(SIGKILL);
    if (out_ >= 0) ::close(out_);
    if (in_ >= 0) ::close(in_);
  }
  void write_line(const std::string& line) {
    const std::string text = line + "\n";
    EXPECT_EQ(::write(in_, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  // Reads until `line` is a whole line of the output, or the output ends, or `limit` passes
  // (a safety net against a hang, not a synchronisation).
  bool wait_for_line(const std::string& line, std::chrono::seconds limit = std::chrono::seconds(60)) {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    for (;;) {
      for (const auto& l : lines(text_)) {
        if (l == line) return true;
      }
      if (out_ < 0) return false;
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0) return false;
      pollfd p{out_, POLLIN, 0};
      if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) continue;
      std::array<char, 4096> buf{};
      const ssize_t n = ::read(out_, buf.data(), buf.size());
      if (n <= 0) {
        ::close(out_);
        out_ = -1;
      } else {
        text_.append(buf.data(), static_cast<std::size_t>(n));
      }
    }
  }
  // Waits for the exit (the output read to its end first); 128+signal for a signal.
  int wait(std::chrono::seconds limit = std::chrono::seconds(60)) {
    (void)wait_for_line("\x01never\x01", limit);
    if (out_ >= 0) kill(SIGKILL);
    if (pid_ <= 0) return status_;
    int status = 0;
    ::waitpid(pid_, &status, 0);
    pid_ = -1;
    status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    return status_;
  }
  void kill(int sig) {
    if (pid_ <= 0) return;
    ::kill(-pid_, sig);
    ::kill(pid_, sig);
    if (sig == SIGKILL) {
      int status = 0;
      ::waitpid(pid_, &status, 0);
      pid_ = -1;
      status_ = 128 + SIGKILL;
    }
  }
  [[nodiscard]] const std::string& text() const { return text_; }
  [[nodiscard]] bool running() {
    int status = 0;
    return pid_ > 0 && ::waitpid(pid_, &status, WNOHANG) == 0;
  }

 private:
  pid_t pid_ = -1;
  int out_ = -1;
  int in_ = -1;
  int status_ = -1;
  std::string text_;
};

std::string mountinfo_without(const std::string& marker) {
  std::string out;
  for (const auto& l : lines(read_file("/proc/self/mountinfo"))) {
    if (l.find(marker) == std::string::npos) out += l.substr(l.find(' ', l.find(' ') + 1)) + "\n";
  }
  return out;
}

class BoundaryStall : public DaemonSuite<BoundaryStall> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "integration tests need root";
    if (::access("/dev/fuse", R_OK | W_OK) != 0) GTEST_SKIP() << "no /dev/fuse on this machine";
    dir_ = new TempDir("sysvisor-stall");
    fs::create_directories(policies());
    std::ofstream(policies() / "stall-test.yaml") << kPolicy;
    daemon_ =
        new Daemon(runtime(), policies(), audit_log(), daemon_log(), {"--emulation-timeout-ms", kTimeoutMs});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(); }

  void SetUp() override {
    DaemonSuite::SetUp();
    mountpoint_ = rootfs_ / "fuse";
    fs::create_directories(mountpoint_);
    mounts_before_ = mountinfo_without("fuse_stall");
    fuse_ =
        std::make_unique<Child>(std::vector<std::string>{(bin_dir() / "fuse_stall").string(), mountpoint_});
    ASSERT_TRUE(fuse_->wait_for_line("ready")) << fuse_->text();
  }
  void TearDown() override {
    if (fuse_) fuse_->kill(SIGKILL);
    ::umount2(mountpoint_.c_str(), MNT_DETACH);
    EXPECT_EQ(mountinfo_without("fuse_stall"), mounts_before_) << "the host's mount table changed";
    EXPECT_EQ(::kill(daemon_->pid(), 0), 0) << "daemon died\n" << read_file(daemon_log());
  }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path policies() { return dir_->path() / "policies"; }
  static fs::path audit_log() { return dir_->path() / "audit.jsonl"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }

  static std::vector<std::string> agent(const fs::path& rootfs, const std::string& id,
                                        const std::string& script) {
    return {(bin_dir() / "sysvisor-agent").string(),
            "run",
            "--runtime-dir",
            runtime().string(),
            "--policy",
            "stall-test",
            "--id",
            id,
            "--rootfs",
            rootfs.string(),
            "--",
            "/bin/sh",
            "-c",
            script};
  }

  // What must keep working while a call of another container is stuck: a new container (a
  // handoff) whose emulated mknod goes the slow way, and `sysvisor status`. The limits are
  // safety nets: before the fix each of these waited until the FUSE server died.
  void others_are_served(const std::string& id) {
    TempDir other("sysvisor-stall-other");
    const fs::path root = other.path() / "rootfs";
    fs::create_directories(root);
    make_rootfs(root, kHostRoot);
    // Its /dev is a tmpfs of its own: what was made is looked at from inside.
    const Outcome o = run(agent(root, id,
                                "mknod /dev/null c 1 3 && echo x > /dev/null && stat -c %F /dev/null && "
                                "probe mknod /dev/sda b 8 0; ls /dev"),
                          std::chrono::seconds(30));
    EXPECT_FALSE(o.timed_out) << "another container's handoff or calls hung";
    EXPECT_EQ(lines(o.out), (std::vector<std::string>{"character special file", "EPERM", "null"})) << o.err;
    EXPECT_EQ(o.status, 0) << o.err;
    const Outcome status =
        run({(bin_dir() / "sysvisor").string(), "status", "--runtime-dir", runtime().string()},
            std::chrono::seconds(30));
    EXPECT_FALSE(status.timed_out) << "`sysvisor status` hung";
    EXPECT_EQ(status.status, 0) << status.err;
  }

  // The stuck container: its one call, the answer it got.
  void stuck_call_is_answered(const std::string& probe_op, const std::string& id, const std::string& answer) {
    Child stuck(agent(rootfs_, id, "probe " + probe_op + " /fuse/file; ls /dev; echo end"));
    // The daemon is reading (or writing) the page now: the FUSE server holds its READ.
    ASSERT_TRUE(fuse_->wait_for_line("read")) << fuse_->text() << "\n" << stuck.text();
    others_are_served(id + "-other");
    // The stuck call itself: answered once the emulation timeout passed, while the READ is
    // still held (the FUSE server lives on).
    EXPECT_TRUE(stuck.wait_for_line("end")) << stuck.text();
    EXPECT_EQ(stuck.wait(), 0) << stuck.text();
    EXPECT_TRUE(fuse_->running()) << "the answer came only because the FUSE server went away";
    // The answer, and nothing made for the stuck call (its /dev is empty).
    EXPECT_EQ(lines(stuck.text()), (std::vector<std::string>{answer, "end"}));
    // Once the FUSE server is gone, the daemon serves everyone as before.
    fuse_->kill(SIGKILL);
    others_are_served(id + "-after");
  }

  fs::path mountpoint_;
  std::string mounts_before_;
  std::unique_ptr<Child> fuse_;
};

TEST_F(BoundaryStall, PathInAPageThatNeverArrivesStallsOnlyItsContainer) {
  // mknod's path is read for every trapped mknod (the policy matches on the device, the audit
  // record shows the path): the read waits on the FUSE page. The kernel's own answer for a
  // path it cannot fault in is EFAULT.
  stuck_call_is_answered("mknod-mapped", "stall-path", "EFAULT");
}

TEST_F(BoundaryStall, SysinfoIntoAPageThatNeverArrivesStallsOnlyItsContainer) {
  // sysinfo's emulation writes the caller's buffer: a private writable mapping of the FUSE
  // file needs the page read first (copy on write). The kernel's copy_to_user fails EFAULT.
  stuck_call_is_answered("sysinfo-mapped", "stall-sysinfo", "EFAULT");
}

TEST_F(BoundaryStall, AStuckWorkerIsReplacedOnceThenTheContainersCallsGetEINTR) {
  // One container, one call after the other: the first stalls its worker and is answered at
  // the deadline; a replacement worker serves the next (the null device is made); the third
  // stalls the replacement too. The session gets no third thread: its next slow call waits and
  // is answered EINTR at its deadline (nothing was done: the kernel's answer to a trapped call
  // whose wait ends unanswered). Once the FUSE server is gone the container is served again.
  Child stuck(
      agent(rootfs_, "stall-twice",
            "probe mknod-mapped /fuse/file; probe mknod /dev/null c 1 3; probe mknod-mapped /fuse/file; "
            "probe mknod /tmp/null c 1 3; echo end; read line; probe mknod /tmp/null c 1 3; ls /dev /tmp"));
  ASSERT_TRUE(fuse_->wait_for_line("read")) << fuse_->text() << "\n" << stuck.text();
  ASSERT_TRUE(stuck.wait_for_line("end")) << stuck.text() << read_file(daemon_log());
  EXPECT_EQ(lines(stuck.text()), (std::vector<std::string>{"EFAULT", "ok", "EFAULT", "EINTR", "end"}));
  EXPECT_TRUE(fuse_->running());
  others_are_served("stall-twice-other");
  fuse_->kill(SIGKILL);
  // The stuck workers come back (their reads fail): the container is served again.
  stuck.write_line("go");
  EXPECT_EQ(stuck.wait(), 0) << stuck.text();
  EXPECT_EQ(lines(stuck.text()), (std::vector<std::string>{"EFAULT", "ok", "EFAULT", "EINTR", "end", "ok",
                                                           "/dev:", "null", "/tmp:", "null"}));
}

TEST_F(BoundaryStall, AnUpgradeIsRefusedWhileAWorkerIsStuckAndTheDaemonGoesOn) {
  // A worker given up on in a FUSE page cannot be ended (the READ is in the FUSE server's
  // hands: not even SIGKILL ends that wait), and execve must end every other thread first: an
  // upgrade now would hang the whole daemon for as long as the FUSE server wants.
  Child stuck(agent(rootfs_, "stall-upgrade", "probe mknod-mapped /fuse/file; echo end"));
  ASSERT_TRUE(fuse_->wait_for_line("read")) << fuse_->text() << "\n" << stuck.text();
  ASSERT_TRUE(stuck.wait_for_line("end")) << stuck.text();  // answered at the deadline: stuck now
  const pid_t before = daemon_->pid();
  const Outcome up = run({(bin_dir() / "sysvisor").string(), "upgrade", "--runtime-dir", runtime().string()},
                         std::chrono::seconds(30));
  EXPECT_FALSE(up.timed_out) << "`sysvisor upgrade` hung";
  EXPECT_EQ(up.status, 1) << up.out << up.err;
  EXPECT_NE(up.err.find("stuck"), std::string::npos) << up.err;
  others_are_served("stall-upgrade-other");
  EXPECT_EQ(daemon_->pid(), before);
  EXPECT_EQ(read_file(daemon_log()).find("upgrade: executing"), std::string::npos) << read_file(daemon_log());
  (void)stuck.wait();
  // Once the FUSE server is gone the worker comes back, and the daemon serves as before.
  fuse_->kill(SIGKILL);
  others_are_served("stall-upgrade-after");
}

}  // namespace
}  // namespace sysvisor::it
