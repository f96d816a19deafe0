// Runtime selection of the kernel table.
#pragma once

#include <string>
#include <vector>

#include "convpool/kernel_types.hpp"

namespace convpool {

// ISAs compiled into this build, lowest first ("baseline", "avx2", "avx512").
std::vector<std::string> compiled_isas();
// The subset this CPU (and OS) can run, lowest first.
std::vector<std::string> supported_isas();
// The table in use. On first use it is the best supported ISA, lowered by the
// CONVPOOL_ISA environment variable if that is set.
const KernelTable& active_kernels();
// Selects the table for an ISA by name; throws std::invalid_argument for an unknown
// name or one this build or CPU cannot run.
void set_active_isa(const std::string& name);

}  // namespace convpool
