// The daemon's loaded policies with their compiled filters. Replaced as a whole by a reload;
// sessions notice through the generation number (one compare per call).
#pragma once

#include <linux/filter.h>

#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor {

struct LoadedPolicy {
  std::shared_ptr<const policy::Policy> policy;
  std::vector<sock_filter> bpf;
};

using PolicySet = std::map<std::string, LoadedPolicy, std::less<>>;

class PolicyRegistry {
 public:
  PolicyRegistry() = default;
  explicit PolicyRegistry(PolicySet set) : set_(std::move(set)) {}

  [[nodiscard]] const LoadedPolicy* find(std::string_view name) const {
    const auto it = set_.find(name);
    return it == set_.end() ? nullptr : &it->second;
  }
  [[nodiscard]] const PolicySet& all() const noexcept { return set_; }
  // Read by the sessions' receiver threads too.
  [[nodiscard]] std::uint64_t generation() const noexcept {
    return generation_.load(std::memory_order_acquire);
  }
  // The names `shown` lets through (a peer sees the policies it may use, not all of them).
  template <typename Pred>
  [[nodiscard]] std::string names(Pred shown) const {
    std::string out;
    for (const auto& [name, _] : set_) {
      if (shown(name)) out += (out.empty() ? "" : ", ") + name;
    }
    return out.empty() ? "none" : out;
  }

  void replace(PolicySet set) {
    set_ = std::move(set);
    generation_.fetch_add(1, std::memory_order_acq_rel);
  }

 private:
  PolicySet set_;
  std::atomic<std::uint64_t> generation_{0};
};

}  // namespace sysvisor
