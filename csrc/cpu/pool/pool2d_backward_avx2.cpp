// Pooling backward kernels built with the avx2 flags (see CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <new>
#include <utility>

#include "convpool/kernel_types.hpp"

#define CONVPOOL_TARGET avx2
#include "pool/pool2d_backward.inc"
