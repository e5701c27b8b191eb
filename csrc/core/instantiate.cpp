// Compiled once per SIMD target, with that target's flags (CMakeLists.txt):
// every optimizer of csrc/optimizers/ (the list CMake writes) and the utility
// kernels, collected into constant tables the host side reads
// (bindings/optimizers.cpp, bindings/module.cpp). Only addresses are stored:
// nothing here runs before the CPU is known to support the target.
#include <array>
#include <type_traits>
#include <utility>

#include "core/registry.hpp"
#include "simd/elementwise.hpp"
#include "simd/narrow_step.hpp"
#include "simd/utilities.hpp"

namespace fastopt {
namespace FASTOPT_TARGET_NAME {
constexpr int kFirstRegistration = __COUNTER__ + 1;
}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

#include "fastopt_optimizers.inc"

#define FASTOPT_CAT2(a, b) a##b
#define FASTOPT_CAT(a, b) FASTOPT_CAT2(a, b)

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

constexpr int kRegistrations = __COUNTER__ - kFirstRegistration;

// An optimizer whose step is not elementwise (it reduces per array: LAMB,
// Adafactor) defines Kernel<Opt, T>::step; the others run step_elementwise
// (and, on 16-bit parameters, step_narrow_whole or step_narrow_elementwise).
template <class K, class = void>
struct HasOwnStep : std::false_type {};
template <class K>
struct HasOwnStep<K, std::void_t<decltype(&K::step)>> : std::true_type {};

template <class Opt, class T>
constexpr StepFn<T> step_of() {
  if constexpr (HasOwnStep<Kernel<Opt, T>>::value) return &Kernel<Opt, T>::step;
  else return &step_elementwise<Opt, T>;
}

template <class Opt>
constexpr NarrowStepFn narrow_step_of() {
  if constexpr (HasOwnStep<Kernel<Opt, float>>::value) return &step_narrow_whole<Opt>;
  else return &step_narrow_elementwise<Opt>;
}

template <class Opt>
constexpr OptimizerKernels kernels_of() {
  return OptimizerKernels{Opt::kName, step_of<Opt, float>(), step_of<Opt, double>(), narrow_step_of<Opt>()};
}

template <int... kIndex>
constexpr std::array<OptimizerKernels, sizeof...(kIndex)> collect(std::integer_sequence<int, kIndex...>) {
  return {{kernels_of<typename Registered<kFirstRegistration + kIndex>::type>()...}};
}

constexpr auto kOptimizers = collect(std::make_integer_sequence<int, kRegistrations>{});

}  // namespace FASTOPT_TARGET_NAME

extern const OptimizerTable FASTOPT_CAT(optimizer_table_, FASTOPT_TARGET_NAME);
const OptimizerTable FASTOPT_CAT(optimizer_table_, FASTOPT_TARGET_NAME) = {FASTOPT_TARGET_NAME::kOptimizers.data(),
                                                                          FASTOPT_TARGET_NAME::kRegistrations};

extern const UtilityKernels FASTOPT_CAT(utility_kernels_, FASTOPT_TARGET_NAME);
const UtilityKernels FASTOPT_CAT(utility_kernels_, FASTOPT_TARGET_NAME) = {
    &FASTOPT_TARGET_NAME::grad_norm<float>, &FASTOPT_TARGET_NAME::grad_norm<double>,
    &FASTOPT_TARGET_NAME::roofline<float>, &FASTOPT_TARGET_NAME::roofline<double>,
    &FASTOPT_TARGET_NAME::quantize_span, &FASTOPT_TARGET_NAME::dequantize_span};

}  // namespace fastopt
