// The audit record (proto/audit.proto through protobuf's JSON mapping), the uid mapping and
// the token bucket of the per-container rate limit.
#include "sysvisor/audit.hpp"

#include <fcntl.h>
#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "sysvisor/config.hpp"
#include "sysvisor/filter.hpp"
#include "sysvisor/learn.hpp"
#include "sysvisor/metrics.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/tools.hpp"

namespace sysvisor {
namespace {

using Clock = std::chrono::steady_clock;

audit::Event sample() {
  audit::Event e;
  e.set_event("call");
  e.set_container("web-1");
  e.set_policy("rootless-devices");
  e.set_host_pid(4700);
  e.set_host_tid(4711);
  e.set_container_pid(1);
  e.set_container_tid(7);
  e.set_syscall("mknodat");
  e.set_arch("x86_64");
  auto& a = *e.mutable_args();
  a.set_path("/dev/sda");
  a.set_type("block");
  a.set_device("8:0");
  a.set_mode("0600");
  e.set_action("deny");
  e.set_rule("other-devices");
  e.set_result("EPERM");
  e.set_err(EPERM);
  e.set_latency_us(12);
  audit::set_time(*e.mutable_time(),
                  std::chrono::system_clock::time_point(std::chrono::nanoseconds(1700000000123456789LL)));
  return e;
}

TEST(AuditJson, KeysAsDocumented) {
  const std::string j = audit::to_json(sample());
  for (const char* part :
       {"\"event\":\"call\"", "\"container\":\"web-1\"", "\"host_pid\":4700", "\"host_tid\":4711",
        "\"container_pid\":1", "\"container_tid\":7", "\"syscall\":\"mknodat\"", "\"path\":\"/dev/sda\"",
        "\"type\":\"block\"", "\"device\":\"8:0\"", "\"mode\":\"0600\"", "\"action\":\"deny\"",
        "\"result\":\"EPERM\"", "\"errno\":1", "\"latency_us\":12",
        "\"time\":\"2023-11-14T22:13:20.123456789Z\""}) {
    EXPECT_NE(j.find(part), std::string::npos) << part << " in " << j;
  }
  EXPECT_EQ(j.find('\n'), std::string::npos);
  EXPECT_EQ(j.find("\"would\""), std::string::npos) << "unset optional fields are left out";
  EXPECT_EQ(j.find("\"fstype\""), std::string::npos);
  // An allowed call: the kernel's answer is not ours to know, so no errno at all.
  audit::Event c = sample();
  c.set_result("continue");
  c.clear_err();
  c.set_would("deny");
  const std::string k = audit::to_json(c);
  EXPECT_NE(k.find("\"result\":\"continue\""), std::string::npos) << k;
  EXPECT_EQ(k.find("\"errno\""), std::string::npos) << k;
  EXPECT_NE(k.find("\"would\":\"deny\""), std::string::npos) << k;
}

TEST(AuditJson, ParsesBackIntoTheMessage) {
  audit::Event back;
  ASSERT_TRUE(google::protobuf::util::JsonStringToMessage(audit::to_json(sample()), &back).ok());
  EXPECT_EQ(back.host_tid(), 4711);
  EXPECT_EQ(back.err(), EPERM);
  EXPECT_EQ(back.args().device(), "8:0");
  EXPECT_EQ(back.time().nanos(), 123456789);
}

TEST(AuditJson, HostileStringsNeverLoseTheRecord) {
  EXPECT_EQ(audit::utf8("plain"), "plain");
  EXPECT_EQ(audit::utf8("caf\xc3\xa9"), "caf\xc3\xa9");                // valid UTF-8 kept
  EXPECT_EQ(audit::utf8("bad\xff"), "bad\xc3\xbf");                    // invalid byte: its Latin-1 character
  EXPECT_EQ(audit::utf8("\xed\xa0\x80"), "\xc3\xad\xc2\xa0\xc2\x80");  // surrogates are not UTF-8
  audit::Event e = sample();
  e.mutable_args()->set_path(audit::utf8(std::string("/dev/\xff\"\n\x01x", 10)));
  const std::string j = audit::to_json(e);
  const auto parsed = nlohmann::json::parse(j);  // valid JSON, or this throws
  EXPECT_EQ(parsed["args"]["path"].get<std::string>(), std::string("/dev/\xc3\xbf\"\n\x01x"));
  EXPECT_EQ(parsed["syscall"].get<std::string>(), "mknodat");
}

TEST(AuditJson, SuppressedSummary) {
  audit::Suppressed s;
  s.set_event("suppressed");
  s.set_container("flood");
  s.set_count(0);
  const std::string j = audit::to_json(s);
  EXPECT_NE(j.find("\"event\":\"suppressed\""), std::string::npos) << j;
  EXPECT_NE(j.find("\"count\":0"), std::string::npos) << "printed even when 0: " << j;
}

TEST(AuditUidMap, MapsLikeTheKernel) {
  const std::string map = "         0     100000      65536\n     65536       1000          1\n";
  EXPECT_EQ(audit::map_uid(map, 100000), 0U);
  EXPECT_EQ(audit::map_uid(map, 100005), 5U);
  EXPECT_EQ(audit::map_uid(map, 1000), 65536U);
  EXPECT_EQ(audit::map_uid(map, 165536), std::nullopt);
  EXPECT_EQ(audit::map_uid(map, 0), std::nullopt);
  EXPECT_EQ(audit::map_uid("0 0 4294967295\n", 1234), 1234U);
  EXPECT_EQ(audit::map_uid("garbage\n1 2\n", 2), std::nullopt);
}

TEST(AuditProcess, DescribesThisThread) {
  const audit::Process p = audit::describe(::getpid());
  EXPECT_EQ(p.host_pid, ::getpid());
  ASSERT_TRUE(p.container_pid.has_value());
  EXPECT_EQ(p.container_pid, p.container_tid);
  EXPECT_FALSE(p.comm.empty());
  EXPECT_NE(p.exe.find("sysvisor_unit_tests"), std::string::npos) << p.exe;
  EXPECT_EQ(p.host_uid, ::getuid());
  const audit::Process gone = audit::describe(-1);
  EXPECT_EQ(gone.host_pid, 0);
  EXPECT_TRUE(gone.comm.empty());
}

TEST(AuditBucket, AdmitsBurstThenRate) {
  audit::Bucket b(audit::Rate{10, 5});
  const Clock::time_point t0{};
  int admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += b.admit(t0) ? 1 : 0;
  EXPECT_EQ(admitted, 5);
  // One second later: ten more tokens, but never more than the burst.
  admitted = 0;
  for (int i = 0; i < 20; ++i) admitted += b.admit(t0 + std::chrono::seconds(1)) ? 1 : 0;
  EXPECT_EQ(admitted, 5);
  // A tenth of a second: one token.
  admitted = 0;
  for (int i = 0; i < 5; ++i) admitted += b.admit(t0 + std::chrono::milliseconds(1100)) ? 1 : 0;
  EXPECT_EQ(admitted, 1);
  audit::Bucket unlimited(audit::Rate{0, 0});
  for (int i = 0; i < 1000; ++i) ASSERT_TRUE(unlimited.admit(t0));
}

// ---- policy modes ----
policy::Policy load(const std::string& yaml) {
  auto parsed = policy::parse_policy(yaml, "t.yaml");
  EXPECT_TRUE(parsed) << (parsed ? "" : parsed.error()[0].format());
  std::vector<policy::Policy> set;
  set.push_back(std::move(*parsed));
  auto r = policy::resolve(std::move(set));
  EXPECT_TRUE(r) << (r ? "" : r.error()[0].format());
  return *r->policies.begin()->second;
}

policy::Call mknod_call(policy::FileType type, std::uint32_t major, std::uint32_t minor) {
  policy::Call c;
  c.nr = *policy::syscall_from_name("mknod");
  c.type = type;
  c.major = major;
  c.minor = minor;
  return c;
}

TEST(PolicyMode, AuditAllowsAndSaysWhatWouldHappen) {
  const auto p =
      load("name: a\nmode: audit\nrules:\n  - {syscalls: [mknod], match: {type: block}, action: deny}\n");
  EXPECT_EQ(p.mode, policy::Mode::Audit);
  const auto d = policy::decide(p, mknod_call(policy::FileType::Block, 8, 0));
  EXPECT_EQ(d.action, policy::Action::Allow);
  EXPECT_TRUE(d.audit);
  ASSERT_TRUE(d.would.has_value());
  EXPECT_EQ(*d.would, policy::Action::Deny);
  EXPECT_FALSE(d.learn);
  // A trapped call no rule matches is recorded too, as the default (allow) would do.
  const auto other = policy::decide(p, mknod_call(policy::FileType::Char, 1, 3));
  EXPECT_TRUE(other.audit);
  EXPECT_EQ(other.would, policy::Action::Allow);
  // The same policy enforcing: the rule decides.
  const auto enforced =
      policy::decide_in(p, mknod_call(policy::FileType::Block, 8, 0), policy::Mode::Enforce);
  EXPECT_EQ(enforced.action, policy::Action::Deny);
  EXPECT_FALSE(enforced.would.has_value());
  const auto learned = policy::decide_in(p, mknod_call(policy::FileType::Block, 8, 0), policy::Mode::Learn);
  EXPECT_EQ(learned.action, policy::Action::Allow);
  EXPECT_TRUE(learned.learn);
}

TEST(PolicyMode, MemoryRulesAreOnlyUnsafeWhenEnforced) {
  const std::string rules = "rules:\n  - {syscalls: [openat], match: {path: [\"/etc/*\"]}, action: allow}\n";
  EXPECT_TRUE(policy::parse_policy("name: a\nmode: audit\n" + rules, "t.yaml").has_value());
  std::vector<policy::Policy> set;
  set.push_back(*policy::parse_policy("name: a\nmode: learn\n" + rules, "t.yaml"));
  EXPECT_TRUE(policy::resolve(std::move(set)).has_value());
  std::vector<policy::Policy> enforce;
  enforce.push_back(*policy::parse_policy("name: a\n" + rules, "t.yaml"));
  const auto r = policy::resolve(std::move(enforce));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error()[0].code, policy::ErrorCode::UnsafeAllow);
}

TEST(PolicyMode, AuditArgumentsAllOrMatched) {
  EXPECT_FALSE(policy::parse_policy("name: a\nrules: []\n", "t.yaml")->record_all_arguments);
  EXPECT_TRUE(
      policy::parse_policy("name: a\naudit_arguments: all\nrules: []\n", "t.yaml")->record_all_arguments);
  EXPECT_FALSE(
      policy::parse_policy("name: a\naudit_arguments: matched\nrules: []\n", "t.yaml")->record_all_arguments);
  const auto bad = policy::parse_policy("name: a\naudit_arguments: every\nrules: []\n", "t.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error()[0].format(), "t.yaml:2:18: `audit_arguments` must be all or matched, not `every`");
  EXPECT_EQ(bad.error()[0].code, policy::ErrorCode::BadValue);
}

TEST(PolicyMode, BadModeAndEnforceIncludingAuditAreErrors) {
  const auto bad = policy::parse_policy("name: a\nmode: permissive\nrules: []\n", "t.yaml");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error()[0].format(), "t.yaml:2:7: `mode` must be enforce, audit or learn, not `permissive`");
  std::vector<policy::Policy> set;
  set.push_back(*policy::parse_policy("name: a\ninclude: [b]\nrules: []\n", "a.yaml"));
  set.push_back(*policy::parse_policy("name: b\nmode: audit\nrules: []\n", "b.yaml"));
  const auto r = policy::resolve(std::move(set));
  ASSERT_FALSE(r);
  EXPECT_EQ(r.error()[0].code, policy::ErrorCode::BadInclude);
}

// ---- configuration: the audit sink and the rate ----
TEST(AuditConfig, SinkAndRate) {
  const auto c = config::parse_config("audit: syslog\naudit_rate: {per_second: 0, burst: 7}\n", "c.yaml");
  ASSERT_TRUE(c) << c.error()[0].format();
  EXPECT_EQ(c->audit, "syslog");
  EXPECT_EQ(c->audit_rate.per_second, 0U);
  EXPECT_EQ(c->audit_rate.burst, 7U);
  const auto d = config::parse_config("audit: /var/log/a.jsonl\n", "c.yaml");
  ASSERT_TRUE(d);
  EXPECT_EQ(d->audit_rate.per_second, 200U);
  EXPECT_EQ(d->audit_rate.burst, 400U);
  const auto bad = config::parse_config("audit_rate: {per_second: -1}\n", "c.yaml");
  ASSERT_FALSE(bad);
  EXPECT_NE(bad.error()[0].format().find("c.yaml:1:26: `audit_rate`: `per_second` must be a whole number"),
            std::string::npos)
      << bad.error()[0].format();
  const auto unknown = config::parse_config("audit_rate: {per_minute: 5}\n", "c.yaml");
  ASSERT_FALSE(unknown);
  const auto zero_burst = config::parse_config("audit_rate: {per_second: 5, burst: 0}\n", "c.yaml");
  ASSERT_FALSE(zero_burst);
  EXPECT_FALSE(config::parse_config("audit: relative/file\n", "c.yaml"));
}

// ---- in audit and learn modes every rule traps, in the filter and in the tools alike ----
TEST(PolicyMode, EveryRuleTrapsOutsideEnforce) {
  const std::string rules = "rules:\n  - {syscalls: [swapon], action: allow}\n";
  const auto enforce = load("name: a\n" + rules);
  const auto audit = load("name: a\nmode: audit\n" + rules);
  const int swapon = *policy::syscall_from_name("swapon");
  EXPECT_TRUE(tools::trap_set(enforce).empty());
  ASSERT_EQ(tools::trap_set(audit).size(), 1U);
  EXPECT_EQ(tools::trap_set(audit)[0].nr, swapon);
  const auto program = filter::compile(audit);
  ASSERT_TRUE(program);
  EXPECT_EQ(tools::run_bpf(*program, AUDIT_ARCH_X86_64, swapon, {}), SECCOMP_RET_USER_NOTIF);
  const auto plain = filter::compile(enforce);
  ASSERT_TRUE(plain);
  EXPECT_EQ(tools::run_bpf(*plain, AUDIT_ARCH_X86_64, swapon, {}), SECCOMP_RET_ALLOW);
}

// ---- policy learn ----
TEST(Learn, GeneralisesPaths) {
  using V = std::vector<std::string>;
  EXPECT_EQ(tools::generalise_paths({"/dev/null", "/dev/pts/0"}, {"/dev"}), V{"/dev/*"});
  EXPECT_EQ(tools::generalise_paths({"/mnt/a", "/mnt/b", "/srv/x"}), (V{"/mnt/*", "/srv/x"}));
  EXPECT_EQ(tools::generalise_paths({"/a", "/b"}), (V{"/a", "/b"})) << "never `/*`";
  EXPECT_EQ(tools::generalise_paths({"/mnt/a", "/mnt/a"}), V{"/mnt/a"});
  EXPECT_EQ(tools::generalise_paths({}), V{});
}

TEST(Learn, GeneralisesXattrNames) {
  using V = std::vector<std::string>;
  EXPECT_EQ(tools::generalise_xattrs({"trusted.overlay.opaque", "trusted.overlay.redirect"}),
            V{"trusted.overlay.*"});
  EXPECT_EQ(tools::generalise_xattrs({"trusted.overlay.opaque"}), V{"trusted.overlay.opaque"});
  EXPECT_EQ(tools::generalise_xattrs({"user.a", "user.b"}), (V{"user.a", "user.b"}))
      << "not a whole namespace";
}

std::string record(const std::string& container, const std::string& syscall, const std::string& args,
                   const std::string& action = "learn") {
  return R"({"event":"call","container":")" + container + R"(","syscall":")" + syscall + R"(","args":)" +
         args + R"(,"action":")" + action + R"(","would":"deny","result":"EPERM","errno":1})" + "\n";
}

TEST(Learn, WritesAPolicyAndCasesThatAgree) {
  std::string log;
  log += record("c1", "mknodat", R"({"paths":["/dev/null"],"type":"char","device":"1:3","mode":"0666"})");
  log += record("c1", "mknod", R"({"paths":["/dev/zero"],"type":"char","device":"1:5","mode":"0666"})");
  log += record("c1", "mount",
                R"({"paths":["/mnt/a"],"target":"/mnt/a","source":"none","fstype":"tmpfs","flags":"0x0"})");
  log += record("c1", "setxattr", R"({"paths":["/f"],"xattr":"trusted.overlay.opaque","value_size":"1"})");
  log += record("c1", "setpriority", R"({"nice":-3})");
  log += record("c1", "sched_setscheduler", R"({"sched_policy":1,"priority":5})");
  log += record("c2", "mknod", R"({"paths":["/dev/sda"],"type":"block","device":"8:0","mode":"0600"})");
  log += R"({"event":"suppressed","container":"c2","count":4})"
         "\n";
  // An enforced record is not what the workload asked for: skipped.
  log +=
      R"({"event":"call","container":"c1","syscall":"mknod","args":{"paths":["/dev/mem"],"type":"char","device":"1:1"},"action":"deny"})"
      "\n";
  const auto learned = tools::learn(log, tools::LearnOptions{"a.jsonl", "c1", "web", std::nullopt});
  ASSERT_TRUE(learned) << learned.error()[0];
  EXPECT_EQ(learned->records, 6U);
  // Scheduling policies by name, as explain prints them.
  EXPECT_NE(learned->cases.find("sched_setscheduler(0, SCHED_FIFO, {sched_priority=5})"), std::string::npos)
      << learned->cases;
  EXPECT_NE(learned->policy.find("devices: [\"1:3\", \"1:5\"]"), std::string::npos) << learned->policy;
  EXPECT_NE(learned->policy.find("path: [\"/dev/*\"]"), std::string::npos) << learned->policy;
  EXPECT_EQ(learned->policy.find("8:0"), std::string::npos) << "c2's device: " << learned->policy;
  EXPECT_EQ(learned->policy.find("\"1:1\""), std::string::npos) << "an enforced record: " << learned->policy;
  EXPECT_NE(learned->policy.find("#   1:3 x1: /dev/null"), std::string::npos) << learned->policy;
  EXPECT_NE(learned->policy.find("nice: {min: -3}"), std::string::npos) << learned->policy;
  // tmpfs is the kernel's to mount in a user namespace: allowed, never `emulate` (the emulator
  // mounts block devices and images, and would answer ENOENT for the source "none").
  EXPECT_NE(learned->policy.find("name: learned-kernel-mounts\n    syscalls: [mount]\n    match: {flags: "
                                 "{clear: [MS_BIND, MS_MOVE, MS_REMOUNT]}}\n    action: allow\n"),
            std::string::npos)
      << learned->policy;
  EXPECT_EQ(learned->policy.find("name: learned-mounts"), std::string::npos) << learned->policy;
  // umount2 was never seen: not refused.
  EXPECT_EQ(learned->policy.find("syscalls: [umount2]"), std::string::npos) << learned->policy;

  // The policy loads, and its own cases pass through the real filter and decide().
  auto parsed = policy::parse_policy(learned->policy, "web.yaml");
  ASSERT_TRUE(parsed) << parsed.error()[0].format() << "\n" << learned->policy;
  std::vector<policy::Policy> set;
  set.push_back(std::move(*parsed));
  auto resolved = policy::resolve(std::move(set));
  ASSERT_TRUE(resolved) << resolved.error()[0].format() << "\n" << learned->policy;
  const policy::Policy& p = *resolved->policies.at("web");
  auto cases = tools::parse_cases(learned->cases, "web.cases.yaml");
  ASSERT_TRUE(cases) << cases.error()[0].format() << "\n" << learned->cases;
  ASSERT_GE(cases->cases.size(), 6U);
  bool refused = false;
  for (const auto& c : cases->cases) {
    const auto d = policy::decide(p, c.call);
    EXPECT_EQ(d.action, c.expect.action) << c.call_text;
    refused = refused || d.action == policy::Action::Deny;
  }
  EXPECT_TRUE(refused) << "at least one call outside what was learned";
  // Block device 8:0 was not learned for c1.
  EXPECT_EQ(policy::decide(p,
                           [] {
                             auto c = mknod_call(policy::FileType::Block, 8, 0);
                             c.paths = {"/dev/sda"};
                             return c;
                           }())
                .action,
            policy::Action::Deny);
}

// What the emulators can do is `emulate`: an ext4 image (its source among `images`) and a block
// device; umount2 is emulated without a target (sysvisor's own mounts, else the kernel's); a
// device outside the harmless set (a disk, /dev/mem) is written commented out with a warning.
TEST(Learn, GrantsOnlyWhatTheEmulatorsDoAndNeverADiskSilently) {
  std::string log;
  log += record(
      "c", "mount",
      R"({"paths":["/mnt/img"],"target":"/mnt/img","source":"/images/data.img","fstype":"ext4","flags":"0x0"})");
  log += record(
      "c", "mount",
      R"({"paths":["/mnt/dev"],"target":"/mnt/dev","source":"/dev/vdb1","fstype":"xfs","flags":"0x0"})");
  log += record("c", "mount",
                R"({"paths":["/proc"],"target":"/proc","source":"proc","fstype":"proc","flags":"0xe"})");
  log += record("c", "umount2", R"({"paths":["/mnt/img"],"flags":"0x0"})");
  log += record("c", "mknod", R"({"paths":["/dev/null"],"type":"char","device":"1:3","mode":"0666"})");
  log += record("c", "mknod", R"({"paths":["/dev/net/tun"],"type":"char","device":"10:200","mode":"0666"})");
  log += record("c", "mknod", R"({"paths":["/dev/sdb"],"type":"block","device":"8:16","mode":"0660"})");
  log += record("c", "mknod", R"({"paths":["/dev/mem"],"type":"char","device":"1:1","mode":"0640"})");
  const auto learned = tools::learn(log, tools::LearnOptions{"a.jsonl", "c", "w", std::nullopt});
  ASSERT_TRUE(learned) << learned.error()[0];
  const std::string& y = learned->policy;
  EXPECT_NE(y.find("fstype: [\"ext4\", \"xfs\"]"), std::string::npos) << y;
  EXPECT_NE(y.find("    action: emulate\n    emulate: {images: [\"/images/data.img\"]}\n"), std::string::npos)
      << y;
  EXPECT_NE(y.find("name: learned-kernel-mounts\n    syscalls: [mount]\n    match: {flags: {clear: [MS_BIND, "
                   "MS_MOVE, MS_REMOUNT]}}\n    action: allow\n"),
            std::string::npos)
      << y;
  EXPECT_LT(y.find("name: learned-mounts"), y.find("name: learned-kernel-mounts")) << "emulated types first";
  EXPECT_NE(y.find("name: learned-unmounts\n    syscalls: [umount2]\n    action: emulate\n"),
            std::string::npos)
      << y;
  EXPECT_NE(y.find("name: other-mounts\n    syscalls: [mount]\n"), std::string::npos) << y;
  EXPECT_NE(y.find("devices: [\"1:3\", \"10:200\"]"), std::string::npos) << y;
  EXPECT_NE(y.find("# WARNING: block device 8:16"), std::string::npos) << y;
  EXPECT_NE(y.find("#   match: {type: block, devices: [\"8:16\"]"), std::string::npos) << y;
  EXPECT_NE(y.find("# WARNING: char device 1:1"), std::string::npos) << y;
  EXPECT_EQ(
      std::ranges::count_if(learned->notes,
                            [](const std::string& n) { return n.find(": warning: ") != std::string::npos; }),
      2)
      << "a warning for each device not granted";

  auto parsed = policy::parse_policy(y, "w.yaml");
  ASSERT_TRUE(parsed) << parsed.error()[0].format() << "\n" << y;
  std::vector<policy::Policy> set;
  set.push_back(std::move(*parsed));
  auto resolved = policy::resolve(std::move(set));
  ASSERT_TRUE(resolved) << resolved.error()[0].format() << "\n" << y;
  const policy::Policy& p = *resolved->policies.at("w");
  auto cases = tools::parse_cases(learned->cases, "w.cases.yaml");
  ASSERT_TRUE(cases) << cases.error()[0].format() << "\n" << learned->cases;
  for (const auto& c : cases->cases)
    EXPECT_EQ(policy::decide(p, c.call).action, c.expect.action) << c.call_text;
  auto sdb = mknod_call(policy::FileType::Block, 8, 16);
  sdb.paths = {"/dev/sdb"};
  EXPECT_EQ(policy::decide(p, sdb).action, policy::Action::Deny);
}

TEST(Learn, BadLinesAreSkippedAndNamed) {
  const std::string log = "not json\n" + record("c", "mknod", R"({"type":"char"})") +
                          R"({"event":"call","host_pid":"abc"})"
                          "\n"
                          R"({"foo":1})"
                          "\n"
                          R"({"event":"call")";
  const auto r = tools::learn(log, tools::LearnOptions{"x.jsonl", "", "l", std::nullopt});
  ASSERT_TRUE(r) << r.error()[0];
  EXPECT_EQ(r->records, 1U);
  EXPECT_EQ(r->skipped, 4U);
  ASSERT_EQ(r->notes.size(), 4U);
  EXPECT_EQ(r->notes[0], "x.jsonl:1: skipped: not an audit record (a JSON object per line)");
  EXPECT_NE(r->notes[1].find("x.jsonl:3: skipped: not an audit record (torn or invalid):"), std::string::npos)
      << r->notes[1];
  EXPECT_NE(r->notes[1].find("host_pid"), std::string::npos) << r->notes[1];
  EXPECT_NE(r->notes[2].find("x.jsonl:4: skipped: "), std::string::npos) << r->notes[2];
  EXPECT_NE(r->notes[3].find("x.jsonl:5: skipped: "), std::string::npos) << r->notes[3];
  const auto none = tools::learn("", tools::LearnOptions{"e.jsonl", "c9", "l", std::nullopt});
  ASSERT_FALSE(none);
  EXPECT_NE(none.error()[0].find("no learn or audit records of container c9"), std::string::npos);
}

// A record cut off by a full disk and joined to the next one, and a last line cut off by a
// crash: those lines are skipped and named, and the policy is learned from the others.
TEST(Learn, SkipsTornLinesAndLearnsFromTheRest) {
  const std::string null_dev =
      record("c1", "mknod", R"({"paths":["/dev/null"],"type":"char","device":"1:3"})");
  const std::string zero_dev =
      record("c1", "mknod", R"({"paths":["/dev/zero"],"type":"char","device":"1:5"})");
  const std::string sda = record("c1", "mknod", R"({"paths":["/dev/sda"],"type":"block","device":"8:0"})");
  std::string log = null_dev;
  log += sda.substr(0, sda.size() / 2);  // torn ...
  log += zero_dev;                       // ... and joined to the next record
  log += null_dev;
  log += sda.substr(0, 40);  // the last line, cut off
  const auto r = tools::learn(log, tools::LearnOptions{"audit.jsonl", "c1", "torn", std::nullopt});
  ASSERT_TRUE(r) << r.error()[0];
  EXPECT_EQ(r->records, 2U);
  EXPECT_EQ(r->skipped, 2U);
  ASSERT_EQ(r->notes.size(), 2U);
  EXPECT_TRUE(r->notes[0].starts_with("audit.jsonl:2: skipped: not an audit record (torn or invalid)"))
      << r->notes[0];
  EXPECT_TRUE(r->notes[1].starts_with("audit.jsonl:4: skipped: not an audit record (torn or invalid)"))
      << r->notes[1];
  EXPECT_NE(r->policy.find("devices: [\"1:3\"]"), std::string::npos) << r->policy;
  EXPECT_EQ(r->policy.find("\"8:0\""), std::string::npos) << "a torn record is not learned: " << r->policy;
  EXPECT_NE(r->policy.find("\n# audit.jsonl:2: skipped: "), std::string::npos) << r->policy;
  auto parsed = policy::parse_policy(r->policy, "torn.yaml");
  EXPECT_TRUE(parsed) << parsed.error()[0].format() << "\n" << r->policy;
}

// ---- the audit file: root's alone (issue 14, finding 2) ----

std::vector<std::string> lines_of(const std::string& text);

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::ostringstream out;
  out << in.rdbuf();
  return out.str();
}

