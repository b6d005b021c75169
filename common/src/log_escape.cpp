#include "sysvisor/log_escape.hpp"

#include <array>
#include <cstdint>

namespace sysvisor {
namespace {

// The length of the valid UTF-8 sequence starting at `at` (2 to 4), or 0 (not one: overlong,
// surrogate, beyond U+10FFFF, cut short).
std::size_t utf8_length(std::string_view s, std::size_t at) {
  const auto byte = [&](std::size_t i) { return static_cast<std::uint8_t>(s[i]); };
  const std::uint8_t lead = byte(at);
  std::size_t n = 0;
  std::uint32_t min = 0;
  std::uint32_t cp = 0;
  if (lead >= 0xc2 && lead <= 0xdf) {
    n = 2, min = 0x80, cp = lead & 0x1fU;
  } else if (lead >= 0xe0 && lead <= 0xef) {
    n = 3, min = 0x800, cp = lead & 0x0fU;
  } else if (lead >= 0xf0 && lead <= 0xf4) {
    n = 4, min = 0x10000, cp = lead & 0x07U;
  } else {
    return 0;
  }
  if (at + n > s.size()) return 0;
  for (std::size_t i = 1; i < n; ++i) {
    if ((byte(at + i) & 0xc0U) != 0x80U) return 0;
    cp = (cp << 6U) | (byte(at + i) & 0x3fU);
  }
  if (cp < min || cp > 0x10ffff || (cp >= 0xd800 && cp <= 0xdfff)) return 0;
  return n;
}

// "\\xNN" (width 2) or "\\u00NN" (width 4), lower-case hex.
void hex(std::string& out, const char* prefix, unsigned value, int width) {
  static constexpr std::string_view kDigits = "0123456789abcdef";
  out += prefix;
  for (int shift = (width - 1) * 4; shift >= 0; shift -= 4)
    out += kDigits[(value >> static_cast<unsigned>(shift)) & 0xfU];
}

}  // namespace

std::string escape_for_log(std::string_view in) {
  std::string out;
  out.reserve(in.size());
  for (std::size_t i = 0; i < in.size();) {
    const auto c = static_cast<unsigned char>(in[i]);
    if (c >= 0x20 && c < 0x7f) {
      if (c == '\\') out += '\\';
      out += static_cast<char>(c);
      ++i;
    } else if (c == '\n') {
      out += "\\n", ++i;
    } else if (c == '\r') {
      out += "\\r", ++i;
    } else if (c == '\t') {
      out += "\\t", ++i;
    } else if (c < 0x80) {
      hex(out, "\\x", c, 2), ++i;  // other C0 controls, DEL
    } else if (const std::size_t n = utf8_length(in, i); n == 0) {
      hex(out, "\\x", c, 2), ++i;  // not UTF-8
    } else if (n == 2 && c == 0xc2 && static_cast<unsigned char>(in[i + 1]) < 0xa0) {
      hex(out, "\\u", static_cast<unsigned char>(in[i + 1]), 4), i += 2;  // C1 controls (CSI...)
    } else {
      out.append(in.substr(i, n)), i += n;
    }
  }
  return out;
}

}  // namespace sysvisor
