#include "harness.hpp"

#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/mount.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>
#include <stdexcept>
#include <system_error>
#include <thread>

namespace sysvisor::it {

bool kernel_runs_i386() {
  static const bool runs = [] {
    const pid_t pid = ::fork();
    if (pid == 0) {
      // The fault must kill the child: a handler of the sanitizers' (ASan catches SIGSEGV and
      // exits 1) would hide it. The raw call, since their sigaction interceptor may refuse it.
      struct {
        void (*handler)(int);
        unsigned long flags;
        void (*restorer)();
        unsigned long mask;
      } dfl{SIG_DFL, 0, nullptr, 0};
      ::syscall(SYS_rt_sigaction, SIGSEGV, &dfl, nullptr, sizeof dfl.mask);
      long rc = 0;
      __asm__ volatile("int $0x80" : "=a"(rc) : "a"(20 /* i386 getpid */) : "memory");
      ::_exit(rc == ::getpid() ? 0 : 1);
    }
    int status = 0;
    if (pid < 0 || ::waitpid(pid, &status, 0) != pid) throw std::runtime_error("fork for the i386 probe");
    if (WIFSIGNALED(status)) return false;  // the fault: no i386 entry on this kernel
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0) return true;
    throw std::runtime_error("i386 probe: int $0x80 getpid returned the wrong pid");
  }();
  return runs;
}

fs::path bin_dir() {
  return SYSVISOR_BIN_DIR;
}
fs::path source_dir() {
  return SYSVISOR_SOURCE_DIR;
}

int bind_datagram(const fs::path& path) {
  const int sock = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  if (sock < 0 || path.native().size() >= sizeof addr.sun_path) {
    if (sock >= 0) ::close(sock);
    return -1;
  }
  std::memcpy(addr.sun_path, path.c_str(), path.native().size() + 1);
  if (::bind(sock, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(sock);
    return -1;
  }
  return sock;
}

std::string sbin(const std::string& tool) {
  for (const char* dir : {"/usr/sbin/", "/sbin/", "/usr/bin/", "/bin/"}) {
    if (fs::exists(dir + tool)) return dir + tool;
  }
  return tool;
}

Outcome run(const std::vector<std::string>& argv, std::chrono::seconds timeout) {
  std::array<int, 2> out{};
  std::array<int, 2> err{};
  if (::pipe2(out.data(), O_CLOEXEC) != 0 || ::pipe2(err.data(), O_CLOEXEC) != 0)
    throw std::runtime_error("pipe");
  std::vector<char*> args;
  for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  const pid_t pid = ::fork();
  if (pid == 0) {
    ::dup2(out[1], 1);
    ::dup2(err[1], 2);
    // Nothing the test process (or ctest before it) left open reaches the command.
    ::close_range(3, ~0U, 0);
    ::setpgid(0, 0);
    ::execv(args[0], args.data());
    ::_exit(127);
  }
  ::close(out[1]);
  ::close(err[1]);
  Outcome o;
  const auto deadline = std::chrono::steady_clock::now() + timeout;
  std::array<pollfd, 2> pfds{{{out[0], POLLIN, 0}, {err[0], POLLIN, 0}}};
  int open_fds = 2;
  while (open_fds > 0) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) {
      o.timed_out = true;
      ::kill(-pid, SIGKILL);
      ::kill(pid, SIGKILL);
      break;
    }
    if (::poll(pfds.data(), pfds.size(), static_cast<int>(left.count())) < 0) continue;
    for (std::size_t i = 0; i < 2; ++i) {
      if (pfds[i].fd < 0 || pfds[i].revents == 0) continue;
      std::array<char, 4096> buf{};
      const ssize_t n = ::read(pfds[i].fd, buf.data(), buf.size());
      if (n <= 0) {
        ::close(pfds[i].fd);
        pfds[i].fd = -1;
        --open_fds;
      } else {
        (i == 0 ? o.out : o.err).append(buf.data(), static_cast<std::size_t>(n));
      }
    }
  }
  for (auto& p : pfds) {
    if (p.fd >= 0) ::close(p.fd);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  o.status = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
  return o;
}

