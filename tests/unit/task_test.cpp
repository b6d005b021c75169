// Pure pieces of the task view and mknod path splitting.
#include "sysvisor/task.hpp"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/mman.h>

#include <cstring>

#include "sysvisor/mknod.hpp"

namespace sysvisor {
namespace {

constexpr const char* kStatus =
    "Name:\tsh\nUmask:\t0027\nState:\tS (sleeping)\nTgid:\t42\nPid:\t43\n"
    "Uid:\t100000\t100001\t100002\t100003\nGid:\t100010\t100011\t100012\t100013\n"
    "FDSize:\t64\nGroups:\t100010 100020 \nCapInh:\t0000000000000000\nCapPrm:\t000001ffffffffff\n"
    "CapEff:\t0000000008000000\nCapBnd:\t000001ffffffffff\n";

TEST(Task, ParsesStatus) {
  const auto c = task::parse_status(kStatus);
  ASSERT_TRUE(c);
  EXPECT_EQ(c->uid, (std::array<std::uint32_t, 4>{100000, 100001, 100002, 100003}));
  EXPECT_EQ(c->gid, (std::array<std::uint32_t, 4>{100010, 100011, 100012, 100013}));
  EXPECT_EQ(c->groups, (std::vector<std::uint32_t>{100010, 100020}));
  EXPECT_EQ(c->cap_effective, 1ULL << 27);
  EXPECT_EQ(c->umask, 027U);
}

TEST(Task, RejectsBrokenStatus) {
  EXPECT_FALSE(task::parse_status(""));
  EXPECT_FALSE(task::parse_status("Uid:\t1\t2\t3\nGid:\t1\t2\t3\t4\nCapEff:\t0\n"));
  EXPECT_FALSE(task::parse_status("Uid:\t1\t2\t3\t4\nGid:\t1\t2\t3\t4\nCapEff:\tzz\n"));
  EXPECT_FALSE(task::parse_status("Uid:\t1\t2\t3\t99999999999\nGid:\t1\t2\t3\t4\nCapEff:\t0\n"));
}

TEST(Task, MapsHostIdsInsideTheNamespace) {
  const auto map = task::parse_id_map("         0     100000      65536\n     65536    1000000         10\n");
  ASSERT_TRUE(map);
  EXPECT_EQ(task::to_inside(*map, 100000), 0U);
  EXPECT_EQ(task::to_inside(*map, 101000), 1000U);
  EXPECT_EQ(task::to_inside(*map, 1000005), 65541U);
  EXPECT_FALSE(task::to_inside(*map, 99999));
  EXPECT_FALSE(task::to_inside(*map, 165536));
  const auto identity = task::parse_id_map("0 0 4294967295\n");
  ASSERT_TRUE(identity);
  EXPECT_EQ(task::to_inside(*identity, 4294967294U), 4294967294U);
  EXPECT_FALSE(task::parse_id_map("0 100000\n"));
  EXPECT_FALSE(task::parse_id_map("a b c\n"));
}

TEST(Task, DecodesDevLikeTheKernel) {
  for (const auto& [maj, min] : {std::pair{1U, 3U}, {8U, 0U}, {0U, 0U}, {4095U, 1048575U}, {259U, 70000U}}) {
    const auto d = task::decode_dev(task::encode_dev(maj, min));
    EXPECT_EQ(d.major, maj);
    EXPECT_EQ(d.minor, min);
  }
  EXPECT_EQ(task::encode_dev(1, 3), 0x103U);
}

class Memory : public ::testing::Test {
 protected:
  void SetUp() override {
    mem_.reset(::open("/proc/self/mem", O_RDONLY | O_CLOEXEC));
    ASSERT_TRUE(mem_.valid());
    // Two pages: readable, then unmapped.
    auto* p =
        static_cast<char*>(::mmap(nullptr, 8192, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(p, MAP_FAILED);
    ::munmap(p + 4096, 4096);
    page_ = p;
  }
  void TearDown() override { ::munmap(page_, 4096); }
  std::uint64_t addr(const char* p) const { return reinterpret_cast<std::uintptr_t>(p); }
  UniqueFd mem_;
  char* page_ = nullptr;
};

TEST_F(Memory, ReadsAStringAcrossNothingItShouldNot) {
  std::strcpy(page_ + 4090, "/dev");  // ends 1 byte before the unmapped page
  const auto s = task::read_string(mem_.get(), addr(page_ + 4090), 4096);
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(*s, "/dev");
}

TEST_F(Memory, UnterminatedBeforeUnmappedIsEfault) {
  std::memset(page_ + 4000, 'a', 96);  // runs into the unmapped page
  const auto s = task::read_string(mem_.get(), addr(page_ + 4000), 4096);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, EFAULT);
  EXPECT_EQ(task::read_string(mem_.get(), 8, 4096).error().err, EFAULT);
  EXPECT_EQ(task::read_string(mem_.get(), ~0ULL - 10, 4096).error().err, EFAULT);
}

TEST_F(Memory, TooLongIsEnametoolong) {
  std::memset(page_, 'a', 4096);
  const auto s = task::read_string(mem_.get(), addr(page_), 100);
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().err, ENAMETOOLONG);
}

TEST(SplitPath, LikeTheKernelSeesTheLastComponent) {
  const auto check = [](const char* path, const char* dir, const char* base, bool slash) {
    const auto s = mknod::split_path(path);
    EXPECT_EQ(s.dir, dir) << path;
    EXPECT_EQ(s.base, base) << path;
    EXPECT_EQ(s.trailing_slash, slash) << path;
  };
  check("/dev/null", "/dev", "null", false);
  check("null", ".", "null", false);
  check("/null", "/", "null", false);
  check("/", "/", "", false);
  check("///", "/", "", false);
  check("a//b", "a", "b", false);
  check("a/b/", "a", "b", true);
  check("../x", "..", "x", false);
  check("/dev/..", "/dev", "..", false);
  check("x//", ".", "x", true);
}

}  // namespace
}  // namespace sysvisor
