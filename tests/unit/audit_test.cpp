// The audit record (proto/audit.proto through protobuf's JSON mapping), the uid mapping and
// the token bucket of the per-container rate limit.
#include "sysvisor/audit.hpp"

#include <google/protobuf/util/json_util.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include <nlohmann/json.hpp>

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

}  // namespace
}  // namespace sysvisor
