// The files the root daemon keeps and reads (issue "Trust what the daemon keeps", findings 1
// and 8): its runtime directory and sockets, its configuration and policies. Each test plays
// the user who attacks (a directory or file that user can write, a link planted where root
// works) and asserts the daemon refuses, naming the file, and that nothing the user does not
// own changed.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <thread>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

constexpr uid_t kNobody = 65534;

const fs::path kSysvisor = bin_dir() / "sysvisor";

struct stat stat_of(const fs::path& p) {
  struct stat st {};
  EXPECT_EQ(::lstat(p.c_str(), &st), 0) << p;
  return st;
}

mode_t mode_of(const fs::path& p) {
  return stat_of(p).st_mode & 07777;
}

// `serve` that is expected to refuse: its outcome (a 20 s limit; a start would hang there).
Outcome serve_refused(const fs::path& runtime, const std::vector<std::string>& extra = {}) {
  std::vector<std::string> argv{kSysvisor.string(), "serve",      "--runtime-dir",
                                runtime.string(),   "--policies", (shipped_policies()).string()};
  argv.insert(argv.end(), extra.begin(), extra.end());
  return run(argv, std::chrono::seconds(20));
}

// What a user planted in a runtime directory it can write: links to root's things.
struct Planted {
  fs::path victim_dir;   // root's, 0755
  fs::path victim_file;  // root's, 0600, "secret"
  explicit Planted(const fs::path& base, const fs::path& runtime) {
    victim_dir = base / "victim-dir";
    victim_file = base / "victim-file";
    fs::create_directories(victim_dir);
    ::chmod(victim_dir.c_str(), 0755);
    std::ofstream(victim_file) << "secret";
    ::chmod(victim_file.c_str(), 0600);
    fs::create_symlink(victim_dir, runtime / "devices");
    fs::create_symlink(victim_file, runtime / "agent.sock");
    fs::create_symlink(victim_file, runtime / "control.sock");
  }
  // Nothing of root's changed: modes, content, no mount on the directory.
  void expect_untouched(const fs::path& runtime) const {
    EXPECT_EQ(mode_of(victim_dir), 0755u) << "root chmod-ed the user's link target";
    EXPECT_EQ(mode_of(victim_file), 0600u) << "root chmod-ed the user's link target";
    EXPECT_EQ(read_file(victim_file), "secret");
    EXPECT_EQ(stat_of(victim_dir).st_dev, stat_of(victim_dir.parent_path()).st_dev) << "mounted on";
    EXPECT_TRUE(fs::is_symlink(runtime / "agent.sock"));
    EXPECT_TRUE(fs::is_symlink(runtime / "devices"));
  }
};

