// Policy v1: parsing, every error code with its position, decisions, hostile input.
#include "sysvisor/policy.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <vector>

namespace sysvisor::policy {
namespace {

const std::filesystem::path kShippedPolicy =
    std::filesystem::path(SYSVISOR_SOURCE_DIR) / "policies" / "rootless-devices.yaml";

Policy parse_ok(std::string_view yaml) {
  auto policy = parse_policy(yaml, "test.yaml");
  if (!policy) {
    for (const auto& error : policy.error()) {
      ADD_FAILURE() << error.format();
    }
    return {};
  }
  return std::move(*policy);
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

std::string describe(const std::vector<LoadError>& errors) {
  std::string text;
  for (const auto& error : errors) {
    text += std::string(to_string(error.code)) + " " + error.format() + "\n";
  }
  return text;
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

MknodArgs chr(std::uint32_t major, std::uint32_t minor, Syscall syscall = Syscall::Mknod) {
  return MknodArgs{syscall, FileType::Char, major, minor};
}
MknodArgs blk(std::uint32_t major, std::uint32_t minor, Syscall syscall = Syscall::Mknod) {
  return MknodArgs{syscall, FileType::Block, major, minor};
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

TEST(PolicyShipped, Parses) {
  auto policy = load_policy_file(kShippedPolicy);
  ASSERT_TRUE(policy.has_value()) << describe(policy.error());
  EXPECT_EQ(policy->name, "rootless-devices");
  EXPECT_FALSE(policy->description.empty());
  ASSERT_EQ(policy->rules.size(), 3u);
  EXPECT_EQ(policy->rules[0].name, "harmless-char-devices");
  EXPECT_EQ(policy->rules[0].action, Action::Emulate);
  EXPECT_EQ(policy->rules[0].devices.size(), 7u);
  EXPECT_EQ(policy->rules[1].action, Action::Allow);
  EXPECT_EQ(policy->rules[2].action, Action::Deny);
  EXPECT_EQ(policy->pos.file, kShippedPolicy.string());
  EXPECT_GT(policy->pos.line, 1);  // the name comes after the header comment
}

TEST(PolicyShipped, Decisions) {
  auto policy = load_policy_file(kShippedPolicy);
  ASSERT_TRUE(policy.has_value()) << describe(policy.error());

  for (auto [major, minor] :
       {std::pair{1u, 3u}, {1u, 5u}, {1u, 7u}, {1u, 8u}, {1u, 9u}, {5u, 0u}, {5u, 1u}}) {
    for (Syscall syscall : {Syscall::Mknod, Syscall::Mknodat}) {
      Decision d = decide(*policy, chr(major, minor, syscall));
      EXPECT_EQ(d.action, Action::Emulate) << major << ":" << minor;
      EXPECT_TRUE(d.audit);
      EXPECT_EQ(d.rule_index, 0);
    }
  }

  Decision whiteout = decide(*policy, chr(0, 0));
  EXPECT_EQ(whiteout.action, Action::Allow);
  EXPECT_FALSE(whiteout.audit);
  EXPECT_EQ(whiteout.rule_index, 1);

  // The same numbers as a block device, other minors of harmless majors, real disks.
  for (MknodArgs args :
       {blk(1, 3), blk(0, 0), chr(1, 1), chr(5, 2), chr(1, 4), blk(8, 0), chr(4095, 1048575)}) {
    Decision d = decide(*policy, args);
    EXPECT_EQ(d.action, Action::Deny) << args.major << ":" << args.minor;
    EXPECT_EQ(d.err, EPERM);
    EXPECT_TRUE(d.audit);
    EXPECT_EQ(d.rule_index, 2);
  }
}

// --- decisions ----------------------------------------------------------------------------

TEST(PolicyDecide, FirstMatchWins) {
  Policy policy = parse_ok(R"(
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
  ASSERT_EQ(policy.rules.size(), 3u);

  Decision d = decide(policy, chr(1, 3));
  EXPECT_EQ(d.action, Action::Emulate);
  EXPECT_EQ(d.rule_index, 0);
  EXPECT_FALSE(d.audit);

  // mknodat is not in rule 1, so 1:3 falls to rule 2.
  d = decide(policy, chr(1, 3, Syscall::Mknodat));
  EXPECT_EQ(d.action, Action::Kill);
  EXPECT_EQ(d.rule_index, 1);
  EXPECT_TRUE(d.audit);

  d = decide(policy, blk(1, 3));
  EXPECT_EQ(d.action, Action::Kill);
  EXPECT_EQ(d.rule_index, 1);

  d = decide(policy, chr(2, 3));
  EXPECT_EQ(d.action, Action::Deny);
  EXPECT_EQ(d.err, EACCES);
  EXPECT_EQ(d.rule_index, 2);
}

TEST(PolicyDecide, NoMatchIsAllowWithoutAudit) {
  Policy policy = parse_ok(R"(
name: narrow
rules:
  - syscalls: [mknodat]
    match: {type: block}
    action: deny
    audit: true
)");
  for (MknodArgs args : {chr(1, 3), blk(8, 0), chr(8, 0, Syscall::Mknodat)}) {
    Decision d = decide(policy, args);
    EXPECT_EQ(d.action, Action::Allow);
    EXPECT_FALSE(d.audit);
    EXPECT_EQ(d.rule_index, -1);
    EXPECT_EQ(d.err, 0);
  }
  EXPECT_EQ(decide(policy, blk(8, 0, Syscall::Mknodat)).action, Action::Deny);

  Policy empty = parse_ok("name: empty\nrules: []\n");
  EXPECT_TRUE(empty.rules.empty());
  EXPECT_EQ(decide(empty, chr(1, 3)).action, Action::Allow);
  EXPECT_EQ(decide(empty, chr(1, 3)).rule_index, -1);
}

TEST(PolicyDecide, DeviceWildcards) {
  Policy policy = parse_ok(R"(
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
  ASSERT_EQ(policy.rules[2].devices.size(), 2u);
  EXPECT_FALSE(policy.rules[2].devices[0].major.has_value());
  EXPECT_EQ(policy.rules[2].devices[1].major, 4095u);
  EXPECT_EQ(policy.rules[2].devices[1].minor, 1048575u);
}

TEST(PolicyDecide, DenyErrnoDefaultAndExplicit) {
  Policy policy = parse_ok(R"(
name: errnos
rules:
  - syscalls: [mknod]
    match: {type: char}
    action: deny
  - syscalls: [mknod]
    match: {type: block}
    action: deny
    errno: ENOSYS
)");
  EXPECT_EQ(policy.rules[0].err, EPERM);
  EXPECT_EQ(decide(policy, chr(1, 1)).err, EPERM);
  EXPECT_EQ(decide(policy, blk(1, 1)).err, ENOSYS);
}

TEST(PolicyParse, DefaultsAndNames) {
  Policy policy = parse_ok(R"(name: a-b_c.1
description: "text"
rules:
  - syscalls: [mknod]
    action: allow
  - name: second
    syscalls: [mknodat, mknodat]
    action: deny
    audit: true
)");
  EXPECT_EQ(policy.name, "a-b_c.1");
  EXPECT_EQ(policy.description, "text");
  EXPECT_EQ(policy.pos.line, 1);
  EXPECT_EQ(policy.pos.column, 1);
  ASSERT_EQ(policy.rules.size(), 2u);
  EXPECT_EQ(policy.rules[0].name, "rule 1");
  EXPECT_FALSE(policy.rules[0].type.has_value());
  EXPECT_TRUE(policy.rules[0].devices.empty());
  EXPECT_FALSE(policy.rules[0].audit);
  EXPECT_EQ(policy.rules[0].pos.line, 4);
  EXPECT_EQ(policy.rules[0].pos.column, 5);
  EXPECT_EQ(policy.rules[1].name, "second");
  EXPECT_EQ(policy.rules[1].syscalls, std::vector<Syscall>{Syscall::Mknodat});
  EXPECT_TRUE(policy.rules[1].audit);
}

TEST(PolicyParse, AnchorsAndAliases) {
  Policy policy = parse_ok(R"(
name: aliases
rules:
  - syscalls: &calls [mknod, mknodat]
    match: &harmless {type: char, devices: ["1:3"]}
    action: emulate
  - syscalls: *calls
    match: *harmless
    action: deny
)");
  ASSERT_EQ(policy.rules.size(), 2u);
  EXPECT_EQ(policy.rules[1].syscalls.size(), 2u);
  EXPECT_EQ(policy.rules[1].devices.size(), 1u);
}

// --- every error code, with its position ---------------------------------------------------

TEST(PolicyErrors, YamlParse) {
  expect_one_error("name: p\nrules: [\n", ErrorCode::YamlParse, 3, 1);
  expect_one_error("name: p\nrules: []\n  bad: indent\n", ErrorCode::YamlParse, 3, 3);
}

TEST(PolicyErrors, WrongType) {
  expect_one_error(R"(name: p
rules:
  - syscalls: mknod
    action: deny
)",
                   ErrorCode::WrongType, 3, 15);
  expect_one_error("name: p\nrules: {}\n", ErrorCode::WrongType, 2, 8);
  expect_one_error("name: [p]\nrules: []\n", ErrorCode::WrongType, 1, 7);
  // An empty value points at its key.
  expect_one_error("name: p\nrules:\n", ErrorCode::WrongType, 2, 1);
  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    action: deny
    audit: yes
)",
                   ErrorCode::WrongType, 5, 12);
  expect_one_error("name: p\nrules:\n  - [mknod, deny]\n", ErrorCode::WrongType, 3, 5);
  expect_one_error("name: p\n[a]: b\nrules: []\n", ErrorCode::WrongType, 2, 1);
  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    match: {devices: [{1: 3}]}
    action: deny
)",
                   ErrorCode::WrongType, 4, 23);
}

TEST(PolicyErrors, UnknownKey) {
  auto errors = parse_errors(R"(name: p
rules:
  - syscalls: [mknod]
    action: deny
    colour: red
)");
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnknownKey);
  EXPECT_EQ(errors[0].pos.line, 5);
  EXPECT_EQ(errors[0].pos.column, 5);
  EXPECT_NE(errors[0].message.find("colour"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("syscalls"), std::string::npos) << errors[0].message;  // allowed keys

  expect_one_error("name: p\nrules: []\nversion: 1\n", ErrorCode::UnknownKey, 3, 1);
  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    match: {type: char, minor: 3}
    action: deny
)",
                   ErrorCode::UnknownKey, 4, 25);
}

