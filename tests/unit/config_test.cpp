#include <gtest/gtest.h>

#include "sysvisor/config.hpp"
