// FMA throughput probe built with the avx512 flags (see CMakeLists.txt).
#include <cstddef>
#include <cstdint>
#include <type_traits>
#include <utility>

#include "convpool/kernel_types.hpp"

#ifdef _OPENMP
#include <omp.h>
#endif

#define CONVPOOL_TARGET avx512
#include "probe/fma_probe.inc"
