// `sysvisor policy check|explain|test|oci-profile`, run as the built binary: exit statuses,
// output formats, and that bad input is named.
#include <gtest/gtest.h>

#include <fstream>
#include <nlohmann/json.hpp>
#include <regex>

#include "harness.hpp"

namespace sysvisor::it {
namespace {

using nlohmann::json;

const fs::path kSysvisor = bin_dir() / "sysvisor";

Outcome policy(std::vector<std::string> args) {
  args.insert(args.begin(), {kSysvisor.string(), "policy"});
  return run(args, std::chrono::seconds(30));
}

fs::path shipped(const std::string& name) {
  return source_dir() / "policies" / (name + ".yaml");
}

void write(const fs::path& p, const std::string& text) {
  std::ofstream(p) << text;
}

TEST(PolicyCli, HelpListsTheCommands) {
  const auto o = policy({"--help"});
  EXPECT_EQ(o.status, 0) << o.err;
  for (const char* c : {"check", "explain", "test", "oci-profile"})
    EXPECT_NE(o.out.find(c), std::string::npos) << c;
  for (const char* c : {"check", "explain", "test", "oci-profile"}) {
    EXPECT_EQ(policy({c, "--help"}).status, 0) << c;
  }
}

// The README's first policy command, on the shipped tree: the case files among policies/*.yaml
// are run against the policies they name, not read as policies.
TEST(PolicyCli, CheckOfTheShippedTreeGlobPasses) {
  std::vector<std::string> args{"check"};
  std::size_t policies = 0;
  std::size_t case_files = 0;
  for (const auto& entry : fs::directory_iterator(source_dir() / "policies")) {
    if (entry.path().extension() != ".yaml") continue;
    args.push_back(entry.path().string());
    (entry.path().string().ends_with(".cases.yaml") ? case_files : policies) += 1;
  }
  ASSERT_GT(case_files, 0U);
  const auto o = policy(args);
  EXPECT_EQ(o.status, 0) << o.out << o.err;
  const auto out = lines(o.out);
  EXPECT_EQ(out.size(), policies + case_files) << o.out;
  for (const auto& line : out) {
    EXPECT_NE(line.find(": ok: "), std::string::npos) << line;
    if (line.find(".cases.yaml") != std::string::npos) {
      EXPECT_NE(line.find("decision cases of policy"), std::string::npos) << line;
    }
  }
}

TEST(PolicyCli, CheckRunsACaseFileAgainstThePolicyItNames) {
  TempDir dir("sysvisor-check-cases");
  fs::copy_file(shipped("rootless-devices"), dir.path() / "rootless-devices.yaml");
  write(dir.path() / "wrong.cases.yaml",
        "policy: rootless-devices\ncases:\n  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> deny EPERM'\n");
  write(dir.path() / "other.cases.yaml",
        "policy: no-such-policy\ncases:\n  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> deny EPERM'\n");
  write(dir.path() / "unnamed.cases.yaml",
        "cases:\n  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> emulate'\n");
  // The failing case, with its line; the policy found in the case file's own directory.
  auto o = policy({"check", (dir.path() / "wrong.cases.yaml").string()});
  EXPECT_EQ(o.status, 1) << o.out;
  EXPECT_NE(o.out.find("wrong.cases.yaml:3"), std::string::npos) << o.out;
  EXPECT_NE(o.out.find("expected deny"), std::string::npos) << o.out;
  o = policy({"check", (dir.path() / "other.cases.yaml").string()});
  EXPECT_EQ(o.status, 1) << o.out;
  EXPECT_NE(o.out.find("other.cases.yaml:1:9: error: [unknown-policy]"), std::string::npos) << o.out;
  // No policy named: a warning that says how to run them, not a failure.
  o = policy({"check", (dir.path() / "unnamed.cases.yaml").string()});
  EXPECT_EQ(o.status, 0) << o.out;
  EXPECT_NE(o.out.find("warning: [cases]"), std::string::npos) << o.out;
}

TEST(PolicyCli, UsageErrorsExit2) {
  EXPECT_EQ(policy({}).status, 2);
  EXPECT_EQ(policy({"frobnicate"}).status, 2);
  EXPECT_EQ(policy({"check"}).status, 2);
  EXPECT_EQ(policy({"check", "--colour", shipped("rootless-devices").string()}).status, 2);
  EXPECT_EQ(policy({"explain"}).status, 2);
  EXPECT_EQ(policy({"test", shipped("rootless-devices").string()}).status, 2);
}

TEST(PolicyCli, CheckSummarisesEachValidFile) {
  const auto o = policy({"check", shipped("rootless-devices").string(), shipped("deny-dangerous").string()});
  EXPECT_EQ(o.status, 0) << o.out << o.err;
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 2U) << o.out;
  const std::regex summary(
      ".*/rootless-devices.yaml: ok: policy rootless-devices v[0-9a-f]{16}, 3 rules \\(3 "
      "effective\\), [0-9]+ BPF instructions");
  EXPECT_TRUE(std::regex_match(out[0], summary)) << out[0];
}

TEST(PolicyCli, CheckPrintsErrorsWithPositionCodeAndKind) {
  TempDir dir("sysvisor-policy-cli");
  const fs::path bad = dir.path() / "bad.yaml";
  write(bad,
        "name: bad\n"
        "rules:\n"
        "  - syscalls: [mknod, frobnicate]\n"
        "    action: deny\n");
  const fs::path good = dir.path() / "good.yaml";
  write(good, "name: good\nrules: []\n");
  const auto o = policy({"check", bad.string(), good.string()});
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.out.find(bad.string() + ":3:23: error: [unknown-syscall] "), std::string::npos) << o.out;
  EXPECT_NE(o.out.find(good.string() + ": ok: policy good"), std::string::npos) << o.out;