fs::path public_temp_base() {
  static const fs::path base = [] {
    const fs::path tmp = fs::temp_directory_path();
    for (fs::path at = tmp; !at.empty(); at = at.parent_path()) {
      struct stat st {};
      // Others must pass through it, and the daemon must trust it (root's, writable by nobody
      // else unless sticky): its runtime dirs and policies are made below.
      if (::lstat(at.c_str(), &st) != 0 || !S_ISDIR(st.st_mode) || (st.st_mode & S_IXOTH) == 0 ||
          st.st_uid != 0 || ((st.st_mode & (S_IWGRP | S_IWOTH)) != 0 && (st.st_mode & S_ISVTX) == 0)) {
        return fs::path("/tmp");
      }
      if (at == at.root_path()) break;
    }
    return tmp;
  }();
  return base;
}

bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit) {
  const auto until = std::chrono::steady_clock::now() + limit;
  while (std::chrono::steady_clock::now() < until) {
    if (cond()) return true;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return cond();
}

int connect_to(const fs::path& path, int type) {
  const int s = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, path.c_str(), sizeof addr.sun_path - 1);
  if (s < 0 || ::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr) != 0) {
    if (s >= 0) ::close(s);
    return -1;
  }
  return s;
}

void send_with(int sock, const std::string& bytes, const std::vector<int>& fds) {
  iovec iov{const_cast<char*>(bytes.data()), bytes.size()};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  std::vector<char> control(CMSG_SPACE(sizeof(int) * std::max<std::size_t>(fds.size(), 1)));
  if (!fds.empty()) {
    mh.msg_control = control.data();
    mh.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cm), fds.data(), sizeof(int) * fds.size());
  }
  (void)::sendmsg(sock, &mh, MSG_NOSIGNAL);
}

bool closed_by_daemon(int sock) {
  timeval tv{10, 0};
  ::setsockopt(sock, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::array<char, 64> buf{};
  ssize_t n = 0;
  do {
    n = ::recv(sock, buf.data(), buf.size(), 0);
  } while (n > 0);
  ::close(sock);
  return n == 0 || (n < 0 && errno == ECONNRESET);
}

std::string runc_payload(const std::string& id, pid_t pid, const std::string& metadata,
                         const std::map<std::string, std::string>& annotations) {
  const nlohmann::json p = {{"ociVersion", "1.0.2-dev"},
                            {"fds", {"seccompFd"}},
                            {"pid", pid},
                            {"metadata", metadata},
                            {"state",
                             {{"ociVersion", "1.0.2-dev"},
                              {"id", id},
                              {"status", "creating"},
                              {"pid", pid},
                              {"bundle", "/b"},
                              {"annotations", annotations}}}};
  return p.dump();
}

int oci_handoff_as(const fs::path& oci, uid_t uid, const std::string& id) {
  const pid_t pid = ::fork();
  if (pid < 0) return -1;
  if (pid == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(uid, uid, uid) != 0 || ::setresuid(uid, uid, uid) != 0)
      ::_exit(100);
    auto child = filtered_child(__NR_unshare, [] { return ::syscall(SYS_unshare, CLONE_NEWUTS); });
    if (child == nullptr) ::_exit(101);
    const int s = connect_to(oci, SOCK_STREAM);
    if (s < 0) ::_exit(102);
    send_with(s, runc_payload(id, child->pid, "policy=deny-dangerous"), {child->listener});
    if (!closed_by_daemon(s)) ::_exit(103);
    child->drop_listener();
    const int err = child->call_errno();
    ::_exit(err >= 0 && err < 100 ? err : 104);
  }
  int status = 0;
  ::waitpid(pid, &status, 0);
  return WIFEXITED(status) ? (WEXITSTATUS(status) >= 100 ? -WEXITSTATUS(status) : WEXITSTATUS(status)) : -2;
}

fs::path shipped_policies() {
  // A copy, made once per test process in a directory the daemon trusts: the checkout may lie
  // below directories that are not root's, and the daemon refuses policies there.
  static TempDir dir("sysvisor-shipped");
  static const fs::path copy = [] {
    const fs::path to = dir.path() / "policies";
    fs::create_directories(to);
    ::chmod(to.c_str(), 0755);  // whatever the umask of the test that calls first
    for (const auto& e : fs::directory_iterator(source_dir() / "policies")) {
      if (!e.is_regular_file()) continue;
      fs::copy_file(e.path(), to / e.path().filename());
      fs::permissions(to / e.path().filename(), fs::perms::owner_read | fs::perms::owner_write |
                                                    fs::perms::group_read | fs::perms::others_read);
    }
    return to;
  }();
  return copy;
}

