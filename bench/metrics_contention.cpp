// Microbenchmark of finding 7 (issue 14): what a scrape in progress costs a decided call.
// One thread renders the metrics of 500 containers (8 series each) in a loop, as many busy
// scrapers would; another records calls and times each record(). Prints the record latency
// percentiles and the renders done. Not part of the test suite; run by hand:
//   build/bin/bench_metrics_contention [CALLS]
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include "sysvisor/metrics.hpp"

int main(int argc, char** argv) {
  using Clock = std::chrono::steady_clock;
  const long calls = argc > 1 ? std::atol(argv[1]) : 200000;
  sysvisor::metrics::Metrics m;
  std::vector<std::string> ids;
  for (int i = 0; i < 500; ++i) ids.push_back("container-" + std::to_string(i));
  const int nrs[] = {0, 1, 2, 3, 133, 165, 259, 321};
  for (const auto& id : ids) {
    for (const int nr : nrs) m.record(id, nr, sysvisor::policy::Action::Deny, std::chrono::microseconds(5));
  }
  for (const bool scraping : {false, true}) {
    std::atomic<bool> stop{false};
    std::atomic<long> renders{0};
    std::size_t bytes = 0;
    std::thread scraper;
    if (scraping) {
      scraper = std::thread([&] {
        while (!stop.load()) {
          bytes = m.render({}).size();
          renders.fetch_add(1);
        }
      });
      while (renders.load() == 0) std::this_thread::yield();
    }
    std::vector<double> us;
    us.reserve(static_cast<std::size_t>(calls));
    const auto start = Clock::now();
    for (long i = 0; i < calls; ++i) {
      const auto& id = ids[static_cast<std::size_t>(i) % ids.size()];
      const auto t0 = Clock::now();
      m.record(id, nrs[i % 8], sysvisor::policy::Action::Deny, std::chrono::microseconds(5));
      us.push_back(std::chrono::duration<double, std::micro>(Clock::now() - t0).count());
    }
    const double wall_ms = std::chrono::duration<double, std::milli>(Clock::now() - start).count();
    stop = true;
    if (scraper.joinable()) scraper.join();
    std::ranges::sort(us);
    const auto pct = [&](double p) {
      return us[static_cast<std::size_t>(p * static_cast<double>(us.size() - 1))];
    };
    const auto slow = std::ranges::count_if(us, [](double v) { return v > 100; });
    std::printf(
        "%-16s %ld record() in %.0f ms: p50 %.2f us  p99 %.2f us  p99.9 %.2f us  max %.1f us, %ld over 100 "
        "us "
        "(%ld renders of %zu bytes)\n",
        scraping ? "while rendering" : "idle", calls, wall_ms, pct(0.5), pct(0.99), pct(0.999), us.back(),
        static_cast<long>(slow), renders.load(), bytes);
  }
  return 0;
}