TEST(PolicyErrors, MissingKey) {
  expect_one_error("rules: []\n", ErrorCode::MissingKey, 1, 1);
  expect_one_error("name: p\n", ErrorCode::MissingKey, 1, 1);
  // At the rule's mapping.
  expect_one_error(R"(name: p
rules:
  - name: r
    syscalls: [mknod]
)",
                   ErrorCode::MissingKey, 3, 5);
  expect_one_error(R"(name: p
rules:
  - action: allow
)",
                   ErrorCode::MissingKey, 3, 5);
}

TEST(PolicyErrors, DuplicateKey) {
  auto errors = parse_errors("name: p\nrules: []\nname: q\n");
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::DuplicateKey);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 1);
  EXPECT_NE(errors[0].message.find("line 1"), std::string::npos) << errors[0].message;

  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    action: allow
    action: emulate
)",
                   ErrorCode::DuplicateKey, 5, 5);
}

TEST(PolicyErrors, BadValue) {
  expect_one_error("name: Bad\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: -p\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: \"\"\nrules: []\n", ErrorCode::BadValue, 1, 7);
  expect_one_error("name: p\nrules:\n  - syscalls: []\n    action: deny\n", ErrorCode::BadValue, 3, 15);
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    action: maybe\n", ErrorCode::BadValue, 4, 13);
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    match: {type: fifo}\n    action: deny\n",
                   ErrorCode::BadValue, 4, 19);
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    match: {devices: []}\n    action: deny\n",
                   ErrorCode::BadValue, 4, 22);
  // errno with an action other than deny: at the errno key.
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    action: allow\n    errno: EPERM\n",
                   ErrorCode::BadValue, 5, 5);
  // A second document, at its `---`.
  expect_one_error("name: p\nrules: []\n---\nname: q\nrules: []\n", ErrorCode::BadValue, 3, 1);
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
    std::string yaml =
        std::string("name: p\nrules:\n  - syscalls: [mknod]\n    match:\n      devices: [\"1:3\", \"") +
        device + "\"]\n    action: deny\n";
    SCOPED_TRACE(device);
    expect_one_error(yaml, ErrorCode::BadValue, 5, 24);
  }
}

