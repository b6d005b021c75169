// `sysvisor policy learn`: a minimal policy, and its decision cases, from the audit records of
// a workload run in learn (or audit) mode. Pure: text in, text out (docs/audit.md, "Learning").
#pragma once

#include <sys/types.h>

#include <cstddef>
#include <expected>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace sysvisor::tools {

struct LearnOptions {
  std::string file = "-";  // where `records` came from, for messages
  std::string container;   // only this container's records; empty: every container's
  std::string name = "learned";
  // Only records of containers this uid owns (the records' owner_uid); nullopt: every owner's.
  // A record without owner_uid (written before sysvisor recorded owners) has no known owner:
  // it is taken only when every owner's are. `sysvisor policy learn` defaults to root's (0).
  std::optional<uid_t> owner;
};

struct Learned {
  std::string policy;  // YAML, commented with what was seen
  std::string cases;   // YAML for `sysvisor policy test`
  std::size_t records = 0;
  // FILE:LINE: skipped: why (a torn or invalid line), and FILE:LINE: warning: ... (records the
  // rate limit held back). Also in the policy's header, as comments.
  std::vector<std::string> notes;
  std::size_t skipped = 0;  // lines skipped
  // Call records left out for their owner (another uid's, or none recorded: see `owner`).
  std::size_t other_owners = 0;
  std::size_t no_owner = 0;
};

// Reads audit records (JSON of proto/audit.proto), one per line. A line that is not a whole
// record (cut off by a full disk or a crash, or garbage) is skipped and reported in `notes`
// (FILE:LINE: skipped: why); records other than learn/audit calls (enforced calls, rate-limit
// summaries) and other containers' and other owners' are left out (counted in the result). Fails only when no
// record is left to learn from (the error lists the notes too).
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