void spit(const std::string& path, const std::string& text, mode_t mode) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode);
  ASSERT_GE(fd, 0) << path;
  ASSERT_EQ(::write(fd, text.data(), text.size()), static_cast<ssize_t>(text.size()));
  ::fchmod(fd, mode);
  ::close(fd);
}

// A private directory (root, 0700) under the system's temporary directory.
class AuditFile : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "the audit file's rules are about root's files: run as root";
    std::string templ = (std::filesystem::temp_directory_path() / "sysvisor-audit-XXXXXX").string();
    ASSERT_NE(::mkdtemp(templ.data()), nullptr);
    dir_ = templ;
  }
  void TearDown() override {
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }
  [[nodiscard]] std::string at(const std::string& name) const { return (dir_ / name).string(); }
  std::filesystem::path dir_;
};

TEST_F(AuditFile, ASymlinkIsRefusedAndItsTargetUnchanged) {
  // The attack: a link to root's shell rc file, records appended to it.
  spit(at("bashrc"), "echo hello\n", 0644);
  ASSERT_EQ(::symlink(at("bashrc").c_str(), at("audit.jsonl").c_str()), 0);
  auto sink = audit::Sink::open(at("audit.jsonl"));
  ASSERT_FALSE(sink);
  EXPECT_EQ(sink.error().err, ELOOP);
  EXPECT_NE(sink.error().message().find(at("audit.jsonl")), std::string::npos) << sink.error().message();
  EXPECT_NE(sink.error().message().find("symbolic link"), std::string::npos) << sink.error().message();
  EXPECT_EQ(slurp(at("bashrc")), "echo hello\n");
  // A dangling link creates nothing at its target either.
  ASSERT_EQ(::symlink(at("made").c_str(), at("dangling").c_str()), 0);
  EXPECT_FALSE(audit::Sink::open(at("dangling")));
  EXPECT_FALSE(std::filesystem::exists(at("made")));
}

