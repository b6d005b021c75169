// escape_for_log: what a peer sends cannot make a second log line or a terminal sequence.
#include "sysvisor/log_escape.hpp"

#include <gtest/gtest.h>

namespace sysvisor {
namespace {

TEST(LogEscape, PrintableAndUtf8PassUnchanged) {
  EXPECT_EQ(escape_for_log("policy `rootless-devices` for web-1"), "policy `rootless-devices` for web-1");
  EXPECT_EQ(escape_for_log("h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\xa7"),
            "h\xc3\xa9llo \xe2\x82\xac \xf0\x9f\x90\xa7");
}

TEST(LogEscape, ControlCharactersAndEscapesCannotForgeALine) {
  EXPECT_EQ(escape_for_log("nosuch\n2026-12-04T00:00:00.000 sysvisor info: fake\x1b[2J"),
            "nosuch\\n2026-12-04T00:00:00.000 sysvisor info: fake\\x1b[2J");
  EXPECT_EQ(escape_for_log("a\rb\tc\x7f\x01"), "a\\rb\\tc\\x7f\\x01");
  EXPECT_EQ(escape_for_log(std::string_view("nul\0x", 5)), "nul\\x00x");
  EXPECT_EQ(escape_for_log("\xc2\x9b"
                           "31m"),
            "\\u009b31m");  // the 8-bit CSI, as UTF-8
}

TEST(LogEscape, BytesThatAreNotUtf8AreShownAsBytes) {
  EXPECT_EQ(escape_for_log("\xff\xfe"), "\\xff\\xfe");
  EXPECT_EQ(escape_for_log("\xc3"), "\\xc3");                    // cut short
  EXPECT_EQ(escape_for_log("\xe0\x80\xaf"), "\\xe0\\x80\\xaf");  // overlong
  EXPECT_EQ(escape_for_log("\xed\xa0\x80"), "\\xed\\xa0\\x80");  // a surrogate
}

TEST(LogEscape, TheBackslashItselfIsEscaped) {
  // Else a peer could write the text of an escape and pass it off as one.
  EXPECT_EQ(escape_for_log("a\\nb"), "a\\\\nb");
}

}  // namespace
}  // namespace sysvisor
