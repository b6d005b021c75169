#include "sysvisor/log_escape.hpp"

#include "sysvisor/utf8.hpp"

namespace sysvisor {
namespace {

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
