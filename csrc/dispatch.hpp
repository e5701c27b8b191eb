// Which compiled kernel table the bindings call.
#pragma once

#include "kernels/table.hpp"

namespace fastopt {

const KernelTable& kernel_table_baseline();

// The table in use (for now the portable baseline build).
inline const KernelTable& active_kernels() { return kernel_table_baseline(); }

}  // namespace fastopt
