// Pooling kernels built with the baseline flags (see CMakeLists.txt).
#include <cstdint>
#include <limits>
#include <new>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET baseline
#include "pool/pool2d_window.inc"
