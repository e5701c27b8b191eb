// Gradient norms for clipping by global norm, over every array of a call:
// norm_type 2 (sum of squares), 1 (sum of absolute values) or infinity (max
// absolute value), plus the count of non-finite elements. One read-only pass;
// one partial per work unit, combined in unit order (common.hpp), so the
// result is bitwise identical for any thread count.
#pragma once

#include "simd/elementwise.hpp"

namespace fastopt {

enum class NormType : int { kL1 = 1, kL2 = 2, kInf = 3 };
constexpr int kNormFields = 2;  // [unit][0] = partial norm (sum or max), [unit][1] = non-finite count

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T, NormType kType>
FASTOPT_NOINLINE void norm_span(const T* __restrict g, std::int64_t n, double& partial, double& nonfinite) {
  double acc = 0, bad = 0;
  if constexpr (kType == NormType::kInf) {
#pragma omp simd reduction(max : acc) reduction(+ : bad)
    for (std::int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(g[i]));
      acc = a > acc ? a : acc;
      bad += (g[i] - g[i] == T(0)) ? 0.0 : 1.0;
    }
    partial = partial > acc ? partial : acc;
  } else {
#pragma omp simd reduction(+ : acc, bad)
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = g[i];
      acc += kType == NormType::kL2 ? x * x : std::fabs(x);
      bad += (g[i] - g[i] == T(0)) ? 0.0 : 1.0;
    }
    partial += acc;
  }
  nonfinite += bad;
}

}  // namespace detail

// Role 0 of the batch is the gradients; unit_out has kMaxUnits x kNormFields
// zeroed doubles.
template <class T>
void grad_norm(const Batch<T>& batch, NormType type, double* unit_out) {
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    double& partial = unit_out[unit * kNormFields];
    double& nonfinite = unit_out[unit * kNormFields + 1];
    const T* g = role_ptr(batch, 0, t) + b;
    switch (type) {
      case NormType::kL1: detail::norm_span<T, NormType::kL1>(g, e - b, partial, nonfinite); break;
      case NormType::kL2: detail::norm_span<T, NormType::kL2>(g, e - b, partial, nonfinite); break;
      case NormType::kInf: detail::norm_span<T, NormType::kInf>(g, e - b, partial, nonfinite); break;
    }
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
