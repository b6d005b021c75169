// The files and directories the root daemon trusts: its runtime directory, its configuration
// and its policies. Root must never act on a name a user could have swapped, so each is owned
// by root and writable by nobody else, or it is refused with the file named
// (docs/control.md, "Files the daemon keeps").
#pragma once

#include <sys/stat.h>

#include <expected>
#include <filesystem>
#include <string>
#include <string_view>

#include "sysvisor/unique_fd.hpp"

namespace sysvisor::trusted {

// Why a file or directory with status `st` is not trusted: owned by another user than root, or
// writable by group or others. A root-owned sticky directory (such as /tmp) may be an ancestor
// when `sticky_ok`: nobody can rename or remove root's entries in it. Empty when trusted.
[[nodiscard]] std::string untrusted_reason(const struct stat& st, bool sticky_ok);

// The runtime directory, made ready: each existing component of `dir` from / down (symbolic
// links resolved first) must be a directory that `untrusted_reason` accepts; the missing ones
// are made 0755 whatever the umask. Returns an O_PATH descriptor of `dir`, or the error.
[[nodiscard]] std::expected<UniqueFd, std::string> make_runtime_dir(const std::filesystem::path& dir);

// A file root reads to decide what it grants (`what`: "configuration file", "policy", ...):
// the file and the directory it is in must be owned by root and writable by nobody else.
// Symbolic links are followed, and the directory of the name given is checked as well.
[[nodiscard]] std::expected<void, std::string> check_file(const std::filesystem::path& file,
                                                          std::string_view what);

// A directory root reads files from (the policies directory): as check_file, for a directory.
[[nodiscard]] std::expected<void, std::string> check_dir(const std::filesystem::path& dir,
                                                         std::string_view what);

}  // namespace sysvisor::trusted