TEST(PolicyErrors, UnknownSyscall) {
  auto errors = parse_errors("name: p\nrules:\n  - syscalls: [mknod, open]\n    action: deny\n");
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, ErrorCode::UnknownSyscall);
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 23);
  EXPECT_NE(errors[0].message.find("open"), std::string::npos) << errors[0].message;
  EXPECT_NE(errors[0].message.find("mknodat"), std::string::npos) << errors[0].message;  // what exists
}

TEST(PolicyErrors, UnknownErrno) {
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    action: deny\n    errno: ENOPE\n",
                   ErrorCode::UnknownErrno, 5, 12);
  expect_one_error("name: p\nrules:\n  - syscalls: [mknod]\n    action: deny\n    errno: 1\n",
                   ErrorCode::UnknownErrno, 5, 12);
}

// NoEmulator is not reachable from YAML in v1: every v1 syscall has an emulator.

TEST(PolicyErrors, CollectsAllErrors) {
  auto errors = parse_errors(R"(name: Bad
extra: 1
rules:
  - syscalls: [open]
    action: deny
  - syscalls: [mknod]
    action: explode
    match: {devices: ["1:3", "4096:1", "1:x"]}
  - syscalls: [mknod]
    errno: EPERM
)");
  ASSERT_EQ(errors.size(), 7u) << describe(errors);
  std::vector<std::pair<ErrorCode, int>> got;
  for (const auto& e : errors) {
    got.emplace_back(e.code, e.pos.line);
  }
  std::vector<std::pair<ErrorCode, int>> want{
      {ErrorCode::UnknownKey, 2}, {ErrorCode::BadValue, 1}, {ErrorCode::UnknownSyscall, 4},
      {ErrorCode::BadValue, 8},   {ErrorCode::BadValue, 8}, {ErrorCode::BadValue, 7},
      {ErrorCode::MissingKey, 9},
  };
  EXPECT_EQ(got, want) << describe(errors);
}