// Finding 1: `umask 000; sysvisor serve` made the runtime dir 0777.
TEST(Files, TheRuntimeDirIsMade0755WhateverTheUmask) {
  TempDir dir("sysvisor-files");
  const fs::path runtime = dir.path() / "run" / "sysvisor";
  const mode_t old = ::umask(0);
  Daemon daemon(runtime, shipped_policies(), dir.path() / "audit.jsonl", dir.path() / "log");
  ::umask(old);
  ASSERT_TRUE(daemon.ready()) << read_file(dir.path() / "log");
  EXPECT_EQ(mode_of(dir.path() / "run"), 0755u);
  EXPECT_EQ(mode_of(runtime), 0755u);
  EXPECT_EQ(mode_of(runtime / "devices"), 0700u);
  EXPECT_TRUE(S_ISSOCK(stat_of(runtime / "agent.sock").st_mode));
  EXPECT_EQ(mode_of(runtime / "agent.sock"), 0666u);
  EXPECT_EQ(mode_of(runtime / "oci.sock"), 0666u);
  EXPECT_EQ(mode_of(runtime / "control.sock"), 0600u);
  for (const auto& entry : fs::directory_iterator(runtime)) {
    EXPECT_FALSE(entry.path().filename().string().starts_with(".sv-")) << "left behind: " << entry.path();
  }
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

// Finding 1: a runtime dir a user can write (its own, or 0777) let the user swap the sockets
// and point `devices` at a directory of its choice, which root made 0700 and mounted on.
TEST(Files, ARuntimeDirAUserCanWriteIsRefusedAndItsLinksAreNotFollowed) {
  struct Case {
    const char* what;
    uid_t owner;
    mode_t mode;
    const char* reason;
  };
  for (const Case c : {Case{"the user's own", kNobody, 0755, "is owned by uid 65534, not root"},
                       Case{"root's, 0777", 0, 0777, "is writable by others (mode 0777)"},
                       Case{"root's, group-writable", 0, 0775, "is writable by its group (mode 0775)"}}) {
    SCOPED_TRACE(c.what);
    TempDir dir("sysvisor-files");
    const fs::path runtime = dir.path() / "run";
    fs::create_directories(runtime);
    const Planted planted(dir.path(), runtime);
    ASSERT_EQ(::lchown(runtime.c_str(), c.owner, c.owner), 0);
    ASSERT_EQ(::chmod(runtime.c_str(), c.mode), 0);
    const Outcome o = serve_refused(runtime);
    EXPECT_EQ(o.status, 1) << o.err;
    EXPECT_NE(o.err.find("runtime dir `" + runtime.string() + "`"), std::string::npos) << o.err;
    EXPECT_NE(o.err.find(c.reason), std::string::npos) << o.err;
    planted.expect_untouched(runtime);
  }
}

// Up the path: a directory above the runtime dir that others may write (not sticky) lets them
// rename the runtime dir away and put their own in its place.
TEST(Files, AnAncestorOthersCanWriteIsRefusedAStickyOneIsNot) {
  TempDir dir("sysvisor-files");
  const fs::path open_dir = dir.path() / "open";
  fs::create_directories(open_dir);
  ASSERT_EQ(::chmod(open_dir.c_str(), 0777), 0);
  const Outcome o = serve_refused(open_dir / "run");
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("`" + open_dir.string() + "` is writable by others (mode 0777)"), std::string::npos)
      << o.err;
  EXPECT_FALSE(fs::exists(open_dir / "run")) << "made a directory under a refused one";
  // Sticky (as /tmp): nobody but root may rename or remove root's entries in it.
  ASSERT_EQ(::chmod(open_dir.c_str(), 01777), 0);
  Daemon daemon(open_dir / "run", shipped_policies(), dir.path() / "audit.jsonl", dir.path() / "log");
  EXPECT_TRUE(daemon.ready()) << read_file(dir.path() / "log");
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

// In a runtime dir only root can write, a link at `devices` is still not followed (it could
// only be root's own mistake, and root must not mount over what it points at).
TEST(Files, ALinkAtTheDeviceStoreIsNotFollowed) {
  TempDir dir("sysvisor-files");
  const fs::path runtime = dir.path() / "run";
  fs::create_directories(runtime);
  const Planted planted(dir.path(), runtime);
  const Outcome o = serve_refused(runtime);
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("devices"), std::string::npos) << o.err;
  planted.expect_untouched(runtime);
}

