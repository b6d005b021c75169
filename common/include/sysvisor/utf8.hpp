// UTF-8 as the kernel's strings are not: anything a container or a peer sends may be invalid.
#pragma once

#include <cstddef>
#include <string_view>

namespace sysvisor {

// The length (2 to 4) of the valid multi-byte UTF-8 sequence starting at s[i], or 0: ASCII,
// a stray continuation byte, an overlong form, a surrogate, beyond U+10FFFF or cut short.
[[nodiscard]] std::size_t utf8_length(std::string_view s, std::size_t i);

}  // namespace sysvisor