TEST(PolicyErrors, Format) {
  LoadError error{ErrorCode::BadValue, "nope", Position{"dir/p.yaml", 3, 7}};
  EXPECT_EQ(error.format(), "dir/p.yaml:3:7: nope");
  LoadError unknown{ErrorCode::Io, "open: No such file or directory", Position{"p.yaml", 0, 0}};
  EXPECT_EQ(unknown.format(), "p.yaml: open: No such file or directory");
  EXPECT_STREQ(to_string(ErrorCode::DuplicateKey), "duplicate-key");
}

// --- hostile input ---------------------------------------------------------------------------

TEST(PolicyHostile, EmptyAndNonMappingDocuments) {
  expect_one_error("", ErrorCode::WrongType, 1, 1);
  expect_one_error("# just a comment\n", ErrorCode::WrongType, 1, 1);
  expect_one_error("---\n", ErrorCode::WrongType, 2, 1);
  expect_one_error("hello\n", ErrorCode::WrongType, 1, 1);
  expect_one_error("- name: p\n  rules: []\n", ErrorCode::WrongType, 1, 1);
}

// yaml-cpp 0.7's LoadAll() never returns on these (jbeder/yaml-cpp#1040): it collects empty
// documents until memory runs out.
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
  for (const std::string& yaml : {std::string(10000, '['), std::string(10000, '[') + std::string(10000, ']'),
                                  std::string(10000, '{'), "name: p\nrules: " + std::string(10000, '[')}) {
    auto errors = parse_errors(yaml);
    ASSERT_FALSE(errors.empty());
    EXPECT_EQ(errors[0].code, ErrorCode::YamlParse) << describe(errors);
  }
  std::string block;
  for (int i = 0; i < 5000; ++i) {
    block += std::string(static_cast<std::size_t>(i), ' ') + "- \n";
  }
  EXPECT_FALSE(parse_policy(block, "test.yaml").has_value());
}

TEST(PolicyHostile, HugeNumbers) {
  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    match: {devices: ["99999999999999999999:1"]}
    action: deny
)",
                   ErrorCode::BadValue, 4, 23);
  // Unquoted: still a string to yaml-cpp, still checked the same way.
  expect_one_error(R"(name: p
rules:
  - syscalls: [mknod]
    match: {devices: [99999999999999999999]}
    action: deny
)",
                   ErrorCode::BadValue, 4, 23);
}

