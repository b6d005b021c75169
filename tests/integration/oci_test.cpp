// Real engines hand their seccomp listeners to sysvisor through the OCI listenerPath:
// runc, crun and podman from Debian, busybox bundles generated here, the shipped OCI profile
// (policies/oci/rootless-devices.json) and the shipped policy (policies/rootless-devices.yaml).
// Also the OCI socket's tolerance of broken peers, with synthetic handoffs of real listeners.
//
// This machine's quirks are handled here, never in the product (design.md, "Real engines"):
// crun under hybrid cgroups runs in a private mount namespace without /sys/fs/cgroup/unified;
// rootful podman gets explicit nofile/nproc ulimits; images come from `podman import`.
#include <fcntl.h>
#include <grp.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstring>
#include <fstream>
#include <functional>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kRootlessUser = "sysvisor-it";

// Inside every container: a null device made where none exists, in /dev and in the root fs,
// used as a device; a block device refused.
constexpr const char* kCheck =
    "mknod /dev/null2 c 1 3 && echo made-dev; "
    "echo x > /dev/null2 && echo wrote; "
    "head -c 1 /dev/null2 | wc -c; "
    "stat -c %t:%T /dev/null2; "
    "mknod /null2 c 1 3 && echo x > /null2 && stat -c %t:%T /null2; "
    "mknod /dev/sda b 8 0 2>&1; echo sda=$?";
const std::vector<std::string> kCheckOut{
    "made-dev", "wrote", "0", "1:3", "1:3", "mknod: /dev/sda: Operation not permitted", "sda=1"};

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

class Oci : public DaemonSuite<Oci> {
 protected:
  static void SetUpTestSuite() {
    if (::geteuid() != 0) GTEST_SKIP() << "OCI engine tests need root";
    dir_ = new TempDir("sysvisor-oci");
    const fs::path policies = dir_->path() / "policies";
    fs::create_directories(policies);
    for (const auto& src : {source_dir() / "policies", source_dir() / "tests" / "integration" / "policies"}) {
      for (const auto& e : fs::directory_iterator(src)) {
        if (e.path().extension() == ".yaml") fs::copy_file(e.path(), policies / e.path().filename());
      }
    }
    // Root and the rootless test user may hand over containers; payloads that name no policy
    // get the default (from the command line, which wins over the file).
    ensure_rootless_user();
    const fs::path config = dir_->path() / "sysvisor.yaml";
    std::ofstream(config) << "default_policy: rootless-devices\n"
                             "access:\n"
                             "  - users: [root, "
                          << kRootlessUser
                          << "]\n"
                             "    policies: [\"*\"]\n"
                             "    learn: true\n";  // LearnInTheMetadataAllowsAndRecords
    daemon_ = new Daemon(runtime(), policies, audit_log(), daemon_log(),
                         {"--config", config.string(), "--default-policy", "deny-devices"});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
    ASSERT_TRUE(fs::exists(runtime() / "oci.sock")) << read_file(daemon_log());
  }
  static void TearDownTestSuite() { stop_suite_daemon(runtime() / "oci.sock"); }

  static fs::path runtime() { return dir_->path() / "run"; }
  static fs::path audit_log() { return dir_->path() / "audit.jsonl"; }
  static fs::path daemon_log() { return dir_->path() / "daemon.log"; }
  static fs::path oci_sock() { return runtime() / "oci.sock"; }

  // An engine is a required dependency (scripts/install-deps): missing is a failure.
  static fs::path engine(const std::string& name) {
    const fs::path p = which(name);
    if (p.empty()) ADD_FAILURE() << name << " is not installed: run scripts/install-deps";
    return p;
  }

  static std::vector<std::string> audit_of(const std::string& id) {
    std::vector<std::string> out;
    for (const auto& l : lines(read_file(audit_log()))) {
      if (l.find("\"container\":\"" + id + "\"") != std::string::npos) out.push_back(l);
    }
    return out;
  }

