#include "sysvisor/emulator.hpp"

namespace sysvisor::emul::mount {
Result<std::unique_ptr<Emulation>> prepare(const policy::SyscallInfo& /*info*/, const task::TaskHandle& /*task*/,
                                           const policy::Call& /*call*/) {
  return std::unique_ptr<Emulation>{};
}
}  // namespace sysvisor::emul::mount
