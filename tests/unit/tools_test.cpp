// The policy author's tools: call literals, cases, trap conditions, explain, OCI profiles.
#include "sysvisor/tools.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/audit.h>
#include <linux/seccomp.h>
#include <poll.h>
#include <sched.h>
#include <seccomp.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <nlohmann/json.hpp>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "sysvisor/filter.hpp"
#include "sysvisor/policy.hpp"
#include "sysvisor/sched.hpp"

namespace sysvisor::tools {
namespace {

namespace fs = std::filesystem;
using nlohmann::json;
using policy::Action;

std::string describe_errors(const std::vector<policy::LoadError>& errors) {
  std::string out;
  for (const auto& e : errors) out += e.format() + "\n";
  return out;
}

std::shared_ptr<const policy::Policy> load(const std::string& yaml) {
  auto parsed = policy::parse_policy(yaml, "test.yaml");
  EXPECT_TRUE(parsed.has_value()) << describe_errors(parsed.error());
  if (!parsed) return nullptr;
  std::vector<policy::Policy> all;
  all.push_back(std::move(*parsed));
  auto resolved = policy::resolve(std::move(all));
  EXPECT_TRUE(resolved.has_value()) << describe_errors(resolved.error());
  if (!resolved) return nullptr;
  return resolved->policies.begin()->second;
}

std::shared_ptr<const policy::Policy> shipped(const std::string& name) {
  auto loaded = policy::load_policy_dir(fs::path(SYSVISOR_SOURCE_DIR) / "policies");
  EXPECT_TRUE(loaded.has_value()) << describe_errors(loaded.error());
  if (!loaded) return nullptr;
  auto it = loaded->policies.find(name);
  EXPECT_NE(it, loaded->policies.end()) << name;
  return it == loaded->policies.end() ? nullptr : it->second;
}

std::string read(const fs::path& p) {
  std::ifstream in(p);
  std::ostringstream s;
  s << in.rdbuf();
  return s.str();
}

policy::Call call(const std::string& text, const CallContext& ctx = {}) {
  auto literal = parse_call(text);
  EXPECT_TRUE(literal.has_value()) << text << ": " << literal.error().message << " at "
                                   << literal.error().column;
  if (!literal) return {};
  auto c = call_from_literal(*literal, ctx);
  EXPECT_TRUE(c.has_value()) << text << ": " << c.error().message;
  return c.value_or(policy::Call{});
}

// ---- normalize_path ----
TEST(NormalizePath, Lexical) {
  EXPECT_EQ(normalize_path("/", "/dev/null"), "/dev/null");
  EXPECT_EQ(normalize_path("/", ""), "/");
  EXPECT_EQ(normalize_path("", "x"), "/x");
  EXPECT_EQ(normalize_path("/a/b", "c"), "/a/b/c");
  EXPECT_EQ(normalize_path("/a/b", "../c"), "/a/c");
  EXPECT_EQ(normalize_path("/a/b", "../../../../c"), "/c");
  EXPECT_EQ(normalize_path("/a/b", "/x/./y//z/"), "/x/y/z");
  EXPECT_EQ(normalize_path("/a//b/./", "."), "/a/b");
  EXPECT_EQ(normalize_path("/", "/.."), "/");
  EXPECT_EQ(normalize_path("/a", "b/.."), "/a");
  EXPECT_EQ(normalize_path("/", "..."), "/...");  // only "." and ".." are special
}

// ---- parse_call ----
TEST(CallLiteral, EveryArgumentForm) {
  auto c = parse_call(R"(mknodat(AT_FDCWD, "/dev/sda", S_IFBLK|0600, 8:0))");
  ASSERT_TRUE(c.has_value()) << c.error().message;
  EXPECT_EQ(c->name, "mknodat");
  EXPECT_EQ(c->nr, policy::syscall_from_name("mknodat").value());
  ASSERT_EQ(c->args.size(), 4U);
  EXPECT_EQ(c->args[0].value, static_cast<std::uint64_t>(-100));
  EXPECT_EQ(c->args[1].kind, LiteralArg::Kind::String);
  EXPECT_EQ(c->args[1].text, "/dev/sda");
  EXPECT_EQ(c->args[1].column, 19);
  EXPECT_EQ(c->args[2].value, static_cast<std::uint64_t>(S_IFBLK | 0600));
  EXPECT_EQ(c->args[3].value, makedev(8, 0));

  auto n = parse_call("setpriority(PRIO_PROCESS, 0, -5)");
  ASSERT_TRUE(n.has_value());
  EXPECT_EQ(n->args[2].value, 0xfffffffffffffffbULL);
  auto h = parse_call("bpf(0x10, 010, 12)");
  ASSERT_TRUE(h.has_value());
  EXPECT_EQ(h->args[0].value, 16U);
  EXPECT_EQ(h->args[1].value, 8U);
  EXPECT_EQ(h->args[2].value, 12U);
  auto s = parse_call(R"(setxattr("a\"b\\c\n\x41\101\0z", NULL, "", 0, XATTR_CREATE|XATTR_REPLACE))");
  ASSERT_TRUE(s.has_value()) << s.error().message;
  EXPECT_EQ(s->args[0].text, std::string("a\"b\\c\nAA\0z", 10));
  EXPECT_EQ(s->args[1].kind, LiteralArg::Kind::Null);
  EXPECT_EQ(s->args[4].value, 3U);
  auto st = parse_call("sched_setattr(0, {policy=SCHED_FIFO, priority=50, nice=-5}, 0)");
  ASSERT_TRUE(st.has_value()) << st.error().message;
  EXPECT_EQ(st->args[1].kind, LiteralArg::Kind::Struct);
  EXPECT_EQ(st->args[1].fields.at("policy"), SCHED_FIFO);
  EXPECT_EQ(st->args[1].fields.at("nice"), -5);
  auto empty = parse_call("  getpid ( )  ");
  ASSERT_TRUE(empty.has_value());
  EXPECT_TRUE(empty->args.empty());
  auto big = parse_call("mknod(\"/x\", S_IFCHR, 4095:1048575)");
  ASSERT_TRUE(big.has_value());
  EXPECT_EQ(big->args[2].value, makedev(4095, 1048575));
}

TEST(CallLiteral, ErrorsSayWhatAndWhere) {
  struct Bad {
    const char* text;
    int column;
    const char* says;
  };
  for (const Bad& b : {
           Bad{"", 1, "syscall name"},
           Bad{"frobnicate(1)", 1, "unknown syscall `frobnicate`"},
           Bad{"mknod", 6, "expected `(`"},
           Bad{"mknod(1,", 9, "expected an argument"},
           Bad{"mknod(1 2)", 9, "expected `,` or `)`"},
           Bad{"mknod(1) x", 10, "after the call"},
           Bad{"mknod(\"abc)", 7, "unterminated string"},
           Bad{"mknod(\"a\\qb\")", 9, "unknown escape \\q"},
           Bad{"mknod(0999)", 7, "bad octal"},
           Bad{"mknod(0x)", 7, "hexadecimal digits"},
           Bad{"mknod(99999999999999999999999)", 7, "out of range"},
           Bad{"mknod(S_IFCHR|S_IFNOPE)", 15, "unknown constant `S_IFNOPE`"},
           Bad{"mknod(4096:0)", 7, "major 4096"},
           Bad{"mknod(1:1048576)", 7, "minor 1048576"},
           Bad{"mknod(-1:3)", 7, "not allowed"},
           Bad{"mknod(12abc)", 7, "bad decimal number"},
           Bad{"sched_setattr(0, {nice=-5, nice=3}, 0)", 28, "given twice"},
           Bad{"sched_setattr(0, {nice -5}, 0)", 24, "expected `=`"},
           Bad{"sched_setattr(0, {nice=1:2}, 0)", 24, "not allowed"},
           Bad{"mknod(1,2,3,4,5,6,7)", 19, "at most 6"},
           Bad{"mknod(NULL|1)", 11, "expected `,` or `)`"},
       }) {
    auto r = parse_call(b.text);
    ASSERT_FALSE(r.has_value()) << b.text;
    EXPECT_EQ(r.error().column, b.column) << b.text << ": " << r.error().message;
    EXPECT_NE(r.error().message.find(b.says), std::string::npos) << b.text << ": " << r.error().message;
  }
}

TEST(CallLiteral, AMisspeltNameGetsAGuess) {
  for (const auto& [text, says] : std::vector<std::pair<std::string, std::string>>{
           {"mkndo(\"x\", S_IFCHR, 1:3)", "unknown syscall `mkndo`; did you mean `mknod`?"},
           {"mknod(\"x\", S_IFCRH, 1:3)", "unknown constant `S_IFCRH`; did you mean `S_IFCHR`?"},
       }) {
    auto r = parse_call(text);
    ASSERT_FALSE(r.has_value()) << text;
    EXPECT_NE(r.error().message.find(says), std::string::npos) << text << ": " << r.error().message;
  }
  auto sched = parse_call("sched_setattr(0, {niec=-5}, 0)");
  ASSERT_TRUE(sched.has_value()) << sched.error().message;
  auto field = call_from_literal(*sched, CallContext{});
  ASSERT_FALSE(field.has_value());
  EXPECT_NE(field.error().message.find("unknown field `niec`; did you mean `nice`?"), std::string::npos)
      << field.error().message;
  auto err = parse_expectation("deny EACCESS");
  ASSERT_FALSE(err.has_value());
  EXPECT_NE(err.error().message.find("unknown errno `EACCESS`; did you mean `EACCES`?"), std::string::npos)
      << err.error().message;
  auto verb = parse_expectation("alow");
  ASSERT_FALSE(verb.has_value());
  EXPECT_NE(verb.error().message.find("did you mean `allow`?"), std::string::npos) << verb.error().message;
  auto key = parse_cases("cases:\n  - {call: 'getpid()', expcet: allow}\n", "c.yaml");
  ASSERT_FALSE(key.has_value());
  EXPECT_NE(key.error()[0].message.find("unknown key `expcet`; did you mean `expect`?"), std::string::npos)
      << key.error()[0].message;
}

TEST(CallLiteral, GarbageNeverCrashes) {
  std::mt19937 rng(42);
  const std::string alphabet = "mknod(),\"\\x{}=|:-0123456789abcdefS_IFCHRNUL \t";
  for (int i = 0; i < 20000; ++i) {
    std::string s;
    const int len = static_cast<int>(rng() % 40);
    for (int j = 0; j < len; ++j) s += alphabet[rng() % alphabet.size()];
    auto r = parse_call(s);
    if (!r) {
      EXPECT_GE(r.error().column, 1) << s;
      EXPECT_LE(r.error().column, static_cast<int>(s.size()) + 1) << s;
      continue;
    }
    (void)call_from_literal(*r, CallContext{});
  }
}

// ---- call_from_literal ----
TEST(CallFromLiteral, MknodIsDecodedAsTheKernelDoes) {
  auto c = call(R"(mknodat(AT_FDCWD, "/dev/sda", S_IFBLK|0600, 8:0))");
  ASSERT_TRUE(c.type.has_value());
  EXPECT_EQ(*c.type, policy::FileType::Block);
  EXPECT_EQ(c.major, 8U);
  EXPECT_EQ(c.minor, 0U);
  ASSERT_EQ(c.paths.size(), 1U);
  EXPECT_EQ(c.paths[0], "/dev/sda");
  // mode is a umode_t: bits above 16 are dropped; dev an unsigned int (new_decode_dev).
  auto t = call(R"(mknod("x", 0x10000|S_IFCHR|0666, 0x100000103))");
  EXPECT_EQ(t.type, policy::FileType::Char);
  EXPECT_EQ(t.major, 1U);
  EXPECT_EQ(t.minor, 3U);
  auto big = call(R"(mknod("x", S_IFCHR, 300:70000))");
  EXPECT_EQ(big.major, 300U);
  EXPECT_EQ(big.minor, 70000U);
  auto fifo = call(R"(mknod("/tmp/f", S_IFIFO|0600, 0))");
  EXPECT_FALSE(fifo.type.has_value());
  // Registers: strings are distinct non-zero fake pointers, NULL is 0.
  EXPECT_NE(c.args[1], 0U);
  auto two = call(R"(rename("a", "b"))");
  EXPECT_NE(two.args[0], two.args[1]);
}

TEST(CallFromLiteral, PathsAreAbsoluteAndNormalised) {
  CallContext ctx;
  ctx.cwd = "/home/u/./work//";
  ctx.fds = {{3, "/etc/"}, {5, "/upper/f"}};
  EXPECT_EQ(call(R"(mknod("../x/./y", S_IFCHR, 1:3))", ctx).paths.at(0), "/home/u/x/y");
  EXPECT_EQ(call(R"(mknodat(AT_FDCWD, "a//b", S_IFCHR, 1:3))", ctx).paths.at(0), "/home/u/work/a/b");
  EXPECT_EQ(call(R"(mknodat(3, "../dev/null", S_IFCHR, 1:3))", ctx).paths.at(0), "/dev/null");
  EXPECT_EQ(call(R"(mknodat(9, "/abs/../p", S_IFCHR, 1:3))", ctx).paths.at(0), "/p");  // dirfd unused
  EXPECT_EQ(call(R"(fsetxattr(5, "user.x", "v", 1, 0))", ctx).paths.at(0), "/upper/f");
  const auto rn = call(R"(renameat(3, "a", AT_FDCWD, "b"))", ctx);
  ASSERT_EQ(rn.paths.size(), 2U);
  EXPECT_EQ(rn.paths[0], "/etc/a");
  EXPECT_EQ(rn.paths[1], "/home/u/work/b");

  auto lit = parse_call(R"(mknodat(7, "x", S_IFCHR, 1:3))");
  ASSERT_TRUE(lit.has_value());
  auto missing = call_from_literal(*lit, ctx);
  ASSERT_FALSE(missing.has_value());
  EXPECT_NE(missing.error().message.find("fd 7"), std::string::npos) << missing.error().message;
  EXPECT_EQ(missing.error().column, 9);
  auto null_path = call_from_literal(*parse_call("mknod(NULL, S_IFCHR, 1:3)"), ctx);
  ASSERT_FALSE(null_path.has_value());
  EXPECT_EQ(null_path.error().column, 7);
  auto empty = call_from_literal(*parse_call(R"(mknod("", S_IFCHR, 1:3))"), ctx);
  ASSERT_FALSE(empty.has_value());
  EXPECT_NE(empty.error().message.find("ENOENT"), std::string::npos) << empty.error().message;
  auto short_call = call_from_literal(*parse_call(R"(mknod("/x", S_IFCHR))"), ctx);
  ASSERT_FALSE(short_call.has_value());
  EXPECT_NE(short_call.error().message.find("argument 3"), std::string::npos) << short_call.error().message;
}

TEST(CallFromLiteral, MountXattrAndSchedFields) {
  CallContext ctx;
  ctx.cwd = "/srv";
  auto m = call(R"(mount("overlay", "merged/", "overlay", MS_NOSUID|MS_NODEV, "lowerdir=/l"))", ctx);
  EXPECT_EQ(m.source, "overlay");
  EXPECT_EQ(m.target, "/srv/merged");
  EXPECT_EQ(m.fstype, "overlay");
  EXPECT_EQ(m.flags, static_cast<std::uint64_t>(MS_NOSUID | MS_NODEV));
  auto b = call(R"(mount("/a", "/b", NULL, MS_BIND|MS_REC, NULL))", ctx);
  EXPECT_FALSE(b.fstype.has_value());
  auto u = call(R"(umount2("/mnt/", MNT_DETACH|UMOUNT_NOFOLLOW))", ctx);
  EXPECT_EQ(u.target, "/mnt");
  EXPECT_EQ(u.flags, static_cast<std::uint64_t>(MNT_DETACH | UMOUNT_NOFOLLOW));
  auto x = call(R"(lsetxattr("/f", "trusted.overlay.opaque", "y", 1, 0))", ctx);
  EXPECT_EQ(x.xattr_name, "trusted.overlay.opaque");
  EXPECT_EQ(x.value_size, 1U);
  auto r = call(R"(removexattr("/f", "user.a"))", ctx);
  EXPECT_EQ(r.xattr_name, "user.a");
  EXPECT_FALSE(r.value_size.has_value());
  auto s = call("sched_setscheduler(0, SCHED_FIFO|SCHED_RESET_ON_FORK, {sched_priority=50})", ctx);
  EXPECT_EQ(s.sched_policy, SCHED_FIFO);  // the kernel masks SCHED_RESET_ON_FORK off
  EXPECT_EQ(s.priority, 50);
  auto a = call("sched_setattr(0, {policy=SCHED_RR, priority=10}, 0)", ctx);
  EXPECT_EQ(a.sched_policy, SCHED_RR);
  EXPECT_EQ(a.priority, 10);
  EXPECT_EQ(a.nice, 0);
  auto p = call("setpriority(PRIO_PROCESS, 0, -20)", ctx);
  EXPECT_EQ(p.nice, -20);
  auto bad = call_from_literal(*parse_call("sched_setparam(0, {nice=3})"), ctx);
  ASSERT_FALSE(bad.has_value());
  EXPECT_NE(bad.error().message.find("unknown field `nice`"), std::string::npos) << bad.error().message;
}

// ---- expectations ----
TEST(Expectation, Grammar) {
  auto d = parse_expectation("deny EPERM audited");
  ASSERT_TRUE(d.has_value());
  EXPECT_EQ(d->action, Action::Deny);
  EXPECT_EQ(d->err, EPERM);
  EXPECT_EQ(d->audit, true);
  auto r = parse_expectation("  return -22 unaudited ");
  ASSERT_TRUE(r.has_value());
  EXPECT_EQ(r->action, Action::Return);
  EXPECT_EQ(r->value, -22);
  EXPECT_EQ(r->audit, false);
  auto k = parse_expectation("kill-container");
  ASSERT_TRUE(k.has_value());
  EXPECT_EQ(k->action, Action::KillContainer);
  EXPECT_FALSE(k->audit.has_value());
  EXPECT_EQ(to_string(*d), "deny EPERM audited");
  for (const char* bad :
       {"", "deny", "deny ENOPE", "return x", "allow maybe", "emulate audited now", "permit"}) {
    EXPECT_FALSE(parse_expectation(bad).has_value()) << bad;
  }
  EXPECT_EQ(parse_expectation("deny ENOPE").error().column, 6);
}

// ---- case files ----
TEST(Cases, ParseWithPositions) {
  const std::string text =
      "policy: p\n"
      "cwd: /w\n"
      "fds: {3: /etc}\n"
      "cases:\n"
      "  - 'mknod(\"x\", S_IFCHR, 1:3) -> emulate'\n"
      "  - {call: 'mknodat(3, \"y\", S_IFBLK, 8:0)', expect: deny EPERM audited, cwd: /other}\n";
  auto f = parse_cases(text, "c.yaml");
  ASSERT_TRUE(f.has_value()) << describe_errors(f.error());
  EXPECT_EQ(f->policy, "p");
  ASSERT_EQ(f->cases.size(), 2U);
  EXPECT_EQ(f->cases[0].pos.line, 5);
  EXPECT_EQ(f->cases[0].call.paths.at(0), "/w/x");
  EXPECT_EQ(f->cases[0].expect.action, Action::Emulate);
  EXPECT_EQ(f->cases[1].call.paths.at(0), "/etc/y");
  EXPECT_EQ(f->cases[1].expect.err, EPERM);

  auto bad = parse_cases(
      "cases:\n"
      "  - 'mknod(\"x\", S_IFCHR, 1:3) -> explode'\n"
      "  - 'mknod(\"x\", S_IFCHR|S_NOPE, 1:3) -> allow'\n"
      "  - {call: 'getpid()'}\n"
      "  - 42\n"
      "colour: red\n",
      "c.yaml");
  ASSERT_FALSE(bad.has_value());
  const auto& e = bad.error();
  ASSERT_EQ(e.size(), 5U) << describe_errors(e);
  EXPECT_EQ(e[0].format().substr(0, 12), "c.yaml:6:1: ") << e[0].format();   // colour
  EXPECT_EQ(e[1].format().substr(0, 13), "c.yaml:2:34: ") << e[1].format();  // explode
  EXPECT_EQ(e[2].format().substr(0, 13), "c.yaml:3:25: ") << e[2].format();  // S_NOPE
  EXPECT_EQ(e[3].format().substr(0, 12), "c.yaml:4:5: ") << e[3].format();   // no expect
  EXPECT_EQ(e[4].format().substr(0, 12), "c.yaml:5:5: ") << e[4].format();   // 42
  EXPECT_FALSE(parse_cases("cases: [", "c.yaml").has_value());
  auto tab = parse_cases("cases:\n\t- 'getpid() -> allow'\n", "c.yaml");
  ASSERT_FALSE(tab.has_value());
  EXPECT_TRUE(tab.error()[0].diagnostic().starts_with(
      "c.yaml:2:1: error: [yaml-parse] tabs are not allowed for indentation in YAML: use spaces"))
      << tab.error()[0].diagnostic();
  EXPECT_FALSE(parse_cases("", "c.yaml").has_value());
  {  // A case file is bounded as a policy is, with its size in the error.
    const fs::path big =
        fs::temp_directory_path() / ("sysvisor-big-" + std::to_string(::getpid()) + ".cases.yaml");
    std::ofstream(big) << "cases: []\n#" << std::string(300000, 'x') << "\n";
    auto loaded = load_cases(big.string());
    ASSERT_FALSE(loaded.has_value());
    EXPECT_EQ(loaded.error()[0].format(),
              big.string() + ": the file is 300012 bytes, more than the limit of 262144 bytes (256 KiB)");
    fs::remove(big);
  }
  EXPECT_FALSE(parse_cases("cases: {}", "c.yaml").has_value());
}

TEST(Cases, RunReportsFailuresWithTheDecidingRule) {
  auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  auto program = filter::compile(*p);
  ASSERT_TRUE(program.has_value());
  auto f = parse_cases(
      "cases:\n"
      "  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> emulate audited'\n"
      "  - 'mknod(\"/dev/sda\", S_IFBLK, 8:0) -> allow'\n"
      "  - 'mknod(\"/f\", S_IFIFO, 0) -> deny EPERM'\n"
      "  - 'mknod(\"/dev/null\", S_IFCHR|0666, 1:3) -> emulate unaudited'\n",
      "c.yaml");
  ASSERT_TRUE(f.has_value());
  auto failures = run_cases(*p, &*program, *f);
  ASSERT_EQ(failures.size(), 3U);
  EXPECT_EQ(failures[0].message,
            "c.yaml:3: mknod(\"/dev/sda\", S_IFBLK, 8:0): expected allow, got deny EPERM audited (rule "
            "`other-devices`)");
  EXPECT_NE(failures[1].message.find("got allow unaudited (not trapped)"), std::string::npos)
      << failures[1].message;
  EXPECT_NE(failures[2].message.find("expected emulate unaudited, got emulate audited"), std::string::npos);
  // Without the program, the trap conditions give the same answers.
  EXPECT_EQ(run_cases(*p, nullptr, *f).size(), 3U);
}

TEST(Expectation, WouldAndRule) {
  auto full = parse_expectation("allow audited would deny EPERM rule dangerous-calls");
  ASSERT_TRUE(full.has_value()) << full.error().message;
  EXPECT_EQ(full->action, Action::Allow);
  EXPECT_EQ(full->audit, true);
  ASSERT_TRUE(full->would.has_value());
  EXPECT_EQ(full->would->action, Action::Deny);
  EXPECT_EQ(full->would->err, EPERM);
  EXPECT_EQ(full->rule, "dangerous-calls");
  EXPECT_EQ(to_string(*full), "allow audited would deny EPERM rule dangerous-calls");
  // An unnamed rule is "rule N"; `rule` takes the rest. Each part is optional.
  auto unnamed = parse_expectation("return 0 rule rule 2 ");
  ASSERT_TRUE(unnamed.has_value()) << unnamed.error().message;
  EXPECT_EQ(unnamed->rule, "rule 2");
  EXPECT_FALSE(unnamed->would.has_value());
  auto would = parse_expectation("allow would return -1");
  ASSERT_TRUE(would.has_value()) << would.error().message;
  EXPECT_EQ(would->would->value, -1);
  EXPECT_FALSE(would->audit.has_value());
  struct Bad {
    const char* text;
    std::size_t column;
    const char* says;
  };
  for (const Bad& b : {
           Bad{"allow would", 12, "`would` needs"},
           Bad{"allow would deny", 17, "needs an errno"},
           Bad{"allow would dney EPERM", 13, "did you mean `deny`?"},
           Bad{"allow rule", 11, "`rule` needs"},
           Bad{"allow audited maybe", 15, "expected `would` or `rule`, not `maybe`"},
           Bad{"allow would allow audited", 19, "expected `rule`, not `audited`"},
       }) {
    auto e = parse_expectation(b.text);
    ASSERT_FALSE(e.has_value()) << b.text;
    EXPECT_EQ(static_cast<std::size_t>(e.error().column), b.column) << b.text << ": " << e.error().message;
    EXPECT_NE(e.error().message.find(b.says), std::string::npos) << b.text << ": " << e.error().message;
  }
}

TEST(Cases, WouldAndRuleAreChecked) {
  auto p = shipped("audit-only-dangerous");  // mode: audit, the rules of deny-dangerous
  ASSERT_TRUE(p);
  auto program = filter::compile(*p);
  ASSERT_TRUE(program.has_value());
  auto f = parse_cases(
      "cases:\n"
      "  - 'bpf(0, NULL, 0) -> allow audited would deny EPERM rule dangerous-calls'\n"
      "  - 'bpf(0, NULL, 0) -> allow audited would deny EACCES'\n"
      "  - 'bpf(0, NULL, 0) -> allow audited rule other'\n"
      "  - 'getpid() -> allow would allow'\n"
      "  - 'getpid() -> allow rule none'\n",
      "c.yaml");
  ASSERT_TRUE(f.has_value()) << describe_errors(f.error());
  auto failures = run_cases(*p, &*program, *f);
  ASSERT_EQ(failures.size(), 4U);
  EXPECT_EQ(
      failures[0].message,
      "c.yaml:3: bpf(0, NULL, 0): expected allow audited would deny EACCES, got allow audited would deny "
      "EPERM (rule `dangerous-calls` of deny-dangerous)");
  EXPECT_NE(failures[1].message.find("expected allow audited rule other, got"), std::string::npos)
      << failures[1].message;
  // Not trapped: the rules never decided.
  EXPECT_NE(failures[2].message.find("got allow unaudited (not trapped)"), std::string::npos)
      << failures[2].message;
  EXPECT_NE(failures[3].message.find("getpid(): expected allow rule none"), std::string::npos)
      << failures[3].message;
  // Enforce mode: `would` is the action itself; `rule none` a trapped call no rule matched.
  auto devices = shipped("rootless-devices");
  ASSERT_TRUE(devices);
  auto enforce = parse_cases(
      "cases:\n"
      "  - 'mknod(\"/dev/sda\", S_IFBLK, 8:0) -> deny EPERM audited would deny EPERM rule other-devices'\n"
      "  - 'mknod(\"/dev/sda\", S_IFBLK, 8:0) -> deny EPERM would allow'\n",
      "c.yaml");
  ASSERT_TRUE(enforce.has_value()) << describe_errors(enforce.error());
  auto enforce_failures = run_cases(*devices, nullptr, *enforce);
  ASSERT_EQ(enforce_failures.size(), 1U);
  EXPECT_NE(enforce_failures[0].message.find(
                "c.yaml:3: mknod(\"/dev/sda\", S_IFBLK, 8:0): expected deny EPERM would allow, got"),
            std::string::npos)
      << enforce_failures[0].message;
}

TEST(Cases, WhatTheEmulatorRefusesIsWhatTheCallerGets) {
  auto p = shipped("rootless-tuning");
  ASSERT_TRUE(p);
  auto program = filter::compile(*p);
  ASSERT_TRUE(program.has_value());
  auto f = parse_cases(
      "cases:\n"
      "  - 'setpriority(PRIO_USER, 0, -5) -> emulate'\n"
      "  - 'setpriority(PRIO_USER, 0, -5) -> deny EPERM would emulate rule nice-down-to-minus-5'\n"
      "  - 'setpriority(PRIO_PROCESS, 0, -5) -> emulate'\n"
      "  - 'sched_setattr(0, {policy=SCHED_RR, priority=5}, 1) -> deny EINVAL'\n"
      "  - 'sched_setscheduler(-1, SCHED_FIFO, {sched_priority=5}) -> deny EINVAL'\n",
      "c.yaml");
  ASSERT_TRUE(f.has_value()) << describe_errors(f.error());
  auto failures = run_cases(*p, &*program, *f);
  ASSERT_EQ(failures.size(), 1U);
  EXPECT_EQ(failures[0].message,
            "c.yaml:2: setpriority(PRIO_USER, 0, -5): expected emulate, got deny EPERM unaudited (rule "
            "`nice-down-to-minus-5`: emulate, answered EPERM by the emulator (which PRIO_USER: only "
            "PRIO_PROCESS is emulated))");
  // The daemon's own function, as the emulator asks it.
  const auto rule = std::ranges::find(p->rules, "nice-down-to-minus-5", &policy::Rule::name);
  ASSERT_NE(rule, p->rules.end());
  EXPECT_EQ(emul::sched::check_call("setpriority", f->cases[0].call, *rule).err, EPERM);
  EXPECT_EQ(emul::sched::check_call("setpriority", f->cases[2].call, *rule).err, 0);
}

TEST(Cases, TheFilterItselfAnswersANestedListener) {
  auto p = shipped("deny-dangerous");
  ASSERT_TRUE(p);
  auto program = filter::compile(*p);
  ASSERT_TRUE(program.has_value());
  // seccomp(SECCOMP_SET_MODE_FILTER, SECCOMP_FILTER_FLAG_NEW_LISTENER, prog)
  const auto c = call("seccomp(1, 8, NULL)");
  const Outcome o = evaluate(*p, &*program, c);
  EXPECT_FALSE(o.trapped);
  EXPECT_EQ(o.decision.action, Action::Deny);
  EXPECT_EQ(o.decision.err, EBUSY);
}

// ---- trap conditions agree with the compiled filter ----
TEST(Traps, AgreeWithTheCompiledFilter) {
  const auto own = load(
      "name: mixed\n"
      "rules:\n"
      "  - syscalls: [mknodat]\n"
      "    match: {type: block}\n"
      "    action: deny\n"
      "  - syscalls: [personality]\n"
      "    args: [{index: 0, op: eq, value: 8}]\n"
      "    action: return\n"
      "    value: 0\n"
      "  - syscalls: [personality]\n"
      "    args: [{index: 0, op: masked_eq, mask: 0xff00, value: 0x100}, {index: 1, op: gt, value: 3}]\n"
      "    action: kill\n"
      "  - syscalls: [getpid]\n"
      "    action: allow\n");
  ASSERT_TRUE(own);
  std::vector<std::shared_ptr<const policy::Policy>> policies{own};
  for (const char* name : {"rootless-devices", "audit-dangerous", "deny-dangerous"})
    policies.push_back(shipped(name));
  const std::vector<std::string> calls{
      R"(mknod("/x", S_IFCHR, 1:3))",
      R"(mknod("/x", S_IFBLK, 8:0))",
      R"(mknod("/x", S_IFIFO, 0))",
      R"(mknodat(AT_FDCWD, "/x", S_IFBLK, 8:0))",
      R"(mknodat(AT_FDCWD, "/x", S_IFCHR, 1:3))",
      R"(mknodat(AT_FDCWD, "/x", S_IFREG, 0))",
      "personality(8)",
      "personality(9)",
      "personality(0x1ff, 4)",
      "personality(0x1ff, 3)",
      "personality(0x200, 9)",
      "getpid()",
      "bpf(0, NULL, 0)",
      R"(mount("a", "/b", "c", 0, NULL))",
      R"(chroot("/"))",
      "reboot(0, 0, 0, NULL)",
  };
  for (const auto& p : policies) {
    ASSERT_TRUE(p);
    auto program = filter::compile(*p);
    ASSERT_TRUE(program.has_value()) << program.error().message();
    const auto traps = trap_set(*p);
    for (const auto& text : calls) {
      const auto c = call(text);
      bool trapped = false;
      for (const auto& t : traps) {
        if (t.nr != c.nr) continue;
        for (const auto& conj : t.when) trapped = trapped || holds(conj, c.args);
      }
      const std::uint32_t ret = run_bpf(*program, AUDIT_ARCH_X86_64, c.nr, c.args);
      EXPECT_EQ((ret & SECCOMP_RET_ACTION_FULL) == SECCOMP_RET_USER_NOTIF, trapped)
          << p->name << ": " << text;
    }
  }
}

TEST(Traps, Describe) {
  const auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  const auto traps = trap_set(*p);
  ASSERT_EQ(traps.size(), 2U);
  ASSERT_EQ(traps[0].when.size(), 2U);
  EXPECT_EQ(describe(traps[0].when[0]), "arg1 & S_IFMT == S_IFCHR");
  EXPECT_EQ(describe(Conjunction{}), "always");
}

// ---- explain ----
TEST(Explain, SchedulingPoliciesByName) {
  const auto p = load(
      "name: rt\nrules:\n  - syscalls: [sched_setscheduler]\n    match: {sched_policy: [SCHED_FIFO, "
      "SCHED_RR]}\n"
      "    action: deny\n  - syscalls: [sched_setscheduler]\n    action: deny\n    errno: EPERM\n");
  ASSERT_TRUE(p);
  const std::string text = explain_text(*p, 10);
  EXPECT_NE(text.find("sched policy in [SCHED_FIFO, SCHED_RR]"), std::string::npos) << text;
}

TEST(Explain, JsonHasTheWholeStory) {
  const auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  const json j = json::parse(explain_json(*p, 46));
  EXPECT_EQ(j["name"], "rootless-devices");
  EXPECT_EQ(j["version"], p->version);
  EXPECT_EQ(j["bpf_instructions"], 46);
  ASSERT_EQ(j["trapped"].size(), 2U);
  EXPECT_EQ(j["trapped"][0]["syscall"], "mknod");
  EXPECT_EQ(j["trapped"][0]["numbers"]["x86_64"], 133);
  EXPECT_EQ(j["trapped"][0]["numbers"]["i386"], 14);
  EXPECT_EQ(j["trapped"][0]["when"][0][0]["op"], "masked_eq");
  ASSERT_EQ(j["rules"].size(), 3U);
  EXPECT_EQ(j["rules"][2]["action"], "deny");
  EXPECT_EQ(j["rules"][2]["errno"], "EPERM");
  EXPECT_EQ(j["rules"][2]["audit"], true);
  ASSERT_EQ(j["decisions"].size(), 2U);
  const auto& rows = j["decisions"][0]["rows"];
  ASSERT_EQ(rows.size(), 4U);
  EXPECT_EQ(rows[0]["rule"], "harmless-char-devices");
  EXPECT_EQ(rows[3]["when"], "otherwise");
  EXPECT_EQ(rows[3]["then"], "allow (kernel decides)");
  const std::string text = explain_text(*p, 46);
  for (const char* part :
       {"policy      rootless-devices", "46 BPF instructions", "when arg1 & S_IFMT == S_IFCHR",
        "deny EPERM, audited", "otherwise", "-> allow (kernel decides)"}) {
    EXPECT_NE(text.find(part), std::string::npos) << part << "\n" << text;
  }
}

// ---- OCI profiles ----
std::vector<json> entries_for(const json& profile, const std::string& name) {
  std::vector<json> out;
  for (const auto& e : profile["syscalls"]) {
    for (const auto& n : e["names"]) {
      if (n == name) out.push_back(e);
    }
  }
  return out;
}

TEST(OciProfile, MinimalProfile) {
  const auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  auto r = oci_profile(*p, OciOptions{});
  ASSERT_TRUE(r.has_value()) << r.error();
  const json j = json::parse(r->json);
  EXPECT_EQ(j["defaultAction"], "SCMP_ACT_ALLOW");
  EXPECT_EQ(j["architectures"], json({"SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"}));
  EXPECT_EQ(j["listenerPath"], "/run/sysvisor/oci.sock");
  EXPECT_EQ(j["listenerMetadata"], "policy=rootless-devices");
  const auto mknod = entries_for(j, "mknod");
  ASSERT_EQ(mknod.size(), 2U);
  EXPECT_EQ(mknod[0]["action"], "SCMP_ACT_NOTIFY");
  EXPECT_EQ(mknod[0]["args"],
            json::parse(R"([{"index":1,"value":61440,"valueTwo":8192,"op":"SCMP_CMP_MASKED_EQ"}])"));
  EXPECT_EQ(entries_for(j, "mknodat")[0]["args"][0]["index"], 2);
  EXPECT_TRUE(r->warnings.empty());
}

TEST(OciProfile, MergeTakesTrappedCallsOutOfUnconditionalRules) {
  const auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  OciOptions o;
  o.base = read(fs::path(SYSVISOR_SOURCE_DIR) / "tests/data/containers-common-seccomp.json");
  o.listener_path = "/x.sock";
  auto r = oci_profile(*p, o);
  ASSERT_TRUE(r.has_value()) << r.error();
  const json j = json::parse(r->json);
  const json base = json::parse(*o.base);
  EXPECT_EQ(j["defaultAction"], base["defaultAction"]);
  EXPECT_EQ(j["archMap"], base["archMap"]);
  EXPECT_EQ(j["listenerPath"], "/x.sock");
  const auto mknod = entries_for(j, "mknod");
  int notify = 0;
  int allow = 0;
  for (const auto& e : mknod) {
    EXPECT_EQ(e["names"].size(), 1U) << e;  // out of the big unconditional list
    ASSERT_EQ(e["args"].size(), 1U) << e;
    EXPECT_EQ(e["args"][0]["op"], "SCMP_CMP_MASKED_EQ");
    const auto type = e["args"][0]["valueTwo"].get<unsigned>();
    if (e["action"] == "SCMP_ACT_NOTIFY") {
      ++notify;
      EXPECT_TRUE(type == S_IFCHR || type == S_IFBLK) << e;
    } else {
      ++allow;
      EXPECT_EQ(e["action"], "SCMP_ACT_ALLOW");
      EXPECT_TRUE(type != S_IFCHR && type != S_IFBLK) << e;
    }
  }
  EXPECT_EQ(notify, 2);
  EXPECT_EQ(allow, 14);  // the other 14 values of (mode & S_IFMT)
  // Everything else of the base is still there.
  EXPECT_EQ(entries_for(j, "read").size(), 1U);
  EXPECT_EQ(entries_for(j, "personality").size(), 5U);
}

TEST(OciProfile, MergeKeepsConditionsOfTheBaseAndWarnsAboutRefusals) {
  const auto p = load(
      "name: p\n"
      "rules:\n"
      "  - syscalls: [personality]\n"
      "    args: [{index: 0, op: eq, value: 8}]\n"
      "    action: deny\n"
      "  - syscalls: [kexec_load]\n"
      "    action: deny\n");
  ASSERT_TRUE(p);
  OciOptions o;
  o.base = R"({"defaultAction":"SCMP_ACT_ERRNO","syscalls":[
    {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":0,"valueTwo":0,"op":"SCMP_CMP_EQ"}]},
    {"names":["personality"],"action":"SCMP_ACT_ALLOW","args":[{"index":0,"value":8,"valueTwo":0,"op":"SCMP_CMP_EQ"}]},
    {"names":["personality","read"],"action":"SCMP_ACT_LOG","args":[{"index":1,"value":5,"valueTwo":0,"op":"SCMP_CMP_GT"}]}]})";
  auto r = oci_profile(*p, o);
  ASSERT_TRUE(r.has_value()) << r.error();
  const json j = json::parse(r->json);
  const auto pers = entries_for(j, "personality");
  // arg0 == 0 survives as arg0 == 0 (it implies arg0 != 8); arg0 == 8 is gone (it is trapped);
  // the LOG rule comes back as arg0 != 8 && arg1 > 5; one NOTIFY.
  ASSERT_EQ(pers.size(), 3U) << j.dump(1);
  EXPECT_EQ(pers[0]["action"], "SCMP_ACT_NOTIFY");
  EXPECT_EQ(pers[1]["args"], json::parse(R"([{"index":0,"value":0,"valueTwo":0,"op":"SCMP_CMP_EQ"}])"));
  EXPECT_EQ(pers[2]["action"], "SCMP_ACT_LOG");
  EXPECT_EQ(pers[2]["args"].size(), 2U);
  EXPECT_EQ(entries_for(j, "read").size(), 1U);
  ASSERT_EQ(r->warnings.size(), 2U);
  EXPECT_NE(r->warnings[1].find("kexec_load"), std::string::npos) << r->warnings[1];
  EXPECT_FALSE(oci_profile(*p, OciOptions{"[1,2]", "/x"}).has_value());
  EXPECT_FALSE(oci_profile(*p, OciOptions{"{\"defaultAction\":1}", "/x"}).has_value());
  EXPECT_FALSE(
      oci_profile(
          *p, OciOptions{"{\"defaultAction\":\"SCMP_ACT_ALLOW\",\"syscalls\":[{\"names\":[\"personality\"],"
                         "\"action\":\"SCMP_ACT_LOG\",\"args\":[{\"index\":\"x\"}]}]}",
                         "/x"})
          .has_value());
}

// ---- the merged profile on the real kernel, loaded the way runc and crun load it ----
std::uint32_t scmp_action(const std::string& name, int errno_ret) {
  if (name == "SCMP_ACT_ALLOW") return SCMP_ACT_ALLOW;
  if (name == "SCMP_ACT_ERRNO") return SCMP_ACT_ERRNO(static_cast<std::uint16_t>(errno_ret));
  if (name == "SCMP_ACT_NOTIFY") return SCMP_ACT_NOTIFY;
  if (name == "SCMP_ACT_LOG") return SCMP_ACT_LOG;
  if (name == "SCMP_ACT_KILL_PROCESS") return SCMP_ACT_KILL_PROCESS;
  return SCMP_ACT_KILL_THREAD;
}

scmp_compare scmp_op(const std::string& op) {
  if (op == "SCMP_CMP_NE") return SCMP_CMP_NE;
  if (op == "SCMP_CMP_LT") return SCMP_CMP_LT;
  if (op == "SCMP_CMP_LE") return SCMP_CMP_LE;
  if (op == "SCMP_CMP_GE") return SCMP_CMP_GE;
  if (op == "SCMP_CMP_GT") return SCMP_CMP_GT;
  if (op == "SCMP_CMP_MASKED_EQ") return SCMP_CMP_MASKED_EQ;
  return SCMP_CMP_EQ;
}

// As runc's libcontainer/seccomp does: one seccomp_rule_add per name in profile order, rules
// whose action is the default skipped; a container without capabilities (includes.caps rules
// skipped, excludes.caps rules kept).
scmp_filter_ctx load_like_runc(const json& profile) {
  const int default_errno = profile.value("defaultErrnoRet", EPERM);
  const auto default_action = scmp_action(profile["defaultAction"], default_errno);
  scmp_filter_ctx ctx = seccomp_init(default_action);
  EXPECT_NE(ctx, nullptr);
  seccomp_arch_add(ctx, SCMP_ARCH_X86);
  seccomp_arch_add(ctx, SCMP_ARCH_X32);
  for (const auto& e : profile["syscalls"]) {
    if (e.contains("includes") && e["includes"].contains("caps") && !e["includes"]["caps"].empty()) continue;
    if (e.contains("includes") && e["includes"].contains("arches") && !e["includes"]["arches"].empty())
      continue;
    const auto action = scmp_action(e["action"], e.value("errnoRet", default_errno));
    if (action == default_action) continue;
    std::vector<scmp_arg_cmp> args;
    for (const auto& a : e.value("args", json::array())) {
      args.push_back(scmp_arg_cmp{a["index"].get<unsigned>(), scmp_op(a["op"]),
                                  a["value"].get<std::uint64_t>(), a["valueTwo"].get<std::uint64_t>()});
    }
    for (const auto& n : e["names"]) {
      const int nr = seccomp_syscall_resolve_name(n.get<std::string>().c_str());
      if (nr == __NR_SCMP_ERROR) continue;
      const int rc = seccomp_rule_add_array(ctx, action, nr, static_cast<unsigned>(args.size()), args.data());
      EXPECT_EQ(rc, 0) << n << " " << e.dump();
    }
  }
  return ctx;
}

struct KernelOutcome {
  int notifications = 0;
  int char_result = -1;  // errno of mknod(S_IFCHR), 0 on success
  int fifo_result = -1;  // errno of mknod(S_IFIFO)
};

// In a child: install the profile, make a char device and a FIFO in a grandchild, answer each
// notification with EXDEV, report what happened through a pipe.
KernelOutcome run_on_kernel(const json& profile, const fs::path& dir) {
  int report[2];
  EXPECT_EQ(::pipe(report), 0);
  const pid_t child = ::fork();
  if (child == 0) {
    ::close(report[0]);
    scmp_filter_ctx ctx = load_like_runc(profile);
    if (seccomp_load(ctx) != 0) ::_exit(90);
    const int listener = seccomp_notify_fd(ctx);
    int results[2];
    if (::pipe(results) != 0) ::_exit(91);
    const pid_t worker = ::fork();
    if (worker == 0) {
      int r[2];
      r[0] = ::mknod((dir / "chr").c_str(), S_IFCHR | 0600, makedev(1, 3)) == 0 ? 0 : errno;
      r[1] = ::mknod((dir / "fifo").c_str(), S_IFIFO | 0600, 0) == 0 ? 0 : errno;
      if (::write(results[1], r, sizeof r) != sizeof r) ::_exit(1);
      ::_exit(0);
    }
    KernelOutcome out;
    while (true) {
      pollfd pfd{listener, POLLIN, 0};
      if (listener < 0 || ::poll(&pfd, 1, 2000) <= 0 || (pfd.revents & POLLIN) == 0) break;
      seccomp_notif* req = nullptr;
      seccomp_notif_resp* resp = nullptr;
      if (seccomp_notify_alloc(&req, &resp) != 0) break;
      if (seccomp_notify_receive(listener, req) == 0) {
        ++out.notifications;
        resp->id = req->id;
        resp->error = -EXDEV;
        resp->val = 0;
        resp->flags = 0;
        (void)seccomp_notify_respond(listener, resp);
      }
      seccomp_notify_free(req, resp);
    }
    int r[2] = {-1, -1};
    if (::read(results[0], r, sizeof r) == sizeof r) {
      out.char_result = r[0];
      out.fifo_result = r[1];
    }
    int status = 0;
    ::waitpid(worker, &status, 0);
    if (::write(report[1], &out, sizeof out) != sizeof out) ::_exit(92);
    ::_exit(0);
  }
  ::close(report[1]);
  KernelOutcome out;
  EXPECT_EQ(::read(report[0], &out, sizeof out), static_cast<ssize_t>(sizeof out));
  ::close(report[0]);
  int status = 0;
  ::waitpid(child, &status, 0);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  return out;
}

class TempDir {
 public:
  TempDir() {
    char name[] = "/tmp/sysvisor-tools-XXXXXX";
    path_ = ::mkdtemp(name);
  }
  ~TempDir() { fs::remove_all(path_); }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const fs::path& path() const { return path_; }

