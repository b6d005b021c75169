// The admission of a socket's connections by the peer's uid, and the rate-limited log of
// refusals: pure bookkeeping, no sockets (the flood itself: integration Boundary.AFlood...).
#include "sysvisor/listen.hpp"

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <memory>
#include <sstream>

namespace sysvisor {
namespace {

// What spdlog writes during one test, one line per message.
class Captured {
 public:
  Captured() : old_(spdlog::default_logger()) {
    auto sink = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    sink->set_pattern("%v");
    spdlog::set_default_logger(std::make_shared<spdlog::logger>("captured", sink));
  }
  ~Captured() { spdlog::set_default_logger(old_); }
  Captured(const Captured&) = delete;
  Captured& operator=(const Captured&) = delete;
  [[nodiscard]] std::size_t count(const std::string& text) const {
    std::size_t n = 0;
    std::istringstream in(out_.str());
    for (std::string line; std::getline(in, line);) n += line.find(text) != std::string::npos ? 1 : 0;
    return n;
  }
  [[nodiscard]] std::string text() const { return out_.str(); }

 private:
  std::ostringstream out_;
  std::shared_ptr<spdlog::logger> old_;
};

TEST(ConnectionGate, OneUsersShareLeavesRoomForOthersAndForRoot) {
  boost::asio::io_context io;
  const Captured log;
  ConnectionGate gate(io, "t.sock", ConnectionLimits{.per_uid = 2, .others = 3, .total = 5});
  EXPECT_TRUE(gate.admit(1000));
  EXPECT_TRUE(gate.admit(1000));
  EXPECT_FALSE(gate.admit(1000)) << "its share is 2";
  EXPECT_EQ(gate.in_progress(1000), 2U);
  EXPECT_TRUE(gate.admit(1001)) << "another user is not affected";
  EXPECT_FALSE(gate.admit(1002)) << "all non-root users together: 3";
  EXPECT_TRUE(gate.admit(0)) << "root is not held back by other users";
  EXPECT_TRUE(gate.admit(0));
  EXPECT_FALSE(gate.admit(0)) << "5 in all";
  EXPECT_EQ(gate.in_progress(), 5U);
  gate.release(1000);
  EXPECT_TRUE(gate.admit(1000)) << "a finished connection frees its slot";
  gate.release(0);
  gate.release(0);
  EXPECT_TRUE(gate.admit(0));
  EXPECT_EQ(log.count("t.sock: connection from uid 1000 refused: uid 1000 has 2 connections in progress, the "
                      "limit per user"),
            1U)
      << log.text();
  EXPECT_EQ(log.count("connection from uid 1002 refused: 3 connections of users other than root in progress"),
            1U)
      << log.text();
  EXPECT_EQ(log.count("connection from uid 0 refused: 5 connections in progress, the limit of this socket"),
            1U)
      << log.text();

  ConnectionGate roots(io, "r.sock", ConnectionLimits{.per_uid = 1, .others = 1, .total = 100});
  for (int i = 0; i < 50; ++i) EXPECT_TRUE(roots.admit(0)) << "never limited per uid";
}

TEST(RefusalLog, RootsLinesAllOthersTheirShareAndOneLineCountsTheRest) {
  boost::asio::io_context io;
  const Captured log;
  RefusalLog refusals(
      io, "t.sock",
      RefusalLog::Limits{.interval = std::chrono::seconds(2), .per_uid = 2, .total = 3, .uids = 4096});
  for (int i = 0; i < 5; ++i) refusals.warn(0, "root line");
  for (int i = 0; i < 5; ++i) refusals.warn(1000, "user line");
  for (int i = 0; i < 5; ++i) refusals.warn(1001, "other line");
  EXPECT_EQ(log.count("root line"), 5U);
  EXPECT_EQ(log.count("user line"), 2U);
  EXPECT_EQ(log.count("other line"), 1U) << "3 of all non-root uids";
  EXPECT_EQ(refusals.suppressed_total(), 7U);
  EXPECT_EQ(log.count("not logged"), 0U) << "the count comes at the end of the interval";
  io.run();  // until the interval's timer has written the count
  EXPECT_EQ(log.count("t.sock: 7 more lines about refused or failed connections not logged in the last 2 s "
                      "(uid 1001: 4, uid 1000: 3)"),
            1U)
      << log.text();
}

}  // namespace
}  // namespace sysvisor