TEST_F(AuditFile, AFileOfAnotherUserIsRefused) {
  spit(at("audit.jsonl"), "", 0600);
  ASSERT_EQ(::chown(at("audit.jsonl").c_str(), 65534, 65534), 0);
  auto sink = audit::Sink::open(at("audit.jsonl"));
  ASSERT_FALSE(sink);
  EXPECT_EQ(sink.error().err, EPERM);
  EXPECT_NE(sink.error().message().find("`" + at("audit.jsonl") + "`"), std::string::npos);
  EXPECT_NE(sink.error().message().find("owned by uid 65534"), std::string::npos) << sink.error().message();
  EXPECT_EQ(std::filesystem::file_size(at("audit.jsonl")), 0U);
}

TEST_F(AuditFile, AFileOthersMayReadOrWriteIsRefused) {
  for (const mode_t mode : {0644, 0640, 0604, 0620, 0602}) {
    spit(at("audit.jsonl"), "", mode);
    auto sink = audit::Sink::open(at("audit.jsonl"));
    ASSERT_FALSE(sink) << std::oct << mode;
    EXPECT_EQ(sink.error().err, EPERM);
    EXPECT_NE(sink.error().message().find(at("audit.jsonl")), std::string::npos) << sink.error().message();
    EXPECT_NE(sink.error().message().find("lets others than root"), std::string::npos)
        << sink.error().message();
    EXPECT_EQ(std::filesystem::file_size(at("audit.jsonl")), 0U);
    ASSERT_EQ(::unlink(at("audit.jsonl").c_str()), 0);
  }
  // A hard link to root's file elsewhere is not the audit log's own either.
  spit(at("other"), "", 0600);
  ASSERT_EQ(::link(at("other").c_str(), at("audit.jsonl").c_str()), 0);
  auto linked = audit::Sink::open(at("audit.jsonl"));
  ASSERT_FALSE(linked);
  EXPECT_NE(linked.error().message().find("2 links"), std::string::npos) << linked.error().message();
}