// A stale link where a socket goes is replaced by the socket, never followed.
TEST(Files, ALinkWhereASocketGoesIsReplacedNotFollowed) {
  TempDir dir("sysvisor-files");
  const fs::path runtime = dir.path() / "run";
  fs::create_directories(runtime);
  const fs::path victim = dir.path() / "victim-file";
  std::ofstream(victim) << "secret";
  ::chmod(victim.c_str(), 0600);
  for (const char* name : {"agent.sock", "oci.sock", "control.sock"})
    fs::create_symlink(victim, runtime / name);
  Daemon daemon(runtime, shipped_policies(), dir.path() / "audit.jsonl", dir.path() / "log");
  ASSERT_TRUE(daemon.ready()) << read_file(dir.path() / "log");
  for (const char* name : {"agent.sock", "oci.sock", "control.sock"}) {
    EXPECT_TRUE(S_ISSOCK(stat_of(runtime / name).st_mode)) << name;
  }
  EXPECT_EQ(mode_of(victim), 0600u);
  EXPECT_EQ(read_file(victim), "secret");
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

void write_config(const fs::path& file, const std::string& text, mode_t mode) {
  std::ofstream(file) << text;
  ASSERT_EQ(::chmod(file.c_str(), mode), 0);
}

// Finding 8: a 0666 configuration file let a user grant itself "*" at the next SIGHUP.
TEST(Files, AConfigurationFileAnyoneButRootCanWriteIsRefused) {
  TempDir dir("sysvisor-files");
  const fs::path config = dir.path() / "sysvisor.yaml";
  struct Case {
    mode_t mode;
    uid_t owner;
    const char* reason;
  };
  for (const Case c : {Case{0666, 0, "is writable by others (mode 0666)"},
                       Case{0664, 0, "is writable by its group (mode 0664)"},
                       Case{0644, kNobody, "is owned by uid 65534, not root"}}) {
    write_config(config, "access:\n  - users: [\"*\"]\n    policies: [\"*\"]\n", c.mode);
    ASSERT_EQ(::chown(config.c_str(), c.owner, c.owner), 0);
    const Outcome o = serve_refused(dir.path() / "run", {"--config", config.string()});
    EXPECT_EQ(o.status, 1) << o.err;
    EXPECT_NE(o.err.find("configuration file `" + config.string() + "` " + c.reason), std::string::npos)
        << o.err;
    EXPECT_FALSE(fs::exists(dir.path() / "run" / "agent.sock"));
  }
  // Its directory too: a user who can write it can replace the file.
  const fs::path open_dir = dir.path() / "etc";
  fs::create_directories(open_dir);
  ::chmod(open_dir.c_str(), 0777);
  write_config(open_dir / "sysvisor.yaml", "audit_failure: keep\n", 0644);
  const Outcome o = serve_refused(dir.path() / "run", {"--config", (open_dir / "sysvisor.yaml").string()});
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("`" + open_dir.string() + "` is writable by others (mode 0777)"), std::string::npos)
      << o.err;
}

// Up the whole path, links included (the red team's attack on the first version of these
// checks): a link the user owns, or a directory of the user's above root's files, lets the user
// point root at other files between the check and the read. Each is refused, naming it.
TEST(Files, ALinkOrADirectoryOfAUserOnThePathIsRefused) {
  TempDir dir("sysvisor-files");
  const fs::path good = dir.path() / "good";
  fs::create_directories(good / "policies");
  fs::copy_file(shipped_policies() / "deny-dangerous.yaml", good / "policies" / "deny-dangerous.yaml");
  std::ofstream(good / "sysvisor.yaml") << "audit_failure: keep\n";
  const fs::path users = dir.path() / "users";  // the user's own directory
  fs::create_directories(users);
  ASSERT_EQ(::chown(users.c_str(), kNobody, kNobody), 0);
  const fs::path link = users / "link";
  ASSERT_EQ(::symlink(good.c_str(), link.c_str()), 0);
  ASSERT_EQ(::lchown(link.c_str(), kNobody, kNobody), 0);
  // The user's directory is refused first (it holds the link): either names the user's hold.
  const auto refused_for_the_user = [&](const Outcome& o) {
    EXPECT_EQ(o.status, 1) << o.err;
    EXPECT_NE(o.err.find("`" + users.string() + "` is owned by uid 65534, not root"), std::string::npos)
        << o.err;
  };
  refused_for_the_user(
      run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(), "--policies",
           (good / "policies").string(), "--config", (link / "sysvisor.yaml").string()},
          std::chrono::seconds(20)));
  refused_for_the_user(run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(),
                            "--policies", (link / "policies").string()},
                           std::chrono::seconds(20)));
  refused_for_the_user(serve_refused(link / "run"));
  EXPECT_FALSE(fs::exists(good / "run"));
  // A link of the user's in root's directory (made by root for the test, owned by the user).
  const fs::path users_link = dir.path() / "users-link";
  ASSERT_EQ(::symlink(good.c_str(), users_link.c_str()), 0);
  ASSERT_EQ(::lchown(users_link.c_str(), kNobody, kNobody), 0);
  const Outcome o = serve_refused(dir.path() / "run", {"--config", (users_link / "sysvisor.yaml").string()});
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("`" + users_link.string() + "` is a symbolic link owned by uid 65534, not root"),
            std::string::npos)
      << o.err;
  // Root's own link, in a directory only root can write, is followed.
  const fs::path roots_link = dir.path() / "roots-link";
  ASSERT_EQ(::symlink(good.c_str(), roots_link.c_str()), 0);
  Daemon daemon(dir.path() / "run", roots_link / "policies", dir.path() / "audit.jsonl", dir.path() / "log",
                {"--config", (roots_link / "sysvisor.yaml").string()});
  EXPECT_TRUE(daemon.ready()) << read_file(dir.path() / "log");
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