  const auto j = policy({"check", "--json", bad.string(), good.string()});
  EXPECT_EQ(j.status, 1);
  const json doc = json::parse(j.out);
  ASSERT_EQ(doc["errors"].size(), 1U) << j.out;
  EXPECT_EQ(doc["errors"][0]["file"], bad.string());
  EXPECT_EQ(doc["errors"][0]["line"], 3);
  EXPECT_EQ(doc["errors"][0]["column"], 23);
  EXPECT_EQ(doc["errors"][0]["code"], "unknown-syscall");
  EXPECT_EQ(doc["files"].size(), 2U);
  ASSERT_EQ(doc["policies"].size(), 1U);
  EXPECT_EQ(doc["policies"][0]["name"], "good");
  EXPECT_TRUE(doc["warnings"].is_array());
}

TEST(PolicyCli, CheckWarningsDoNotFail) {
  TempDir dir("sysvisor-policy-cli");
  const fs::path p = dir.path() / "shadow.yaml";
  write(p,
        "name: shadow\n"
        "rules:\n"
        "  - syscalls: [bpf]\n"
        "    action: deny\n"
        "  - syscalls: [bpf]\n"
        "    action: kill\n");
  const auto o = policy({"check", p.string()});
  EXPECT_EQ(o.status, 0) << o.out;
  EXPECT_NE(o.out.find(p.string() + ":5:5: warning: [shadowed] "), std::string::npos) << o.out;
  const json doc = json::parse(policy({"check", "--json", p.string()}).out);
  EXPECT_EQ(doc["warnings"].size(), 1U);
  EXPECT_EQ(doc["warnings"][0]["code"], "shadowed");
}

TEST(PolicyCli, CheckNamesAMissingFile) {
  const auto o = policy({"check", "/nonexistent/p.yaml"});
  EXPECT_EQ(o.status, 1);
  EXPECT_NE(o.out.find("/nonexistent/p.yaml: error: [io]"), std::string::npos) << o.out;
}

TEST(PolicyCli, ExplainByFileAndByName) {
  const auto o = policy({"explain", shipped("rootless-devices").string()});
  EXPECT_EQ(o.status, 0) << o.err;
  for (const char* part : {"Trapped", "Rules", "Decision table", "otherwise", "BPF instructions"}) {
    EXPECT_NE(o.out.find(part), std::string::npos) << part;
  }
  const auto j =
      policy({"explain", "--json", "deny-dangerous", "--policies", (source_dir() / "policies").string()});
  EXPECT_EQ(j.status, 0) << j.err;
  const json doc = json::parse(j.out);
  EXPECT_EQ(doc["name"], "deny-dangerous");
  EXPECT_EQ(doc["trapped"].size(), 19U);
  EXPECT_GT(doc["bpf_instructions"].get<int>(), 19);

  const auto unknown =
      policy({"explain", "no-such-policy", "--policies", (source_dir() / "policies").string()});
  EXPECT_EQ(unknown.status, 1);
  EXPECT_NE(unknown.err.find("no policy named `no-such-policy`"), std::string::npos) << unknown.err;
  const auto no_dir = policy({"explain", "x", "--policies", "/nonexistent"});
  EXPECT_EQ(no_dir.status, 1);
  EXPECT_NE(no_dir.err.find("/nonexistent"), std::string::npos) << no_dir.err;
}

