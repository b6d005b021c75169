#include "sysvisor/error.hpp"

#include <cstring>

namespace sysvisor {

std::string SysError::message() const {
  if (err == 0) {
    return context;
  }
  return context + ": " + std::strerror(err);
}

}  // namespace sysvisor
