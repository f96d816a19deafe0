// Scratch allocation, the threading grain and the denormal mode for kernels. Lives in a baseline
// translation unit so that no ISA-specific copy of a library template can be
// picked by the linker.
#include <atomic>
#include <cstdlib>

#include "convpool/kernel_types.hpp"

namespace convpool {

void* aligned_alloc_bytes(int64_t bytes) noexcept {
  if (bytes <= 0) bytes = 64;
  const int64_t rounded = (bytes + 63) / 64 * 64;
  return std::aligned_alloc(64, static_cast<size_t>(rounded));
}

void aligned_free(void* ptr) noexcept { std::free(ptr); }

namespace {
// About 10-30 microseconds of kernel work: below that, waking a second thread
// costs more than it saves.
std::atomic<int64_t> g_min_parallel_work{int64_t{1} << 15};
// Half the 32 MiB L3 cache of the Zen 4 machine the kernels were tuned on.
std::atomic<int64_t> g_cache_resident_bytes{int64_t{16} << 20};
std::atomic<bool> g_flush_denormals{true};
}  // namespace

bool flush_denormals() noexcept { return g_flush_denormals.load(std::memory_order_relaxed); }

void set_flush_denormals(bool flush) noexcept { g_flush_denormals.store(flush, std::memory_order_relaxed); }

int64_t min_parallel_work() noexcept { return g_min_parallel_work.load(std::memory_order_relaxed); }

void set_min_parallel_work(int64_t work) noexcept {
  g_min_parallel_work.store(work < 0 ? 0 : work, std::memory_order_relaxed);
}

int64_t cache_resident_bytes() noexcept { return g_cache_resident_bytes.load(std::memory_order_relaxed); }

void set_cache_resident_bytes(int64_t bytes) noexcept {
  g_cache_resident_bytes.store(bytes < 0 ? 0 : bytes, std::memory_order_relaxed);
}

}  // namespace convpool
