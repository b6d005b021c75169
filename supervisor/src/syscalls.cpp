#include "sysvisor/syscalls.hpp"
