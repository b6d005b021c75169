// The agent's default id range (issue 13, finding 13): the entry /etc/subuid and /etc/subgid
// give `sysvisor` or root, never one overlapping another user's entry; none: a clear error.
// Files are given as text (choose_id_range) or as temporary files (default_id_range).
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>

#include "idmap.hpp"

namespace sysvisor::agent {
namespace {

const SubidFiles kFiles{"/etc/subuid", "/etc/subgid"};
const std::vector<SubidOwner> kRootOwners{{"sysvisor", "999"}, {"root", "0"}};

TEST(Subid, ParsesEntriesAndSkipsWhatIsNotOne) {
  const auto e =
      parse_subid("# comment\n\nroot:100000:65536\nbad line\nalice:x:1\n1000:200000:10\r\nz:1:0\n");
  ASSERT_EQ(e.size(), 2U);
  EXPECT_EQ(e[0].owner, "root");
  EXPECT_EQ(e[0].start, 100000U);
  EXPECT_EQ(e[0].count, 65536U);
  EXPECT_EQ(e[1].owner, "1000");
  EXPECT_EQ(e[1].start, 200000U);
  EXPECT_EQ(e[1].count, 10U);
}

TEST(Subid, RootsEntryIsTheDefault) {
  const char* text = "alice:165536:65536\nroot:100000:65536\n";
  auto r = choose_id_range(text, text, kFiles, kRootOwners);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->host_id, 100000U);
  EXPECT_EQ(r->size, 65536U);
  // By uid too.
  r = choose_id_range("0:300000:1000\n", "0:300000:1000\n", kFiles, kRootOwners);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->host_id, 300000U);
  EXPECT_EQ(r->size, 1000U);
}

TEST(Subid, SysvisorsEntryComesFirst) {
  const char* text = "root:100000:65536\nsysvisor:400000:65536\n";
  auto r = choose_id_range(text, text, kFiles, kRootOwners);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->host_id, 400000U);
}

TEST(Subid, NoEntryIsAClearError) {
  // Debian 12's first user gets 100000:65536: that is no range for root's containers.
  const char* text = "alice:100000:65536\n";
  auto r = choose_id_range(text, text, kFiles, kRootOwners);
  ASSERT_FALSE(r);
  const std::string m = r.error().message();
  EXPECT_NE(m.find("/etc/subuid has no entry for `sysvisor` or `root`"), std::string::npos) << m;
  EXPECT_NE(m.find("usermod --add-subuids 100000-165535 --add-subgids 100000-165535 root"), std::string::npos)
      << m;
  EXPECT_NE(m.find("--userns"), std::string::npos) << m;
  EXPECT_FALSE(choose_id_range("", "", kFiles, kRootOwners));
}

TEST(Subid, AnOverlapWithAnotherUserIsRefused) {
  auto r =
      choose_id_range("root:100000:65536\nalice:165535:10\n", "root:100000:65536\n", kFiles, kRootOwners);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("overlaps the entry `alice:165535:10` of /etc/subuid"),
            std::string::npos)
      << r.error().message();
  // In /etc/subgid as well.
  r = choose_id_range("root:100000:65536\n", "root:100000:65536\nbob:90000:10001\n", kFiles, kRootOwners);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("`bob:90000:10001` of /etc/subgid"), std::string::npos)
      << r.error().message();
  // Adjacent is no overlap.
  r = choose_id_range("root:100000:65536\nalice:165536:65536\n", "root:100000:65536\nalice:165536:65536\n",
                      kFiles, kRootOwners);
  EXPECT_TRUE(r) << r.error().message();
}

TEST(Subid, SubgidMustGiveTheSameRange) {
  auto r = choose_id_range("root:100000:65536\n", "root:200000:65536\n", kFiles, kRootOwners);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find("has no match in /etc/subgid"), std::string::npos)
      << r.error().message();
}

TEST(Subid, ReadsTheFilesItIsGiven) {
  const std::filesystem::path dir =
      std::filesystem::temp_directory_path() / ("sysvisor-subid-" + std::to_string(::getpid()));
  std::filesystem::create_directories(dir);
  const SubidFiles files{(dir / "subuid").string(), (dir / "subgid").string()};
  // Missing files: no entry.
  auto r = default_id_range(files, kRootOwners);
  ASSERT_FALSE(r);
  EXPECT_NE(r.error().message().find(files.subuid + " has no entry"), std::string::npos)
      << r.error().message();
  std::ofstream(files.subuid) << "root:500000:70000\n";
  std::ofstream(files.subgid) << "root:500000:70000\n";
  r = default_id_range(files, kRootOwners);
  ASSERT_TRUE(r) << r.error().message();
  EXPECT_EQ(r->host_id, 500000U);
  EXPECT_EQ(r->size, 70000U);
  std::filesystem::remove_all(dir);
}

TEST(Subid, AnotherUserLooksForItsOwnEntry) {
  const auto owners = default_owners(65534);
  ASSERT_EQ(owners.size(), 1U);
  EXPECT_EQ(owners[0].uid, "65534");
  const auto as_root = default_owners(0);
  ASSERT_EQ(as_root.size(), 2U);
  EXPECT_EQ(as_root[0].name, "sysvisor");
  EXPECT_EQ(as_root[1].name, "root");
}

}  // namespace
}  // namespace sysvisor::agent
