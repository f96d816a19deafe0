// Scratch allocation for kernels. Lives in a baseline translation unit so that no
// ISA-specific copy of an allocator template can be picked by the linker.
#include <cstdlib>

#include "convpool/kernel_types.hpp"

namespace convpool {

void* aligned_alloc_bytes(int64_t bytes) noexcept {
  if (bytes <= 0) bytes = 64;
  const int64_t rounded = (bytes + 63) / 64 * 64;
  return std::aligned_alloc(64, static_cast<size_t>(rounded));
}

void aligned_free(void* ptr) noexcept { std::free(ptr); }

}  // namespace convpool