// Finding 8, for policies: their directory and each file.
TEST(Files, APoliciesDirectoryOrPolicyFileAnyoneButRootCanWriteIsRefused) {
  TempDir dir("sysvisor-files");
  const fs::path policies = dir.path() / "policies";
  fs::create_directories(policies);
  for (const char* name : {"deny-dangerous.yaml", "rootless-devices.yaml"}) {
    fs::copy_file(shipped_policies() / name, policies / name);
    ::chmod((policies / name).c_str(), 0644);
  }
  ::chmod(policies.c_str(), 0777);
  auto serve = [&] {
    return run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(), "--policies",
                policies.string()},
               std::chrono::seconds(20));
  };
  Outcome o = serve();
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("policies directory `" + policies.string() + "` is writable by others"),
            std::string::npos)
      << o.err;
  ::chmod(policies.c_str(), 0755);
  ASSERT_EQ(::chown((policies / "rootless-devices.yaml").c_str(), kNobody, kNobody), 0);
  o = serve();
  EXPECT_EQ(o.status, 1) << o.err;
  EXPECT_NE(o.err.find("policy file `" + (policies / "rootless-devices.yaml").string() +
                       "` is owned by uid 65534, not root"),
            std::string::npos)
      << o.err;
}

// Finding 8 at a reload: the file made writable after the start is refused, the running set kept.
TEST(Files, AReloadOfAConfigurationAnyoneCanWriteIsRefusedAndTheRunningSetKept) {
  TempDir dir("sysvisor-files");
  const fs::path config = dir.path() / "sysvisor.yaml";
  write_config(config, "access:\n  - users: [root]\n    policies: [\"*\"]\n", 0644);
  const fs::path log = dir.path() / "log";
  Daemon daemon(dir.path() / "run", shipped_policies(), dir.path() / "audit.jsonl", log,
                {"--config", config.string()});
  ASSERT_TRUE(daemon.ready()) << read_file(log);
  write_config(config, "access:\n  - users: [\"*\"]\n    policies: [\"*\"]\n", 0666);
  ASSERT_EQ(::kill(daemon.pid(), SIGHUP), 0);
  const std::string expected = "reload: configuration file `" + config.string() + "` is writable by others";
  for (int i = 0; i < 100 && read_file(log).find(expected) == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(read_file(log).find(expected), std::string::npos) << read_file(log);
  // Still root only: nobody is refused as before.
  const Outcome o = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         public_bin("sysvisor-agent").string(), "exec", "--runtime-dir",
                         (dir.path() / "run").string(), "--policy", "deny-dangerous", "--", "/bin/true"});
  EXPECT_NE(o.status, 0) << "the user's own grant took effect";
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

// Finding 8: the refusal of an unknown policy listed every loaded policy to any user.
TEST(Files, AnUnknownPolicyRefusalNamesOnlyThePoliciesThePeerMayUse) {
  TempDir dir("sysvisor-files");
  const fs::path config = dir.path() / "sysvisor.yaml";
  write_config(config,
               "access:\n  - users: [root]\n    policies: [\"*\"]\n  - users: [\"65534\"]\n    policies: "
               "[deny-dangerous]\n",
               0644);
  Daemon daemon(dir.path() / "run", shipped_policies(), dir.path() / "audit.jsonl", dir.path() / "log",
                {"--config", config.string()});
  ASSERT_TRUE(daemon.ready()) << read_file(dir.path() / "log");
  const Outcome o = run({"/usr/bin/setpriv", "--reuid=65534", "--regid=65534", "--clear-groups",
                         public_bin("sysvisor-agent").string(), "exec", "--runtime-dir",
                         (dir.path() / "run").string(), "--policy", "nosuch", "--", "/bin/true"});
  EXPECT_NE(o.status, 0);
  EXPECT_NE(o.err.find("unknown policy `nosuch` (yours to use: deny-dangerous)"), std::string::npos) << o.err;
  EXPECT_EQ(o.err.find("rootless-devices"), std::string::npos) << o.err;
  EXPECT_EQ(daemon.stop(SIGTERM), 0);
}

}  // namespace
}  // namespace sysvisor::it
