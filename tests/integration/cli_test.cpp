// The command-line contract: policy errors with positions, refusing to start, --help.
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <fstream>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

const fs::path kSysvisor = bin_dir() / "sysvisor";

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

TEST(Cli, PolicyCheckAcceptsTheShippedPolicies) {
  for (const auto& e : fs::directory_iterator(source_dir() / "policies")) {
    if (e.path().extension() != ".yaml" || e.path().string().ends_with(".cases.yaml")) continue;
    const auto o = run({kSysvisor.string(), "policy", "check", e.path().string()});
    EXPECT_EQ(o.status, 0) << e.path() << o.out << o.err;
  }
}

TEST(Cli, PolicyCheckReportsEveryErrorWithItsPosition) {
  TempDir dir("sysvisor-cli");
  const fs::path bad = dir.path() / "bad.yaml";
  write(bad,
        "name: bad\n"
        "rules:\n"
        "  - syscalls: [mknod, frobnicate]\n"
        "    action: deny\n"
        "    errno: ENOTANERRNO\n"
        "  - syscalls: [mknod]\n"
        "    action: emulate\n"
        "    colour: blue\n");
  const auto o = run({kSysvisor.string(), "policy", "check", bad.string()});
  EXPECT_EQ(o.status, 1);
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 3U) << o.out;
  EXPECT_TRUE(out[0].starts_with(bad.string() + ":3:23: ")) << out[0];
  EXPECT_NE(out[0].find("frobnicate"), std::string::npos) << out[0];
  EXPECT_TRUE(out[1].starts_with(bad.string() + ":5:12: ")) << out[1];
  EXPECT_TRUE(out[2].starts_with(bad.string() + ":8:5: ")) << out[2];
  EXPECT_NE(out[2].find("colour"), std::string::npos) << out[2];
}

TEST(Cli, ServeRefusesToStartOnBadPoliciesAndPrintsThemAll) {
  TempDir dir("sysvisor-cli");
  fs::create_directories(dir.path() / "policies");
  write(dir.path() / "policies" / "a.yaml", "name: a\nrules: {}\n");
  write(dir.path() / "policies" / "b.yaml", "name: b\nrules:\n  - syscalls: [mknod]\n    action: explode\n");
  const auto o = run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(),
                      "--policies", (dir.path() / "policies").string()},
                     std::chrono::seconds(20));
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find((dir.path() / "policies" / "a.yaml").string() + ":2:8: "), std::string::npos) << o.err;
  EXPECT_NE(o.err.find((dir.path() / "policies" / "b.yaml").string() + ":4:13: "), std::string::npos)
      << o.err;
  EXPECT_FALSE(fs::exists(dir.path() / "run" / "agent.sock"));
}

TEST(Cli, ServeRefusesAMissingPoliciesDirectory) {
  TempDir dir("sysvisor-cli");
  const auto o = run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(),
                      "--policies", (dir.path() / "nope").string()},
                     std::chrono::seconds(20));
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find((dir.path() / "nope").string()), std::string::npos) << o.err;
}

// The README lists --log-level under serve: it is taken after the subcommand as before it.
TEST(Cli, ServeTakesLogLevelAfterTheSubcommand) {
  TempDir dir("sysvisor-cli");
  for (const auto& argv : std::vector<std::vector<std::string>>{
           {kSysvisor.string(), "serve", "--log-level", "debug", "--runtime-dir",
            (dir.path() / "run").string(), "--policies", (dir.path() / "nope").string()},
           {kSysvisor.string(), "--log-level", "debug", "serve", "--runtime-dir",
            (dir.path() / "run").string(), "--policies", (dir.path() / "nope").string()}}) {
    const auto o = run(argv, std::chrono::seconds(20));
    EXPECT_EQ(o.status, 1) << "parsed, then refused for the missing directory: " << o.err;
    EXPECT_NE(o.err.find((dir.path() / "nope").string()), std::string::npos) << o.err;
  }
  const auto bad = run({kSysvisor.string(), "serve", "--log-level", "chatty"});
  EXPECT_EQ(bad.status, 2) << bad.err;
  EXPECT_NE(bad.err.find("chatty"), std::string::npos) << bad.err;
}

