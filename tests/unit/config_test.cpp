// The daemon's configuration file: parsing, errors with positions, who may use which policy.
#include "sysvisor/config.hpp"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>
#include <string>

namespace sysvisor::config {
namespace {

using policy::ErrorCode;
using policy::LoadError;

std::string describe(const std::vector<LoadError>& errors) {
  std::string text;
  for (const auto& error : errors) {
    text += std::string(policy::to_string(error.code)) + " " + error.format() + "\n";
  }
  return text;
}

Config parse_ok(std::string_view yaml) {
  auto config = parse_config(yaml, "sysvisor.yaml");
  if (!config) {
    ADD_FAILURE() << describe(config.error());
    return {};
  }
  return std::move(*config);
}

void expect_one_error(std::string_view yaml, ErrorCode code, int line, int column) {
  auto config = parse_config(yaml, "sysvisor.yaml");
  ASSERT_FALSE(config.has_value()) << yaml;
  const auto& errors = config.error();
  ASSERT_EQ(errors.size(), 1u) << describe(errors);
  EXPECT_EQ(errors[0].code, code) << describe(errors);
  EXPECT_EQ(errors[0].pos.file, "sysvisor.yaml");
  EXPECT_EQ(errors[0].pos.line, line) << describe(errors);
  EXPECT_EQ(errors[0].pos.column, column) << describe(errors);
}

Peer peer(uid_t uid, gid_t gid = 100, std::vector<gid_t> groups = {}) {
  return Peer{.pid = 1, .uid = uid, .gid = gid, .groups = std::move(groups)};
}

TEST(Config, BuiltInDefaults) {
  Config config;
  EXPECT_TRUE(config.file.empty());
  EXPECT_EQ(config.runtime_dir, "/run/sysvisor");
  EXPECT_EQ(config.policies_dir, "/etc/sysvisor/policies.d");
  EXPECT_EQ(config.socket_mode, 0666u);
  EXPECT_EQ(config.audit, "-");
  EXPECT_EQ(refusal(config, peer(0), "anything"), "");
  EXPECT_EQ(refusal(config, peer(1000), "rootless-devices"),
            "uid 1000 is not granted any policy by the built-in configuration");
}

TEST(Config, EveryKey) {
  Config config = parse_ok(R"(
policies: /srv/policies
runtime_dir: /run/sv
default_policy: rootless-devices
socket: {mode: "0660", group: root}
audit: /var/log/sysvisor/audit.jsonl
access:
  - users: [root, 1000, "*"]
    groups: [root, 27]
    policies: ["*"]
  - groups: ["4242"]
    policies: [rootless-devices, deny-dangerous]
)");
  EXPECT_EQ(config.file, "sysvisor.yaml");
  EXPECT_EQ(config.policies_dir, "/srv/policies");
  EXPECT_EQ(config.runtime_dir, "/run/sv");
  EXPECT_EQ(config.default_policy, "rootless-devices");
  EXPECT_EQ(config.socket_mode, 0660u);
  EXPECT_EQ(config.socket_group, 0u);
  EXPECT_EQ(config.audit, "/var/log/sysvisor/audit.jsonl");
  ASSERT_EQ(config.access.size(), 2u);
  EXPECT_TRUE(config.access[0].any_user);
  EXPECT_EQ(config.access[0].uids, (std::vector<uid_t>{0, 1000}));
  EXPECT_EQ(config.access[0].gids, (std::vector<gid_t>{0, 27}));
  EXPECT_EQ(config.access[0].policies, std::vector<std::string>{"*"});
  EXPECT_EQ(config.access[0].pos.line, 8);
  EXPECT_EQ(config.access[0].pos.column, 5);
  EXPECT_FALSE(config.access[1].any_user);
  EXPECT_TRUE(config.access[1].uids.empty());
  EXPECT_EQ(config.access[1].gids, std::vector<gid_t>{4242});
}

TEST(Config, EmptyMappingKeepsDefaultsAndModes) {
  Config config = parse_ok("{}\n");
  EXPECT_EQ(config.policies_dir, "/etc/sysvisor/policies.d");
  ASSERT_EQ(config.access.size(), 1u);
  EXPECT_EQ(config.access[0].uids, std::vector<uid_t>{0});
  EXPECT_EQ(parse_ok("socket: {mode: 0600}\n").socket_mode, 0600u);
  EXPECT_EQ(parse_ok("socket: {mode: 0o640}\n").socket_mode, 0640u);
  EXPECT_EQ(parse_ok("socket: {mode: 384}\n").socket_mode, 0600u);  // a plain decimal number
  EXPECT_EQ(parse_ok("socket: {group: 1234}\n").socket_group, 1234u);
  EXPECT_EQ(parse_ok("audit: \"-\"\n").audit, "-");
  EXPECT_TRUE(parse_ok("access: []\n").access.empty());  // nobody, not even root
}

TEST(Config, AuditFailureIsKeepUnlessTheFileSaysRefuse) {
  EXPECT_EQ(parse_ok("policies: /x\n").audit_failure, "keep");
  EXPECT_EQ(parse_ok("audit_failure: refuse\n").audit_failure, "refuse");
  EXPECT_EQ(parse_ok("audit_failure: keep\n").audit_failure, "keep");
  expect_one_error("audit_failure: panic\n", ErrorCode::BadValue, 1, 16);
  expect_one_error("audit_failure: [refuse]\n", ErrorCode::WrongType, 1, 16);
}

TEST(Config, Errors) {
  expect_one_error("polices: /x\n", ErrorCode::UnknownKey, 1, 1);
  expect_one_error("policies: relative/dir\n", ErrorCode::BadValue, 1, 11);
  expect_one_error("runtime_dir: [x]\n", ErrorCode::WrongType, 1, 14);
  expect_one_error("default_policy: Not-A-Name\n", ErrorCode::BadValue, 1, 17);
  expect_one_error("socket: {mode: \"0999\"}\n", ErrorCode::BadValue, 1, 16);
  expect_one_error("socket: {mode: 660}\n", ErrorCode::BadValue, 1, 16);  // decimal 660 > 0777
  expect_one_error("socket: {mode: \"04755\"}\n", ErrorCode::BadValue, 1, 16);
  expect_one_error("socket: {mode: [1]}\n", ErrorCode::WrongType, 1, 16);
  expect_one_error("socket: {group: no-such-group-here}\n", ErrorCode::BadValue, 1, 17);
  expect_one_error("socket: {owner: root}\n", ErrorCode::UnknownKey, 1, 10);
  expect_one_error("socket: 0660\n", ErrorCode::WrongType, 1, 9);
  expect_one_error("audit: relative.log\n", ErrorCode::BadValue, 1, 8);
  expect_one_error("access: {users: [root]}\n", ErrorCode::WrongType, 1, 9);
  expect_one_error("access:\n  - users: root\n    policies: [\"*\"]\n", ErrorCode::WrongType, 2, 12);
  expect_one_error("access:\n  - users: [root]\n", ErrorCode::MissingKey, 2, 5);
  expect_one_error("access:\n  - policies: [\"*\"]\n", ErrorCode::MissingKey, 2, 5);
  expect_one_error("access:\n  - users: [root]\n    policies: []\n", ErrorCode::BadValue, 3, 15);
  expect_one_error("access:\n  - users: [root]\n    policies: [Bad]\n", ErrorCode::BadValue, 3, 16);
  expect_one_error("access:\n  - users: [root]\n    policies: [\"*\"]\n    hosts: [x]\n",
                   ErrorCode::UnknownKey, 4, 5);
  expect_one_error("audit: \"-\"\naudit: /x\n", ErrorCode::DuplicateKey, 2, 1);
  expect_one_error("- a\n", ErrorCode::WrongType, 1, 1);
  expect_one_error("", ErrorCode::WrongType, 1, 1);
  expect_one_error(",", ErrorCode::YamlParse, 1, 1);
  expect_one_error("access: [" + std::string(100000, '[') + "\n", ErrorCode::YamlParse, 2, 1);
  expect_one_error(std::string(300 << 10, '#'), ErrorCode::BadValue, 0, 0);

  // Unknown user and group names are named in the message.
  auto config = parse_config(
      "access:\n  - users: [no-such-user-here, 4294967295]\n    groups: [no-such-group-here]\n"
      "    policies: [\"*\"]\n",
      "sysvisor.yaml");
  ASSERT_FALSE(config.has_value());
  ASSERT_EQ(config.error().size(), 3u) << describe(config.error());
  EXPECT_NE(config.error()[0].message.find("no-such-user-here"), std::string::npos);
  EXPECT_EQ(config.error()[0].pos.column, 13);
  EXPECT_EQ(config.error()[1].pos.column, 32);  // (uid_t)-1 is no uid
  EXPECT_NE(config.error()[2].message.find("no-such-group-here"), std::string::npos);
  EXPECT_EQ(config.error()[2].pos.line, 3);
}

TEST(Config, Refusal) {
  Config config = parse_ok(R"(
access:
  - users: [root]
    policies: ["*"]
  - users: [1000]
    policies: [rootless-devices, other]
  - users: [1001]
    groups: [50]
    policies: [rootless-devices]
  - groups: [60]
    policies: [deny-dangerous]
)");
  EXPECT_EQ(refusal(config, peer(0), "deny-dangerous"), "");
  EXPECT_EQ(refusal(config, peer(1000), "rootless-devices"), "");
  EXPECT_EQ(
      refusal(config, peer(1000), "deny-dangerous"),
      "uid 1000 may not use policy \"deny-dangerous\" (allowed: rootless-devices, other; see sysvisor.yaml)");
  EXPECT_EQ(refusal(config, peer(1001), "rootless-devices"), "");
  EXPECT_EQ(refusal(config, peer(2000, 50), "rootless-devices"), "");          // primary group
  EXPECT_EQ(refusal(config, peer(2000, 1, {7, 50}), "rootless-devices"), "");  // supplementary group
  EXPECT_EQ(refusal(config, peer(2000, 60), "deny-dangerous"), "");
  // Grants add up: groups 50 and 60 together allow both.
  EXPECT_EQ(refusal(config, peer(2000, 50, {60}), "deny-dangerous"), "");
  EXPECT_EQ(refusal(config, peer(2000, 50), "deny-dangerous"),
            "uid 2000 may not use policy \"deny-dangerous\" (allowed: rootless-devices; see sysvisor.yaml)");
  EXPECT_EQ(refusal(config, peer(2000, 1, {2, 3}), "rootless-devices"),
            "uid 2000 is not granted any policy by sysvisor.yaml");
  // What the peer sent is quoted safely, and cut short.
  std::string reason = refusal(config, peer(1000), "x\"\n" + std::string(200, 'y'));
  EXPECT_EQ(reason.find('\n'), std::string::npos) << reason;
  EXPECT_NE(reason.find("x\\x22\\x0a"), std::string::npos) << reason;
  EXPECT_LT(reason.size(), 200u) << reason;

  Config anyone = parse_ok("access:\n  - users: [\"*\"]\n    policies: [rootless-devices]\n");
  EXPECT_EQ(refusal(anyone, peer(4711), "rootless-devices"), "");
  EXPECT_NE(refusal(anyone, peer(4711), "other"), "");

  Config nobody = parse_ok("access: []\n");
  EXPECT_EQ(refusal(nobody, peer(0), "x"), "uid 0 is not granted any policy by sysvisor.yaml");
}

// Learn mode at launch overrides a policy's mode: only an `access:` entry that grants the
// policy and names it under `learn` allows it. Nobody, not even root, by default.
TEST(Config, LearnIsGrantedOnlyWhereTheConfigurationSaysSo) {
  Config builtin;
  EXPECT_EQ(refusal(builtin, peer(0), "deny-dangerous"), "");
  EXPECT_EQ(learn_refusal(builtin, peer(0), "deny-dangerous"),
            "uid 0 may not run policy \"deny-dangerous\" in learn mode (no `learn:` for it in the `access:` "
            "entries of the built-in configuration)");
  EXPECT_NE(learn_refusal(parse_ok("{}\n"), peer(0), "deny-dangerous"), "");

  Config config = parse_ok(R"(
access:
  - users: [root]
    policies: ["*"]
  - users: [root]
    policies: [learn-me, deny-dangerous]
    learn: [learn-me]
  - users: [1000]
    policies: [rootless-devices, deny-dangerous]
    learn: true
  - users: [1001]
    policies: ["*"]
    learn: [deny-dangerous]
  - users: [1002]
    policies: [deny-dangerous]
    learn: false
  - groups: [60]
    policies: [rootless-devices]
  - users: [1003]
    policies: [deny-dangerous]
)");
  ASSERT_EQ(config.access.size(), 7u);
  EXPECT_TRUE(config.access[0].learn.empty());
  EXPECT_EQ(config.access[1].learn, std::vector<std::string>{"learn-me"});
  EXPECT_EQ(config.access[2].learn, std::vector<std::string>{"*"});
  EXPECT_TRUE(config.access[4].learn.empty());
  EXPECT_EQ(learn_refusal(config, peer(0), "learn-me"), "");
  EXPECT_NE(learn_refusal(config, peer(0), "deny-dangerous"), "") << "granted, but not for learning";
  EXPECT_EQ(learn_refusal(config, peer(1000), "deny-dangerous"), "");  // `true`: its own policies
  EXPECT_NE(learn_refusal(config, peer(1000), "other"), "") << "true covers only the entry's policies";
  EXPECT_EQ(learn_refusal(config, peer(1001), "deny-dangerous"), "");
  EXPECT_NE(learn_refusal(config, peer(1001), "rootless-devices"), "");
  EXPECT_NE(learn_refusal(config, peer(1002), "deny-dangerous"), "");
  EXPECT_NE(learn_refusal(config, peer(2000, 60), "rootless-devices"), "");
  // A learn grant in one entry does not reach another user's entry.
  EXPECT_EQ(learn_refusal(config, peer(1003), "deny-dangerous"),
            "uid 1003 may not run policy \"deny-dangerous\" in learn mode (no `learn:` for it in the "
            "`access:` entries of sysvisor.yaml)");
}

TEST(Config, LearnErrors) {
  const std::string head = "access:\n  - users: [root]\n    policies: [a, b]\n";
  expect_one_error(head + "    learn: yes-please\n", ErrorCode::WrongType, 4, 12);
  expect_one_error(head + "    learn: {a: true}\n", ErrorCode::WrongType, 4, 12);
  expect_one_error(head + "    learn: []\n", ErrorCode::BadValue, 4, 12);
  expect_one_error(head + "    learn: [Bad]\n", ErrorCode::BadValue, 4, 13);
  expect_one_error(head + "    learn: [a, c]\n", ErrorCode::BadValue, 4, 16);  // not granted by the entry
  expect_one_error(head + "    learn: true\n    learn: false\n", ErrorCode::DuplicateKey, 5, 5);
  auto config = parse_config(head + "    learn: [a, c]\n", "sysvisor.yaml");
  ASSERT_FALSE(config.has_value());
  EXPECT_EQ(
      config.error()[0].format(),
      "sysvisor.yaml:4:16: `learn`: policy `c` is not among this entry's `policies`, so it grants nothing");
  EXPECT_EQ(parse_ok(head + "    learn: [b]\n").access[0].learn, std::vector<std::string>{"b"});
}

TEST(Config, LoadFile) {
  const auto dir = std::filesystem::temp_directory_path();
  const auto path = dir / ("sysvisor-config-test-" + std::to_string(::getpid()) + ".yaml");
  {
    std::ofstream out(path);
    out << "default_policy: p\naccess:\n  - users: [\"*\"]\n    policies: [p]\n";
  }
  auto config = load_config(path);
  std::filesystem::remove(path);
  ASSERT_TRUE(config.has_value()) << describe(config.error());
  EXPECT_EQ(config->file, path);
  EXPECT_EQ(config->default_policy, "p");
  EXPECT_EQ(refusal(*config, peer(5), "q"),
            "uid 5 may not use policy \"q\" (allowed: p; see " + path.string() + ")");

  auto missing = load_config(dir / "sysvisor-config-test-missing.yaml");
  ASSERT_FALSE(missing.has_value());
  EXPECT_EQ(missing.error()[0].code, ErrorCode::Io);
}

}  // namespace
}  // namespace sysvisor::config
