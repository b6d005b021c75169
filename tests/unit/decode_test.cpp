// The pure parts of decoding a trapped call: path normalisation, the container's view of a
// host path, and the register-held fields.
#include "sysvisor/decode.hpp"

#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>

#include "sysvisor/syscalls.hpp"

namespace sysvisor::decode {
namespace {

using policy::normalize_path;

TEST(NormalizePath, AbsoluteAndRelative) {
  EXPECT_EQ(normalize_path("/", "/dev/null"), "/dev/null");
  EXPECT_EQ(normalize_path("/dev", "null"), "/dev/null");
  EXPECT_EQ(normalize_path("/dev/", "./null"), "/dev/null");
  EXPECT_EQ(normalize_path("/ignored", "/a//b///c/"), "/a/b/c");
  EXPECT_EQ(normalize_path("/", "/"), "/");
  EXPECT_EQ(normalize_path("/", ""), "/");
}

TEST(NormalizePath, DotDotNeverClimbsAboveTheRoot) {
  EXPECT_EQ(normalize_path("/dev", "../etc/shadow"), "/etc/shadow");
  EXPECT_EQ(normalize_path("/dev", "../../../../etc/shadow"), "/etc/shadow");
  EXPECT_EQ(normalize_path("/", "/../../dev/./../dev/null"), "/dev/null");
  EXPECT_EQ(normalize_path("/a/b", ".."), "/a");
  EXPECT_EQ(normalize_path("/a/b", "c/../../d"), "/a/d");
}

TEST(ContainerView, StripsTheRootOnlyAtAComponentBoundary) {
  EXPECT_EQ(container_view("/", "/srv/x"), "/srv/x");
  EXPECT_EQ(container_view("/tmp/rootfs", "/tmp/rootfs/dev"), "/dev");
  EXPECT_EQ(container_view("/tmp/rootfs", "/tmp/rootfs"), "/");
  EXPECT_EQ(container_view("/tmp/rootfs", "/tmp/rootfs2/dev"), "(unreachable)/tmp/rootfs2/dev");
  EXPECT_EQ(container_view("/tmp/rootfs", "/etc"), "(unreachable)/etc");
  // Nothing outside the root can look absolute to a matcher.
  EXPECT_NE(normalize_path("/", container_view("/r", "/etc"))[1], 'e');
}

policy::Call registers(int nr, std::array<std::uint64_t, 6> args, std::uint32_t fields) {
  seccomp_data data{};
  for (std::size_t i = 0; i < args.size(); ++i) data.args[i] = args[i];
  policy::Call call = raw_call(nr, data, false);
  const policy::SyscallInfo* info = policy::syscall_info(nr);
  EXPECT_NE(info, nullptr);
  if (info != nullptr) from_registers(call, *info, fields);
  return call;
}

TEST(FromRegisters, MknodTypeAndDeviceAsTheKernelTruncatesThem) {
  auto c = registers(SYS_mknod, {0x1000, 0xdead0000 | S_IFCHR | 0666, makedev(1, 3)}, policy::kFieldDevice);
  ASSERT_TRUE(c.type.has_value());
  EXPECT_EQ(*c.type, policy::FileType::Char);
  EXPECT_EQ(c.major, 1U);
  EXPECT_EQ(c.minor, 3U);
  c = registers(SYS_mknodat, {0xffffff9c, 0x1000, S_IFBLK | 0600, makedev(8, 0) | 0xffffffff00000000},
                policy::kFieldDevice);
  ASSERT_TRUE(c.type.has_value());
  EXPECT_EQ(*c.type, policy::FileType::Block);
  EXPECT_EQ(c.major, 8U);
  EXPECT_EQ(c.minor, 0U);
  c = registers(SYS_mknod, {0x1000, S_IFIFO | 0600, 0}, policy::kFieldDevice);
  EXPECT_FALSE(c.type.has_value()) << "a FIFO is no device";
}

TEST(FromRegisters, FlagsSizesAndNice) {
  auto c = registers(SYS_mount, {1, 2, 3, 0x1234, 0}, policy::kFieldFlags);
  EXPECT_EQ(c.flags, 0x1234U);
  c = registers(SYS_umount2, {1, 0xffffffff00000002, 0, 0, 0}, policy::kFieldFlags);
  EXPECT_EQ(c.flags, 2U) << "umount2's flags are an int";
  c = registers(SYS_setxattr, {1, 2, 3, 4096, 0}, policy::kFieldValueSize);
  EXPECT_EQ(c.value_size, 4096U);
  c = registers(SYS_setpriority, {0, 0, static_cast<std::uint64_t>(-5)}, policy::kFieldSched);
  EXPECT_EQ(c.nice, -5);
  c = registers(SYS_sched_setscheduler, {0, 1, 0x1000}, policy::kFieldSched);
  EXPECT_EQ(c.sched_policy, 1);
  c = registers(SYS_sched_setscheduler, {0, 1 | 0x40000000, 0x1000}, policy::kFieldSched);
  EXPECT_EQ(c.sched_policy, 1) << "SCHED_RESET_ON_FORK is not part of the policy";
  c = registers(SYS_mount, {1, 2, 3, 0x1234, 0}, policy::kFieldNone);
  EXPECT_FALSE(c.flags.has_value()) << "only what the policy asks for";
}

TEST(RawCall, TheI386AbiIsZeroExtended) {
  seccomp_data data{};
  data.args[0] = 0xffffffff00000042;
  EXPECT_EQ(raw_call(60, data, true).args[0], 0x42U);
  EXPECT_EQ(raw_call(95, data, false).args[0], 0xffffffff00000042U);
}

// ---- forensics: register values by name (issue 19, item 4) ----
policy::Call with(int nr, std::array<std::uint64_t, 6> args) {
  policy::Call c;
  c.nr = nr;
  c.args = args;
  return c;
}

TEST(Forensic, NamesCloneUnshareSetnsPtraceAndBpf) {
  // unshare: every bit is a flag; unknown bits stay visible in hex.
  EXPECT_EQ(forensic(with(SYS_unshare, {0x10000000 | 0x20000})).clone_flags, "CLONE_NEWNS|CLONE_NEWUSER");
  EXPECT_EQ(forensic(with(SYS_unshare, {0})).clone_flags, "0");
  EXPECT_EQ(forensic(with(SYS_unshare, {0x80})).clone_flags, "CLONE_NEWTIME");
  EXPECT_EQ(forensic(with(SYS_unshare, {0x40000000ULL | 0x1000000000ULL})).clone_flags,
            "CLONE_NEWNET|0x1000000000");
  // clone: the low byte is the exit signal, not flags.
  EXPECT_EQ(forensic(with(SYS_clone, {0x100 | 17})).clone_flags, "CLONE_VM");
  EXPECT_EQ(forensic(with(SYS_setns, {3, 0x40000000})).ns_type, "CLONE_NEWNET");
  EXPECT_EQ(forensic(with(SYS_setns, {3, 0})).ns_type, "any");
  const auto attach = forensic(with(SYS_ptrace, {16, 42}));
  EXPECT_EQ(attach.ptrace_request, "PTRACE_ATTACH");
  EXPECT_EQ(attach.target_pid, 42);
  EXPECT_EQ(forensic(with(SYS_ptrace, {0x4206, 1})).ptrace_request, "PTRACE_SEIZE");
  EXPECT_EQ(forensic(with(SYS_ptrace, {9999, 1})).ptrace_request, "9999");
  EXPECT_EQ(forensic(with(SYS_bpf, {5})).bpf_cmd, "BPF_PROG_LOAD");
  EXPECT_EQ(forensic(with(SYS_bpf, {0xffffffff00000000ULL})).bpf_cmd, "BPF_MAP_CREATE")
      << "an int: the low half";
  EXPECT_EQ(forensic(with(SYS_bpf, {1000})).bpf_cmd, "1000");
  // Other calls have none.
  const auto none = forensic(with(SYS_mount, {1, 2, 3, 4, 5, 6}));
  EXPECT_TRUE(none.clone_flags.empty() && none.ns_type.empty() && none.ptrace_request.empty() &&
              none.bpf_cmd.empty() && !none.target_pid);
}

}  // namespace
}  // namespace sysvisor::decode
