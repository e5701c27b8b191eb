// Kernels register themselves per SIMD target.
//
// An optimizer header ends with FASTOPT_REGISTER_OPTIMIZER(Name). Each
// per-target translation unit (core/instantiate.cpp) includes every header of
// csrc/optimizers/ (a list CMake writes from the folder) and collects the
// registered optimizers into a constant table of their kernels' addresses:
// data only, constant-initialized, so no code compiled for a target runs
// before the CPU has been checked (core/targets.cpp). The host side (the
// bindings) collects the same list for the declarations and checks.
#pragma once

#include <cstddef>

#include "core/batch.hpp"

namespace fastopt {

template <class T>
using StepFn = void (*)(const Batch<T>&, const double* hypers, std::size_t n_sets);

// The step on float16/bfloat16 parameters (float32 state and element math).
using NarrowStepFn = void (*)(const Batch<float>&, const NarrowCall&, const double* hypers, std::size_t n_sets);

// One optimizer's step on one SIMD target.
struct OptimizerKernels {
  const char* name;
  StepFn<float> f32;
  StepFn<double> f64;
  NarrowStepFn narrow;
};

struct OptimizerTable {
  const OptimizerKernels* entries;
  int count;
};

}  // namespace fastopt

// The namespace registrations land in: the SIMD target's in a kernel
// translation unit, `host` in the bindings' (which define FASTOPT_HOST).
#ifdef FASTOPT_HOST
#define FASTOPT_REGISTRY_NAMESPACE host
#else
#define FASTOPT_REGISTRY_NAMESPACE FASTOPT_TARGET_NAME
#endif

namespace fastopt {
namespace FASTOPT_REGISTRY_NAMESPACE {
template <int kSerial>
struct Registered;  // Registered<n>::type: the n-th optimizer registered in this translation unit
}  // namespace FASTOPT_REGISTRY_NAMESPACE
}  // namespace fastopt

#define FASTOPT_REGISTER_OPTIMIZER(Opt)             \
  namespace fastopt {                               \
  namespace FASTOPT_REGISTRY_NAMESPACE {            \
  template <>                                       \
  struct Registered<__COUNTER__> {                  \
    using type = ::fastopt::Opt;                    \
  };                                                \
  }                                                 \
  }

// Collects every optimizer registered between two __COUNTER__ readings into
// an array of make(type_tag) results.
namespace fastopt {
template <class Opt>
struct TypeTag {
  using type = Opt;
};
}  // namespace fastopt