fs::path public_bin(const std::string& name) {
  static TempDir dir("sysvisor-bin");
  const fs::path copy = dir.path() / name;
  if (!fs::exists(copy)) {
    fs::copy_file(bin_dir() / name, copy);
    fs::permissions(copy, fs::perms::owner_all | fs::perms::group_read | fs::perms::group_exec |
                              fs::perms::others_read | fs::perms::others_exec);
  }
  return copy;
}

FilteredChild::~FilteredChild() {
  for (const int fd : {listener, go, result}) {
    if (fd >= 0) ::close(fd);
  }
  if (pid > 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, nullptr, 0);
  }
}

void FilteredChild::drop_listener() {
  ::close(listener);
  listener = -1;
}

int FilteredChild::call_errno() {
  const char byte = 'g';
  if (::write(go, &byte, 1) != 1) return -1;
  pollfd pfd{result, POLLIN, 0};
  if (::poll(&pfd, 1, 10000) != 1) return -2;  // not answered
  int err = -1;
  if (::read(result, &err, sizeof err) != static_cast<ssize_t>(sizeof err)) return -3;
  return err;
}

std::unique_ptr<FilteredChild> filtered_child(int nr, long (*call)()) {
  auto f = std::make_unique<FilteredChild>();
  std::array<int, 2> sp{};
  std::array<int, 2> go{};
  std::array<int, 2> result{};
  if (::socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sp.data()) != 0 ||
      ::pipe2(go.data(), O_CLOEXEC) != 0 || ::pipe2(result.data(), O_CLOEXEC) != 0)
    return nullptr;
  f->pid = ::fork();
  if (f->pid == 0) {
    std::array<sock_filter, 7> code{{
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, arch)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, AUDIT_ARCH_X86_64, 1, 0),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, static_cast<std::uint32_t>(nr), 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    }};
    sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0);
    const int listener = static_cast<int>(
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
    if (listener < 0) ::_exit(1);
    const char byte = 'l';
    iovec iov{const_cast<char*>(&byte), 1};
    alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
    msghdr mh{};
    mh.msg_iov = &iov;
    mh.msg_iovlen = 1;
    mh.msg_control = control.data();
    mh.msg_controllen = control.size();
    cmsghdr* cm = CMSG_FIRSTHDR(&mh);
    cm->cmsg_level = SOL_SOCKET;
    cm->cmsg_type = SCM_RIGHTS;
    cm->cmsg_len = CMSG_LEN(sizeof(int));
    std::memcpy(CMSG_DATA(cm), &listener, sizeof(int));
    if (::sendmsg(sp[1], &mh, 0) != 1) ::_exit(2);
    ::close(listener);
    char g = 0;
    if (::read(go[0], &g, 1) != 1) ::_exit(0);
    const long rc = call();
    const int err = rc == 0 ? 0 : errno;
    if (::write(result[1], &err, sizeof err) != static_cast<ssize_t>(sizeof err)) ::_exit(3);
    ::_exit(0);
  }
  ::close(sp[1]);
  ::close(go[0]);
  ::close(result[1]);
  f->go = go[1];
  f->result = result[0];
  char byte = 0;
  iovec iov{&byte, 1};
  alignas(cmsghdr) std::array<char, CMSG_SPACE(sizeof(int))> control{};
  msghdr mh{};
  mh.msg_iov = &iov;
  mh.msg_iovlen = 1;
  mh.msg_control = control.data();
  mh.msg_controllen = control.size();
  if (::recvmsg(sp[0], &mh, MSG_CMSG_CLOEXEC) == 1 && CMSG_FIRSTHDR(&mh) != nullptr) {
    std::memcpy(&f->listener, CMSG_DATA(CMSG_FIRSTHDR(&mh)), sizeof(int));
  }
  ::close(sp[0]);
  return f->listener >= 0 ? std::move(f) : nullptr;
}

TempDir::TempDir(const std::string& prefix) {
  std::string templ = (public_temp_base() / (prefix + "-XXXXXX")).string();
  if (::mkdtemp(templ.data()) == nullptr) throw std::runtime_error("mkdtemp");
  path_ = templ;
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  // Mounts a test left below the directory go first (deepest first): remove_all must never
  // walk into a mounted file system (a bind mount of a host directory, a loop-mounted image).
  std::vector<std::string> below;
  std::istringstream info(read_file("/proc/self/mountinfo"));
  const std::string prefix = path_.string() + "/";
  for (std::string line; std::getline(info, line);) {
    std::istringstream fields(line);
    std::string id, parent, dev, root, mount_point;
    fields >> id >> parent >> dev >> root >> mount_point;
    if (mount_point.starts_with(prefix) || mount_point == path_.string()) below.push_back(mount_point);
  }
  std::ranges::sort(below, std::greater<>());
  for (const auto& m : below) ::umount2(m.c_str(), MNT_DETACH);
  std::error_code ec;
  fs::remove_all(path_, ec);
}

