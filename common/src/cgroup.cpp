#include "sysvisor/cgroup.hpp"

#include <charconv>
#include <limits>
#include <vector>

namespace sysvisor::cgroup {
namespace {

std::vector<std::string_view> split(std::string_view text, char sep) {
  std::vector<std::string_view> out;
  std::size_t at = 0;
  while (at <= text.size()) {
    std::size_t end = text.find(sep, at);
    if (end == std::string_view::npos) end = text.size();
    out.push_back(text.substr(at, end - at));
    at = end + 1;
  }
  return out;
}

}  // namespace

Paths parse_proc_cgroup(std::string_view text) {
  Paths out;
  for (std::string_view line : split(text, '\n')) {
    const auto c1 = line.find(':');
    const auto c2 = c1 == std::string_view::npos ? c1 : line.find(':', c1 + 1);
    if (c2 == std::string_view::npos) continue;
    const std::string_view id = line.substr(0, c1);
    const std::string_view controllers = line.substr(c1 + 1, c2 - c1 - 1);
    const std::string path(line.substr(c2 + 1));
    if (id == "0" && controllers.empty()) {
      out.v2 = path;
      continue;
    }
    for (std::string_view c : split(controllers, ',')) {
      if (!c.empty()) out.v1.emplace(std::string(c), path);
    }
  }
  return out;
}

Mounts parse_cgroup_mounts(std::string_view mountinfo) {
  Mounts out;
  for (std::string_view line : split(mountinfo, '\n')) {
    const auto dash = line.find(" - ");
    if (dash == std::string_view::npos) continue;
    const auto left = split(line.substr(0, dash), ' ');
    const auto right = split(line.substr(dash + 3), ' ');
    if (left.size() < 5 || right.size() < 3 || left[3] != "/") continue;
    const std::string mountpoint(left[4]);
    if (right[0] == "cgroup2") {
      if (!out.v2) out.v2 = mountpoint;
    } else if (right[0] == "cgroup") {
      for (std::string_view opt : split(right[2], ',')) {
        if (opt == "rw" || opt == "ro" || opt.empty()) continue;
        out.v1.emplace(std::string(opt), mountpoint);
      }
    }
  }
  return out;
}

std::optional<std::uint64_t> parse_size(std::string_view text) {
  std::uint64_t value = 0;
  auto [p, ec] = std::from_chars(text.data(), text.data() + text.size(), value);
  if (ec != std::errc{} || p == text.data()) return std::nullopt;
  std::string_view unit = text.substr(static_cast<std::size_t>(p - text.data()));
  unsigned shift = 0;
  if (!unit.empty()) {
    switch (unit.front()) {
      case 'k':
      case 'K':
        shift = 10;
        break;
      case 'm':
      case 'M':
        shift = 20;
        break;
      case 'g':
      case 'G':
        shift = 30;
        break;
      case 't':
      case 'T':
        shift = 40;
        break;
      case 'b':
      case 'B':
        shift = 0;
        break;
      default:
        return std::nullopt;
    }
    if (unit.front() != 'b' && unit.front() != 'B') {
      unit.remove_prefix(1);
      if (unit == "i" || unit == "iB" || unit == "B" || unit == "b" || unit.empty()) {
        unit = {};
      }
    } else {
      unit.remove_prefix(1);
    }
    if (!unit.empty()) return std::nullopt;
  }
  if (shift > 0 && value > (std::numeric_limits<std::uint64_t>::max() >> shift)) return std::nullopt;
  return value << shift;
}

}  // namespace sysvisor::cgroup
