// Compiled once per SIMD target, with that target's flags (CMakeLists.txt):
// the L-BFGS passes' inner loops for both dtypes, as one constant table.
#include "lbfgs/chunk_kernels.hpp"

#define FASTOPT_CAT2(a, b) a##b
#define FASTOPT_CAT(a, b) FASTOPT_CAT2(a, b)

namespace fastopt {

extern const LbfgsChunkTable FASTOPT_CAT(lbfgs_chunk_table_, FASTOPT_TARGET_NAME);
const LbfgsChunkTable FASTOPT_CAT(lbfgs_chunk_table_, FASTOPT_TARGET_NAME) = {
    FASTOPT_TARGET_NAME::lbfgs_chunk::chunk_kernels<float>(), FASTOPT_TARGET_NAME::lbfgs_chunk::chunk_kernels<double>()};

}  // namespace fastopt