void make_rootfs(const fs::path& dir, uid_t owner) {
  for (const char* d : {"bin", "proc", "dev", "tmp", "etc", "ro", "sys"}) fs::create_directories(dir / d);
  fs::copy_file("/bin/busybox", dir / "bin" / "busybox", fs::copy_options::overwrite_existing);
  fs::copy_file(bin_dir() / "probe", dir / "bin" / "probe", fs::copy_options::overwrite_existing);
  const auto list = run({"/bin/busybox", "--list"});
  for (const auto& applet : lines(list.out)) {
    std::error_code ec;
    fs::create_symlink("busybox", dir / "bin" / applet, ec);
  }
  {
    std::ofstream passwd(dir / "etc" / "passwd");
    passwd << "root:x:0:0:root:/:/bin/sh\nuser:x:1000:1000:user:/tmp:/bin/sh\n";
  }
  ::chmod((dir / "tmp").c_str(), 01777);
  ::chmod((dir / "ro").c_str(), 0555);
  const auto own = [owner](const fs::path& p) {
    if (::lchown(p.c_str(), owner, owner) != 0) {
      throw std::system_error(errno, std::generic_category(), "lchown " + p.string());
    }
  };
  for (const auto& e : fs::recursive_directory_iterator(dir)) own(e.path());
  own(dir);
}