TEST_F(AuditFile, ADirectoryOthersMayWriteIsRefused) {
  const std::string shared = at("shared");
  for (const mode_t mode : {0777, 01777, 0770, 0757}) {
    std::filesystem::create_directory(shared);
    ASSERT_EQ(::chmod(shared.c_str(), mode), 0);
    auto sink = audit::Sink::open(shared + "/audit.jsonl");
    ASSERT_FALSE(sink) << std::oct << mode;
    EXPECT_EQ(sink.error().err, EPERM);
    EXPECT_NE(sink.error().message().find("`" + shared + "/audit.jsonl`"), std::string::npos);
    EXPECT_NE(sink.error().message().find("directory `" + shared + "` is writable by group or others"),
              std::string::npos)
        << sink.error().message();
    EXPECT_FALSE(std::filesystem::exists(shared + "/audit.jsonl")) << "nothing created";
    std::filesystem::remove_all(shared);
  }
  // Owned by a user: refused, even if only its owner may write it.
  std::filesystem::create_directory(shared);
  ASSERT_EQ(::chown(shared.c_str(), 65534, 65534), 0);
  ASSERT_EQ(::chmod(shared.c_str(), 0755), 0);
  auto owned = audit::Sink::open(shared + "/audit.jsonl");
  ASSERT_FALSE(owned);
  EXPECT_NE(owned.error().message().find("is owned by uid 65534"), std::string::npos)
      << owned.error().message();
  // Higher up the path: a user's directory above root's.
  std::filesystem::create_directory(shared + "/root");
  auto above = audit::Sink::open(shared + "/root/audit.jsonl");
  ASSERT_FALSE(above);
  EXPECT_NE(above.error().message().find("directory `" + shared + "` is owned by uid 65534"),
            std::string::npos)
      << above.error().message();
  // A symbolic link to root's directory, but the user's link: refused.
  ASSERT_EQ(::symlink(dir_.c_str(), at("link").c_str()), 0);
  ASSERT_EQ(::lchown(at("link").c_str(), 65534, 65534), 0);
  auto via = audit::Sink::open(at("link") + "/audit.jsonl");
  ASSERT_FALSE(via);
  EXPECT_NE(via.error().message().find("symbolic link owned by uid 65534"), std::string::npos)
      << via.error().message();
  EXPECT_FALSE(std::filesystem::exists(at("audit.jsonl")));
}

