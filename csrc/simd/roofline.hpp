// The benchmark's yardstick: one pass that moves exactly the bytes of an
// optimizer step (the same arrays read, the same arrays written) with trivial
// arithmetic, partitioned and compiled like the real kernels. A kernel that
// runs as fast as this is at the memory (or cache) bandwidth limit.
//
//   mean = (a_0 + ... + a_{W+R-1}) / (W+R);  a_j = mean for the W written arrays
//
// The mean keeps values bounded over repeated calls (no overflow, no
// subnormals that would slow the arithmetic).
#pragma once

#include "simd/elementwise.hpp"

namespace fastopt {

// Roles: the W written arrays first, then the R read-only ones.
constexpr int kRooflineMaxArrays = 6;

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T, int W, int R>
void roofline_span(T* const* arrays, std::int64_t b, std::int64_t e) {
  constexpr int K = W + R;
  const T inv = T(1) / T(K);
  T* __restrict a0 = arrays[0] + b;
  T* __restrict a1 = K > 1 ? arrays[1] + b : nullptr;
  T* __restrict a2 = K > 2 ? arrays[2] + b : nullptr;
  T* __restrict a3 = K > 3 ? arrays[3] + b : nullptr;
  T* __restrict a4 = K > 4 ? arrays[4] + b : nullptr;
  T* __restrict a5 = K > 5 ? arrays[5] + b : nullptr;
  const std::int64_t n = e - b;
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    T sum = a0[i];
    if constexpr (K > 1) sum += a1[i];
    if constexpr (K > 2) sum += a2[i];
    if constexpr (K > 3) sum += a3[i];
    if constexpr (K > 4) sum += a4[i];
    if constexpr (K > 5) sum += a5[i];
    const T mean = sum * inv;
    a0[i] = mean;
    if constexpr (W > 1) a1[i] = mean;
    if constexpr (W > 2) a2[i] = mean;
    if constexpr (W > 3) a3[i] = mean;
    if constexpr (W > 4) a4[i] = mean;
    if constexpr (W > 5) a5[i] = mean;
  }
}

template <class T, int W, int R>
void roofline_fixed(const Batch<T>& batch) {
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int) {
    T* arrays[W + R];
    for (int k = 0; k < W + R; ++k) arrays[k] = role_ptr(batch, k, t);
    roofline_span<T, W, R>(arrays, b, e);
  });
}

}  // namespace detail

// n_written + n_read <= kRooflineMaxArrays, n_written >= 1 (checked by the binding).
template <class T>
void roofline(const Batch<T>& batch, int n_written, int n_read) {
  using namespace detail;
  switch (n_written * 8 + n_read) {
    case 1 * 8 + 0: return roofline_fixed<T, 1, 0>(batch);
    case 1 * 8 + 1: return roofline_fixed<T, 1, 1>(batch);
    case 2 * 8 + 1: return roofline_fixed<T, 2, 1>(batch);
    case 3 * 8 + 1: return roofline_fixed<T, 3, 1>(batch);
    case 4 * 8 + 1: return roofline_fixed<T, 4, 1>(batch);
    case 5 * 8 + 1: return roofline_fixed<T, 5, 1>(batch);
    case 1 * 8 + 2: return roofline_fixed<T, 1, 2>(batch);
    case 2 * 8 + 2: return roofline_fixed<T, 2, 2>(batch);
    case 3 * 8 + 2: return roofline_fixed<T, 3, 2>(batch);
    case 4 * 8 + 2: return roofline_fixed<T, 4, 2>(batch);
    default: throw std::invalid_argument("roofline: unsupported numbers of written/read arrays");
  }
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
