// libFuzzer target: decision cases: the input as one call literal, as one expectation, and as
// a whole case file.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "sysvisor/tools.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sysvisor::tools;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  if (auto literal = parse_call(text)) {
    CallContext context;
    context.cwd = "/w/./x/..";
    context.fds = {{3, "/etc"}, {5, "/a/../b"}};
    (void)call_from_literal(*literal, context);
  }
  (void)parse_expectation(text);
  (void)parse_cases(text, "fuzz.cases.yaml");
  return 0;
}