TEST_F(AuditFile, RootsOwnFileIsUsedAndANewOneIs0600) {
  spit(at("old.jsonl"), "{\"event\":\"call\"}\n", 0600);
  {
    auto sink = audit::Sink::open(at("old.jsonl"));
    ASSERT_TRUE(sink) << sink.error().message();
    EXPECT_TRUE(sink->write(sample()));
  }
  EXPECT_EQ(slurp(at("old.jsonl")), "{\"event\":\"call\"}\n" + audit::to_json(sample()) + "\n");
  const mode_t old_umask = ::umask(0);
  auto fresh = audit::Sink::open(at("new.jsonl"));
  ::umask(old_umask);
  ASSERT_TRUE(fresh) << fresh.error().message();
  struct stat st {};
  ASSERT_EQ(::stat(at("new.jsonl").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0600U);
  EXPECT_EQ(st.st_uid, 0U);
  // The fd does not leak into children: O_CLOEXEC.
  bool found = false;
  for (const auto& entry : std::filesystem::directory_iterator("/proc/self/fd")) {
    std::error_code ec;
    if (std::filesystem::read_symlink(entry.path(), ec) != at("new.jsonl")) continue;
    found = true;
    const int fd = std::stoi(entry.path().filename().string());
    EXPECT_NE(::fcntl(fd, F_GETFD) & FD_CLOEXEC, 0);
    EXPECT_EQ(::fcntl(fd, F_GETFL) & (O_APPEND | O_NONBLOCK), O_APPEND);
  }
  EXPECT_TRUE(found);
}

// Logrotate renamed the file; a user swapped in a link before the SIGHUP: the reopen is refused
// and records keep going to the file opened before.
TEST_F(AuditFile, AReopenThatIsRefusedKeepsTheOldFile) {
  auto sink = audit::Sink::open(at("audit.jsonl"));
  ASSERT_TRUE(sink) << sink.error().message();
  ASSERT_TRUE(sink->write(sample()));
  ASSERT_EQ(::rename(at("audit.jsonl").c_str(), at("audit.jsonl.1").c_str()), 0);
  spit(at("victim"), "secret\n", 0600);
  ASSERT_EQ(::symlink(at("victim").c_str(), at("audit.jsonl").c_str()), 0);
  auto r = sink->reopen();
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(at("audit.jsonl")), std::string::npos) << r.error().message();
  EXPECT_TRUE(sink->write(sample()));
  EXPECT_EQ(slurp(at("victim")), "secret\n");
  EXPECT_EQ(lines_of(slurp(at("audit.jsonl.1"))).size(), 2U);
}

