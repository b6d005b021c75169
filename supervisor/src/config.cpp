#include "sysvisor/config.hpp"
