// Detects the CPU once and picks the kernel table. Operators never name an ISA:
// they call through active_kernels(). Each ISA's kernels register themselves into
// their own table (register_*_kernels in cpu/<op>/<op>_<isa>.cpp).
#include "convpool/dispatch.hpp"

#include <atomic>
#include <cstdlib>
#include <stdexcept>

namespace convpool {

#define CONVPOOL_DECLARE_ISA(ns)                          \
  namespace ns {                                          \
  void register_conv_kernels(KernelTable& table);          \
  void register_conv_backward_kernels(KernelTable& table); \
  void register_pool_kernels(KernelTable& table);          \
  void register_pool_backward_kernels(KernelTable& table); \
  void register_probe_kernels(KernelTable& table);         \
  inline void register_kernels(KernelTable& table) {       \
    register_conv_kernels(table);                          \
    register_conv_backward_kernels(table);                 \
    register_pool_kernels(table);                          \
    register_pool_backward_kernels(table);                 \
    register_probe_kernels(table);                         \
  }                                                        \
  }
CONVPOOL_DECLARE_ISA(baseline)
#ifdef CONVPOOL_HAVE_AVX2
CONVPOOL_DECLARE_ISA(avx2)
#endif
#ifdef CONVPOOL_HAVE_AVX512
CONVPOOL_DECLARE_ISA(avx512)
#endif
#undef CONVPOOL_DECLARE_ISA

namespace {

struct IsaEntry {
  const char* name;
  KernelTable table;
  bool supported;
};

IsaEntry make_entry(const char* name, bool supported, void (*register_kernels)(KernelTable&)) {
  IsaEntry e{name, KernelTable{}, supported};
  e.table.isa = name;
  register_kernels(e.table);
  return e;
}

bool cpu_has_avx2() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
#else
  return false;
#endif
}

bool cpu_has_avx512() {
#if defined(__x86_64__) || defined(__i386__)
  __builtin_cpu_init();
  // libgcc's detection also checks that the OS saves the ZMM state (XGETBV).
  return cpu_has_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
         __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
#else
  return false;
#endif
}

std::vector<IsaEntry>& registry() {
  static std::vector<IsaEntry> entries = [] {
    std::vector<IsaEntry> v;
    v.push_back(make_entry("baseline", true, &baseline::register_kernels));
#ifdef CONVPOOL_HAVE_AVX2
    v.push_back(make_entry("avx2", cpu_has_avx2(), &avx2::register_kernels));
#endif
#ifdef CONVPOOL_HAVE_AVX512
    v.push_back(make_entry("avx512", cpu_has_avx512(), &avx512::register_kernels));
#endif
    return v;
  }();
  return entries;
}

const IsaEntry* best_supported(const char* limit) {
  const IsaEntry* best = nullptr;
  for (const IsaEntry& e : registry()) {
    if (e.supported) best = &e;
    if (limit != nullptr && std::string(limit) == e.name) break;
  }
  return best;
}

std::atomic<const KernelTable*>& active_slot() {
  static std::atomic<const KernelTable*> slot{[] {
    // An unknown CONVPOOL_ISA value is reported by the Python package at import;
    // here it simply does not lower the choice.
    const char* env = std::getenv("CONVPOOL_ISA");
    return &best_supported(env)->table;
  }()};
  return slot;
}

}  // namespace

std::vector<std::string> compiled_isas() {
  std::vector<std::string> names;
  for (const IsaEntry& e : registry()) names.emplace_back(e.name);
  return names;
}

std::vector<std::string> supported_isas() {
  std::vector<std::string> names;
  for (const IsaEntry& e : registry())
    if (e.supported) names.emplace_back(e.name);
  return names;
}

const KernelTable& active_kernels() { return *active_slot().load(std::memory_order_acquire); }

void set_active_isa(const std::string& name) {
  for (const IsaEntry& e : registry()) {
    if (name != e.name) continue;
    if (!e.supported) {
      throw std::invalid_argument("ISA '" + name + "' is compiled in but this CPU cannot run it");
    }
    active_slot().store(&e.table, std::memory_order_release);
    return;
  }
  std::string known;
  for (const IsaEntry& e : registry()) known += (known.empty() ? "" : ", ") + std::string(e.name);
  throw std::invalid_argument("unknown ISA '" + name + "'; this build has: " + known);
}

}  // namespace convpool
