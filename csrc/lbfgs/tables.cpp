// The active SIMD target's L-BFGS chunk kernels (host side: plain flags).
#include "core/targets.hpp"
#include "lbfgs/chunk_kernels.hpp"

namespace fastopt {

#define FASTOPT_DECLARE_TABLE(target) extern const LbfgsChunkTable lbfgs_chunk_table_##target;
FASTOPT_FOR_EACH_TARGET(FASTOPT_DECLARE_TABLE)
#undef FASTOPT_DECLARE_TABLE

const LbfgsChunkTable& active_lbfgs_chunk_table() {
#define FASTOPT_TABLE_ENTRY(target) &lbfgs_chunk_table_##target,
  static const LbfgsChunkTable* const tables[] = {FASTOPT_FOR_EACH_TARGET(FASTOPT_TABLE_ENTRY)};
#undef FASTOPT_TABLE_ENTRY
  return *tables[active_target()];
}

}  // namespace fastopt
