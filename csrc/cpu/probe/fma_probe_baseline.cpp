// FMA throughput probe built with the baseline flags (see CMakeLists.txt).
#include <cstdint>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET baseline
#include "probe/fma_probe.inc"
