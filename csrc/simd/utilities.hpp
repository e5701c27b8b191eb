// The per-target kernels that are not optimizers: the gradient norm of
// global-norm clipping, the benchmark's roofline and blockwise 8-bit
// quantization (fastopt.quantize_blockwise).
#pragma once

#include "simd/norm.hpp"
#include "simd/quantize.hpp"
#include "simd/roofline.hpp"

namespace fastopt {

// One SIMD target's utility kernels (constant data: core/registry.hpp says why).
struct UtilityKernels {
  void (*grad_norm_f32)(const Batch<float>&, NormType, double* unit_out);
  void (*grad_norm_f64)(const Batch<double>&, NormType, double* unit_out);
  void (*roofline_f32)(const Batch<float>&, int n_written, int n_read);
  void (*roofline_f64)(const Batch<double>&, int n_written, int n_read);
  void (*quantize)(const QuantMap&, const float* x, std::uint8_t* codes, float* absmax, std::int64_t n);
  void (*dequantize)(const QuantMap&, const std::uint8_t* codes, const float* absmax, float* x, std::int64_t n);
};

}  // namespace fastopt