 private:
  fs::path path_;
};

TEST(OciProfileOnTheKernel, AnUnconditionalAllowHidesAConditionalNotify) {
  // What a naive merge (the NOTIFY rules appended to the base) gives: libseccomp 2.5 lets the
  // unconditional ALLOW of mknod win, and nothing is ever notified.
  json naive = json::parse(read(fs::path(SYSVISOR_SOURCE_DIR) / "tests/data/containers-common-seccomp.json"));
  naive["syscalls"].push_back(json::parse(
      R"({"names":["mknod"],"action":"SCMP_ACT_NOTIFY","args":[{"index":1,"value":61440,"valueTwo":8192,"op":"SCMP_CMP_MASKED_EQ"}]})"));
  TempDir dir;
  const auto out = run_on_kernel(naive, dir.path());
  EXPECT_EQ(out.notifications, 0);
  EXPECT_EQ(out.fifo_result, 0);
}

TEST(OciProfileOnTheKernel, TheMergedProfileTrapsWhatThePolicyTraps) {
  const auto p = shipped("rootless-devices");
  ASSERT_TRUE(p);
  OciOptions o;
  o.base = read(fs::path(SYSVISOR_SOURCE_DIR) / "tests/data/containers-common-seccomp.json");
  auto r = oci_profile(*p, o);
  ASSERT_TRUE(r.has_value()) << r.error();
  TempDir dir;
  const auto out = run_on_kernel(json::parse(r->json), dir.path());
  EXPECT_EQ(out.notifications, 1);    // the char device, and only that
  EXPECT_EQ(out.char_result, EXDEV);  // our answer
  EXPECT_EQ(out.fifo_result, 0);      // the base's ALLOW, as before
  EXPECT_TRUE(fs::exists(dir.path() / "fifo"));
}

// ---- shipped OCI profiles are what the tool makes today ----
TEST(OciProfile, ShippedProfilesAreUpToDate) {
  const fs::path dir = fs::path(SYSVISOR_SOURCE_DIR) / "policies" / "oci";
  std::vector<std::string> names;
  for (const auto& e : fs::directory_iterator(fs::path(SYSVISOR_SOURCE_DIR) / "policies")) {
    const std::string file = e.path().filename().string();
    if (file.ends_with(".yaml") && !file.ends_with(".cases.yaml"))
      names.push_back(file.substr(0, file.size() - 5));
  }
  ASSERT_GE(names.size(), 5U) << "every shipped policy has its profile";
  for (const std::string& name : names) {
    const auto p = shipped(name);
    ASSERT_TRUE(p);
    auto r = oci_profile(*p, OciOptions{});
    ASSERT_TRUE(r.has_value());
    EXPECT_EQ(read(dir / (name + ".json")), r->json)
        << name << ": regenerate with `sysvisor policy oci-profile policies/" << name
        << ".yaml > policies/oci/" << name << ".json`";
  }
}

}  // namespace
}  // namespace sysvisor::tools
