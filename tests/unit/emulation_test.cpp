// Pure parts of the emulators: cgroup files, the sysinfo computation and its i386 layout,
// NSpid lines, the scheduling limits.
#include <gtest/gtest.h>
#include <sched.h>

#include <cstring>

#include "sysvisor/cgroup.hpp"
#include "sysvisor/sched.hpp"
#include "sysvisor/sysinfo.hpp"

namespace sysvisor {
namespace {

TEST(Cgroup, ProcCgroupOfAHybridHost) {
  const auto p = cgroup::parse_proc_cgroup(
      "9:name=systemd:/\n8:pids:/box\n4:memory:/a/b\n2:cpu,cpuacct:/c\n0::/unified/x\n");
  ASSERT_TRUE(p.v2);
  EXPECT_EQ(*p.v2, "/unified/x");
  EXPECT_EQ(p.v1.at("memory"), "/a/b");
  EXPECT_EQ(p.v1.at("pids"), "/box");
  EXPECT_EQ(p.v1.at("cpu"), "/c");
  EXPECT_EQ(p.v1.at("cpuacct"), "/c");
  EXPECT_EQ(p.v1.at("name=systemd"), "/");
  EXPECT_FALSE(cgroup::parse_proc_cgroup("garbage\n\n1:x\n").v2);
}

TEST(Cgroup, MountsFromMountinfo) {
  const auto m = cgroup::parse_cgroup_mounts(
      "31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
      "35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory\n"
      "36 31 0:33 / /sys/fs/cgroup/cpu,cpuacct rw,relatime - cgroup cgroup rw,cpu,cpuacct\n"
      "39 31 0:36 /sub /elsewhere rw,relatime - cgroup cgroup rw,pids\n"
      "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw,nsdelegate\n");
  ASSERT_TRUE(m.v2);
  EXPECT_EQ(*m.v2, "/sys/fs/cgroup/unified");
  EXPECT_EQ(m.v1.at("memory"), "/sys/fs/cgroup/memory");
  EXPECT_EQ(m.v1.at("cpuacct"), "/sys/fs/cgroup/cpu,cpuacct");
  EXPECT_FALSE(m.v1.contains("pids")) << "a bind of a subtree is not the hierarchy's root";
  EXPECT_FALSE(m.v1.contains("relatime"));
}

TEST(Cgroup, Sizes) {
  EXPECT_EQ(cgroup::parse_size("256M"), 256ULL << 20U);
  EXPECT_EQ(cgroup::parse_size("256MiB"), 256ULL << 20U);
  EXPECT_EQ(cgroup::parse_size("1g"), 1ULL << 30U);
  EXPECT_EQ(cgroup::parse_size("4096"), 4096ULL);
  EXPECT_EQ(cgroup::parse_size("12K"), 12ULL << 10U);
  EXPECT_FALSE(cgroup::parse_size("M"));
  EXPECT_FALSE(cgroup::parse_size("12X"));
  EXPECT_FALSE(cgroup::parse_size("12Mx"));
  EXPECT_FALSE(cgroup::parse_size("99999999999999T"));
}

TEST(Sysinfo, LimitsAndStat) {
  using emul::sysinfo::parse_limit;
  EXPECT_EQ(parse_limit("268435456\n"), 268435456ULL);
  EXPECT_EQ(parse_limit("max\n"), std::numeric_limits<std::uint64_t>::max());
  EXPECT_FALSE(parse_limit("lots\n"));
  EXPECT_EQ(emul::sysinfo::stat_value("cache 5\nshmem 42\ntotal_shmem 7\n", "shmem"), 42ULL);
  EXPECT_EQ(emul::sysinfo::stat_value("cache 5\nshmem 42\ntotal_shmem 7\n", "total_shmem"), 7ULL);
  EXPECT_FALSE(emul::sysinfo::stat_value("shmemx 1\n", "shmem"));
  EXPECT_EQ(emul::sysinfo::parse_start_ticks("42 (a (b) c) S 1 42 42 0 -1 4194560 1 0 0 0 0 0 0 0 20 0 1 0 "
                                             "12345 1000 100"),
            12345ULL);
  EXPECT_FALSE(emul::sysinfo::parse_start_ticks("42 (x) S 1"));
}

struct ::sysinfo host_info() {
  struct ::sysinfo h {};
  h.uptime = 1000;
  h.totalram = 4ULL << 20U;  // in 4 KiB units: 16 GiB
  h.freeram = 2ULL << 20U;
  h.sharedram = 1000;
  h.bufferram = 2000;
  h.totalswap = 1ULL << 20U;
  h.freeswap = 1ULL << 20U;
  h.procs = 300;
  h.mem_unit = 4096;
  return h;
}

TEST(Sysinfo, ComputeNarrowsToTheLimit) {
  emul::sysinfo::Usage u;
  u.mem_limit = 256ULL << 20U;
  u.mem_usage = 56ULL << 20U;
  u.shmem = 1ULL << 20U;
  u.swap_limit = 0;
  u.tasks = 3;
  u.uptime = 12;
  const auto s = emul::sysinfo::compute(host_info(), u);
  EXPECT_EQ(s.mem_unit, 1U);
  EXPECT_EQ(s.totalram, 256ULL << 20U);
  EXPECT_EQ(s.freeram, 200ULL << 20U);
  EXPECT_EQ(s.sharedram, 1ULL << 20U);
  EXPECT_EQ(s.bufferram, 0U);
  EXPECT_EQ(s.totalswap, 0U);
  EXPECT_EQ(s.freeswap, 0U);
  EXPECT_EQ(s.procs, 3U);
  EXPECT_EQ(s.uptime, 12);
}

TEST(Sysinfo, ComputeNeverAboveTheHostNorNegative) {
  emul::sysinfo::Usage u;
  u.mem_limit = std::numeric_limits<std::uint64_t>::max();  // "max"
  u.mem_usage = 1;
  u.uptime = 5000;  // later than the host's boot: ignored
  auto s = emul::sysinfo::compute(host_info(), u);
  EXPECT_EQ(s.totalram, 16ULL << 30U);
  EXPECT_EQ(s.freeram, 8ULL << 30U) << "no limit: the host's figures";
  EXPECT_EQ(s.uptime, 1000);
  u.mem_limit = 100;
  u.mem_usage = 500;  // usage above the limit (the kernel allows a moment of it)
  s = emul::sysinfo::compute(host_info(), u);
  EXPECT_EQ(s.totalram, 100U);
  EXPECT_EQ(s.freeram, 0U);
}

// Whatever the cgroup says (usage above the limit, shmem above usage, swap limits larger than
// the host's swap, "max"), the figures are those a kernel could give: no free above its total.
TEST(Sysinfo, EveryFigureIsConsistent) {
  constexpr std::uint64_t kMax = std::numeric_limits<std::uint64_t>::max();
  const std::vector<std::optional<std::uint64_t>> amounts = {std::nullopt,  0,           1,   100ULL << 20U,
                                                             256ULL << 20U, 1ULL << 40U, kMax};
  const struct ::sysinfo host = host_info();
  for (const auto& limit : amounts) {
    for (const auto& usage : amounts) {
      for (const auto& shmem : amounts) {
        for (const auto& swap : amounts) {
          emul::sysinfo::Usage u;
          u.mem_limit = limit;
          u.mem_usage = usage;
          u.shmem = shmem;
          u.swap_limit = swap;
          u.swap_usage = usage;
          const auto s = emul::sysinfo::compute(host, u);
          const std::string at =
              "limit " + std::to_string(limit.value_or(7)) + " usage " + std::to_string(usage.value_or(7)) +
              " shmem " + std::to_string(shmem.value_or(7)) + " swap " + std::to_string(swap.value_or(7));
          const auto bytes = [&](unsigned long v) { return static_cast<std::uint64_t>(v) * s.mem_unit; };
          ASSERT_GT(s.mem_unit, 0U) << at;
          EXPECT_LE(bytes(s.totalram), static_cast<std::uint64_t>(host.totalram) * host.mem_unit) << at;
          EXPECT_LE(bytes(s.freeram) + bytes(s.bufferram), bytes(s.totalram)) << at;
          EXPECT_LE(bytes(s.sharedram), bytes(s.totalram)) << at;
          EXPECT_LE(bytes(s.freeswap), bytes(s.totalswap)) << at;
          EXPECT_LE(bytes(s.totalswap), static_cast<std::uint64_t>(host.totalswap) * host.mem_unit) << at;
        }
      }
    }
  }
}

TEST(Sysinfo, CompatLayoutScalesLikeTheKernel) {
  struct ::sysinfo s {};
  s.uptime = 77;
  s.totalram = 256ULL << 20U;
  s.freeram = 128ULL << 20U;
  s.procs = 9;
  s.mem_unit = 1;
  auto bytes = emul::sysinfo::encode(s, true);
  ASSERT_EQ(bytes.size(), 64U);
  std::uint32_t v[16];
  std::memcpy(v, bytes.data(), sizeof v);
  EXPECT_EQ(v[0], 77U);
  EXPECT_EQ(v[4], 256U << 20U);
  EXPECT_EQ(v[13], 1U) << "fits in 32 bits: mem_unit stays 1";
  std::uint16_t procs = 0;
  std::memcpy(&procs, bytes.data() + 40, 2);
  EXPECT_EQ(procs, 9U);
  s.totalram = 16ULL << 30U;  // 16 GiB does not fit
  s.freeram = 8ULL << 30U;
  bytes = emul::sysinfo::encode(s, true);
  std::memcpy(v, bytes.data(), sizeof v);
  EXPECT_EQ(v[13], 4096U);
  EXPECT_EQ(std::uint64_t{v[4]} * v[13], 16ULL << 30U);
  EXPECT_EQ(std::uint64_t{v[5]} * v[13], 8ULL << 30U);
  EXPECT_EQ(emul::sysinfo::encode(s, false).size(), sizeof(struct ::sysinfo));
}

TEST(Sched, NspidLines) {
  EXPECT_EQ(emul::sched::parse_nspid("Name:\tsh\nNSpid:\t4711\t12\t1\nNSpgid:\t1\n"),
            (std::vector<pid_t>{4711, 12, 1}));
  EXPECT_EQ(emul::sched::parse_nspid("NSpid:\t9\n"), (std::vector<pid_t>{9}));
  EXPECT_FALSE(emul::sched::parse_nspid("Name:\tsh\n"));
  EXPECT_FALSE(emul::sched::parse_nspid("NSpid:\tx\n"));
}

TEST(Sched, RequestsWithinTheRulesBounds) {
  using emul::sched::check_request;
  using emul::sched::Request;
  policy::Rule bounded;
  bounded.match.priority = policy::IntRange{std::nullopt, 10};
  bounded.match.nice = policy::IntRange{-5, std::nullopt};
  const policy::Rule unbounded;
  EXPECT_EQ(check_request(Request{SCHED_FIFO, 10, {}, false}, bounded).err, 0);
  EXPECT_EQ(check_request(Request{SCHED_RR | emul::sched::kResetOnFork, 1, {}, false}, bounded).err, 0);
  EXPECT_EQ(check_request(Request{SCHED_FIFO, 11, {}, false}, bounded).err, EPERM);
  EXPECT_EQ(check_request(Request{SCHED_FIFO, 5, {}, false}, unbounded).err, EPERM)
      << "a rule without priority.max grants no real-time priority";
  EXPECT_EQ(check_request(Request{SCHED_FIFO, 0, {}, false}, bounded).err, EINVAL);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 3, {}, false}, bounded).err, EINVAL);
  EXPECT_EQ(check_request(Request{6 /* SCHED_DEADLINE */, 0, {}, false}, bounded).err, EPERM);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, -5, true}, bounded).err, 0);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, -6, true}, bounded).err, EACCES);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, -6, false}, bounded).err, EPERM);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, -1, true}, unbounded).err, EACCES);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, 19, true}, unbounded).err, 0);
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, 40, true}, unbounded).err, 0) << "setpriority clamps";
  EXPECT_EQ(check_request(Request{SCHED_OTHER, 0, 40, false}, unbounded).err, EINVAL);
}

}  // namespace
}  // namespace sysvisor