// ---- records whole or not at all, and never lost silently (issue 14, finding 5) ----

// A tmpfs of `size` bytes mounted on `dir` for the test, gone after it.
class SmallFs {
 public:
  SmallFs(const std::string& dir, std::size_t size) : dir_(dir) {
    const std::string opts = "size=" + std::to_string(size) + ",mode=0700";
    mounted_ = ::mount("sysvisor-audit-test", dir.c_str(), "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
                       opts.c_str()) == 0;
  }
  ~SmallFs() {
    if (mounted_) ::umount2(dir_.c_str(), MNT_DETACH);
  }
  SmallFs(const SmallFs&) = delete;
  SmallFs& operator=(const SmallFs&) = delete;
  [[nodiscard]] bool mounted() const { return mounted_; }

 private:
  std::string dir_;
  bool mounted_ = false;
};

// Fills the filesystem of `path` up, leaving nothing free.
void fill(const std::string& path) {
  const int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
  ASSERT_GE(fd, 0);
  const std::string block(4096, 'x');
  while (::write(fd, block.data(), block.size()) > 0) {
  }
  while (::write(fd, block.data(), 1) > 0) {
  }
  ::close(fd);
}

audit::Event sized(int i) {
  audit::Event e = sample();
  // Records of different sizes, so some cross a page boundary when the disk fills.
  e.mutable_args()->set_path("/dev/" + std::string(static_cast<std::size_t>(50 + (i * 37) % 300), 'a'));
  e.set_host_tid(static_cast<std::uint32_t>(i));
  e.set_action("learn");
  e.set_would("deny");
  return e;
}