// A peer's strings (here a policy name in the Hello) are escaped in the daemon's log: no
// forged line, no terminal sequence.
TEST(Cli, APeersStringsCannotForgeLogLines) {
  if (::geteuid() != 0) GTEST_SKIP() << "serve needs root";
  TempDir dir("sysvisor-cli");
  Daemon d(dir.path() / "run", shipped_policies(), dir.path() / "audit", dir.path() / "log");
  ASSERT_TRUE(d.ready()) << read_file(dir.path() / "log");
  const std::string forged = "nosuch\n2026-12-04T00:00:00.000 sysvisor info: [c=rootc] supervised\x1b[2J";
  const auto o = run({(bin_dir() / "sysvisor-agent").string(), "exec", "--runtime-dir",
                      (dir.path() / "run").string(), "--policy", forged, "--", "/bin/true"});
  EXPECT_EQ(o.status, 125) << o.err;
  EXPECT_EQ(d.stop(SIGTERM), 0);
  const std::string log = read_file(dir.path() / "log");
  EXPECT_NE(log.find("nosuch\\n2026-12-04T00:00:00.000 sysvisor info: [c=rootc] supervised\\x1b[2J"),
            std::string::npos)
      << log;
  for (const auto& line : lines(log)) {
    EXPECT_FALSE(line.starts_with("2026-12-04T00:00:00.000")) << "a forged line: " << line;
  }
  EXPECT_EQ(log.find('\x1b'), std::string::npos) << "a terminal escape reached the log";
}

TEST(Cli, SecondDaemonOnTheSameRuntimeDirIsRefused) {
  if (::geteuid() != 0) GTEST_SKIP() << "serve needs root";
  TempDir dir("sysvisor-cli");
  Daemon first(dir.path() / "run", shipped_policies(), dir.path() / "audit", dir.path() / "log");
  ASSERT_TRUE(first.ready()) << read_file(dir.path() / "log");
  const auto o = run({kSysvisor.string(), "serve", "--runtime-dir", (dir.path() / "run").string(),
                      "--policies", shipped_policies().string()},
                     std::chrono::seconds(20));
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.err.find("already serving"), std::string::npos) << o.err;
  EXPECT_EQ(first.stop(SIGINT), 0) << "SIGINT is a clean shutdown too";
}

TEST(Cli, HelpExplainsEveryCommand) {
  for (const auto& argv :
       std::vector<std::vector<std::string>>{{kSysvisor.string(), "--help"},
                                             {kSysvisor.string(), "serve", "--help"},
                                             {kSysvisor.string(), "policy", "check", "--help"},
                                             {(bin_dir() / "sysvisor-agent").string(), "--help"},
                                             {(bin_dir() / "sysvisor-agent").string(), "run", "--help"},
                                             {(bin_dir() / "sysvisor-agent").string(), "exec", "--help"}}) {
    const auto o = run(argv);
    EXPECT_EQ(o.status, 0) << argv[1];
    EXPECT_NE(o.out.find("--"), std::string::npos) << o.out;
  }
  const auto serve = run({kSysvisor.string(), "serve", "--help"});
  for (const char* opt : {"--runtime-dir", "--policies", "--audit"}) {
    EXPECT_NE(serve.out.find(opt), std::string::npos) << opt;
  }
  const auto agent_run = run({(bin_dir() / "sysvisor-agent").string(), "run", "--help"});
  for (const char* opt : {"--runtime-dir", "--policy", "--rootfs", "--userns", "--id"}) {
    EXPECT_NE(agent_run.out.find(opt), std::string::npos) << opt;
  }
}

}  // namespace
}  // namespace sysvisor::it
