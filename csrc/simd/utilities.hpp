// The per-target kernels that are not optimizers: the gradient norm of
// global-norm clipping, and the benchmark's roofline.
#pragma once

#include "simd/norm.hpp"
#include "simd/roofline.hpp"

namespace fastopt {

// One SIMD target's utility kernels (constant data: core/registry.hpp says why).
struct UtilityKernels {
  void (*grad_norm_f32)(const Batch<float>&, NormType, double* unit_out);
  void (*grad_norm_f64)(const Batch<double>&, NormType, double* unit_out);
  void (*roofline_f32)(const Batch<float>&, int n_written, int n_read);
  void (*roofline_f64)(const Batch<double>&, int n_written, int n_read);
};

}  // namespace fastopt
