// Gradient norms for clipping by global norm, over every array of a call:
// norm_type 2 (sum of squares), 1 (sum of absolute values) or infinity (max
// absolute value), plus the count of non-finite elements. One read-only pass;
// one partial per work unit, combined in unit order (core/batch.hpp), so the
// result is bitwise identical for any thread count and any target.
#pragma once

#include "simd/elementwise.hpp"
#include "simd/reductions.hpp"

namespace fastopt {

enum class NormType : int { kL1 = 1, kL2 = 2, kInf = 3 };
constexpr int kNormFields = 2;  // [unit][0] = partial norm (sum or max), [unit][1] = non-finite count

namespace FASTOPT_TARGET_NAME {
namespace detail {

// The sum (L1, L2) of one span in eight lanes: element i goes to lane i % 8
// and each lane adds in index order, so the additions are the same on every
// target (one AVX-512 register holds the lanes, two AVX2 or four SSE2 ones);
// `omp simd reduction` would group them by the target's vector width. The max
// (inf) and the non-finite count do not depend on the order.
template <class T, NormType kType>
FASTOPT_NOINLINE void norm_span(const T* __restrict g, std::int64_t n, double& partial, double& nonfinite) {
  double bad = 0;
  if constexpr (kType == NormType::kInf) {
    double acc = 0;
#pragma omp simd reduction(max : acc) reduction(+ : bad)
    for (std::int64_t i = 0; i < n; ++i) {
      const double a = std::fabs(static_cast<double>(g[i]));
      acc = a > acc ? a : acc;
      bad += (g[i] - g[i] == T(0)) ? 0.0 : 1.0;
    }
    partial = partial > acc ? partial : acc;
  } else {
    double lane[kSumLanes] = {}, lane_bad[kSumLanes] = {};
    std::int64_t i = 0;
    for (; i + kSumLanes <= n; i += kSumLanes) {
#pragma omp simd
      for (int l = 0; l < kSumLanes; ++l) {
        const double d = g[i + l];
        lane[l] += kType == NormType::kL2 ? d * d : std::fabs(d);
        lane_bad[l] += (d - d == 0.0) ? 0.0 : 1.0;
      }
    }
    for (int l = 0; i < n; ++i, ++l) {
      const double d = g[i];
      lane[l] += kType == NormType::kL2 ? d * d : std::fabs(d);
      lane_bad[l] += (d - d == 0.0) ? 0.0 : 1.0;
    }
    partial += ((lane[0] + lane[1]) + (lane[2] + lane[3])) + ((lane[4] + lane[5]) + (lane[6] + lane[7]));
    for (int l = 0; l < kSumLanes; ++l) bad += lane_bad[l];
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
