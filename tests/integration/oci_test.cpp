// Real engines hand their seccomp listeners to sysvisor through the OCI listenerPath:
// runc, crun and podman from Debian, busybox bundles generated here, the shipped OCI profile
// (policies/oci/rootless-devices.json) and the shipped policy (policies/rootless-devices.yaml).
// Also the OCI socket's tolerance of broken peers, with synthetic handoffs of real listeners.
//
// This machine's quirks are handled here, never in the product (design.md, "Real engines"):
// crun under hybrid cgroups runs in a private mount namespace without /sys/fs/cgroup/unified;
// rootful podman gets explicit nofile/nproc ulimits; images come from `podman import`.
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

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

fs::path which(const std::string& name) {
  for (const char* dir : {"/usr/local/sbin", "/usr/local/bin", "/usr/sbin", "/usr/bin", "/sbin", "/bin"}) {
    const fs::path p = fs::path(dir) / name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return {};
}

std::string joined(const std::vector<std::string>& v) {
  std::string out;
  for (const auto& s : v) out += s + "\n";
  return out;
}

class Oci : public ::testing::Test {
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
    // Payloads that name no policy get this one.
    daemon_ =
        new Daemon(runtime(), policies, audit_log(), daemon_log(), {"--default-policy", "deny-devices"});
    ASSERT_TRUE(daemon_->ready()) << read_file(daemon_log());
    ASSERT_TRUE(fs::exists(runtime() / "oci.sock")) << read_file(daemon_log());
  }
  static void TearDownTestSuite() {
    if (daemon_ != nullptr) {
      EXPECT_EQ(daemon_->stop(SIGTERM), 0) << "clean shutdown on SIGTERM";
      EXPECT_FALSE(fs::exists(runtime() / "oci.sock")) << "socket removed at shutdown";
    }
    delete daemon_;
    delete dir_;
    daemon_ = nullptr;
    dir_ = nullptr;
  }

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
  static void expect_check_audit(const std::string& id, std::size_t at_least = 3) {
    const auto audit = audit_of(id);
    EXPECT_GE(audit.size(), at_least) << read_file(audit_log());
    std::size_t emulated = 0;
    std::size_t denied = 0;
    for (const auto& l : audit) {
      if (l.find("\"device\":\"1:3\"") != std::string::npos &&
          l.find("\"action\":\"emulate\"") != std::string::npos &&
          l.find("\"result\":\"ok\"") != std::string::npos)
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

  static bool wait_for(const std::function<bool()>& cond, std::chrono::milliseconds limit = 10s) {
    const auto until = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < until) {
      if (cond()) return true;
      std::this_thread::sleep_for(50ms);
    }
    return cond();
  }

  static TempDir* dir_;
  static Daemon* daemon_;
};

TempDir* Oci::dir_ = nullptr;
Daemon* Oci::daemon_ = nullptr;

TEST_F(Oci, RuncRootful) {
  const auto b = make_bundle(kCheck, profile());
  const auto o = run(runc_argv({"run", "--bundle", b.path.string(), "runc-rootful"}), 30s);
  EXPECT_EQ(lines(o.out), kCheckOut) << o.err;
  expect_check_audit("runc-rootful");
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
  expect_check_audit("crun-path");
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
  expect_check_audit("crun-annotation");
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
  expect_check_audit(id, 4);
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
  expect_check_audit(id, 4);
  const std::string log = read_file(daemon_log());
  EXPECT_NE(
      log.find("[c=" + id + "] supervised with policy `rootless-devices` (from listenerMetadata; session"),
      std::string::npos);
  EXPECT_NE(log.find("exec process pid"), std::string::npos) << log;
}

}  // namespace
}  // namespace sysvisor::it