TEST(PolicyCli, ShippedCasesPass) {
  for (const char* name : {"rootless-devices", "audit-dangerous", "deny-dangerous"}) {
    const auto o = policy({"test", shipped(name).string(),
                           (source_dir() / "policies" / (std::string(name) + ".cases.yaml")).string()});
    EXPECT_EQ(o.status, 0) << name << o.out << o.err;
    EXPECT_NE(o.out.find(" cases, 0 failed"), std::string::npos) << o.out;
  }
}

TEST(PolicyCli, TestReportsFailingCasesAndBadCaseFiles) {
  TempDir dir("sysvisor-policy-cli");
  const fs::path cases = dir.path() / "c.yaml";
  write(cases,
        "cases:\n"
        "  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> emulate audited'\n"
        "  - 'mknod(\"/dev/sda\", S_IFBLK|0600, 8:0) -> allow'\n");
  const auto o = policy({"test", shipped("rootless-devices").string(), cases.string()});
  EXPECT_EQ(o.status, 1);
  const auto out = lines(o.out);
  ASSERT_EQ(out.size(), 2U) << o.out;
  EXPECT_EQ(out[0], cases.string() +
                        ":3: mknod(\"/dev/sda\", S_IFBLK|0600, 8:0): expected allow, got deny EPERM audited "
                        "(rule `other-devices`)");
  EXPECT_EQ(out[1], "2 cases, 1 failed");

  write(cases, "policy: other\ncases:\n  - 'mknod(\"/x\", S_IFCHR, 1:3) -> allow'\n");
  const auto wrong = policy({"test", shipped("rootless-devices").string(), cases.string()});
  EXPECT_EQ(wrong.status, 1);
  EXPECT_NE(wrong.out.find(cases.string() + ":1:9: error: [bad-value] the cases are for policy `other`"),
            std::string::npos)
      << wrong.out;

  write(cases, "cases:\n  - 'mknod(\"/x\", S_IFCHR|S_IFNOPE, 1:3) -> allow'\n");
  const auto bad = policy({"test", shipped("rootless-devices").string(), cases.string()});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.out.find(cases.string() + ":2:26: error: [bad-value] call: unknown constant `S_IFNOPE`"),
            std::string::npos)
      << bad.out;
  const auto missing = policy({"test", shipped("rootless-devices").string(), "/nonexistent.cases.yaml"});
  EXPECT_EQ(missing.status, 1);
  EXPECT_NE(missing.out.find("/nonexistent.cases.yaml: error: [io]"), std::string::npos) << missing.out;
}

TEST(PolicyCli, OciProfile) {
  const auto o = policy({"oci-profile", shipped("rootless-devices").string(), "--listener", "/run/x.sock"});
  EXPECT_EQ(o.status, 0) << o.err;
  const json j = json::parse(o.out);
  EXPECT_EQ(j["listenerPath"], "/run/x.sock");
  EXPECT_EQ(j["listenerMetadata"], "policy=rootless-devices");
  EXPECT_EQ(j["defaultAction"], "SCMP_ACT_ALLOW");

  const auto merged = policy({"oci-profile", shipped("deny-dangerous").string(), "--base",
                              (source_dir() / "tests/data/containers-common-seccomp.json").string()});
  EXPECT_EQ(merged.status, 0) << merged.err;
  const json m = json::parse(merged.out);
  EXPECT_EQ(m["defaultAction"], "SCMP_ACT_ERRNO");
  EXPECT_NE(merged.err.find("warning: "), std::string::npos) << "the base refuses kexec_load: " << merged.err;

  TempDir dir("sysvisor-policy-cli");
  write(dir.path() / "base.json", "{not json");
  const auto bad = policy(
      {"oci-profile", shipped("deny-dangerous").string(), "--base", (dir.path() / "base.json").string()});
  EXPECT_EQ(bad.status, 1);
  EXPECT_NE(bad.err.find("base.json"), std::string::npos) << bad.err;
  EXPECT_EQ(policy({"oci-profile", shipped("deny-dangerous").string(), "--base", "/nonexistent.json"}).status,
            1);
}

}  // namespace
}  // namespace sysvisor::it