fs::path which(const std::string& name) {
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    const fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

void ensure_rootless_user() {
  if (::getpwnam(kRootlessUser) == nullptr) {
    const auto add = run({"/usr/sbin/useradd", "--create-home", "--shell", "/bin/sh", kRootlessUser});
    ASSERT_EQ(add.status, 0) << add.err;
  }
  // useradd gives a new user a range of its own where login.defs asks it to; where it did
  // not, take 65536 ids past every range already given (root's 100000:65536 among them: the
  // user must never own the ids of root's containers).
  for (const char* file : {"/etc/subuid", "/etc/subgid"}) {
    const std::string text = read_file(file);
    if (text.find(std::string(kRootlessUser) + ":") != std::string::npos) continue;
    unsigned long long next = 100000;
    for (const auto& line : lines(text)) {
      const auto first = line.find(':');
      const auto second = line.find(':', first + 1);
      if (first == std::string::npos || second == std::string::npos) continue;
      const unsigned long long end =
          std::stoull(line.substr(first + 1, second - first - 1)) + std::stoull(line.substr(second + 1));
      next = std::max(next, end);
    }
    next = std::max<unsigned long long>(next, 165536);  // past root's default range in any case
    std::ofstream(file, std::ios::app) << kRootlessUser << ":" << next << ":65536\n";
  }
}

std::vector<std::string> podman_argv(const Podman& pm, std::vector<std::string> args) {
  std::vector<std::string> argv;
  if (!pm.user.empty()) {
    // The user's own home as its working directory: the test's (the build tree) may be out of
    // its reach when the checkout sits under a 0700 directory.
    argv = {"/usr/sbin/runuser",
            "-u",
            pm.user,
            "--",
            "/usr/bin/env",
            "--chdir=" + (pm.store / "home").string(),
            "HOME=" + (pm.store / "home").string(),
            "TMPDIR=" + (pm.store / "tmp").string(),
            "XDG_RUNTIME_DIR=" + (pm.store / "xdg").string(),
            "XDG_CONFIG_HOME=" + (pm.store / "config").string()};
  }
  const fs::path podman = which("podman");
  if (podman.empty()) ADD_FAILURE() << "podman is not installed: run scripts/install-deps";
  argv.insert(argv.end(),
              {podman.string(), "--root", (pm.store / "root").string(), "--runroot",
               (pm.store / "rr").string(), "--tmpdir", (pm.store / "tmp").string(), "--storage-driver", "vfs",
               "--cgroup-manager", "cgroupfs", "--events-backend", "file"});
  argv.insert(argv.end(), args.begin(), args.end());
  return argv;
}

void podman_import(const Podman& pm, uid_t uid, const std::string& image) {
  for (const char* d : {"home", "xdg", "config", "tmp"}) fs::create_directories(pm.store / d);
  ::chmod((pm.store / "xdg").c_str(), 0700);
  make_rootfs(pm.store / "rootfs", 0);
  const auto tar =
      run({"/bin/tar", "-C", (pm.store / "rootfs").string(), "-cf", (pm.store / "rootfs.tar").string(), "."});
  EXPECT_EQ(tar.status, 0) << tar.err;
  if (!pm.user.empty()) {
    const std::string owner = std::to_string(uid) + ":" + std::to_string(uid);
    const auto chown = run({"/bin/chown", "-R", owner, pm.store.string()});
    EXPECT_EQ(chown.status, 0) << chown.err;
  }
  const auto imported =
      run(podman_argv(pm, {"import", (pm.store / "rootfs.tar").string(), image}), std::chrono::seconds(60));
  EXPECT_EQ(imported.status, 0) << imported.err;
}

PauseReaper::~PauseReaper() {
  std::error_code ec;
  for (auto it = fs::recursive_directory_iterator(store, fs::directory_options::skip_permission_denied, ec);
       !ec && it != fs::recursive_directory_iterator(); it.increment(ec)) {
    if (it->path().filename() != "pause.pid") continue;
    const std::string pid = read_file(it->path());
    if (!pid.empty() && std::stoi(pid) > 1) ::kill(std::stoi(pid), SIGKILL);
  }
}

Daemon::Daemon(const fs::path& runtime_dir, const fs::path& policies_dir, const fs::path& audit_log,
               const fs::path& log, const std::vector<std::string>& extra) {
  const std::string exe = (bin_dir() / "sysvisor").string();
  std::vector<std::string> args{exe,         "--log-level", "debug",      "serve",   "--runtime-dir",
                                runtime_dir, "--policies",  policies_dir, "--audit", audit_log};
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<char*> argv;
  for (auto& a : args) argv.push_back(a.data());
  argv.push_back(nullptr);
  const int logfd = ::open(log.c_str(), O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
  const auto log_offset = static_cast<std::size_t>(::lseek(logfd, 0, SEEK_END));
  pid_ = ::fork();
  if (pid_ == 0) {
    ::dup2(logfd, 1);
    ::dup2(logfd, 2);
    ::execv(exe.c_str(), argv.data());
    ::_exit(127);
  }
  ::close(logfd);
  // This daemon's lines only: a test that restarts a daemon on the same log and runtime dir
  // has an earlier "serving" there, and maybe the killed one's stale socket.
  const fs::path sock = runtime_dir / "agent.sock";
  for (int i = 0; i < 200 && !ready_; ++i) {
    if (fs::exists(sock) && read_file(log).find("serving", log_offset) != std::string::npos) {
      ready_ = true;
      break;
    }
    int status = 0;
    if (::waitpid(pid_, &status, WNOHANG) == pid_) {
      pid_ = -1;
      return;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
}

Outcome run_container(const fs::path& runtime_dir, const std::string& policy, const fs::path& rootfs,
                      const std::string& script, const std::string& id,
                      const std::vector<std::string>& options) {
  std::vector<std::string> argv{(bin_dir() / "sysvisor-agent").string(),
                                "run",
                                "--runtime-dir",
                                runtime_dir,
                                "--policy",
                                policy,
                                "--rootfs",
                                rootfs};
  if (!id.empty()) argv.insert(argv.end(), {"--id", id});
  argv.insert(argv.end(), options.begin(), options.end());
  argv.insert(argv.end(), {"--", "/bin/sh", "-c", script});
  auto o = run(argv);
  if (o.timed_out) ADD_FAILURE() << "container timed out: " << script << "\n" << o.err;
  return o;
}

std::vector<std::string> audit_lines(const fs::path& audit_log, const std::string& container) {
  std::vector<std::string> out;
  for (const auto& l : lines(read_file(audit_log))) {
    if (l.find("\"container\":\"" + container + "\"") != std::string::npos) out.push_back(l);
  }
  return out;
}

Daemon::~Daemon() {
  if (pid_ > 0) stop(SIGKILL);
}

int Daemon::stop(int sig) {
  if (pid_ <= 0) return -1;
  ::kill(pid_, sig);
  int status = 0;
  ::waitpid(pid_, &status, 0);
  pid_ = -1;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

std::string read_file(const fs::path& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::stringstream ss(text);
  std::string line;
  while (std::getline(ss, line)) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

}  // namespace sysvisor::it
