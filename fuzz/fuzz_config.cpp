// libFuzzer target: the daemon's configuration file parser.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sysvisor/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto config = sysvisor::config::parse_config(text, "fuzz.yaml");
  if (config) {
    sysvisor::config::Peer peer;
    (void)sysvisor::config::refusal(*config, peer, "rootless-devices");
  }
  return 0;
}
