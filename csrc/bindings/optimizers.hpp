// Shared between the binding files of fastopt._core.
#pragma once

#include <pybind11/pybind11.h>

#include <atomic>

#include "core/batch.hpp"

namespace fastopt {

void bind_optimizers(pybind11::module_& m);  // bindings/optimizers.cpp
void bind_lbfgs(pybind11::module_& m);       // bindings/lbfgs.cpp
void bind_quantize(pybind11::module_& m);    // bindings/quantize.cpp

// The dynamic map of 8-bit state and its lookup tables (bindings/quantize.cpp).
const QuantMap& quant_map(StateMap kind);

// The active SIMD target's utility kernels (bindings/module.cpp).
struct UtilityKernels;
const UtilityKernels& active_utilities();

// Threads for calls that pass num_threads=0 (0: the OpenMP default), set by
// set_num_threads; and the threads the most recent kernel call ran on.
std::atomic<int>& default_num_threads();
std::atomic<int>& last_call_threads();

}  // namespace fastopt
