// One line of the daemon's log is one event: whatever a peer or a container sent (a policy
// name, a container id, an annotation, a path) cannot forge a second line or drive the
// operator's terminal. Applied once, to every message, by the log formatter (serve's main).
#pragma once

#include <string>
#include <string_view>

namespace sysvisor {

// `in` with control characters (C0, DEL, C1) as \n, \r, \t or \xNN / \u00NN, bytes that are
// not UTF-8 as \xNN, and the backslash itself as \\ (so an escape is never ambiguous).
// Printable ASCII and valid UTF-8 pass unchanged.
[[nodiscard]] std::string escape_for_log(std::string_view in);

}  // namespace sysvisor
