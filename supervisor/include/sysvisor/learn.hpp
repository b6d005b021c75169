// `sysvisor policy learn`: a minimal policy, and its decision cases, from the audit records of
// a workload run in learn (or audit) mode. Pure: text in, text out (docs/audit.md, "Learning").
#pragma once

#include <cstddef>
#include <expected>
#include <string>
#include <string_view>
#include <vector>

namespace sysvisor::tools {

struct LearnOptions {
  std::string file = "-";  // where `records` came from, for messages
  std::string container;   // only this container's records; empty: every container's
  std::string name = "learned";
};

struct Learned {
  std::string policy;  // YAML, commented with what was seen
  std::string cases;   // YAML for `sysvisor policy test`
  std::size_t records = 0;
};

// Every line must be an audit record (JSON of proto/audit.proto); records other than
// learn/audit calls (enforced calls, rate-limit summaries) and other containers' are skipped.
// Errors say FILE:LINE.
[[nodiscard]] std::expected<Learned, std::vector<std::string>> learn(std::string_view records,
                                                                     const LearnOptions& options);

// Path globs covering `paths` (absolute): the paths under a directory of `whole_dirs` become
// DIR/*, several entries of one directory become DIR/*, a lone path stays as it is. Sorted.
[[nodiscard]] std::vector<std::string> generalise_paths(const std::vector<std::string>& paths,
                                                        const std::vector<std::string>& whole_dirs = {});
// Attribute names: several names with the same prefix (up to the last '.', at least
// "namespace.something") become PREFIX.*; a lone name stays as it is. Sorted.
[[nodiscard]] std::vector<std::string> generalise_xattrs(const std::vector<std::string>& names);

}  // namespace sysvisor::tools
