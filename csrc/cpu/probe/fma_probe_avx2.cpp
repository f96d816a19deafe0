// FMA throughput probe built with the avx2 flags (see CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <utility>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET avx2
#include "probe/fma_probe.inc"
