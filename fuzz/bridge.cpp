// GCC coverage -> libFuzzer: the bridge that lets libFuzzer (clang's runtime) guide a fuzzer
// compiled with GCC.
//
// Why: our headers use std::expected, which Debian 12's clang 14 cannot compile with
// libstdc++ 12, and GCC has no libFuzzer. So the code under test is compiled by GCC with
// -fsanitize=address,undefined -fsanitize-coverage=trace-pc,trace-cmp and linked against
// libclang_rt.fuzzer-x86_64.a.
//
// How: GCC's trace-pc calls __sanitizer_cov_trace_pc() at every basic block. libFuzzer wants
// inline 8-bit counters instead; this file owns a table of them, registers it with
// __sanitizer_cov_8bit_counters_init / __sanitizer_cov_pcs_init, and bumps the counter of a hash
// of the caller's return address (collisions only merge coverage, they do not lose crashes).
// libFuzzer's own __sanitizer_cov_trace_pc exits with "unsupported", so the build links a copy
// of its archive with that symbol weakened (objcopy --weaken-symbol, fuzz/CMakeLists.txt).
// trace-cmp needs no bridge: libFuzzer implements __sanitizer_cov_trace_cmp* itself and uses
// the comparisons to guide its mutations.
#include <cstddef>
#include <cstdint>

extern "C" {
void __sanitizer_cov_8bit_counters_init(std::uint8_t* start, std::uint8_t* stop);
void __sanitizer_cov_pcs_init(const std::uintptr_t* pcs_beg, const std::uintptr_t* pcs_end);
}

namespace {

constexpr std::size_t kSlots = std::size_t{1} << 16;
alignas(64) std::uint8_t counters[kSlots];
std::uintptr_t pcs[2 * kSlots];  // (pc, flags) pairs; our "pc" is the slot number

struct Register {
  Register() {
    for (std::size_t i = 0; i < kSlots; ++i) {
      pcs[2 * i] = i + 1;
      pcs[2 * i + 1] = 0;
    }
    __sanitizer_cov_8bit_counters_init(counters, counters + kSlots);
    __sanitizer_cov_pcs_init(pcs, pcs + 2 * kSlots);
  }
} const registered;

}  // namespace

extern "C" __attribute__((no_sanitize_address, no_sanitize_coverage, no_sanitize("undefined"))) void
__sanitizer_cov_trace_pc() {
  const auto pc = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  const std::uintptr_t h = (pc ^ (pc >> 17)) * 0x9E3779B97F4A7C15ULL;
  ++counters[(h >> 40) % kSlots];
}

// GCC's trace-cmp also reports floating-point comparisons, which libFuzzer does not take.
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpf(float, float) {}
extern "C" __attribute__((no_sanitize_coverage)) void __sanitizer_cov_trace_cmpd(double, double) {}