TEST_F(AuditFile, AFullDiskLosesWholeRecordsAndCountsThem) {
  const std::string mnt = at("mnt");
  std::filesystem::create_directory(mnt);
  SmallFs fs(mnt, 64 * 1024);
  ASSERT_TRUE(fs.mounted()) << "mount tmpfs: " << std::strerror(errno);
  auto sink = audit::Sink::open(mnt + "/audit.jsonl");
  ASSERT_TRUE(sink) << sink.error().message();
  const std::uint64_t failures_before = audit::health().write_failures;
  std::size_t written = 0;
  std::size_t lost = 0;
  int i = 0;
  for (; i < 20; ++i) written += sink->write(sized(i)) ? 1 : 0;
  fill(mnt + "/filler");
  // Full: every record is lost, and counted; those that fitted in the file's last page went in.
  for (; i < 220; ++i) {
    if (sink->write(sized(i))) {
      ++written;
    } else {
      ++lost;
    }
  }
  EXPECT_GT(lost, 150U);
  const audit::Health full = audit::health();
  EXPECT_EQ(full.write_failures - failures_before, lost);
  EXPECT_TRUE(full.failing);
  EXPECT_NE(full.last_error.find("No space left on device"), std::string::npos) << full.last_error;
  EXPECT_NE(full.last_error.find(mnt + "/audit.jsonl"), std::string::npos) << full.last_error;
  // Space again: the next records go in, and every line in the file is a whole record.
  ASSERT_EQ(::unlink((mnt + "/filler").c_str()), 0);
  for (; i < 240; ++i) written += sink->write(sized(i)) ? 1 : 0;
  EXPECT_FALSE(audit::health().failing);
  EXPECT_EQ(audit::health().write_failures - failures_before, lost);
  // The metrics say it too.
  const std::string metrics = metrics::Metrics{}.render({});
  EXPECT_NE(metrics.find("\nsysvisor_audit_write_failures_total " +
                         std::to_string(audit::health().write_failures) + "\n"),
            std::string::npos)
      << metrics;
  const std::string text = slurp(mnt + "/audit.jsonl");
  ASSERT_TRUE(text.ends_with("\n"));
  const auto lines = lines_of(text);
  EXPECT_EQ(lines.size(), written);
  EXPECT_EQ(written + lost, 240U);
  for (const auto& line : lines) {
    audit::Event e;
    EXPECT_TRUE(google::protobuf::util::JsonStringToMessage(line, &e).ok()) << "torn: " << line;
  }
  // And `policy learn` reads it all.
  const auto learned = tools::learn(text, tools::LearnOptions{"audit.jsonl", "", "full", std::nullopt});
  ASSERT_TRUE(learned) << learned.error()[0];
  EXPECT_EQ(learned->skipped, 0U);
}

TEST(AuditFailureAction, KeepByDefaultRefuseWhenSet) {
  EXPECT_EQ(audit::Sink::failure_action(), audit::FailureAction::Keep);
  EXPECT_FALSE(audit::Sink::refuses_unrecorded());
  EXPECT_EQ(audit::parse_failure_action("refuse"), audit::FailureAction::Refuse);
  EXPECT_EQ(audit::parse_failure_action("keep"), audit::FailureAction::Keep);
  EXPECT_FALSE(audit::parse_failure_action("halt"));
  audit::Sink::set_failure_action(audit::FailureAction::Refuse);
  EXPECT_TRUE(audit::Sink::refuses_unrecorded());
  EXPECT_EQ(audit::health().action, audit::FailureAction::Refuse);
  audit::Sink::set_failure_action(audit::FailureAction::Keep);
}

std::vector<std::string> lines_of(const std::string& text) {
  std::vector<std::string> out;
  std::size_t at = 0;
  while (at < text.size()) {
    const std::size_t eol = std::min(text.find('\n', at), text.size());
    out.push_back(text.substr(at, eol - at));
    at = eol + 1;
  }
  return out;
}

}  // namespace
}  // namespace sysvisor
