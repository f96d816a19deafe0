// Convolution kernels built with the baseline flags (see CMakeLists.txt).
#include <cstdint>
#include <new>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET baseline
#include "conv/conv2d_direct.inc"
