// Lexical path normalisation, as `path` matchers see paths: the runtime's argument decoder
// uses it on the copies of a trapped call's paths, `policy test` on the cases' literals.
#include <string>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"

namespace sysvisor::policy {

std::string normalize_path(std::string_view base, std::string_view path) {
  std::vector<std::string_view> parts;
  auto push = [&parts](std::string_view text) {
    std::size_t i = 0;
    while (i <= text.size()) {
      const std::size_t slash = text.find('/', i);
      const std::size_t end = slash == std::string_view::npos ? text.size() : slash;
      const std::string_view part = text.substr(i, end - i);
      if (part == "..") {
        if (!parts.empty()) parts.pop_back();
      } else if (!part.empty() && part != ".") {
        parts.push_back(part);
      }
      i = end + 1;
    }
  };
  if (path.empty() || path.front() != '/') push(base);
  push(path);
  if (parts.empty()) return "/";
  std::string out;
  for (const auto part : parts) {
    out += '/';
    out += part;
  }
  return out;
}

}  // namespace sysvisor::policy
