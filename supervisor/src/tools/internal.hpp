// Helpers shared by the tools' source files; not part of the library's interface.
#pragma once

#include <optional>

namespace sysvisor::tools {

// The index of mknod's or mknodat's mode argument; nullopt for other calls.
[[nodiscard]] std::optional<unsigned> mknod_mode_arg(int nr);

}  // namespace sysvisor::tools