  // The audit lines of the check script: the two emulated null devices and the refused sda.
  // A rootless container's null devices are made by sysvisor (result ok); a rootful one holds
  // CAP_MKNOD where its nodes land, so the kernel makes them (result continue): sysvisor never
  // does for a caller what it can do itself.
  enum class Nodes : std::uint8_t { Emulated, KernelsOwn };
  static void expect_check_audit(const std::string& id, std::size_t at_least = 3,
                                 Nodes nodes = Nodes::Emulated) {
    const auto audit = audit_of(id);
    EXPECT_GE(audit.size(), at_least) << read_file(audit_log());
    const std::string result = nodes == Nodes::Emulated ? "\"result\":\"ok\"" : "\"result\":\"continue\"";
    std::size_t emulated = 0;
    std::size_t denied = 0;
    for (const auto& l : audit) {
      if (l.find("\"device\":\"1:3\"") != std::string::npos &&
          l.find("\"action\":\"emulate\"") != std::string::npos && l.find(result) != std::string::npos)
        ++emulated;
      if (l.find("\"path\":\"/dev/sda\"") != std::string::npos &&
          l.find("\"result\":\"EPERM\"") != std::string::npos)
        ++denied;
    }
    EXPECT_GE(emulated, 2U) << "the null devices of " << id << " were not emulated:\n" << joined(audit);
    EXPECT_GE(denied, 1U) << "no refused /dev/sda for " << id << ":\n" << joined(audit);
  }

  // The shipped OCI profile, pointed at this test's socket.
  static json profile(const std::optional<std::string>& metadata = "policy=rootless-devices") {
    std::ifstream in(source_dir() / "policies" / "oci" / "rootless-devices.json");
    json p = json::parse(in);
    p["listenerPath"] = oci_sock().string();
    if (metadata) {
      p["listenerMetadata"] = *metadata;
    } else {
      p.erase("listenerMetadata");
    }
    return p;
  }

  // A bundle: `runc spec`, then a busybox root fs, the process, CAP_MKNOD, the seccomp profile.
  struct Bundle {
    std::unique_ptr<TempDir> dir;
    fs::path path;
  };
  static Bundle make_bundle(const std::string& script, const json& seccomp, bool userns = false,
                            const json& annotations = json::object()) {
    Bundle b{std::make_unique<TempDir>("sysvisor-bundle"), {}};
    b.path = b.dir->path();
    const auto spec = run({engine("runc").string(), "spec", "--bundle", b.path.string()});
    EXPECT_EQ(spec.status, 0) << spec.err;
    make_rootfs(b.path / "rootfs", userns ? 100000 : 0);
    std::ifstream in(b.path / "config.json");
    json c = json::parse(in);
    in.close();
    c["process"]["terminal"] = false;
    c["process"]["args"] = {"/bin/sh", "-c", script};
    c["process"]["env"] = {"PATH=/bin", "TERM=xterm"};
    for (const char* set : {"bounding", "effective", "permitted"})
      c["process"]["capabilities"][set].push_back("CAP_MKNOD");
    c["root"]["readonly"] = false;
    c["linux"]["seccomp"] = seccomp;
    if (!annotations.empty()) c["annotations"] = annotations;
    if (userns) {
      c["linux"]["namespaces"].push_back({{"type", "user"}});
      const json map = json::array({{{"containerID", 0}, {"hostID", 100000}, {"size", 65536}}});
      c["linux"]["uidMappings"] = map;
      c["linux"]["gidMappings"] = map;
      // A cgroup v1 hierarchy cannot be mounted from a user namespace.
      auto& mounts = c["mounts"];
      for (auto it = mounts.begin(); it != mounts.end();) {
        it = (*it)["type"] == "cgroup" ? mounts.erase(it) : it + 1;
      }
    }
    std::ofstream(b.path / "config.json") << c.dump(2);
    return b;
  }

