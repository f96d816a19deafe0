// Pooling backward kernels built with the avx512 flags (see CMakeLists.txt).
#include <cstdint>
#include <new>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET avx512
#include "pool/pool2d_backward.inc"
