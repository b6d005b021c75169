// Policy v2: parsing (v1 files too), every error code with its position, includes, whole-set
// checks, warnings, decisions, the syscall table, hostile input.
#include "sysvisor/policy.hpp"

#include <fnmatch.h>
#include <gtest/gtest.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <functional>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "sysvisor/syscalls.hpp"

namespace sysvisor::policy {
namespace {

const std::filesystem::path kShippedPolicy =
    std::filesystem::path(SYSVISOR_SOURCE_DIR) / "policies" / "rootless-devices.yaml";

std::string describe(const std::vector<LoadError>& errors) {
  std::string text;
  for (const auto& error : errors) {
    text += std::string(to_string(error.code)) + " " + error.format() + "\n";
  }
  return text;
}

std::string describe(const std::vector<Warning>& warnings) {
  std::string text;
  for (const auto& warning : warnings) {
    text += std::string(to_string(warning.code)) + " " + warning.format() + "\n";
  }
  return text;
}

Policy parse_ok(std::string_view yaml) {
  auto policy = parse_policy(yaml, "test.yaml");
  if (!policy) {
    ADD_FAILURE() << describe(policy.error());
    return {};
  }
  return std::move(*policy);
}

// Parses and resolves a set of documents (file names a.yaml, b.yaml, ... unless given).
std::expected<LoadResult, std::vector<LoadError>> resolve_texts(const std::vector<std::string>& texts) {
  std::vector<Policy> parsed;
  for (std::size_t i = 0; i < texts.size(); ++i) {
    auto policy = parse_policy(texts[i], std::string(1, static_cast<char>('a' + i)) + ".yaml");
    if (!policy) {
      ADD_FAILURE() << describe(policy.error());
      return std::unexpected(policy.error());
    }
    parsed.push_back(std::move(*policy));
  }
  return resolve(std::move(parsed));
}

// One policy, parsed and resolved, without errors or warnings.
Policy policy_ok(std::string_view yaml) {
  auto result = resolve_texts({std::string(yaml)});
  if (!result) {
    ADD_FAILURE() << describe(result.error());
    return {};
  }
  EXPECT_TRUE(result->warnings.empty()) << describe(result->warnings);
  EXPECT_EQ(result->policies.size(), 1u);
  return *result->policies.begin()->second;
}

std::vector<LoadError> parse_errors(std::string_view yaml) {
  auto policy = parse_policy(yaml, "test.yaml");
  if (policy) {
    ADD_FAILURE() << "parsed, expected errors:\n" << yaml;
    return {};
  }
  EXPECT_FALSE(policy.error().empty());
  return policy.error();
}

std::vector<LoadError> resolve_errors(const std::vector<std::string>& texts) {
  auto result = resolve_texts(texts);
  if (result) {
    ADD_FAILURE() << "resolved, expected errors";
    return {};
  }
  return result.error();
}

// The document has exactly one error, `code` at line:column.
void expect_one_error(std::string_view yaml, ErrorCode code, int line, int column) {
  auto errors = parse_errors(yaml);
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, code) << describe(errors);
  EXPECT_EQ(errors[0].pos.file, "test.yaml");
  EXPECT_EQ(errors[0].pos.line, line) << describe(errors);
  EXPECT_EQ(errors[0].pos.column, column) << describe(errors);
  EXPECT_FALSE(errors[0].message.empty());
}

// A rule document: `rule` is the body of one rule, indented by 4.
std::string one_rule(std::string_view rule) {
  return "name: p\nrules:\n  - " + std::string(rule);
}

Call mknod_call(FileType type, std::uint32_t major, std::uint32_t minor, int nr = SYS_mknod) {
  Call call;
  call.nr = nr;
  call.type = type;
  call.major = major;
  call.minor = minor;
  return call;
}
Call chr(std::uint32_t major, std::uint32_t minor, int nr = SYS_mknod) {
  return mknod_call(FileType::Char, major, minor, nr);
}
Call blk(std::uint32_t major, std::uint32_t minor, int nr = SYS_mknod) {
  return mknod_call(FileType::Block, major, minor, nr);
}
Call path_call(int nr, std::vector<std::string> paths) {
  Call call;
  call.nr = nr;
  call.paths = std::move(paths);
  return call;
}

// A fresh directory under TMPDIR, removed with its contents at the end of the test.
class TempDir {
 public:
  TempDir() {
    std::string templ = (std::filesystem::temp_directory_path() / "sysvisor-policy-XXXXXX").string();
    if (mkdtemp(templ.data()) == nullptr) {
      ADD_FAILURE() << "mkdtemp failed";
    }
    path_ = templ;
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  [[nodiscard]] const std::filesystem::path& path() const { return path_; }
  void write(const std::string& name, std::string_view text) const {
    std::ofstream out(path_ / name, std::ios::binary);
    out << text;
  }

 private:
  std::filesystem::path path_;
};

// --- the shipped policy -------------------------------------------------------------------

TEST(PolicyShipped, LoadsWithoutWarnings) {
  auto result = load_policy_files({kShippedPolicy});
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  EXPECT_TRUE(result->warnings.empty()) << describe(result->warnings);
  ASSERT_EQ(result->policies.size(), 1u);
  const Policy& policy = *result->policies.at("rootless-devices");
  EXPECT_FALSE(policy.description.empty());
  ASSERT_EQ(policy.rules.size(), 3u);
  EXPECT_EQ(policy.rules[0].name, "harmless-char-devices");
  EXPECT_EQ(policy.rules[0].action, Action::Emulate);
  EXPECT_EQ(policy.rules[0].match.devices.size(), 6u);  // not 5:1, the host's console
  EXPECT_EQ(policy.rules[0].fields, kFieldDevice);
  EXPECT_EQ(policy.rules[0].origin, "rootless-devices");
  EXPECT_EQ(policy.rules[1].action, Action::Allow);
  EXPECT_EQ(policy.rules[2].action, Action::Deny);
  EXPECT_EQ(policy.pos.file, kShippedPolicy.string());
  EXPECT_GT(policy.pos.line, 1);  // the name comes after the header comment
  EXPECT_EQ(policy.syscalls(), (std::vector<int>{SYS_mknod, SYS_mknodat}));
  EXPECT_EQ(policy.fields_for(SYS_mknod), kFieldDevice);
  EXPECT_EQ(policy.fields_for(SYS_openat), kFieldNone);
  EXPECT_EQ(policy.version.size(), 16u);
}

TEST(PolicyShipped, Decisions) {
  auto result = load_policy_dir(kShippedPolicy.parent_path());
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  const Policy& policy = *result->policies.at("rootless-devices");

  for (auto [major, minor] : {std::pair{1u, 3u}, {1u, 5u}, {1u, 7u}, {1u, 8u}, {1u, 9u}, {5u, 0u}}) {
    for (int nr : {SYS_mknod, SYS_mknodat}) {
      Decision d = decide(policy, chr(major, minor, nr));
      EXPECT_EQ(d.action, Action::Emulate) << major << ":" << minor;
      EXPECT_TRUE(d.audit);
      EXPECT_EQ(d.rule_index, 0);
    }
  }
  Decision whiteout = decide(policy, chr(0, 0));
  EXPECT_EQ(whiteout.action, Action::Allow);
  EXPECT_FALSE(whiteout.audit);
  EXPECT_EQ(whiteout.rule_index, 1);
  for (const Call& call :
       {blk(1, 3), blk(0, 0), chr(1, 1), chr(5, 1), chr(5, 2), chr(1, 4), blk(8, 0), chr(4095, 1048575)}) {
    Decision d = decide(policy, call);
    EXPECT_EQ(d.action, Action::Deny) << call.major << ":" << call.minor;
    EXPECT_EQ(d.err, EPERM);
    EXPECT_TRUE(d.audit);
    EXPECT_EQ(d.rule_index, 2);
  }
  // Not a syscall of the policy.
  EXPECT_EQ(decide(policy, path_call(SYS_openat, {"/dev/null"})).rule_index, -1);
}

// --- parsing --------------------------------------------------------------------------------

TEST(PolicyParse, V1DocumentStillLoads) {
  Policy policy = policy_ok(R"(name: a-b_c.1
description: "text"
rules:
  - syscalls: [mknod]
    match: {type: block}
    action: kill
  - name: second
    syscalls: [mknodat, mknodat]
    match: {type: char, devices: ["1:3", "5:*", "*:7"]}
    action: deny
    errno: EACCES
    audit: true
  - syscalls: [mknod, mknodat]
    match: {}
    action: emulate
)");
  EXPECT_EQ(policy.name, "a-b_c.1");
  EXPECT_EQ(policy.description, "text");
  EXPECT_EQ(policy.pos.line, 1);
  EXPECT_EQ(policy.pos.column, 1);
  EXPECT_TRUE(policy.includes.empty());
  ASSERT_EQ(policy.own_rules.size(), 3u);
  ASSERT_EQ(policy.rules.size(), 3u);
  EXPECT_EQ(policy.rules[0].name, "rule 1");
  EXPECT_EQ(policy.rules[0].match.type, FileType::Block);
  EXPECT_FALSE(policy.rules[0].audit);
  EXPECT_EQ(policy.rules[0].pos.line, 4);
  EXPECT_EQ(policy.rules[0].pos.column, 5);
  EXPECT_EQ(policy.rules[1].name, "second");
  EXPECT_EQ(policy.rules[1].syscalls, std::vector<int>{SYS_mknodat});
  EXPECT_EQ(policy.rules[1].err, EACCES);
  EXPECT_TRUE(policy.rules[1].audit);
  ASSERT_EQ(policy.rules[1].match.devices.size(), 3u);
  EXPECT_EQ(policy.rules[1].match.devices[1].major, 5u);
  EXPECT_FALSE(policy.rules[1].match.devices[1].minor.has_value());
  EXPECT_FALSE(policy.rules[1].match.devices[2].major.has_value());
  EXPECT_TRUE(policy.rules[2].match.empty());
  EXPECT_EQ(policy.rules[2].fields, kFieldNone);
}

TEST(PolicyParse, ParseAloneLeavesRulesEmpty) {
  Policy policy = parse_ok("name: p\nrules:\n  - {syscalls: [mknod], action: deny}\n");
  EXPECT_EQ(policy.own_rules.size(), 1u);
  EXPECT_TRUE(policy.rules.empty());
  EXPECT_TRUE(policy.version.empty());
  EXPECT_EQ(policy.source, "name: p\nrules:\n  - {syscalls: [mknod], action: deny}\n");
}

TEST(PolicyParse, EveryV2Key) {
  Policy policy = policy_ok(R"(name: everything
description: all keys
include: []
rules:
  - name: args
    syscalls: [ioctl]
    args:
      - {index: 1, op: eq, value: 0x5401}
      - {index: 0, op: masked_eq, mask: 0o170000, value: 0o020000}
      - {index: 2, op: ne, value: -1}
      - {index: 3, op: lt, value: 10}
      - {index: 4, op: ge, value: 18446744073709551615}
      - {index: 5, op: le, value: -9223372036854775808}
    action: return
    value: -5
    audit: true
  - syscalls: [ioctl]
    args: [{index: 0, op: gt, value: 3}]
    action: kill-container
  - syscalls: [mount]
    match:
      fstype: [ext4, "fuse.*"]
      source: ["/dev/loop*", none]
      target: ["/mnt/*"]
      flags: {set: [MS_RDONLY, MS_NOSUID], clear: [MS_BIND]}
    action: deny
    errno: EACCES
  - syscalls: [umount2]
    match: {target: ["/mnt/*"], flags: {set: [MNT_DETACH], clear: [MNT_FORCE, UMOUNT_NOFOLLOW, MNT_EXPIRE]}}
    action: deny
  - syscalls: [setxattr, lsetxattr, fsetxattr]
    match: {xattr: ["trusted.overlay.*"], value_size: {max: 4096}, path: ["/var/*"]}
    action: deny
  - syscalls: [sched_setscheduler, sched_setattr]
    match: {sched_policy: [SCHED_FIFO, SCHED_RR, SCHED_DEADLINE], priority: {min: 1, max: 50}, nice: {min: -10}}
    action: deny
  - syscalls: [openat, open]
    match: {path: ["/etc/shadow", "/root/*"]}
    action: deny
  - syscalls: [mount, umount2, setxattr, lsetxattr, fsetxattr, sched_setscheduler, sched_setattr, openat, open]
    action: kill
)");
  ASSERT_EQ(policy.rules.size(), 8u);
  const Rule& args = policy.rules[0];
  EXPECT_EQ(args.syscalls, std::vector<int>{SYS_ioctl});
  ASSERT_EQ(args.args.size(), 6u);
  EXPECT_EQ(args.args[0].index, 1u);
  EXPECT_EQ(args.args[0].op, CmpOp::Eq);
  EXPECT_EQ(args.args[0].value, 0x5401u);
  EXPECT_EQ(args.args[0].pos.line, 8);
  EXPECT_EQ(args.args[0].pos.column, 9);
  EXPECT_EQ(args.args[1].op, CmpOp::MaskedEq);
  EXPECT_EQ(args.args[1].mask, std::uint64_t{S_IFMT});
  EXPECT_EQ(args.args[1].value, std::uint64_t{S_IFCHR});
  EXPECT_EQ(args.args[2].op, CmpOp::Ne);
  EXPECT_EQ(args.args[2].value, ~std::uint64_t{0});
  EXPECT_EQ(args.args[3].op, CmpOp::Lt);
  EXPECT_EQ(args.args[4].op, CmpOp::Ge);
  EXPECT_EQ(args.args[4].value, ~std::uint64_t{0});
  EXPECT_EQ(args.args[5].op, CmpOp::Le);
  EXPECT_EQ(args.args[5].value, std::uint64_t{1} << 63);
  EXPECT_EQ(args.action, Action::Return);
  EXPECT_EQ(args.value, -5);
  EXPECT_TRUE(args.audit);
  EXPECT_EQ(args.fields, kFieldNone);
  EXPECT_EQ(policy.rules[1].action, Action::KillContainer);
  EXPECT_EQ(policy.rules[1].args[0].op, CmpOp::Gt);

  const Rule& mount = policy.rules[2];
  EXPECT_EQ(mount.match.fstypes, (std::vector<std::string>{"ext4", "fuse.*"}));
  EXPECT_EQ(mount.match.sources, (std::vector<std::string>{"/dev/loop*", "none"}));
  EXPECT_EQ(mount.match.targets, std::vector<std::string>{"/mnt/*"});
  ASSERT_TRUE(mount.match.flags.has_value());
  EXPECT_EQ(mount.match.flags->set, std::uint64_t{MS_RDONLY | MS_NOSUID});
  EXPECT_EQ(mount.match.flags->clear, std::uint64_t{MS_BIND});
  EXPECT_EQ(mount.fields, kFieldFstype | kFieldSource | kFieldTarget | kFieldFlags);
  EXPECT_EQ(mount.err, EACCES);

  const Rule& umount = policy.rules[3];
  EXPECT_EQ(umount.match.flags->set, std::uint64_t{MNT_DETACH});
  EXPECT_EQ(umount.match.flags->clear, std::uint64_t{MNT_FORCE | UMOUNT_NOFOLLOW | MNT_EXPIRE});

  const Rule& xattr = policy.rules[4];
  EXPECT_EQ(xattr.match.xattr_names, std::vector<std::string>{"trusted.overlay.*"});
  EXPECT_FALSE(xattr.match.value_size->min.has_value());
  EXPECT_EQ(xattr.match.value_size->max, 4096);
  EXPECT_EQ(xattr.fields, kFieldXattrName | kFieldValueSize | kFieldPath);

  const Rule& sched = policy.rules[5];
  EXPECT_EQ(sched.match.sched_policies, (std::vector<int>{SCHED_FIFO, SCHED_RR, 6}));
  EXPECT_EQ(sched.match.priority->min, 1);
  EXPECT_EQ(sched.match.priority->max, 50);
  EXPECT_EQ(sched.match.nice->min, -10);
  EXPECT_EQ(sched.fields, kFieldSched);

  EXPECT_EQ(policy.rules[6].match.paths, (std::vector<std::string>{"/etc/shadow", "/root/*"}));
  EXPECT_EQ(policy.fields_for(SYS_openat), kFieldPath);
  EXPECT_EQ(policy.fields_for(SYS_mount), kFieldFstype | kFieldSource | kFieldTarget | kFieldFlags);
  EXPECT_EQ(policy.fields_for(SYS_ioctl), kFieldNone);
  auto calls = policy.syscalls();
  EXPECT_TRUE(std::ranges::is_sorted(calls));
  EXPECT_EQ(calls.size(), 10u);
}

TEST(PolicyParse, AnchorsAndAliases) {
  Policy policy = policy_ok(R"(
name: aliases
rules:
  - syscalls: &calls [mknod, mknodat]
    match: &harmless {type: char, devices: ["1:3"]}
    action: emulate
  - syscalls: *calls
    match: {type: block}
    action: deny
)");
  ASSERT_EQ(policy.rules.size(), 2u);
  EXPECT_EQ(policy.rules[1].syscalls.size(), 2u);
}

TEST(PolicyParse, AnySyscallLibseccompKnows) {
  EXPECT_EQ(syscall_from_name("openat"), SYS_openat);
  EXPECT_EQ(syscall_from_name("read"), 0);
  EXPECT_EQ(syscall_from_name("mount_setattr"), SYS_mount_setattr);
  EXPECT_FALSE(syscall_from_name("socketcall").has_value());  // i386 only: a pseudo number
  EXPECT_FALSE(syscall_from_name("bogus").has_value());
  EXPECT_FALSE(syscall_from_name("").has_value());
  EXPECT_FALSE(syscall_from_name(std::string_view("read\0x", 6)).has_value());
  EXPECT_EQ(syscall_name(SYS_mknodat), "mknodat");
  EXPECT_EQ(syscall_name(0), "read");
  EXPECT_EQ(syscall_name(100000), "syscall_100000");
  EXPECT_EQ(syscall_name(-1), "syscall_-1");
}

// --- every error code, with its position ---------------------------------------------------

TEST(PolicyErrors, YamlParse) {
  expect_one_error("name: p\nrules: [\n", ErrorCode::YamlParse, 3, 1);
  expect_one_error("name: p\nrules: []\n  bad: indent\n", ErrorCode::YamlParse, 3, 3);
  expect_one_error("name: p\n\trules: []\n", ErrorCode::YamlParse, 2, 1);  // tabs do not indent
}

TEST(PolicyErrors, WrongType) {
  expect_one_error(one_rule("syscalls: mknod\n    action: deny\n"), ErrorCode::WrongType, 3, 15);
  expect_one_error("name: p\nrules: {}\n", ErrorCode::WrongType, 2, 8);
  expect_one_error("name: [p]\nrules: []\n", ErrorCode::WrongType, 1, 7);
  expect_one_error("name: p\nrules:\n", ErrorCode::WrongType, 2, 1);  // an empty value points at its key
  expect_one_error(one_rule("syscalls: [mknod]\n    action: deny\n    audit: yes\n"), ErrorCode::WrongType, 5,
                   12);
  expect_one_error("name: p\nrules:\n  - [mknod, deny]\n", ErrorCode::WrongType, 3, 5);
  expect_one_error("name: p\n[a]: b\nrules: []\n", ErrorCode::WrongType, 2, 1);
  expect_one_error(one_rule("syscalls: [mknod]\n    match: {devices: [{1: 3}]}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 23);
  expect_one_error("name: p\ninclude: base\nrules: []\n", ErrorCode::WrongType, 2, 10);
  expect_one_error(one_rule("syscalls: [openat]\n    match: {path: \"/etc/*\"}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 19);
  expect_one_error(one_rule("syscalls: [openat]\n    args: {index: 0, op: eq, value: 1}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 11);
  expect_one_error(
      one_rule("syscalls: [openat]\n    args: [{index: [0], op: eq, value: 1}]\n    action: deny\n"),
      ErrorCode::WrongType, 4, 20);
  expect_one_error(one_rule("syscalls: [mount]\n    match: {flags: [MS_BIND]}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 20);
  expect_one_error(one_rule("syscalls: [mount]\n    match: {flags: {set: MS_BIND}}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 26);
  expect_one_error(one_rule("syscalls: [setxattr]\n    match: {value_size: 4096}\n    action: deny\n"),
                   ErrorCode::WrongType, 4, 25);
  expect_one_error(one_rule("syscalls: [ioctl]\n    action: return\n    value: [1]\n"), ErrorCode::WrongType,
                   5, 12);
  expect_one_error(one_rule("syscalls: [mknod, [mknodat]]\n    action: deny\n"), ErrorCode::WrongType, 3, 23);
  expect_one_error(one_rule("syscalls: [mknod]\n    action: {deny: 1}\n"), ErrorCode::WrongType, 4, 13);
}

TEST(PolicyErrors, UnknownKey) {
  auto errors = parse_errors(one_rule("syscalls: [mknod]\n    action: deny\n    colour: red\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnknownKey);
  EXPECT_EQ(errors[0].pos.line, 5);
  EXPECT_EQ(errors[0].pos.column, 5);
  EXPECT_NE(errors[0].message.find("colour"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("syscalls"), std::string::npos) << errors[0].message;  // allowed keys

  expect_one_error("name: p\nrules: []\nversion: 1\n", ErrorCode::UnknownKey, 3, 1);
  expect_one_error(one_rule("syscalls: [mknod]\n    match: {type: char, minor: 3}\n    action: deny\n"),
                   ErrorCode::UnknownKey, 4, 25);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: 0, op: eq, value: 1, arg: 2}]\n    action: deny\n"),
      ErrorCode::UnknownKey, 4, 41);
  expect_one_error(
      one_rule("syscalls: [mount]\n    match: {flags: {set: [], unset: []}}\n    action: deny\n"),
      ErrorCode::UnknownKey, 4, 30);
  expect_one_error(one_rule("syscalls: [setxattr]\n    match: {value_size: {most: 1}}\n    action: deny\n"),
                   ErrorCode::UnknownKey, 4, 26);
}

TEST(PolicyErrors, MissingKey) {
  expect_one_error("rules: []\n", ErrorCode::MissingKey, 1, 1);
  expect_one_error("name: p\n", ErrorCode::MissingKey, 1, 1);
  expect_one_error("name: p\nrules:\n  - name: r\n    syscalls: [mknod]\n", ErrorCode::MissingKey, 3, 5);
  expect_one_error("name: p\nrules:\n  - action: allow\n", ErrorCode::MissingKey, 3, 5);
  // return needs value; masked_eq needs mask; a condition needs index, op and value.
  expect_one_error(one_rule("syscalls: [ioctl]\n    action: return\n"), ErrorCode::MissingKey, 3, 5);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: 1, op: masked_eq, value: 0}]\n    action: deny\n"),
      ErrorCode::MissingKey, 4, 12);
  expect_one_error(one_rule("syscalls: [ioctl]\n    args: [{op: eq, value: 0}]\n    action: deny\n"),
                   ErrorCode::MissingKey, 4, 12);
  expect_one_error(one_rule("syscalls: [ioctl]\n    args: [{index: 0, value: 0}]\n    action: deny\n"),
                   ErrorCode::MissingKey, 4, 12);
  expect_one_error(one_rule("syscalls: [ioctl]\n    args: [{index: 0, op: eq}]\n    action: deny\n"),
                   ErrorCode::MissingKey, 4, 12);
  expect_one_error(one_rule("syscalls: [mount]\n    match: {flags: {}}\n    action: deny\n"),
                   ErrorCode::MissingKey, 4, 20);
  expect_one_error(one_rule("syscalls: [setpriority]\n    match: {nice: {}}\n    action: deny\n"),
                   ErrorCode::MissingKey, 4, 19);
}

TEST(PolicyErrors, DuplicateKey) {
  auto errors = parse_errors("name: p\nrules: []\nname: q\n");
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::DuplicateKey);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 1);
  EXPECT_NE(errors[0].message.find("line 1"), std::string::npos) << errors[0].message;

  expect_one_error(one_rule("syscalls: [mknod]\n    action: allow\n    action: emulate\n"),
                   ErrorCode::DuplicateKey, 5, 5);
  expect_one_error(
      one_rule("syscalls: [openat]\n    match: {path: [\"/a\"], path: [\"/b\"]}\n    action: deny\n"),
      ErrorCode::DuplicateKey, 4, 27);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: 0, index: 1, op: eq, value: 1}]\n    action: deny\n"),
      ErrorCode::DuplicateKey, 4, 23);
}

TEST(PolicyErrors, BadValue) {
  expect_one_error("name: Bad\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: -p\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: \"\"\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: p\ninclude: [Base]\nrules: []\n", ErrorCode::BadValue, 2, 11);
  expect_one_error(one_rule("syscalls: []\n    action: deny\n"), ErrorCode::BadValue, 3, 15);
  expect_one_error(one_rule("syscalls: [mknod]\n    action: maybe\n"), ErrorCode::BadValue, 4, 13);
  expect_one_error(one_rule("syscalls: [mknod]\n    match: {type: fifo}\n    action: deny\n"),
                   ErrorCode::BadValue, 4, 19);
  expect_one_error(one_rule("syscalls: [mknod]\n    match: {devices: []}\n    action: deny\n"),
                   ErrorCode::BadValue, 4, 22);
  // errno with an action other than deny, value with one other than return: at the key.
  expect_one_error(one_rule("syscalls: [mknod]\n    action: allow\n    errno: EPERM\n"), ErrorCode::BadValue,
                   5, 5);
  expect_one_error(one_rule("syscalls: [mknod]\n    action: deny\n    value: 1\n"), ErrorCode::BadValue, 5,
                   5);
  // A second document, at its `---`.
  expect_one_error("name: p\nrules: []\n---\nname: q\nrules: []\n", ErrorCode::BadValue, 3, 1);
  // Conditions.
  const char* bad_conditions[] = {
      "{index: 0, op: like, value: 1}",
      "{index: 0, op: eq, value: x}",
      "{index: 0, op: eq, value: 0170000}",
      "{index: 0, op: eq, value: 18446744073709551616}",
      "{index: 0, op: eq, value: -9223372036854775809}",
      "{index: 0, op: eq, value: 0x}",
      "{index: 0, op: eq, value: --1}",
      "{index: 0, op: eq, value: 1.5}",
      "{index: 0, op: eq, value: \" 1\"}",
      "{index: 0, op: eq, value: 1, mask: 1}",
      "{index: x, op: eq, value: 1}",
  };
  for (const char* cond : bad_conditions) {
    SCOPED_TRACE(cond);
    auto errors = parse_errors(
        one_rule(std::string("syscalls: [ioctl]\n    args: [") + cond + "]\n    action: deny\n"));
    ASSERT_EQ(errors.size(), 1u) << describe(errors);
    EXPECT_EQ(errors[0].code, ErrorCode::BadValue) << describe(errors);
    EXPECT_EQ(errors[0].pos.line, 4);
  }
  // Matchers.
  const std::pair<const char*, const char*> bad_matchers[] = {
      {"openat", "{path: [\"etc/*\"]}"},
      {"openat", "{path: [\"\"]}"},
      {"openat", "{path: []}"},
      {"openat", "{path: [\"/dev/[[:digit:]]\"]}"},
      {"mount", "{target: [mnt]}"},
      {"mount", "{fstype: []}"},
      {"mount", "{flags: {set: [MS_NOPE]}}"},
      {"mount", "{flags: {set: [MNT_DETACH]}}"},
      {"umount2", "{flags: {set: [MS_BIND]}}"},
      {"sched_setscheduler", "{sched_policy: [SCHED_NOPE]}"},
      {"setpriority", "{nice: {min: 99999999999999999999}}"},
      {"setpriority", "{priority: {max: abc}}"},
  };
  for (const auto& [call, match] : bad_matchers) {
    SCOPED_TRACE(match);
    auto errors = parse_errors(
        one_rule(std::string("syscalls: [") + call + "]\n    match: " + match + "\n    action: deny\n"));
    ASSERT_EQ(errors.size(), 1u) << describe(errors);
    EXPECT_EQ(errors[0].code, ErrorCode::BadValue) << describe(errors);
    EXPECT_EQ(errors[0].pos.line, 4);
  }
  // A flag of mount in a rule that also names umount2.
  auto errors = parse_errors(
      one_rule("syscalls: [mount, umount2]\n    match: {flags: {set: [MS_BIND]}}\n    action: deny\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_NE(errors[0].message.find("umount2"), std::string::npos) << errors[0].message;
  // Too many rules.
  std::string many = "name: p\nrules:\n";
  for (int i = 0; i < 4097; ++i) {
    many += "  - {syscalls: [read], action: deny}\n";
  }
  expect_one_error(many, ErrorCode::BadValue, 3, 3);
}

TEST(PolicyErrors, BadDevices) {
  const char* bad[] = {"1",
                       "1:",
                       ":3",
                       "1:3:4",
                       "x:3",
                       "1:y",
                       "-1:3",
                       "+1:3",
                       "4096:0",
                       "0:1048576",
                       "1: 3",
                       "0x1:3",
                       "99999999999999999999:1",
                       "1:99999999999999999999",
                       "**:1",
                       ""};
  for (const char* device : bad) {
    SCOPED_TRACE(device);
    expect_one_error(
        std::string("name: p\nrules:\n  - syscalls: [mknod]\n    match:\n      devices: [\"1:3\", \"") +
            device + "\"]\n    action: deny\n",
        ErrorCode::BadValue, 5, 24);
  }
}

TEST(PolicyErrors, UnknownSyscall) {
  auto errors = parse_errors(one_rule("syscalls: [mknod, opne]\n    action: deny\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnknownSyscall);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 23);
  EXPECT_NE(errors[0].message.find("opne"), std::string::npos) << errors[0].message;
  expect_one_error(one_rule("syscalls: [socketcall]\n    action: deny\n"), ErrorCode::UnknownSyscall, 3, 16);
}

TEST(PolicyErrors, UnknownErrno) {
  expect_one_error(one_rule("syscalls: [mknod]\n    action: deny\n    errno: ENOPE\n"),
                   ErrorCode::UnknownErrno, 5, 12);
  expect_one_error(one_rule("syscalls: [mknod]\n    action: deny\n    errno: 1\n"), ErrorCode::UnknownErrno,
                   5, 12);
}

TEST(PolicyErrors, BadMatcher) {
  auto errors =
      parse_errors(one_rule("syscalls: [openat, mount]\n    match: {fstype: [ext4]}\n    action: deny\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadMatcher);
  EXPECT_EQ(errors[0].pos.line, 4);
  EXPECT_EQ(errors[0].pos.column, 13);
  EXPECT_NE(errors[0].message.find("openat"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("fstype"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("mount"), std::string::npos) << errors[0].message;  // where it applies

  const std::pair<const char*, const char*> cases[] = {
      {"ioctl", "{path: [\"/x\"]}"},  // no table row at all
      {"openat", "{type: char}"},
      {"openat", "{devices: [\"1:3\"]}"},
      {"mknod", "{target: [\"/mnt\"]}"},
      {"mknod", "{source: [x]}"},
      {"openat", "{flags: {set: []}}"},
      {"getxattr", "{value_size: {max: 1}}"},
      {"openat", "{sched_policy: [SCHED_FIFO]}"},
      {"mount", "{priority: {max: 1}}"},
      {"mount", "{nice: {max: 1}}"},
      {"sched_setattr", "{path: [\"/\"]}"},
  };
  for (const auto& [call, match] : cases) {
    SCOPED_TRACE(std::string(call) + " " + match);
    expect_one_error(
        one_rule(std::string("syscalls: [") + call + "]\n    match: " + match + "\n    action: deny\n"),
        ErrorCode::BadMatcher, 4, 13);
  }
}

// On the list calls `xattr` names what the emulated list adds: with another action it would
// match every call, so it is refused there (at the `match` key).
TEST(PolicyErrors, XattrOnListCallsOnlyWithEmulate) {
  expect_one_error(one_rule("syscalls: [listxattr]\n    match: {xattr: [user.*]}\n    action: deny\n"),
                   ErrorCode::BadMatcher, 4, 5);
  expect_one_error(
      one_rule("syscalls: [getxattr, flistxattr]\n    match: {xattr: [user.*]}\n    action: allow\n"),
      ErrorCode::BadMatcher, 4, 5);
  (void)policy_ok(
      one_rule("syscalls: [getxattr, flistxattr]\n    match: {xattr: [user.*]}\n    action: emulate\n"));
}

// A list call carries no name: the rule's `xattr` holds for it; a get call is matched by name.
TEST(PolicyDecide, XattrReadBack) {
  Policy policy = policy_ok(R"(
name: read-back
rules:
  - syscalls: [getxattr, listxattr, llistxattr, flistxattr]
    match: {xattr: ["trusted.overlay.*"]}
    action: emulate
)");
  Call list;
  list.nr = SYS_flistxattr;
  EXPECT_EQ(decide(policy, list).action, Action::Emulate);
  Call get;
  get.nr = SYS_getxattr;
  get.xattr_name = "trusted.overlay.opaque";
  EXPECT_EQ(decide(policy, get).action, Action::Emulate);
  get.xattr_name = "trusted.other";
  EXPECT_EQ(decide(policy, get).rule_index, -1);
  get.xattr_name.reset();  // could not be copied: the matcher does not hold
  EXPECT_EQ(decide(policy, get).rule_index, -1);
}

// mount's data options: `emulate: {options: [...]}`.
TEST(PolicyErrors, MountOptions) {
  const std::string head = "syscalls: [mount]\n    match: {fstype: [ext4]}\n    action: emulate\n";
  const auto column = [](const std::string& line, const char* what) {
    return static_cast<int>(line.find(what)) + 1;
  };
  for (const char* bad : {"\"device=*\"", "\"*\"", "\"d*\"", "journal_path", "\"uid=*\"", "\"smackfs*\""}) {
    SCOPED_TRACE(bad);
    const std::string line = std::string("    emulate: {options: [discard, ") + bad + "]}";
    expect_one_error(one_rule(head + line + "\n"), ErrorCode::BadValue, 6, column(line, bad));
  }
  const std::string comma = "    emulate: {options: [\"discard,commit=5\"]}";
  expect_one_error(one_rule(head + comma + "\n"), ErrorCode::BadValue, 6, column(comma, "\"discard"));
  expect_one_error(one_rule(head + "    emulate: {options: []}\n"), ErrorCode::WrongType, 6, 24);
  expect_one_error(one_rule(head + "    emulate: {options: discard}\n"), ErrorCode::WrongType, 6, 24);
  const Policy ok =
      policy_ok(one_rule(head + "    emulate: {options: [discard, \"commit=*\", \"errors=*\"]}\n"));
  ASSERT_TRUE(ok.rules[0].mount.has_value());
  EXPECT_EQ(ok.rules[0].mount->options, (std::vector<std::string>{"discard", "commit=*", "errors=*"}));
}

TEST(MountOptions, SplitAsTheKernelDoes) {
  using V = std::vector<std::string_view>;
  EXPECT_EQ(split_mount_options(""), V{});
  EXPECT_EQ(split_mount_options(",,"), V{});
  EXPECT_EQ(split_mount_options("discard"), V{"discard"});
  EXPECT_EQ(split_mount_options("a,,b=c,d=e=f,"), (V{"a", "b=c", "d=e=f"}));
}

TEST(MountOptions, OnlyWhatTheRuleAllowsAndNeverTheDangerousOnes) {
  const std::vector<std::string> globs{"errors=*", "discard", "commit=*", "rw", "subvol=*"};
  const auto allowed = [&](std::string_view option, bool readonly = false) {
    return mount_option_refusal(option, globs, readonly).empty();
  };
  EXPECT_TRUE(allowed("discard"));
  EXPECT_TRUE(allowed("commit=30"));
  EXPECT_TRUE(allowed("errors=remount-ro"));
  EXPECT_TRUE(allowed("rw"));
  EXPECT_TRUE(allowed("subvol=@home"));
  EXPECT_FALSE(allowed("nodelalloc"));       // no glob
  EXPECT_FALSE(allowed("discard=1"));        // `discard` is the whole option
  EXPECT_FALSE(allowed("errors=continue"));  // contradicts the forced remount-ro
  EXPECT_FALSE(allowed("errors=panic"));     // the host's panic
  EXPECT_FALSE(allowed("rw", true));         // contradicts a forced read-only
  EXPECT_FALSE(allowed("subvol=/@"));        // a value naming a path
  EXPECT_FALSE(allowed("commit=../../dev/sda"));
  // Never, even under a glob that matches everything (the reader refuses such a glob too).
  for (const char* never :
       {"source=/dev/sda", "journal_path=/dev/sdb", "journal_dev=2049", "device=/dev/sdb", "logdev=/dev/sdc",
        "rtdev=x", "uid=0", "gid=0", "resuid=0", "dax", "dax=always", "context=system_u:object_r:etc_t:s0",
        "smackfsroot=x", "fatal_errors=panic", "user_subvol_rm_allowed", "lowerdir=x", "fd=3"}) {
    SCOPED_TRACE(never);
    EXPECT_FALSE(mount_option_refusal(never, {"*"}, false).empty());
  }
  EXPECT_EQ(glob_grants_refused_option("discard"), "");
  EXPECT_EQ(glob_grants_refused_option("errors=*"), "");
  EXPECT_EQ(glob_grants_refused_option("commit=*"), "");
  EXPECT_EQ(glob_grants_refused_option("device=*"), "device");
  EXPECT_EQ(glob_grants_refused_option("dev*"), "device");
  EXPECT_NE(glob_grants_refused_option("*"), "");
  EXPECT_NE(glob_grants_refused_option("*=*"), "");
  EXPECT_EQ(glob_grants_refused_option("smackfs*"), "smackfsdef");
}

TEST(PolicyErrors, BadArgument) {
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: 6, op: eq, value: 1}]\n    action: deny\n"),
      ErrorCode::BadArgument, 4, 20);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: -1, op: eq, value: 1}]\n    action: deny\n"),
      ErrorCode::BadArgument, 4, 20);
  // libseccomp compiles one comparison per argument and rule.
  auto errors =
      parse_errors(one_rule("syscalls: [ioctl]\n    args:\n      - {index: 1, op: ge, value: 1}\n      - "
                            "{index: 1, op: le, value: 9}\n"
                            "    action: deny\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadArgument);
  EXPECT_EQ(errors[0].pos.line, 6);
  EXPECT_EQ(errors[0].pos.column, 9);
  EXPECT_NE(errors[0].message.find("line 5"), std::string::npos) << errors[0].message;
}

TEST(PolicyErrors, CollectsAllErrors) {
  auto errors = parse_errors(R"(name: Bad
extra: 1
rules:
  - syscalls: [opne]
    action: deny
  - syscalls: [mknod]
    action: explode
    match: {devices: ["1:3", "4096:1", "1:x"]}
  - syscalls: [mknod]
    errno: EPERM
  - syscalls: [openat]
    match: {type: char}
    action: deny
)");
  std::vector<std::pair<ErrorCode, int>> got;
  for (const auto& e : errors) {
    got.emplace_back(e.code, e.pos.line);
  }
  std::vector<std::pair<ErrorCode, int>> want{
      {ErrorCode::UnknownKey, 2}, {ErrorCode::BadValue, 1},    {ErrorCode::UnknownSyscall, 4},
      {ErrorCode::BadValue, 8},   {ErrorCode::BadValue, 8},    {ErrorCode::BadValue, 7},
      {ErrorCode::MissingKey, 9}, {ErrorCode::BadMatcher, 12},
  };
  EXPECT_EQ(got, want) << describe(errors);
}

TEST(PolicyErrors, Format) {
  LoadError error{ErrorCode::BadValue, "nope", Position{"dir/p.yaml", 3, 7}};
  EXPECT_EQ(error.format(), "dir/p.yaml:3:7: nope");
  LoadError unknown{ErrorCode::Io, "open: No such file or directory", Position{"p.yaml", 0, 0}};
  EXPECT_EQ(unknown.format(), "p.yaml: open: No such file or directory");
  Warning warning{WarningCode::Shadowed, "never", Position{"p.yaml", 2, 3}};
  EXPECT_EQ(warning.format(), "p.yaml:2:3: warning: never");
  EXPECT_STREQ(to_string(ErrorCode::DuplicateKey), "duplicate-key");
  EXPECT_STREQ(to_string(ErrorCode::UnsafeAllow), "unsafe-allow");
  EXPECT_STREQ(to_string(ErrorCode::BadArgument), "bad-argument");
  EXPECT_STREQ(to_string(WarningCode::NeverMatch), "never-match");
  EXPECT_STREQ(to_string(Action::KillContainer), "kill-container");
  EXPECT_STREQ(to_string(Action::Return), "return");
  EXPECT_STREQ(to_string(CmpOp::MaskedEq), "masked_eq");
  EXPECT_STREQ(to_string(CmpOp::Le), "le");
  EXPECT_STREQ(to_string(FileType::Block), "block");
}

// --- whole-set checks --------------------------------------------------------------------------

TEST(PolicyResolve, NoEmulator) {
  auto errors = resolve_errors({one_rule("syscalls: [mknod, openat]\n    action: emulate\n")});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::NoEmulator);
  EXPECT_EQ(errors[0].pos.file, "a.yaml");
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 5);
  EXPECT_NE(errors[0].message.find("openat"), std::string::npos) << errors[0].message;
  // No table row at all.
  errors = resolve_errors({one_rule("syscalls: [ioctl]\n    action: emulate\n")});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::NoEmulator);
}

TEST(PolicyParse, MountEmulateOptions) {
  const Policy p =
      policy_ok(one_rule("syscalls: [mount]\n    match: {fstype: [ext4]}\n    action: emulate\n"
                         "    emulate: {images: [\"/images/*.img\"], readonly: true, allow_dev: true}\n"
                         "  - syscalls: [umount2]\n    action: emulate\n"));
  ASSERT_EQ(p.rules.size(), 2u);
  ASSERT_TRUE(p.rules[0].mount.has_value());
  EXPECT_EQ(p.rules[0].mount->images, (std::vector<std::string>{"/images/*.img"}));
  EXPECT_TRUE(p.rules[0].mount->readonly);
  EXPECT_FALSE(p.rules[0].mount->allow_suid);
  EXPECT_TRUE(p.rules[0].mount->allow_dev);
  EXPECT_FALSE(p.rules[1].mount.has_value());
  const Policy b =
      policy_ok(one_rule("syscalls: [mount]\n    action: emulate\n"
                         "    emulate: {bind: [{host: /srv//data/}, {host: /srv/rw, readonly: false}]}\n"));
  ASSERT_EQ(b.rules[0].mount->binds.size(), 2u);
  EXPECT_EQ(b.rules[0].mount->binds[0].host, "/srv/data");
  EXPECT_TRUE(b.rules[0].mount->binds[0].readonly);
  EXPECT_FALSE(b.rules[0].mount->binds[1].readonly);
  expect_one_error(one_rule("syscalls: [mount]\n    action: emulate\n    emulate: {bind: [{host: srv}]}\n"),
                   ErrorCode::BadValue, 5, 29);
  // Only with `action: emulate`, only for mount alone, absolute patterns, known keys.
  expect_one_error(one_rule("syscalls: [mount]\n    action: deny\n    emulate: {readonly: true}\n"),
                   ErrorCode::BadValue, 5, 5);
  expect_one_error(
      one_rule("syscalls: [mount, umount2]\n    action: emulate\n    emulate: {readonly: true}\n"),
      ErrorCode::BadMatcher, 5, 5);
  expect_one_error(one_rule("syscalls: [mount]\n    action: emulate\n    emulate: {images: [a.img]}\n"),
                   ErrorCode::BadValue, 5, 24);
  expect_one_error(one_rule("syscalls: [mount]\n    action: emulate\n    emulate: {binds: []}\n"),
                   ErrorCode::UnknownKey, 5, 15);
}

TEST(PolicyResolve, UnsafeAllowOnMemory) {
  auto errors = resolve_errors({R"(name: p
rules:
  - syscalls: [openat]
    match: {path: ["/tmp/*"]}
    action: allow
  - syscalls: [openat]
    action: deny
)"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 5);
  // Register-only fields may allow: device numbers and flags are not in memory.
  policy_ok(one_rule("syscalls: [umount2]\n    match: {flags: {set: [MNT_DETACH]}}\n    action: allow\n"));
}

// Issue 19, item 3: `allow` + `audit: true` on memory records the calls it matches and refuses
// nothing. Where every call of its syscalls ends in allow anyway, it loads with a `record-only`
// warning (check says it is a record, not enforcement); where a later rule refuses a call of
// that syscall, a racing thread could steer a call into it past that refusal: unsafe-allow.
TEST(PolicyResolve, AllowAndAuditOnMemoryOnlyRecords) {
  const auto ok = resolve_texts({R"(name: p
rules:
  - name: watch-secrets
    syscalls: [open, openat]
    match: {path: ["/etc/shadow", "/root/.ssh/*"]}
    action: allow
    audit: true
  - syscalls: [mknod]
    action: deny
)"});
  ASSERT_TRUE(ok) << describe(ok.error());
  ASSERT_EQ(ok->warnings.size(), 1u) << describe(ok->warnings);
  EXPECT_EQ(ok->warnings[0].code, WarningCode::RecordOnly);
  EXPECT_EQ(ok->warnings[0].pos.line, 3);
  EXPECT_NE(ok->warnings[0].message.find("refuses nothing"), std::string::npos) << ok->warnings[0].message;
  // A later refusal of openat: unsafe, with where and why.
  auto later = resolve_errors({R"(name: p
rules:
  - name: watch
    syscalls: [openat]
    match: {path: ["/tmp/*"]}
    action: allow
    audit: true
  - name: no-etc
    syscalls: [openat]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [openat]
    action: deny
)"});
  ASSERT_GE(later.size(), 1u) << describe(later);
  EXPECT_EQ(later[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(later[0].pos.line, 3);
  EXPECT_NE(later[0].message.find("refuses calls of openat"), std::string::npos) << later[0].message;
  // A refusal before it (here: the including policy's own rule, on registers) is fine.
  auto included = resolve_texts({R"(name: base
rules:
  - syscalls: [openat]
    match: {path: ["/tmp/*"]}
    action: allow
    audit: true
)",
                                 R"(name: top
include: [base]
rules:
  - syscalls: [openat]
    args: [{index: 2, op: eq, value: 1}]
    action: deny
)"});
  ASSERT_TRUE(included) << describe(included.error());
  EXPECT_EQ(included->warnings.size(), 2u)
      << "record-only, in base and in top: " << describe(included->warnings);
  // A memory allow without audit is still an error, and says how to record instead.
  auto plain =
      resolve_errors({"name: p\nrules:\n  - {syscalls: [openat], match: {path: [\"/x\"]}, action: allow}\n"});
  ASSERT_EQ(plain.size(), 1u) << describe(plain);
  EXPECT_NE(plain[0].message.find("add `audit: true`"), std::string::npos) << plain[0].message;
}

// Issue 19, item 1: `emulate` of tmpfs (as policy learn wrote it) failed with ENOENT in the
// daemon and passed `check`: check now says the emulator cannot mount such a type.
TEST(PolicyResolve, EmulatingATypeWithoutADeviceIsWarned) {
  const auto r =
      resolve_texts({"name: p\nrules:\n  - {name: m, syscalls: [mount], match: {fstype: [ext4, tmpfs, "
                     "fuse.sshfs]}, action: "
                     "emulate}\n"});
  ASSERT_TRUE(r) << describe(r.error());
  ASSERT_EQ(r->warnings.size(), 2u) << describe(r->warnings);
  EXPECT_EQ(r->warnings[0].code, WarningCode::NotEmulable);
  EXPECT_NE(r->warnings[0].message.find("`emulate` cannot mount `tmpfs`"), std::string::npos)
      << r->warnings[0].message;
  EXPECT_NE(r->warnings[1].message.find("`fuse.sshfs`"), std::string::npos) << r->warnings[1].message;
  EXPECT_STREQ(to_string(WarningCode::NotEmulable), "not-emulable");
  policy_ok("name: p\nrules:\n  - {syscalls: [mount], match: {fstype: [ext4, xfs]}, action: emulate}\n");
}

TEST(PolicyResolve, AnEmulationOnMemoryMayFallThroughToTheKernel) {
  // The emulation acts on the supervisor's copy; a racing thread that steers a call past it
  // only reaches the kernel with the caller's own rights, which nothing here took away.
  policy_ok(R"(name: p
rules:
  - syscalls: [mknod, mknodat]
    match: {type: char, devices: ["1:3"], path: ["/dev/*"]}
    action: emulate
)");
  // A refusal on memory still needs its catch-all, emulation or not before it.
  auto errors = resolve_errors({R"(name: p
rules:
  - syscalls: [mknod]
    match: {path: ["/dev/*"]}
    action: emulate
  - syscalls: [mknod]
    match: {path: ["/etc/*"]}
    action: deny
)"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(errors[0].pos.line, 6);
}

TEST(PolicyResolve, UnsafeFallThroughWithoutCatchAll) {
  auto errors = resolve_errors({R"(name: p
rules:
  - syscalls: [openat, mknod]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [mknod]
    action: kill
)"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_NE(errors[0].message.find("openat"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("catch-all"), std::string::npos) << errors[0].message;

  // A catch-all with args, or with a match, or that allows, does not count.
  for (const char* last : {"{syscalls: [openat], args: [{index: 2, op: eq, value: 0}], action: deny}",
                           "{syscalls: [openat], match: {path: [\"/*\"]}, action: deny}",
                           "{syscalls: [openat], action: allow}"}) {
    SCOPED_TRACE(last);
    auto more = resolve_errors(
        {std::string("name: p\nrules:\n  - syscalls: [openat]\n    match: {path: [\"/etc/*\"]}\n"
                     "    action: deny\n  - ") +
         last + "\n"});
    ASSERT_FALSE(more.empty());
    EXPECT_EQ(more[0].code, ErrorCode::UnsafeAllow) << describe(more);
    EXPECT_EQ(more[0].pos.line, 3) << describe(more);
  }
  // An allow for the same syscall between the rule and its catch-all is a way to CONTINUE too.
  errors = resolve_errors({R"(name: p
rules:
  - syscalls: [openat]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [openat]
    args: [{index: 2, op: eq, value: 0}]
    action: allow
  - syscalls: [openat]
    action: deny
)"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_NE(errors[0].message.find("a.yaml:6:5"), std::string::npos) << errors[0].message;

  // Safe: every memory rule has a later catch-all that is not allow; emulate/return/kill count.
  policy_ok(R"(name: p
rules:
  - syscalls: [openat, open]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [mknod]
    match: {path: ["/dev/*"], type: char}
    action: emulate
  - syscalls: [openat]
    action: return
    value: -13
  - syscalls: [open]
    action: kill
  - syscalls: [mknod]
    action: emulate
)");
  // A catch-all with exactly the rule's args catches what the rule's matchers let through.
  policy_ok(R"(name: p
rules:
  - syscalls: [openat]
    args: [{index: 2, op: masked_eq, mask: 3, value: 1}]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [openat]
    args: [{index: 2, op: masked_eq, mask: 3, value: 1}]
    action: return
    value: -13
)");
  errors = resolve_errors({R"(name: p
rules:
  - syscalls: [openat]
    args: [{index: 2, op: masked_eq, mask: 3, value: 1}]
    match: {path: ["/etc/*"]}
    action: deny
  - syscalls: [openat]
    args: [{index: 2, op: masked_eq, mask: 3, value: 2}]
    action: deny
)"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  // A rule after an unconditional rule for the same syscall never decides: no fall-through.
  auto shadowed = resolve_texts({R"(name: p
rules:
  - syscalls: [openat]
    action: deny
  - syscalls: [openat]
    match: {path: ["/etc/*"]}
    action: kill
)"});
  ASSERT_TRUE(shadowed.has_value()) << describe(shadowed.error());
  ASSERT_EQ(shadowed->warnings.size(), 1u);
  EXPECT_EQ(shadowed->warnings[0].code, WarningCode::Shadowed);
}

TEST(PolicyResolve, UnsafeAllowOnEffectiveRules) {
  // The catch-all comes from an included policy: safe.
  auto ok = resolve_texts(
      {"name: top\ninclude: [base]\nrules:\n  - syscalls: [openat]\n    match: {path: [\"/etc/*\"]}\n"
       "    action: deny\n",
       "name: base\nrules:\n  - {syscalls: [openat], action: deny}\n"});
  ASSERT_TRUE(ok.has_value()) << describe(ok.error());
  // The included policy allows what the including one matched on memory: unsafe, at top's rule.
  auto errors = resolve_errors(
      {"name: top\ninclude: [base]\nrules:\n  - syscalls: [openat]\n    match: {path: [\"/etc/*\"]}\n"
       "    action: deny\n",
       "name: base\nrules:\n  - {syscalls: [openat], action: allow}\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnsafeAllow);
  EXPECT_EQ(errors[0].pos.file, "a.yaml");
  EXPECT_EQ(errors[0].pos.line, 4);
  // An included unsafe rule is reported once, in its own file, however many include it.
  errors = resolve_errors(
      {"name: one\ninclude: [base]\nrules: []\n", "name: two\ninclude: [base]\nrules: []\n",
       "name: base\nrules:\n  - syscalls: [openat]\n    match: {path: [\"/x\"]}\n    action: deny\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].pos.file, "c.yaml");
}

TEST(PolicyResolve, DuplicatePolicy) {
  auto errors = resolve_errors({"name: same\nrules: []\n", "# again\nname: same\nrules: []\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::DuplicatePolicy);
  EXPECT_EQ(errors[0].pos.file, "b.yaml");
  EXPECT_EQ(errors[0].pos.line, 2);
  EXPECT_NE(errors[0].message.find("a.yaml:1:1"), std::string::npos) << errors[0].message;
}

TEST(PolicyResolve, IncludeOrderAndOrigin) {
  // top includes [mid, base]; mid includes base: base contributes once, after mid's own rules.
  auto result = resolve_texts({
      "name: top\ninclude: [mid, base, mid]\nrules:\n  - {name: t, syscalls: [mknod], match: {type: char}, "
      "action: "
      "emulate}\n",
      "name: mid\ninclude: [base]\nrules:\n  - {name: m, syscalls: [mknod], match: {devices: [\"1:*\"]}, "
      "action: "
      "kill}\n",
      "name: base\nrules:\n  - {name: b, syscalls: [mknod, mknodat], action: deny, errno: EACCES}\n",
  });
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  EXPECT_TRUE(result->warnings.empty()) << describe(result->warnings);
  const Policy& top = *result->policies.at("top");
  ASSERT_EQ(top.rules.size(), 3u);
  EXPECT_EQ(top.rules[0].name, "t");
  EXPECT_EQ(top.rules[0].origin, "top");
  EXPECT_EQ(top.rules[1].name, "m");
  EXPECT_EQ(top.rules[1].origin, "mid");
  EXPECT_EQ(top.rules[2].name, "b");
  EXPECT_EQ(top.rules[2].origin, "base");
  EXPECT_EQ(top.own_rules.size(), 1u);
  EXPECT_EQ(top.includes, (std::vector<std::string>{"mid", "base", "mid"}));
  EXPECT_EQ(top.syscalls(), (std::vector<int>{SYS_mknod, SYS_mknodat}));

  EXPECT_EQ(decide(top, chr(1, 3)).rule_index, 0);
  EXPECT_EQ(decide(top, blk(1, 3)).rule_index, 1);
  EXPECT_EQ(decide(top, blk(1, 3)).action, Action::Kill);
  Decision d = decide(top, blk(8, 0));
  EXPECT_EQ(d.rule_index, 2);
  EXPECT_EQ(d.err, EACCES);
  EXPECT_EQ(decide(top, chr(1, 3, SYS_mknodat)).rule_index, 2);

  const Policy& mid = *result->policies.at("mid");
  ASSERT_EQ(mid.rules.size(), 2u);
  EXPECT_EQ(decide(mid, chr(1, 3)).rule_index, 0);

  // Depth first: top includes [x, y], x includes [z]: top, x, z, y.
  auto order = resolve_texts({"name: top\ninclude: [x, y]\nrules: []\n",
                              "name: x\ninclude: [z]\nrules:\n  - {syscalls: [read], action: deny}\n",
                              "name: y\nrules:\n  - {syscalls: [write], action: deny}\n",
                              "name: z\nrules:\n  - {syscalls: [open], action: deny}\n"});
  ASSERT_TRUE(order.has_value()) << describe(order.error());
  std::vector<std::string> origins;
  for (const Rule& rule : order->policies.at("top")->rules) {
    origins.push_back(rule.origin);
  }
  EXPECT_EQ(origins, (std::vector<std::string>{"x", "z", "y"}));
}

TEST(PolicyResolve, BadInclude) {
  auto errors = resolve_errors({"name: p\ninclude:\n  - nowhere\nrules: []\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadInclude);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 5);
  EXPECT_NE(errors[0].message.find("nowhere"), std::string::npos) << errors[0].message;

  errors = resolve_errors({"name: p\ninclude: [p]\nrules: []\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadInclude);
  EXPECT_EQ(errors[0].pos.column, 11);

  // a -> b -> c -> a: one error, at the include that closes the cycle.
  errors = resolve_errors({"name: a\ninclude: [b]\nrules: []\n", "name: b\ninclude: [c]\nrules: []\n",
                           "name: c\ninclude: [x, a]\nrules: []\n", "name: x\nrules: []\n"});
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadInclude);
  EXPECT_EQ(errors[0].pos.file, "c.yaml");
  EXPECT_EQ(errors[0].pos.line, 2);
  EXPECT_EQ(errors[0].pos.column, 14);
  EXPECT_NE(errors[0].message.find("cycle"), std::string::npos) << errors[0].message;
}

TEST(PolicyResolve, LongIncludeChainDoesNotRecurse) {
  std::vector<std::string> texts;
  std::vector<Policy> parsed;
  constexpr int kChain = 5000;
  for (int i = 0; i < kChain; ++i) {
    std::string text = "name: p" + std::to_string(i) + "\n";
    if (i + 1 < kChain) {
      text += "include: [p" + std::to_string(i + 1) + "]\n";
    }
    text += "rules: []\n";
    auto policy = parse_policy(text, "p.yaml");
    ASSERT_TRUE(policy.has_value());
    parsed.push_back(std::move(*policy));
  }
  // Close the cycle at the end.
  parsed.back().includes.push_back("p0");
  parsed.back().include_pos.push_back(Position{"p.yaml", 9, 9});
  auto result = resolve(std::move(parsed));
  ASSERT_FALSE(result.has_value());
  EXPECT_EQ(result.error()[0].code, ErrorCode::BadInclude);
}

TEST(PolicyResolve, VersionFollowsIncludedTexts) {
  const std::string top = "name: top\ninclude: [base]\nrules: []\n";
  auto v1 = resolve_texts({top, "name: base\nrules: []\n", "name: other\nrules: []\n"});
  auto v2 = resolve_texts({top, "name: base\nrules: []\n# changed\n", "name: other\nrules: []\n"});
  auto v3 = resolve_texts({top, "name: base\nrules: []\n", "name: other\nrules: []\n# changed\n"});
  ASSERT_TRUE(v1 && v2 && v3);
  const std::string& version = v1->policies.at("top")->version;
  EXPECT_EQ(version.size(), 16u);
  EXPECT_EQ(version.find_first_not_of("0123456789abcdef"), std::string::npos) << version;
  EXPECT_NE(version, v2->policies.at("top")->version);
  EXPECT_EQ(version, v3->policies.at("top")->version);  // an unrelated policy changed
  EXPECT_NE(v1->policies.at("base")->version, v2->policies.at("base")->version);
  EXPECT_EQ(v1->policies.at("other")->version, v2->policies.at("other")->version);
  EXPECT_NE(version, v1->policies.at("base")->version);
  // FNV-1a: the same texts give the same version.
  auto again = resolve_texts({top, "name: base\nrules: []\n", "name: other\nrules: []\n"});
  EXPECT_EQ(version, again->policies.at("top")->version);
}

// --- warnings -------------------------------------------------------------------------------------

TEST(PolicyWarnings, Shadowed) {
  auto result = resolve_texts({R"(name: p
rules:
  - syscalls: [mknod, mknodat]
    match: {type: char}
    action: deny
  - syscalls: [mknod]
    match: {type: char}
    action: kill
  - syscalls: [mknod]
    match: {type: block}
    action: kill
  - syscalls: [ioctl]
    args: [{index: 1, op: eq, value: 5}]
    action: deny
  - syscalls: [ioctl]
    args: [{index: 1, op: eq, value: 5}]
    action: kill
  - syscalls: [ioctl]
    args: [{index: 1, op: eq, value: 6}]
    action: kill
  - syscalls: [ioctl, read]
    action: deny
  - syscalls: [ioctl]
    args: [{index: 1, op: eq, value: 7}]
    action: kill
)"});
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  std::vector<int> lines;
  for (const Warning& w : result->warnings) {
    EXPECT_EQ(w.code, WarningCode::Shadowed) << w.format();
    lines.push_back(w.pos.line);
  }
  EXPECT_EQ(lines, (std::vector<int>{6, 15, 23})) << describe(result->warnings);
  EXPECT_NE(result->warnings[0].message.find("rule 1"), std::string::npos) << result->warnings[0].message;

  // Across an include: reported once, in the context of the including policy.
  auto across = resolve_texts({"name: top\ninclude: [base]\nrules:\n  - {syscalls: [read], action: deny}\n",
                               "name: base\nrules:\n  - {syscalls: [read], action: kill}\n"});
  ASSERT_TRUE(across.has_value());
  ASSERT_EQ(across->warnings.size(), 1u) << describe(across->warnings);
  EXPECT_EQ(across->warnings[0].pos.file, "b.yaml");
  EXPECT_NE(across->warnings[0].message.find("top"), std::string::npos) << across->warnings[0].message;
}

TEST(PolicyWarnings, NeverMatch) {
  const char* never[] = {
      "syscalls: [ioctl]\n    args: [{index: 1, op: masked_eq, mask: 0xff, value: 0x100}]\n    action: "
      "deny\n",
      "syscalls: [ioctl]\n    args: [{index: 1, op: lt, value: 0}]\n    action: deny\n",
      "syscalls: [ioctl]\n    args: [{index: 1, op: gt, value: -1}]\n    action: deny\n",
      "syscalls: [setxattr]\n    match: {value_size: {min: 10, max: 5}}\n    action: deny\n",
      "syscalls: [setxattr]\n    match: {value_size: {max: -1}}\n    action: deny\n",
      "syscalls: [setpriority]\n    match: {nice: {min: 0, max: -1}}\n    action: deny\n",
      "syscalls: [sched_setattr]\n    match: {priority: {min: 50, max: 1}}\n    action: deny\n",
      "syscalls: [mount]\n    match: {flags: {set: [MS_BIND], clear: [MS_BIND, MS_REC]}}\n    action: deny\n",
      "syscalls: [mknod]\n    args: [{index: 1, op: masked_eq, mask: 0o170000, value: 0o060000}]\n"
      "    match: {type: char}\n    action: deny\n",
      "syscalls: [mknodat]\n    args: [{index: 2, op: eq, value: 0o020644}]\n    match: {type: block}\n    "
      "action: deny\n",
  };
  for (const char* rule : never) {
    SCOPED_TRACE(rule);
    std::string text = one_rule(rule);
    // Memory matchers need a catch-all to be valid at all.
    text += "  - {syscalls: [setxattr, setpriority, sched_setattr], action: deny}\n";
    auto result = resolve_texts({text});
    ASSERT_TRUE(result.has_value()) << describe(result.error());
    ASSERT_EQ(result->warnings.size(), 1u) << describe(result->warnings);
    EXPECT_EQ(result->warnings[0].code, WarningCode::NeverMatch);
    EXPECT_EQ(result->warnings[0].pos.line, 3);
  }
  // Not contradictions: the type agrees with the mode; a mode condition for the other call.
  policy_ok(
      one_rule("syscalls: [mknod]\n    args: [{index: 1, op: masked_eq, mask: 0o170000, value: 0o020000}]\n"
               "    match: {type: char}\n    action: deny\n"));
  policy_ok(
      one_rule("syscalls: [mknod, mknodat]\n    args: [{index: 1, op: masked_eq, mask: 0o170000, value: "
               "0o060000}]\n    match: {type: char}\n    action: deny\n"));
}

// --- decisions ----------------------------------------------------------------------------------

TEST(PolicyDecide, FirstMatchWinsAndNoMatchIsAllow) {
  Policy policy = policy_ok(R"(
name: order
rules:
  - syscalls: [mknod]
    match: {type: char, devices: ["1:3"]}
    action: emulate
  - syscalls: [mknod, mknodat]
    match: {devices: ["1:*"]}
    action: kill
    audit: true
  - syscalls: [mknod]
    match: {type: char}
    action: deny
    errno: EACCES
)");
  Decision d = decide(policy, chr(1, 3));
  EXPECT_EQ(d.action, Action::Emulate);
  EXPECT_EQ(d.rule_index, 0);
  EXPECT_FALSE(d.audit);
  d = decide(policy, chr(1, 3, SYS_mknodat));
  EXPECT_EQ(d.action, Action::Kill);
  EXPECT_EQ(d.rule_index, 1);
  EXPECT_TRUE(d.audit);
  d = decide(policy, chr(2, 3));
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.err, EACCES);
  EXPECT_EQ(d.rule_index, 2);
  for (const Call& call : {blk(2, 3), chr(2, 3, SYS_mknodat), path_call(SYS_openat, {"/x"})}) {
    d = decide(policy, call);
    EXPECT_EQ(d.action, Action::Allow);
    EXPECT_FALSE(d.audit);
    EXPECT_EQ(d.rule_index, -1);
    EXPECT_EQ(d.err, 0);
  }
  // A device matcher does not hold when the type was not decoded.
  Call undecoded;
  undecoded.nr = SYS_mknod;
  EXPECT_EQ(decide(policy, undecoded).rule_index, -1);
}

TEST(PolicyDecide, IndexAndScanAgree) {
  Policy policy = policy_ok(R"(
name: order
rules:
  - {syscalls: [read, write], args: [{index: 0, op: eq, value: 1}], action: deny}
  - {syscalls: [write], action: kill}
  - {syscalls: [read], action: return, value: 7}
)");
  Policy unindexed = policy;
  unindexed.by_syscall.clear();
  unindexed.rule_order.clear();
  unindexed.indexed_rules = 99;  // as if rules changed after resolve(): decide() scans
  for (int nr : {0, 1, 2}) {
    for (std::uint64_t fd : {0, 1}) {
      Call call;
      call.nr = nr;
      call.args[0] = fd;
      Decision a = decide(policy, call);
      Decision b = decide(unindexed, call);
      EXPECT_EQ(a.rule_index, b.rule_index) << nr << " " << fd;
      EXPECT_EQ(a.action, b.action);
      EXPECT_EQ(a.value, b.value);
    }
  }
  EXPECT_EQ(unindexed.fields_for(1), policy.fields_for(1));
  Call read;
  read.nr = 0;
  Decision d = decide(policy, read);
  EXPECT_EQ(d.action, Action::Return);
  EXPECT_EQ(d.value, 7);
  EXPECT_EQ(d.rule_index, 2);
  EXPECT_EQ(decide(policy, Call{}).rule_index, -1);  // nr -1
}

TEST(PolicyDecide, ArgConditions) {
  Policy policy = policy_ok(R"(
name: args
rules:
  - {syscalls: [ioctl], args: [{index: 0, op: eq, value: 10}], action: return, value: 0}
  - {syscalls: [ioctl], args: [{index: 1, op: ne, value: 0}, {index: 0, op: lt, value: 3}], action: return, value: 1}
  - {syscalls: [ioctl], args: [{index: 2, op: le, value: 5}, {index: 0, op: ge, value: 100}], action: return, value: 2}
  - {syscalls: [ioctl], args: [{index: 3, op: gt, value: -2}], action: return, value: 3}
  - {syscalls: [ioctl], args: [{index: 5, op: masked_eq, mask: 0o170000, value: 0o020000}], action: return, value: 4}
  - {syscalls: [ioctl], action: return, value: -1}
)");
  auto result = [&](std::array<std::uint64_t, 6> args) {
    Call call;
    call.nr = SYS_ioctl;
    call.args = args;
    return decide(policy, call).value;
  };
  EXPECT_EQ(result({10, 0, 0, 0, 0, 0}), 0);
  EXPECT_EQ(result({2, 1, 0, 0, 0, 0}), 1);
  EXPECT_EQ(result({3, 1, 9, 0, 0, 0}), -1);  // lt is strict; le 5 fails
  EXPECT_EQ(result({2, 0, 9, 0, 0, 0}), -1);  // ne 0 fails
  EXPECT_EQ(result({100, 0, 5, 0, 0, 0}), 2);
  EXPECT_EQ(result({99, 0, 5, 0, 0, 0}), -1);
  EXPECT_EQ(result({101, 0, 6, 0, 0, 0}), -1);
  EXPECT_EQ(result({50, 0, 9, ~std::uint64_t{0}, 0, 0}), 3);  // gt -2: unsigned
  EXPECT_EQ(result({50, 0, 9, ~std::uint64_t{0} - 1, 0, 0}), -1);
  EXPECT_EQ(result({50, 0, 9, 0, 0, S_IFCHR | 0644}), 4);
  EXPECT_EQ(result({50, 0, 9, 0, 0, S_IFBLK | 0644}), -1);
  EXPECT_EQ(result({50, 0, 9, 0, 0, S_IFCHR | 0xffff0000ULL << 16}), 4);  // bits outside the mask
}

TEST(PolicyDecide, DeviceWildcards) {
  Policy policy = policy_ok(R"(
name: wild
rules:
  - syscalls: [mknod]
    match: {devices: ["5:*"]}
    action: emulate
  - syscalls: [mknod]
    match: {devices: ["*:7"]}
    action: kill
  - syscalls: [mknod]
    match: {devices: ["*:*", "4095:1048575"]}
    action: deny
)");
  EXPECT_EQ(decide(policy, chr(5, 0)).rule_index, 0);
  EXPECT_EQ(decide(policy, blk(5, 1048575)).rule_index, 0);
  EXPECT_EQ(decide(policy, chr(1, 7)).rule_index, 1);
  EXPECT_EQ(decide(policy, chr(5, 7)).rule_index, 0);
  EXPECT_EQ(decide(policy, chr(6, 8)).rule_index, 2);
  EXPECT_EQ(decide(policy, chr(0, 0)).rule_index, 2);
}

TEST(PolicyDecide, TypedMatchers) {
  Policy policy = policy_ok(R"(
name: typed
rules:
  - syscalls: [renameat2, openat]
    match: {path: ["/etc/*", "/root"]}
    action: deny
    errno: EACCES
  - syscalls: [renameat2, openat]
    action: kill
  - syscalls: [mount]
    match: {fstype: ["fuse.*", tmpfs], source: ["/dev/loop[0-9]"], target: ["/mnt/*"], flags: {set: [MS_RDONLY], clear: [MS_BIND]}}
    action: return
    value: 0
  - syscalls: [mount]
    action: deny
  - syscalls: [umount2]
    match: {flags: {clear: [MNT_FORCE]}}
    action: return
    value: 0
  - syscalls: [fsetxattr]
    match: {xattr: ["user.*"], value_size: {min: 1, max: 4096}}
    action: return
    value: 0
  - syscalls: [fsetxattr]
    action: deny
  - syscalls: [sched_setscheduler]
    match: {sched_policy: [SCHED_FIFO, SCHED_RR], priority: {max: 50}}
    action: return
    value: 0
  - syscalls: [setpriority]
    match: {nice: {min: -10, max: 19}}
    action: return
    value: 0
  - syscalls: [sched_setscheduler, setpriority]
    action: deny
)");
  auto rule = [&](const Call& call) { return decide(policy, call).rule_index; };
  // Paths: any of the call's paths against any pattern; `*` crosses `/`.
  EXPECT_EQ(rule(path_call(SYS_openat, {"/etc/shadow"})), 0);
  EXPECT_EQ(rule(path_call(SYS_openat, {"/etc/ssl/certs/x"})), 0);
  EXPECT_EQ(rule(path_call(SYS_openat, {"/root"})), 0);
  EXPECT_EQ(rule(path_call(SYS_openat, {"/root/x"})), 1);
  EXPECT_EQ(rule(path_call(SYS_openat, {"/etc"})), 1);
  EXPECT_EQ(rule(path_call(SYS_renameat2, {"/tmp/a", "/etc/passwd"})), 0);
  EXPECT_EQ(rule(path_call(SYS_renameat2, {"/tmp/a", "/tmp/b"})), 1);
  EXPECT_EQ(rule(path_call(SYS_openat, {})), 1);  // not decoded: does not hold
  EXPECT_EQ(decide(policy, path_call(SYS_openat, {"/etc/x"})).err, EACCES);

  Call mount;
  mount.nr = SYS_mount;
  mount.fstype = "fuse.sshfs";
  mount.source = "/dev/loop3";
  mount.target = "/mnt/data";
  mount.flags = MS_RDONLY | MS_NOSUID;
  EXPECT_EQ(rule(mount), 2);
  for (auto change : std::vector<std::function<void(Call&)>>{
           [](Call& c) { c.fstype = "ext4"; }, [](Call& c) { c.fstype.reset(); },
           [](Call& c) { c.source = "/dev/loop10"; }, [](Call& c) { c.source.reset(); },
           [](Call& c) { c.target = "/data"; }, [](Call& c) { c.target.reset(); },
           [](Call& c) { c.flags = MS_NOSUID; }, [](Call& c) { c.flags = MS_RDONLY | MS_BIND; },
           [](Call& c) { c.flags.reset(); }}) {
    Call changed = mount;
    change(changed);
    EXPECT_EQ(rule(changed), 3);
  }
  Call tmpfs = mount;
  tmpfs.fstype = "tmpfs";
  EXPECT_EQ(rule(tmpfs), 2);

  Call umount;
  umount.nr = SYS_umount2;
  umount.flags = MNT_DETACH;
  EXPECT_EQ(rule(umount), 4);
  umount.flags = MNT_DETACH | MNT_FORCE;
  EXPECT_EQ(rule(umount), -1);

  Call xattr;
  xattr.nr = SYS_fsetxattr;
  xattr.xattr_name = "user.mime";
  xattr.value_size = 4096;
  EXPECT_EQ(rule(xattr), 5);
  xattr.value_size = 4097;
  EXPECT_EQ(rule(xattr), 6);
  xattr.value_size = 0;
  EXPECT_EQ(rule(xattr), 6);
  xattr.value_size = ~std::uint64_t{0};
  EXPECT_EQ(rule(xattr), 6);
  xattr.value_size = 1;
  xattr.xattr_name = "trusted.x";
  EXPECT_EQ(rule(xattr), 6);

  Call sched;
  sched.nr = SYS_sched_setscheduler;
  sched.sched_policy = SCHED_FIFO;
  sched.priority = 50;
  EXPECT_EQ(rule(sched), 7);
  sched.priority = 51;
  EXPECT_EQ(rule(sched), 9);
  sched.priority = 1;
  sched.sched_policy = SCHED_OTHER;
  EXPECT_EQ(rule(sched), 9);
  sched.sched_policy.reset();
  EXPECT_EQ(rule(sched), 9);

  Call nice;
  nice.nr = SYS_setpriority;
  nice.nice = -10;
  EXPECT_EQ(rule(nice), 8);
  nice.nice = 19;
  EXPECT_EQ(rule(nice), 8);
  nice.nice = -11;
  EXPECT_EQ(rule(nice), 9);
  nice.nice.reset();
  EXPECT_EQ(rule(nice), 9);
}

TEST(PolicyDecide, ActionsCarryTheirValues) {
  Policy policy = policy_ok(R"(
name: actions
rules:
  - {syscalls: [read], action: deny, errno: ENOSYS, audit: true}
  - {syscalls: [write], action: return, value: -9223372036854775808}
  - {syscalls: [open], action: kill}
  - {syscalls: [close], action: kill-container}
  - {syscalls: [mknod], action: emulate}
  - {syscalls: [stat], action: allow, audit: true}
  - {syscalls: [lstat], action: deny}
)");
  auto call = [](int nr) {
    Call c;
    c.nr = nr;
    return c;
  };
  Decision d = decide(policy, call(SYS_read));
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.err, ENOSYS);
  EXPECT_TRUE(d.audit);
  d = decide(policy, call(SYS_write));
  EXPECT_EQ(d.action, Action::Return);
  EXPECT_EQ(d.value, std::numeric_limits<std::int64_t>::min());
  EXPECT_EQ(d.err, 0);
  EXPECT_EQ(decide(policy, call(SYS_open)).action, Action::Kill);
  EXPECT_EQ(decide(policy, call(SYS_close)).action, Action::KillContainer);
  EXPECT_EQ(decide(policy, call(SYS_mknod)).action, Action::Emulate);
  d = decide(policy, call(SYS_stat));
  EXPECT_EQ(d.action, Action::Allow);
  EXPECT_TRUE(d.audit);
  EXPECT_EQ(d.rule_index, 5);
  EXPECT_EQ(decide(policy, call(SYS_lstat)).err, EPERM);
}

// --- the syscall table ---------------------------------------------------------------------------

TEST(SyscallTable, Rows) {
  const SyscallInfo* mknod = syscall_info(SYS_mknod);
  ASSERT_NE(mknod, nullptr);
  EXPECT_EQ(mknod->name, "mknod");
  EXPECT_EQ(mknod->family, Family::Mknod);
  EXPECT_TRUE(mknod->emulator);
  EXPECT_EQ(mknod->fields, kFieldDevice | kFieldPath);
  EXPECT_EQ(mknod->paths[0].dirfd, kNoArg);
  EXPECT_EQ(mknod->paths[0].path, 0);
  EXPECT_EQ(mknod->paths[1].path, kNoArg);
  const SyscallInfo* mknodat = syscall_info(SYS_mknodat);
  ASSERT_NE(mknodat, nullptr);
  EXPECT_TRUE(mknodat->emulator);
  EXPECT_EQ(mknodat->paths[0].dirfd, 0);
  EXPECT_EQ(mknodat->paths[0].path, 1);

  const SyscallInfo* mount = syscall_info(SYS_mount);
  ASSERT_NE(mount, nullptr);
  EXPECT_TRUE(mount->emulator);
  EXPECT_EQ(mount->paths[0].path, 1);
  EXPECT_EQ(mount->fields, kFieldSource | kFieldTarget | kFieldFstype | kFieldFlags | kFieldPath);
  const SyscallInfo* fsetxattr = syscall_info(SYS_fsetxattr);
  ASSERT_NE(fsetxattr, nullptr);
  EXPECT_EQ(fsetxattr->paths[0].dirfd, 0);
  EXPECT_EQ(fsetxattr->paths[0].path, kPathIsFd);
  EXPECT_EQ(fsetxattr->fields & kFieldValueSize, kFieldValueSize);
  const SyscallInfo* renameat = syscall_info(SYS_renameat);
  ASSERT_NE(renameat, nullptr);
  EXPECT_EQ(renameat->paths[1].dirfd, 2);
  EXPECT_EQ(renameat->paths[1].path, 3);
  const SyscallInfo* symlinkat = syscall_info(SYS_symlinkat);
  ASSERT_NE(symlinkat, nullptr);
  EXPECT_EQ(symlinkat->paths[0].dirfd, 1);
  EXPECT_EQ(symlinkat->paths[0].path, 2);
  const SyscallInfo* watch = syscall_info(SYS_inotify_add_watch);
  ASSERT_NE(watch, nullptr);
  EXPECT_EQ(watch->paths[0].dirfd, kNoArg);
  EXPECT_EQ(watch->paths[0].path, 1);
  EXPECT_EQ(syscall_info(SYS_sched_setattr)->fields, kFieldSched);
  EXPECT_EQ(syscall_info(SYS_setpriority)->family, Family::Sched);
  EXPECT_EQ(syscall_info(SYS_read), nullptr);
  EXPECT_EQ(syscall_info(-1), nullptr);
  EXPECT_EQ(syscall_info(100000), nullptr);
}

TEST(SyscallTable, NamesAgreeWithLibseccompAndEmulatorsAreMarked) {
  const std::set<int> emulated{
      SYS_mknod,         SYS_mknodat,      SYS_sysinfo,   SYS_setpriority, SYS_sched_setscheduler,
      SYS_sched_setattr, SYS_setxattr,     SYS_lsetxattr, SYS_fsetxattr,   SYS_removexattr,
      SYS_lremovexattr,  SYS_fremovexattr, SYS_mount,     SYS_umount2,     SYS_getxattr,
      SYS_lgetxattr,     SYS_fgetxattr,    SYS_listxattr, SYS_llistxattr,  SYS_flistxattr};
  int rows = 0;
  for (int nr = -5; nr < 1024; ++nr) {
    const SyscallInfo* info = syscall_info(nr);
    if (info == nullptr) {
      continue;
    }
    ++rows;
    EXPECT_EQ(info->nr, nr);
    EXPECT_EQ(syscall_from_name(info->name), nr) << info->name;
    EXPECT_EQ(info->emulator, emulated.contains(nr)) << info->name;
    EXPECT_TRUE(info->fields != 0u || nr == SYS_sysinfo) << info->name;
    // Every row with a path matcher says where its path is.
    EXPECT_EQ((info->fields & kFieldPath) != 0, info->paths[0].path != kNoArg) << info->name;
  }
  EXPECT_EQ(rows, 67);
}

// --- glob matching ----------------------------------------------------------------------------

// decide()'s own glob matcher must agree with fnmatch(3) without flags (it exists to stay linear).
TEST(PolicyGlob, AgreesWithFnmatch) {
  std::mt19937 rng(7);
  const char alphabet[] = "ab/.*?[]!^-\\";
  std::uniform_int_distribution<std::size_t> pick(0, sizeof(alphabet) - 2);
  std::uniform_int_distribution<int> length(0, 8);
  int checked = 0;
  for (int round = 0; round < 6000; ++round) {
    std::string pattern = "/";
    std::string text = "/";
    for (int i = length(rng); i > 0; --i) {
      pattern += alphabet[pick(rng)];
    }
    for (int i = length(rng); i > 0; --i) {
      text += "ab/.x-"[pick(rng) % 6];
    }
    std::string yaml = "name: g\nrules:\n  - syscalls: [openat]\n    match: {path: ['" + pattern +
                       "']}\n    action: deny\n  - {syscalls: [openat], action: kill}\n";
    auto parsed = parse_policy(yaml, "g.yaml");
    if (!parsed) {
      continue;  // a quote or such in the pattern
    }
    std::vector<Policy> one;
    one.push_back(std::move(*parsed));
    auto result = resolve(std::move(one));
    ASSERT_TRUE(result.has_value());
    const bool ours = decide(*result->policies.at("g"), path_call(SYS_openat, {text})).rule_index == 0;
    const bool theirs = fnmatch(pattern.c_str(), text.c_str(), 0) == 0;
    ASSERT_EQ(ours, theirs) << "pattern " << pattern << " text " << text;
    ++checked;
  }
  EXPECT_GT(checked, 3000);
}

TEST(PolicyGlob, StaysFastOnHostilePaths) {
  std::string pattern = "/";
  for (int i = 0; i < 30; ++i) {
    pattern += "*a";
  }
  pattern += "b";
  Policy policy = policy_ok("name: g\nrules:\n  - syscalls: [openat]\n    match: {path: ['" + pattern +
                            "']}\n    action: deny\n  - {syscalls: [openat], action: kill}\n");
  const auto start = std::chrono::steady_clock::now();
  EXPECT_EQ(decide(policy, path_call(SYS_openat, {"/" + std::string(4096, 'a')})).rule_index, 1);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(1));
}

// --- hostile input ---------------------------------------------------------------------------

TEST(PolicyHostile, EmptyAndNonMappingDocuments) {
  expect_one_error("", ErrorCode::WrongType, 1, 1);
  expect_one_error("# just a comment\n", ErrorCode::WrongType, 1, 1);
  expect_one_error("---\n", ErrorCode::WrongType, 2, 1);
  expect_one_error("hello\n", ErrorCode::WrongType, 1, 1);
  expect_one_error("- name: p\n  rules: []\n", ErrorCode::WrongType, 1, 1);
}

// yaml-cpp 0.7's LoadAll() never returns on these (jbeder/yaml-cpp#1040).
TEST(PolicyHostile, StrayCommaAtTopLevel) {
  expect_one_error(",", ErrorCode::YamlParse, 1, 1);
  expect_one_error(", name: p\n", ErrorCode::YamlParse, 1, 1);
  expect_one_error("name: p\nrules: []\n...\n,\n", ErrorCode::YamlParse, 4, 1);
}

TEST(PolicyHostile, MultipleDocuments) {
  auto errors = parse_errors("name: p\nrules: []\n---\nname: q\nrules: []\n---\nx\n");
  ASSERT_EQ(errors.size(), 2u) << describe(errors);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[1].pos.line, 6);
}

TEST(PolicyHostile, DeepNesting) {
  for (const std::string& yaml :
       {std::string(100000, '['), std::string(100000, '[') + std::string(100000, ']'),
        std::string(100000, '{'), "name: p\nrules: " + std::string(100000, '['),
        "name: p\nrules:\n  - match: " + std::string(100000, '{')}) {
    auto errors = parse_errors(yaml);
    ASSERT_FALSE(errors.empty());
    EXPECT_EQ(errors[0].code, ErrorCode::YamlParse) << describe(errors);
  }
  std::string block;
  for (int i = 0; i < 3000; ++i) {
    block += std::string(static_cast<std::size_t>(i), ' ') + "- \n";
  }
  EXPECT_FALSE(parse_policy(block, "test.yaml").has_value());
}

TEST(PolicyHostile, HugeNumbers) {
  expect_one_error(
      one_rule("syscalls: [mknod]\n    match: {devices: [99999999999999999999]}\n    action: deny\n"),
      ErrorCode::BadValue, 4, 23);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    args: [{index: 99999999999999999999999, op: eq, value: 1}]\n"
               "    action: deny\n"),
      ErrorCode::BadValue, 4, 20);
  expect_one_error(one_rule("syscalls: [ioctl]\n    action: return\n    value: 9223372036854775808\n"),
                   ErrorCode::BadValue, 5, 12);
  expect_one_error(
      one_rule("syscalls: [ioctl]\n    action: return\n    value: " + std::string(5000, '9') + "\n"),
      ErrorCode::BadValue, 5, 12);
}

TEST(PolicyHostile, AliasLoopsAndBombs) {
  // yaml-cpp registers an anchor before its node is complete, so these are cycles.
  auto errors = parse_errors("name: p\nrules: &r [*r]\n");
  EXPECT_EQ(errors[0].code, ErrorCode::WrongType) << describe(errors);
  EXPECT_FALSE(parse_policy("&m {name: p, rules: [*m]}\n", "test.yaml").has_value());
  EXPECT_FALSE(parse_policy("name: p\nrules: [*undefined]\n", "test.yaml").has_value());
  EXPECT_FALSE(
      parse_policy("name: p\nrules:\n  - &r {syscalls: [mknod], match: *r, action: deny}\n", "t.yaml"));
  EXPECT_FALSE(parse_policy("name: p\nrules:\n  - {syscalls: &s [mknod, *s], action: deny}\n", "t.yaml"));
  // A billion laughs: aliases are shared nodes, and the reader never expands unknown structure.
  std::string bomb = "a: &a [x, x, x, x, x, x, x, x, x, x]\n";
  for (char c = 'b'; c <= 'j'; ++c) {
    bomb += std::string(1, c) + ": &" + c + " [";
    for (int i = 0; i < 10; ++i) {
      bomb += std::string(i ? ", " : "") + "*" + static_cast<char>(c - 1);
    }
    bomb += "]\n";
  }
  const auto start = std::chrono::steady_clock::now();
  errors = parse_errors(bomb + "name: p\nrules:\n  - {syscalls: *j, action: deny}\n");
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(2));
  ASSERT_FALSE(errors.empty());
}

TEST(PolicyHostile, HugeInputIsRefusedQuickly) {
  const auto start = std::chrono::steady_clock::now();
  std::string big(10 << 20, 'a');
  auto errors = parse_errors(big);
  ASSERT_EQ(errors.size(), 1u);
  EXPECT_EQ(errors[0].code, ErrorCode::BadValue);
  // Just under the limit, with a huge rule list and many errors: bounded output, still quick.
  std::string many = "name: p\nrules:\n";
  while (many.size() < (250 << 10)) {
    many += "  - {syscalls: [opne], action: deny}\n";
  }
  errors = parse_errors(many);
  EXPECT_LE(errors.size(), 101u);
  std::string flows = "name: p\nrules: [";
  while (flows.size() < (250 << 10)) {
    flows += "{a: [b, {c: d}]}, ";
  }
  errors = parse_errors(flows + "]\n");
  EXPECT_LE(errors.size(), 101u);
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(10));
}

TEST(PolicyHostile, GarbageBytes) {
  std::mt19937 rng(42);
  std::uniform_int_distribution<int> byte(0, 255);
  for (int round = 0; round < 300; ++round) {
    std::string text(static_cast<std::size_t>(round * 7 + 1), '\0');
    for (char& c : text) {
      c = static_cast<char>(byte(rng));
    }
    auto policy = parse_policy(text, "garbage.yaml");
    ASSERT_FALSE(policy.has_value());
    ASSERT_FALSE(policy.error().empty());
  }
  // YAML-ish garbage: random picks of YAML's punctuation and the format's keywords.
  const char* pieces[] = {"name", "rules", ":",      " ",    "\n",    "- ",       "[",      "]",
                          "{",    "}",     ",",      "&a ",  "*a ",   "!!str ",   "? ",     "|",
                          ">",    "\"",    "'",      "#",    "---\n", "...\n",    "mknod",  "1:3",
                          "\t",   "args",  "index",  "op",   "match", "path",     "flags",  "include",
                          "0x",   "-1",    "\"/*\"", "deny", "allow", "syscalls", "action", "%YAML 1.2\n"};
  std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1);
  for (int round = 0; round < 3000; ++round) {
    std::string text;
    for (int i = 0; i < 40; ++i) {
      text += pieces[pick(rng)];
    }
    auto policy = parse_policy(text, "garbage.yaml");
    if (!policy) {
      ASSERT_FALSE(policy.error().empty());
      continue;
    }
    std::vector<Policy> one;
    one.push_back(std::move(*policy));
    (void)resolve(std::move(one));
  }
}

// --- files and directories --------------------------------------------------------------------

TEST(PolicyFiles, Io) {
  TempDir dir;
  auto missing = load_policy_file(dir.path() / "missing.yaml");
  ASSERT_FALSE(missing.has_value());
  ASSERT_EQ(missing.error().size(), 1u);
  EXPECT_EQ(missing.error()[0].code, ErrorCode::Io);
  EXPECT_EQ(missing.error()[0].pos.file, (dir.path() / "missing.yaml").string());
  EXPECT_EQ(missing.error()[0].pos.line, 0);

  auto directory = load_policy_file(dir.path());
  ASSERT_FALSE(directory.has_value());
  EXPECT_EQ(directory.error()[0].code, ErrorCode::Io);

  auto device = load_policy_file("/dev/zero");  // never ends: refused, not read
  ASSERT_FALSE(device.has_value());
  EXPECT_EQ(device.error()[0].code, ErrorCode::Io);

  auto no_dir = load_policy_dir(dir.path() / "nope");
  ASSERT_FALSE(no_dir.has_value());
  ASSERT_EQ(no_dir.error().size(), 1u);
  EXPECT_EQ(no_dir.error()[0].code, ErrorCode::Io);
}

TEST(PolicyFiles, LoadsDirectorySortedSkippingCases) {
  TempDir dir;
  dir.write("b.yml", "name: bee\ninclude: [ay]\nrules: []\n");
  dir.write("a.yaml", "name: ay\nrules: []\n");
  dir.write("notes.txt", "not a policy");
  dir.write("c.yaml.bak", "also not: [");
  dir.write("a.cases.yaml", "cases: [");
  dir.write("b.cases.yml", "- {}");
  std::filesystem::create_directory(dir.path() / "sub.yaml");
  auto result = load_policy_dir(dir.path());
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  ASSERT_EQ(result->policies.size(), 2u);
  EXPECT_EQ(result->policies.at("ay")->pos.file, (dir.path() / "a.yaml").string());
  EXPECT_EQ(result->policies.at("bee")->pos.file, (dir.path() / "b.yml").string());
  EXPECT_FALSE(result->policies.at("bee")->version.empty());

  TempDir empty;
  auto none = load_policy_dir(empty.path());
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->policies.empty());
}

TEST(PolicyFiles, DirectoryReportsAllErrors) {
  TempDir dir;
  dir.write("2-second.yaml", "# again\ndescription: x\nname: same\nrules: []\n");
  dir.write("1-first.yaml", "name: same\nrules: []\n");
  dir.write("3-broken.yaml", "name: other\nrules: {}\n");
  dir.write("4-unsafe.yaml",
            "name: unsafe\nrules:\n  - {syscalls: [openat], match: {path: [\"/x\"]}, action: allow}\n");
  auto result = load_policy_dir(dir.path());
  ASSERT_FALSE(result.has_value());
  const auto& errors = result.error();
  ASSERT_EQ(errors.size(), 3u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::WrongType);
  EXPECT_EQ(errors[0].pos.file, (dir.path() / "3-broken.yaml").string());
  EXPECT_EQ(errors[1].code, ErrorCode::DuplicatePolicy);
  EXPECT_EQ(errors[1].pos.file, (dir.path() / "2-second.yaml").string());
  EXPECT_EQ(errors[1].pos.line, 3);
  EXPECT_NE(errors[1].message.find("1-first.yaml:1:1"), std::string::npos) << errors[1].message;
  EXPECT_EQ(errors[2].code, ErrorCode::UnsafeAllow);
}

TEST(PolicyFiles, NamedFilesFindIncludesAmongSiblingsOnly) {
  TempDir dir;
  dir.write("top.yaml", "name: top\ninclude: [base, extra]\nrules: []\n");
  dir.write("base.yaml", "name: base\nrules:\n  - {syscalls: [mknod], action: deny}\n");
  dir.write("zz-extra-under-another-name.yaml",
            "name: extra\nrules:\n  - {syscalls: [mknodat], action: kill}\n");
  dir.write("broken.yaml", "name: broken\nrules: {\n");  // unrelated: must not fail the check
  dir.write("unsafe.yaml",
            "name: unsafe\nrules:\n  - {syscalls: [openat], match: {path: [\"/x\"]}, action: allow}\n");
  auto result = load_policy_files({dir.path() / "top.yaml"});
  ASSERT_TRUE(result.has_value()) << describe(result.error());
  EXPECT_EQ(result->policies.size(), 3u);
  const Policy& top = *result->policies.at("top");
  ASSERT_EQ(top.rules.size(), 2u);
  EXPECT_EQ(top.rules[0].origin, "base");
  EXPECT_EQ(top.rules[1].origin, "extra");

  // A broken file named after the include is reported; an unknown include is BadInclude.
  TempDir other;
  other.write("top.yaml", "name: top\ninclude: [base]\nrules: []\n");
  other.write("base.yaml", "name: base\nrules: [\n");
  auto broken = load_policy_files({other.path() / "top.yaml"});
  ASSERT_FALSE(broken.has_value());
  EXPECT_EQ(broken.error()[0].code, ErrorCode::YamlParse) << describe(broken.error());
  EXPECT_EQ(broken.error()[0].pos.file, (other.path() / "base.yaml").string());
  other.write("base.yaml", "name: not-base\nrules: []\n");
  auto unknown = load_policy_files({other.path() / "top.yaml"});
  ASSERT_FALSE(unknown.has_value());
  ASSERT_EQ(unknown.error().size(), 1u) << describe(unknown.error());
  EXPECT_EQ(unknown.error()[0].code, ErrorCode::BadInclude);
  EXPECT_EQ(unknown.error()[0].pos.line, 2);

  // Two named files that define one name; a named file given twice is loaded once.
  TempDir twice;
  twice.write("a.yaml", "name: same\nrules: []\n");
  twice.write("b.yaml", "name: same\nrules: []\n");
  auto duplicate = load_policy_files({twice.path() / "a.yaml", twice.path() / "b.yaml"});
  ASSERT_FALSE(duplicate.has_value());
  EXPECT_EQ(duplicate.error()[0].code, ErrorCode::DuplicatePolicy);
  // (Alone in its directory: beside b.yaml, a.yaml's name is taken, which the check now says.)
  TempDir alone;
  alone.write("a.yaml", "name: same\nrules: []\n");
  auto once = load_policy_files({alone.path() / "a.yaml", alone.path() / "a.yaml"});
  ASSERT_TRUE(once.has_value()) << describe(once.error());
}

// --- errno names ----------------------------------------------------------------------------

TEST(PolicyErrno, RoundTrip) {
  int named = 0;
  for (int err = 1; err <= EHWPOISON; ++err) {
    if (err == 41 || err == 58) {
      continue;  // unused on Linux (EWOULDBLOCK and EDEADLOCK are aliases of 11 and 35)
    }
    const char* name = errno_name(err);
    ASSERT_STRNE(name, "E?") << err;
    EXPECT_EQ(errno_from_name(name), err) << name;
    ++named;
  }
  EXPECT_EQ(named, 131);
  EXPECT_STREQ(errno_name(41), "E?");
  EXPECT_EQ(errno_from_name("EPERM"), EPERM);
  EXPECT_EQ(errno_from_name("ENOTSUP"), EOPNOTSUPP);
  EXPECT_EQ(errno_from_name("EWOULDBLOCK"), EAGAIN);
  EXPECT_STREQ(errno_name(EAGAIN), "EAGAIN");
  EXPECT_STREQ(errno_name(EOPNOTSUPP), "EOPNOTSUPP");
  EXPECT_FALSE(errno_from_name("eperm").has_value());
  EXPECT_FALSE(errno_from_name("").has_value());
  EXPECT_STREQ(errno_name(0), "E?");
  EXPECT_STREQ(errno_name(-1), "E?");
}

// ---- an author's small traps (issue "Policy authoring, round two", item 6) ----

TEST(PolicyAuthoring, ATypoGetsADidYouMean) {
  auto key = parse_errors(one_rule("syscalls: [mknod]\n    acton: deny\n"));
  ASSERT_FALSE(key.empty());
  EXPECT_NE(key[0].message.find("unknown key `acton` in rule 1; did you mean `action`?"), std::string::npos)
      << key[0].message;
  auto err = parse_errors(one_rule("syscalls: [mknod]\n    action: deny\n    errno: EACCESS\n"));
  ASSERT_EQ(err.size(), 1u) << describe(err);
  EXPECT_NE(err[0].message.find("unknown errno name `EACCESS`; did you mean `EACCES`?"), std::string::npos)
      << err[0].message;
  auto action = parse_errors(one_rule("syscalls: [mknod]\n    action: dney\n"));
  ASSERT_EQ(action.size(), 1u) << describe(action);
  EXPECT_NE(action[0].message.find("did you mean `deny`?"), std::string::npos) << action[0].message;
  // Nothing near: no guess.
  auto far = parse_errors(one_rule("syscalls: [mknod]\n    action: deny\n    errno: NOTHINGLIKEIT\n"));
  ASSERT_EQ(far.size(), 1u) << describe(far);
  EXPECT_EQ(far[0].message.find("did you mean"), std::string::npos) << far[0].message;
}

TEST(PolicyAuthoring, EveryUnknownNameGetsAGuess) {
  struct Typo {
    std::string rule;
    std::string says;
  };
  for (const Typo& t : {
           Typo{"syscalls: [opne]\n    action: deny\n", "x86_64 syscall of that name; did you mean `open`?"},
           Typo{"syscalls: [mknodd]\n    action: deny\n", "did you mean `mknod`?"},
           Typo{"syscalls: [mknod]\n    args: [{index: 0, op: masked_qe, value: 1, mask: 1}]\n    action: "
                "deny\n",
                "unknown op `masked_qe`; did you mean `masked_eq`?"},
           Typo{"syscalls: [mknod]\n    match: {type: chr}\n    action: deny\n",
                "unknown file type `chr`; did you mean `char`?"},
           Typo{"syscalls: [mount]\n    match: {flags: {set: [MS_RDONY]}}\n    action: deny\n",
                "unknown flag `MS_RDONY`; did you mean `MS_RDONLY`?"},
           Typo{"syscalls: [umount2]\n    match: {flags: {set: [MNT_DETATCH]}}\n    action: deny\n",
                "did you mean `MNT_DETACH`?"},
           Typo{"syscalls: [sched_setscheduler]\n    match: {sched_policy: [SCHED_FIF0]}\n    action: deny\n",
                "unknown scheduling policy `SCHED_FIF0`; did you mean `SCHED_FIFO`?"},
           Typo{"syscalls: [mknod]\n    match: {devcies: [\"1:3\"]}\n    action: deny\n",
                "did you mean `devices`?"},
       }) {
    auto errors = parse_errors(one_rule(t.rule));
    ASSERT_FALSE(errors.empty()) << t.rule;
    EXPECT_NE(errors[0].message.find(t.says), std::string::npos) << t.rule << ": " << errors[0].message;
  }
  // Nothing near: no guess.
  auto far = parse_errors(one_rule("syscalls: [frobnicate]\n    action: deny\n"));
  ASSERT_FALSE(far.empty());
  EXPECT_EQ(far[0].message.find("did you mean"), std::string::npos) << far[0].message;
}

TEST(PolicyAuthoring, TheGuessIgnoresCaseAndCountsASwapOnce) {
  auto upper = parse_errors(one_rule("syscalls: [mknod]\n    Action: deny\n"));
  ASSERT_FALSE(upper.empty());
  EXPECT_NE(upper[0].message.find("did you mean `action`?"), std::string::npos) << upper[0].message;
  auto swapped = parse_errors(one_rule("syscalls: [mknod]\n    action: deny\n    erron: EPERM\n"));
  ASSERT_FALSE(swapped.empty());
  EXPECT_NE(swapped[0].message.find("did you mean `errno`?"), std::string::npos) << swapped[0].message;
}

TEST(PolicyAuthoring, ATabInTheIndentationIsNamed) {
  auto errors = parse_errors("name: p\nrules:\n  - syscalls: [mknod]\n\t  action: deny\n");
  ASSERT_FALSE(errors.empty());
  EXPECT_EQ(errors[0].code, ErrorCode::YamlParse);
  EXPECT_EQ(errors[0].format(),
            "test.yaml:4:1: tabs are not allowed for indentation in YAML: use spaces (the parser: end of "
            "sequence not found at line 4)");
  // A tab under a key, in a flow list's line, in the first line: each at the tab.
  for (const auto& [text, where] : std::vector<std::pair<std::string, std::string>>{
           {"name: p\n\trules: []\n", "test.yaml:2:1: "},
           {"name: p\nrules:\n  - syscalls: [mknod]\n    action: deny\n  \terrno: EPERM\n",
            "test.yaml:5:3: "},
           {"name: p\nrules:\n\t- syscalls: [mknod]\n\t  action: deny\n", "test.yaml:3:1: "},
       }) {
    auto e = parse_errors(text);
    ASSERT_FALSE(e.empty()) << text;
    EXPECT_EQ(e[0].format().substr(0, where.size()), where) << e[0].format();
    EXPECT_NE(e[0].message.find("tabs are not allowed for indentation in YAML: use spaces"),
              std::string::npos)
        << e[0].message;
  }
  // An error without a position (not the parser's own) is left alone, a tab or not.
  LoadError unplaced{ErrorCode::YamlParse, "YAML nested too deeply", Position{"test.yaml", 0, 0}};
  explain_tab(unplaced, "name: p\n\trules: []\n");
  EXPECT_EQ(unplaced.format(), "test.yaml: YAML nested too deeply");
  // A tab after a key is no indentation (and fine): no such word on another error.
  auto other = parse_errors("name:\tp\nrules: [\n");
  ASSERT_FALSE(other.empty());
  EXPECT_EQ(other[0].message.find("tabs"), std::string::npos) << other[0].message;
}

TEST(PolicyAuthoring, AnUnquotedDeviceIsRefusedForItsTwoMeanings) {
  auto errors = parse_errors(one_rule("syscalls: [mknod]\n    match: {devices: [1:3]}\n    action: deny\n"));
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::BadValue);
  EXPECT_NE(errors[0].message.find("device 1:3 must be quoted (\"1:3\")"), std::string::npos)
      << errors[0].message;
  // Exactly what a YAML 1.1 reader makes a number of (so the schema and the loader agree).
  for (const char* number : {"10:20", "1:03", "4095:59", "8:0"}) {
    auto e = parse_errors(one_rule(std::string("syscalls: [mknod]\n    match: {devices: [") + number +
                                   "]}\n    action: deny\n"));
    ASSERT_EQ(e.size(), 1u) << number;
    EXPECT_NE(e[0].message.find("must be quoted"), std::string::npos) << e[0].message;
  }
  for (const char* string : {"0:3", "1:75", "1:60", "10:200", "01:3"}) {
    EXPECT_TRUE(parse_policy(one_rule(std::string("syscalls: [mknod]\n    match: {devices: [") + string +
                                      "]}\n    action: deny\n"),
                             "test.yaml"))
        << string << " is a string to YAML 1.1 readers too";
  }
  // Quoted, and a wildcard (a string to every reader), are fine.
  EXPECT_TRUE(parse_policy(
      one_rule("syscalls: [mknod]\n    match: {devices: [\"1:3\", \"1:*\"]}\n    action: deny\n"),
      "test.yaml"));
}

TEST(PolicyAuthoring, AnOversizedFileIsReportedWithItsRealSize) {
  TempDir dir;
  const std::string big = "name: p\nrules: []\n#" + std::string(1048671 - 19, 'x') + "\n";
  dir.write("big.yaml", big);
  auto loaded = load_policy_files({dir.path() / "big.yaml"});
  ASSERT_FALSE(loaded);
  EXPECT_EQ(loaded.error()[0].message, "the file is " + std::to_string(big.size()) +
                                           " bytes, more than the limit of 262144 bytes (256 KiB)");
  // A case file is as bounded, and says the same.
  auto read = read_input((dir.path() / "big.yaml").string());
  ASSERT_FALSE(read);
  EXPECT_EQ(read.error().code, ErrorCode::BadValue);
  EXPECT_EQ(read.error().message, loaded.error()[0].message);
  // Parsed from memory: the same words.
  auto parsed = parse_errors(big);
  ASSERT_FALSE(parsed.empty());
  EXPECT_EQ(parsed[0].message, loaded.error()[0].message);
}

TEST(PolicyAuthoring, CheckingOneFileFindsItsNameTakenInItsDirectory) {
  TempDir dir;
  dir.write("old.yaml", "name: web\nrules: []\n");
  dir.write("new.yaml", "name: web\nrules: []\n");
  dir.write("other.yaml", "name: other\nrules: []\n");
  auto loaded = load_policy_files({dir.path() / "new.yaml"});
  ASSERT_FALSE(loaded);
  ASSERT_EQ(loaded.error().size(), 1u) << describe(loaded.error());
  EXPECT_EQ(loaded.error()[0].code, ErrorCode::DuplicatePolicy);
  EXPECT_EQ(loaded.error()[0].pos.file, (dir.path() / "new.yaml").string());
  EXPECT_NE(loaded.error()[0].message.find("also defined in `" + (dir.path() / "old.yaml").string() + "`"),
            std::string::npos)
      << loaded.error()[0].message;
  EXPECT_TRUE(load_policy_files({dir.path() / "other.yaml"}));
  // The whole directory: one error that names both files.
  auto all = load_policy_dir(dir.path());
  ASSERT_FALSE(all);
  ASSERT_EQ(all.error().size(), 1u) << describe(all.error());
  EXPECT_NE(all.error()[0].message.find("is defined twice"), std::string::npos) << all.error()[0].message;
}

TEST(PolicyAuthoring, ADuplicateNameIsBlamedOnTheFileNotInForce) {
  TempDir dir;
  dir.write("web.yaml", "name: web\nrules: []\n");    // in force
  dir.write("a-web.yaml", "name: web\nrules: []\n");  // just added, sorted first
  const std::string old_file = (dir.path() / "web.yaml").string();
  const std::string new_file = (dir.path() / "a-web.yaml").string();
  auto reload = load_policy_dir(dir.path(), InForce{{"web", old_file}});
  ASSERT_FALSE(reload);
  ASSERT_EQ(reload.error().size(), 1u) << describe(reload.error());
  EXPECT_EQ(reload.error()[0].code, ErrorCode::DuplicatePolicy);
  EXPECT_EQ(reload.error()[0].pos.file, new_file);
  EXPECT_EQ(reload.error()[0].message, "policy `web` is defined twice: in `" + new_file + "` and in `" +
                                           old_file + "` (" + old_file +
                                           ":1:1), whose policy is in force; a policy name must be "
                                           "unique: rename one");
  // Nothing in force (a start): the later file, still naming both.
  auto start = load_policy_dir(dir.path());
  ASSERT_FALSE(start);
  ASSERT_EQ(start.error().size(), 1u) << describe(start.error());
  EXPECT_EQ(start.error()[0].pos.file, old_file);
  EXPECT_NE(start.error()[0].message.find("in `" + old_file + "` and in `" + new_file + "`"),
            std::string::npos)
      << start.error()[0].message;
  // Three files, the one in force in the middle: both others blamed, each beside it.
  dir.write("z-web.yaml", "name: web\nrules: []\n");
  auto three = load_policy_dir(dir.path(), InForce{{"web", old_file}});
  ASSERT_FALSE(three);
  ASSERT_EQ(three.error().size(), 2u) << describe(three.error());
  for (const auto& e : three.error()) {
    EXPECT_NE(e.pos.file, old_file);
    EXPECT_NE(e.message.find("and in `" + old_file + "`"), std::string::npos) << e.message;
  }
}

TEST(PolicyAuthoring, ADiagnosticCarriesItsCode) {
  auto errors = parse_errors(one_rule("syscalls: [mknod]\n    acton: deny\n"));
  ASSERT_FALSE(errors.empty());
  EXPECT_NE(errors[0].diagnostic().find("test.yaml:4:5: error: [unknown-key] unknown key `acton`"),
            std::string::npos)
      << errors[0].diagnostic();
}

}  // namespace
}  // namespace sysvisor::policy