  static std::vector<std::string> runc_argv(std::vector<std::string> args) {
    std::vector<std::string> argv{engine("runc").string(), "--root", (dir_->path() / "runc-state").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // crun 1.8.1 refuses hybrid cgroups: a private mount namespace without the unified mount.
  static std::vector<std::string> crun_argv(std::vector<std::string> args) {
    std::vector<std::string> argv{
        "/usr/bin/unshare",
        "-m",
        "--propagation",
        "private",
        "/bin/sh",
        "-c",
        "if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified || exit 99; fi; "
        "exec \"$@\"",
        "sh",
        engine("crun").string(),
        "--root",
        (dir_->path() / "crun-state").string()};
    argv.insert(argv.end(), args.begin(), args.end());
    return argv;
  }
  // Detached: the engine's stdio must not be the test's pipes.
  static Outcome detached(std::vector<std::string> argv) {
    argv.insert(argv.begin(), {"/bin/sh", "-c", "exec \"$@\" </dev/null >/dev/null 2>&1", "sh"});
    return run(argv, 30s);
  }
};

TEST_F(Oci, RuncRootful) {
  const auto b = make_bundle(kCheck, profile());
  const auto o = run(runc_argv({"run", "--bundle", b.path.string(), "runc-rootful"}), 30s);
  EXPECT_EQ(lines(o.out), kCheckOut) << o.err;
  expect_check_audit("runc-rootful", 3, Nodes::KernelsOwn);
  const std::string log = read_file(daemon_log());
  EXPECT_NE(log.find("[c=runc-rootful] supervised with policy `rootless-devices` (from listenerMetadata"),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("engine runc,"), std::string::npos) << log;
}

TEST_F(Oci, RuncWithAUserNamespace) {
  const auto b = make_bundle(std::string("cat /proc/self/uid_map; ") + kCheck, profile(), true);
  const auto o = run(runc_argv({"run", "--bundle", b.path.string(), "runc-userns"}), 30s);
  auto out = lines(o.out);
  ASSERT_FALSE(out.empty()) << o.err;
  std::istringstream map_line(out.front());
  std::vector<std::string> fields;
  for (std::string f; map_line >> f;) fields.push_back(f);
  EXPECT_EQ(fields, (std::vector<std::string>{"0", "100000", "65536"})) << out.front();
  out.erase(out.begin());
  EXPECT_EQ(out, kCheckOut) << o.err;
  expect_check_audit("runc-userns");
  // The placeholder in the root fs belongs to the container's root, not to host root.
  struct stat st {};
  ASSERT_EQ(::lstat((b.path / "rootfs" / "null2").c_str(), &st), 0);
  EXPECT_EQ(st.st_uid, 100000U);
}

TEST_F(Oci, CrunViaListenerPath) {
  const auto b = make_bundle(kCheck, profile());
  const auto o = run(crun_argv({"run", "--bundle", b.path.string(), "crun-path"}), 30s);
  EXPECT_EQ(lines(o.out), kCheckOut) << o.err;
  expect_check_audit("crun-path", 3, Nodes::KernelsOwn);
  EXPECT_NE(read_file(daemon_log()).find("engine crun,"), std::string::npos);
}

TEST_F(Oci, CrunViaTheReceiverAnnotation) {
  // No listenerPath, no metadata: crun reads its annotation, the policy comes from ours.
  json seccomp = profile(std::nullopt);
  seccomp.erase("listenerPath");
  const auto b = make_bundle(
      kCheck, seccomp, false,
      {{"run.oci.seccomp.receiver", oci_sock().string()}, {"io.sysvisor.policy", "rootless-devices"}});
  const auto o = run(crun_argv({"run", "--bundle", b.path.string(), "crun-annotation"}), 30s);
  EXPECT_EQ(lines(o.out), kCheckOut) << o.err;
  expect_check_audit("crun-annotation", 3, Nodes::KernelsOwn);
  EXPECT_NE(read_file(daemon_log())
                .find("[c=crun-annotation] supervised with policy `rootless-devices` (from "
                      "annotation io.sysvisor.policy"),
            std::string::npos)
      << read_file(daemon_log());
}

// The init makes /dev/zero2; an exec'd process (its own listener) uses it and runs the check.
// Both are one container in the audit, and the daemon says the exec joined it.
TEST_F(Oci, ExecJoinsTheContainerWithRunc) {
  const auto b = make_bundle("mknod /dev/zero2 c 1 5 && exec sleep 60", profile());
  const std::string id = "runc-exec";
  ASSERT_EQ(detached(runc_argv({"run", "--detach", "--bundle", b.path.string(), id})).status, 0);
  EXPECT_TRUE(wait_for([&] { return !audit_of(id).empty(); })) << "the init's mknod was not supervised";
  const auto o = run(
      runc_argv({"exec", id, "/bin/sh", "-c", std::string("head -c 4 /dev/zero2 | wc -c; ") + kCheck}), 30s);
  run(runc_argv({"delete", "--force", id}));
  auto expected = kCheckOut;
  expected.insert(expected.begin(), "4");
  EXPECT_EQ(lines(o.out), expected) << o.err;
  expect_check_audit(id, 4, Nodes::KernelsOwn);
  EXPECT_NE(read_file(daemon_log()).find("[c=" + id + "] process"), std::string::npos);
  EXPECT_NE(read_file(daemon_log()).find("joins the container (2 supervised processes)"), std::string::npos)
      << read_file(daemon_log());
}

TEST_F(Oci, ExecJoinsTheContainerWithCrun) {
  const auto b = make_bundle("mknod /dev/zero2 c 1 5 && exec sleep 60", profile());
  const std::string id = "crun-exec";
  ASSERT_EQ(detached(crun_argv({"run", "--detach", "--bundle", b.path.string(), id})).status, 0);
  EXPECT_TRUE(wait_for([&] { return !audit_of(id).empty(); })) << "the init's mknod was not supervised";
  const auto o = run(
      crun_argv({"exec", id, "/bin/sh", "-c", std::string("head -c 4 /dev/zero2 | wc -c; ") + kCheck}), 30s);
  run(crun_argv({"delete", "--force", id}));
  auto expected = kCheckOut;
  expected.insert(expected.begin(), "4");
  EXPECT_EQ(lines(o.out), expected) << o.err;
  expect_check_audit(id, 4, Nodes::KernelsOwn);
  const std::string log = read_file(daemon_log());
  EXPECT_NE(
      log.find("[c=" + id + "] supervised with policy `rootless-devices` (from listenerMetadata; session"),
      std::string::npos);
  EXPECT_NE(log.find("exec process pid"), std::string::npos) << log;
}

// ---- podman: images from `podman import`, storage of its own under the test directory.

class OciPodman : public Oci {
 protected:
  // A store with the busybox image imported, owned by `user` when rootless.
  static Podman prepare(const std::string& user, uid_t uid) {
    Podman pm{dir_->path() / (user.empty() ? "pm" : "pm-rl"), user};
    fs::create_directories(pm.store);
    std::ofstream(pm.store / "profile.json") << profile().dump(2);
    podman_import(pm, uid, "localhost/sysvisor-busybox:test");
    return pm;
  }

  // podman run --rm with the check; returns the container's id (podman's long id).
  static std::string run_check(const Podman& pm, const std::string& runtime,
                               const std::vector<std::string>& extra = {}) {
    const fs::path cid = pm.store / ("cid-" + fs::path(runtime).filename().string());
    fs::remove(cid);
    std::vector<std::string> args{
        "run",       "--rm",  "--cidfile",      cid.string(),
        "--network", "none",  "--runtime",      runtime,
        "--cap-add", "MKNOD", "--security-opt", "seccomp=" + (pm.store / "profile.json").string()};
    args.insert(args.end(), extra.begin(), extra.end());
    args.insert(args.end(), {"localhost/sysvisor-busybox:test", "/bin/sh", "-c", kCheck});
    const auto o = run(podman_argv(pm, args), 60s);
    EXPECT_EQ(lines(o.out), kCheckOut) << o.err;
    const std::string id = lines(read_file(cid)).empty() ? "" : lines(read_file(cid)).front();
    EXPECT_EQ(id.size(), 64U) << "no container id in " << cid;
    return id;
  }

  // crun 1.8.1 refuses hybrid cgroups: podman gets a runtime that is crun in a private mount
  // namespace without the cgroup2 mount (this machine's quirk, in the test only).
  static fs::path crun_wrapper() {
    const fs::path w = dir_->path() / "crun-hybrid";
    if (!fs::exists(w)) {
      std::ofstream(w) << "#!/bin/sh\nexec /usr/bin/unshare -m --propagation private /bin/sh -c "
                          "'if mountpoint -q /sys/fs/cgroup/unified; then umount -l /sys/fs/cgroup/unified "
                          "|| exit 99; fi; "
                          "exec \"$@\"' sh "
                       << engine("crun").string() << " \"$@\"\n";
      ::chmod(w.c_str(), 0755);
    }
    return w;
  }
};

const std::vector<std::string> kRootfulLimits{"--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024"};

TEST_F(OciPodman, RootfulWithCrun) {
  const auto pm = prepare("", 0);
  const std::string id = run_check(pm, crun_wrapper().string(), kRootfulLimits);
  expect_check_audit(id, 3, Nodes::KernelsOwn);
  EXPECT_NE(read_file(daemon_log()).find("[c=" + id + "] supervised with policy `rootless-devices`"),
            std::string::npos);
  EXPECT_NE(read_file(daemon_log()).find("engine podman/crun"), std::string::npos);
}

TEST_F(OciPodman, RootfulWithRunc) {
  const auto pm = prepare("", 0);
  const std::string id = run_check(pm, engine("runc").string(), kRootfulLimits);
  expect_check_audit(id, 3, Nodes::KernelsOwn);
  EXPECT_NE(read_file(daemon_log()).find("engine podman/runc"), std::string::npos);
}

// An unprivileged user's podman (runc: crun cannot leave the hybrid cgroup mount from a
// rootless mount namespace). Its runtime connects as that uid; the container's root is that
// uid on the host, so the handoff is the user's own.
TEST_F(OciPodman, RootlessWithRunc) {
  if (which("newuidmap").empty() || !fs::exists("/usr/sbin/runuser")) {
    std::fprintf(stderr, "\n*** SKIPPED: rootless podman needs newuidmap (uidmap) and runuser ***\n\n");
    GTEST_SKIP() << "rootless podman needs newuidmap and runuser";
  }
  ensure_rootless_user();
  const passwd* pw = ::getpwnam(kRootlessUser);
  ASSERT_NE(pw, nullptr);
  const uid_t uid = pw->pw_uid;
  const auto pm = prepare(kRootlessUser, uid);
  const PauseReaper reaper(pm.store);  // its pause process goes with the test
  const std::string id = run_check(pm, engine("runc").string());
  expect_check_audit(id);
  const std::string log = read_file(daemon_log());
  const auto at = log.find("[c=" + id + "] supervised");
  ASSERT_NE(at, std::string::npos) << log;
  const std::string line = log.substr(at, log.find('\n', at) - at);
  EXPECT_NE(line.find("uid " + std::to_string(uid)), std::string::npos)
      << "the runtime ran as the user: " << line;
}

// ---- Broken peers on oci.sock: the daemon logs, closes, and keeps serving.

std::string payload(const std::string& id, pid_t pid, const std::optional<std::string>& metadata) {
  json p = {
      {"ociVersion", "1.0.2-dev"},
      {"fds", {"seccompFd"}},
      {"pid", pid},
      {"state",
       {{"ociVersion", "1.0.2-dev"}, {"id", id}, {"status", "creating"}, {"pid", pid}, {"bundle", "/b"}}}};
  if (metadata) p["metadata"] = *metadata;
  return p.dump();
}

class OciPeers : public Oci {
 protected:
  static int connect_oci() {
    const int s = ::socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_un addr{};
    addr.sun_family = AF_UNIX;
    std::strncpy(addr.sun_path, oci_sock().c_str(), sizeof addr.sun_path - 1);
    EXPECT_EQ(::connect(s, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0) << std::strerror(errno);
    return s;
  }
  static void expect_log(const std::string& text) {
    EXPECT_TRUE(wait_for([&] { return read_file(daemon_log()).find(text) != std::string::npos; }, 5s))
        << "no `" << text << "` in the daemon log:\n"
        << read_file(daemon_log());
  }
};

TEST_F(OciPeers, BrokenPayloadsAreRefusedAndTheDaemonKeepsServing) {
  auto child = filtered_child(__NR_mknodat, [] {
    return ::syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-dir/sda", S_IFBLK | 0600, makedev(8, 0));
  });
  ASSERT_NE(child, nullptr);
  const int devnull = ::open("/dev/null", O_RDONLY | O_CLOEXEC);
  const std::string good = payload("peer-box", child->pid, "policy=rootless-devices");
  {
    const int s = connect_oci();
    send_with(s, "{\"ociVersion\": nope}\n", {});
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused: malformed JSON");
  }
  {
    const int s = connect_oci();
    send_with(s, "\x01\x02 not json", {child->listener});
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused: malformed payload: not one JSON object");
  }
  {
    const int s = connect_oci();
    send_with(s, good, {});
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused container `peer-box`: the payload came without a file descriptor");
  }
  {
    const int s = connect_oci();
    send_with(s, good, {child->listener, devnull});
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused: expected one file descriptor, got 2 (all closed)");
  }
  {
    const int s = connect_oci();
    send_with(s, good, {devnull});
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused container `peer-box`: the file descriptor is not a seccomp listener");
  }
  {
    const int s = connect_oci();
    const std::string big = "{\"pad\":\"" + std::string(1100 * 1024, 'x');
    send_with(s, big.substr(0, 100), {child->listener});
    send_with(s, big.substr(100), {});  // the daemon may close before all of it is read
    EXPECT_TRUE(closed_by_daemon(s));
    expect_log("refused: payload larger than 1048576 bytes");
  }
  {
    ::close(connect_oci());  // crun when the container could not be created
    expect_log("closed without a payload (crun does this when the container could not be created)");
  }
  ::close(devnull);
  ASSERT_EQ(::kill(daemon_->pid(), 0), 0) << "daemon died";

  // And then a good handoff, split over three writes, the fd with the first: answered.
  const int s = connect_oci();
  send_with(s, good.substr(0, 20), {child->listener});
  std::this_thread::sleep_for(100ms);
  send_with(s, good.substr(20, 40), {});
  std::this_thread::sleep_for(100ms);
  send_with(s, good.substr(60), {});
  EXPECT_TRUE(closed_by_daemon(s));
  child->drop_listener();
  EXPECT_EQ(child->call_errno(), EPERM) << "the rootless-devices policy refuses block 8:0";
  EXPECT_TRUE(wait_for([&] { return audit_of("peer-box").size() == 1; }, 5s)) << read_file(audit_log());
}

TEST_F(OciPeers, LearnInTheMetadataAllowsAndRecords) {
  auto child = filtered_child(__NR_mknodat, [] {
    return ::syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-dir/sda", S_IFBLK | 0600, makedev(8, 0));
  });
  ASSERT_NE(child, nullptr);
  const int s = connect_oci();
  send_with(s, payload("learn-box", child->pid, "policy=deny-devices\nlearn=true"), {child->listener});
  EXPECT_TRUE(closed_by_daemon(s));
  child->drop_listener();
  EXPECT_NE(child->call_errno(), EACCES) << "learning, the kernel decides, not deny-devices";
  ASSERT_TRUE(wait_for([&] { return audit_of("learn-box").size() == 1; }, 5s)) << read_file(audit_log());
  const std::string line = audit_of("learn-box")[0];
  EXPECT_NE(line.find("\"action\":\"learn\""), std::string::npos) << line;
  EXPECT_NE(line.find("\"would\":\"deny\""), std::string::npos) << line;
}

TEST_F(OciPeers, NoPolicyNamedGetsTheDefault) {
  auto child = filtered_child(__NR_mknodat, [] {
    return ::syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-dir/sda", S_IFBLK | 0600, makedev(8, 0));
  });
  ASSERT_NE(child, nullptr);
  const int s = connect_oci();
  send_with(s, payload("default-box", child->pid, std::nullopt), {child->listener});
  EXPECT_TRUE(closed_by_daemon(s));
  child->drop_listener();
  EXPECT_EQ(child->call_errno(), EACCES) << "deny-devices (the default here) answers EACCES";
  expect_log("[c=default-box] supervised with policy `deny-devices` (from default policy");
}

TEST_F(OciPeers, UnknownPolicyIsRefusedAndSaysWhatFollows) {
  auto child = filtered_child(__NR_mknodat, [] {
    return ::syscall(SYS_mknodat, AT_FDCWD, "/nonexistent-dir/sda", S_IFBLK | 0600, makedev(8, 0));
  });
  ASSERT_NE(child, nullptr);
  const int s = connect_oci();
  send_with(s, payload("lost-box", child->pid, "policy=no-such\nteam=web"), {child->listener});
  EXPECT_TRUE(closed_by_daemon(s));
  child->drop_listener();
  EXPECT_EQ(child->call_errno(), ENOSYS) << "nobody supervises the listener any more";
  expect_log("refused container `lost-box`: unknown policy `no-such` (named by the listenerMetadata)");
  expect_log(
      "policy directory; yours to use: audit-dangerous, audit-only-dangerous, deny-dangerous, deny-devices, "
      "kill-block");
  expect_log(
      "; the listener is closed, so the calls the runtime's filter traps in this process now fail with "
      "ENOSYS");
}

// A runtime running as a uid the configuration grants nothing: it hands over a listener of
// its own process (so the ownership check passes) and is refused by the access rules.
TEST_F(OciPeers, AnUngrantedUidIsRefusedByTheConfiguration) {
  const pid_t child = ::fork();
  ASSERT_GE(child, 0);
  if (child == 0) {
    if (::setgroups(0, nullptr) != 0 || ::setresgid(65534, 65534, 65534) != 0 ||
        ::setresuid(65534, 65534, 65534) != 0 || ::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
      ::_exit(10);
    }
    std::array<sock_filter, 4> code{{
        BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(seccomp_data, nr)),
        BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_getppid, 0, 1),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_USER_NOTIF),
        BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
    }};
    sock_fprog prog{static_cast<unsigned short>(code.size()), code.data()};
    const int listener = static_cast<int>(
        ::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, &prog));
    if (listener < 0) ::_exit(11);
    const int s = connect_oci();
    send_with(s, payload("stranger-box", ::getpid(), "policy=rootless-devices"), {listener});
    ::_exit(closed_by_daemon(s) ? 0 : 12);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  expect_log("refused container `stranger-box`: uid 65534 is not granted any policy");
}

}  // namespace
}  // namespace sysvisor::it