TEST(PolicyHostile, SelfReferencingAlias) {
  // yaml-cpp registers an anchor before its node is complete, so this is a cycle.
  auto errors = parse_errors("name: p\nrules: &r [*r]\n");
  EXPECT_EQ(errors[0].code, ErrorCode::WrongType) << describe(errors);
  EXPECT_FALSE(parse_policy("&m {name: p, rules: [*m]}\n", "test.yaml").has_value());
  EXPECT_FALSE(parse_policy("name: p\nrules: [*undefined]\n", "test.yaml").has_value());
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
  // YAML-ish garbage: random picks of YAML's punctuation and keywords.
  const char* pieces[] = {"name", "rules", ":",     " ",     "\n",     "- ",  "[",  "]",          "{",
                          "}",    ",",     "&a ",   "*a ",   "!!str ", "? ",  "|",  ">",          "\"",
                          "'",    "#",     "---\n", "...\n", "mknod",  "1:3", "\t", "%YAML 1.2\n"};
  std::uniform_int_distribution<std::size_t> pick(0, std::size(pieces) - 1);
  for (int round = 0; round < 2000; ++round) {
    std::string text;
    for (int i = 0; i < 40; ++i) {
      text += pieces[pick(rng)];
    }
    auto policy = parse_policy(text, "garbage.yaml");
    if (!policy) {
      ASSERT_FALSE(policy.error().empty());
    }
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

  auto no_dir = load_policy_dir(dir.path() / "nope");
  ASSERT_FALSE(no_dir.has_value());
  ASSERT_EQ(no_dir.error().size(), 1u);
  EXPECT_EQ(no_dir.error()[0].code, ErrorCode::Io);
}

TEST(PolicyFiles, LoadsDirectorySorted) {
  TempDir dir;
  dir.write("b.yml", "name: bee\nrules: []\n");
  dir.write("a.yaml", "name: ay\nrules: []\n");
  dir.write("notes.txt", "not a policy");
  dir.write("c.yaml.bak", "also not: [");
  std::filesystem::create_directory(dir.path() / "sub.yaml");
  auto policies = load_policy_dir(dir.path());
  ASSERT_TRUE(policies.has_value()) << describe(policies.error());
  ASSERT_EQ(policies->size(), 2u);
  EXPECT_EQ(policies->at("ay")->pos.file, (dir.path() / "a.yaml").string());
  EXPECT_EQ(policies->at("bee")->pos.file, (dir.path() / "b.yml").string());

  TempDir empty;
  auto none = load_policy_dir(empty.path());
  ASSERT_TRUE(none.has_value());
  EXPECT_TRUE(none->empty());
}

TEST(PolicyFiles, DuplicatePolicyAndAllErrors) {
  TempDir dir;
  // Sorted by file name: 1-first.yaml defines it first, 2-second.yaml again.
  dir.write("2-second.yaml", "# again\ndescription: x\nname: same\nrules: []\n");
  dir.write("1-first.yaml", "name: same\nrules: []\n");
  dir.write("3-broken.yaml", "name: other\nrules: {}\n");
  auto policies = load_policy_dir(dir.path());
  ASSERT_FALSE(policies.has_value());
  const auto& errors = policies.error();
  ASSERT_EQ(errors.size(), 2u) << describe(errors);

  EXPECT_EQ(errors[0].code, ErrorCode::DuplicatePolicy);
  EXPECT_EQ(errors[0].pos.file, (dir.path() / "2-second.yaml").string());
  EXPECT_EQ(errors[0].pos.line, 3);
  EXPECT_EQ(errors[0].pos.column, 1);
  EXPECT_NE(errors[0].message.find("1-first.yaml:1:1"), std::string::npos) << errors[0].message;

  EXPECT_EQ(errors[1].code, ErrorCode::WrongType);
  EXPECT_EQ(errors[1].pos.file, (dir.path() / "3-broken.yaml").string());
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
  EXPECT_EQ(errno_from_name("E2BIG"), E2BIG);
  EXPECT_EQ(errno_from_name("EXDEV"), EXDEV);
  EXPECT_EQ(errno_from_name("ENOSYS"), ENOSYS);
  EXPECT_EQ(errno_from_name("ETIMEDOUT"), ETIMEDOUT);
  EXPECT_EQ(errno_from_name("ENOTSUP"), EOPNOTSUPP);
  EXPECT_EQ(errno_from_name("EWOULDBLOCK"), EAGAIN);
  EXPECT_STREQ(errno_name(EAGAIN), "EAGAIN");
  EXPECT_STREQ(errno_name(EOPNOTSUPP), "EOPNOTSUPP");
  EXPECT_STREQ(errno_name(ENAMETOOLONG), "ENAMETOOLONG");
  EXPECT_FALSE(errno_from_name("eperm").has_value());
  EXPECT_FALSE(errno_from_name("").has_value());
  EXPECT_FALSE(errno_from_name("EPERM ").has_value());
  EXPECT_STREQ(errno_name(0), "E?");
  EXPECT_STREQ(errno_name(-1), "E?");
  EXPECT_STREQ(errno_name(4096), "E?");
}

}  // namespace
}  // namespace sysvisor::policy
