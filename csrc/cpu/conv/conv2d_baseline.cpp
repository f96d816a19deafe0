// Convolution kernels built with the baseline flags (see CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <new>
#include <type_traits>
#include <utility>

#include "convpool/kernel_types.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#define CONVPOOL_TARGET baseline
#include "conv/conv2d_direct.inc"
