// libFuzzer target: a policy document through the whole loader (parse, resolve), then what the
// tools derive from it (trap conditions, explain, OCI profile) and a decision.
#include <cstddef>
#include <cstdint>
#include <string_view>
#include <vector>

#include "sysvisor/policy.hpp"
#include "sysvisor/tools.hpp"

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
  using namespace sysvisor;
  const std::string_view text(reinterpret_cast<const char*>(data), size);
  auto parsed = policy::parse_policy(text, "fuzz.yaml");
  if (!parsed) return 0;
  std::vector<policy::Policy> all;
  all.push_back(std::move(*parsed));
  auto resolved = policy::resolve(std::move(all));
  if (!resolved) return 0;
  for (const auto& [name, p] : resolved->policies) {
    (void)tools::trap_set(*p);
    (void)tools::explain_text(*p, 0);
    (void)tools::oci_profile(*p, tools::OciOptions{});
    policy::Call call;
    for (int nr : p->syscalls()) {
      call.nr = nr;
      call.args = {size, 0x2000, 0x6000, 0, 0, 0};
      call.type = policy::FileType::Char;
      call.paths = {"/dev/null"};
      (void)policy::decide(*p, call);
    }
  }
  return 0;
}
