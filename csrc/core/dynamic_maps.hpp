// bitsandbytes' dynamic quantization maps (Dettmers et al. 2022), the
// 256 values an 8-bit state code stands for, sorted ascending: the output of
// bitsandbytes.functional.create_dynamic_map(signed=True / signed=False)
// (0.50.2), written out because that function builds them with
// torch.linspace, whose last bits depend on torch's vectorization. Signed:
// 0, 1 and 127 values of each sign, 2**i in decade [1e-6..1e0)*10**i; unsigned:
// 0, 1 and 2**(i+1) values per decade. tests/test_quantized.py checks both
// against bitsandbytes when it is installed, and against the decade formula
// to one unit in the last place when it is not. The numbers are in the two
// .inc files beside this one, 256 each.
#pragma once

namespace fastopt {

inline constexpr float kSignedDynamicMap[256] = {
#include "core/dynamic_map_signed.inc"
};

inline constexpr float kUnsignedDynamicMap[256] = {
#include "core/dynamic_map_unsigned.inc"
};

}  // namespace fastopt
