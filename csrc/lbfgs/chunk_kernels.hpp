// The innermost loops of the L-BFGS passes, over one chunk (<= kLbfgsChunk
// elements, L1-resident temporaries), for float and double.
//
// They are the only code of the passes that touches every element, and they
// are compute-bound in L2/L3 at the baseline ISA (SSE2: two doubles per
// instruction, float->double conversions). So, like the optimizer kernels,
// they are compiled once per SIMD target (lbfgs/instantiate.cpp) into their own
// kernel table, and the passes call the active target's version through it
// (one indirect call per chunk): FASTOPT_TARGET forces them too, and every
// target is tested. Dot products accumulate in double; the lane count of the
// vector reductions depends on the target, so sums may differ in the last
// bits between targets, never between thread counts.
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include "core/batch.hpp"

namespace fastopt {

struct CandidateSums {
  double dg, sg, yg, sy, yy, l1, sq, max;
};

// One dtype's chunk kernels for one SIMD target.
template <class T>
struct LbfgsChunkKernels {
  void (*to_double)(const T* src, double* dst, std::int64_t len);
  CandidateSums (*candidate)(T* d, T* y, const T* g_new, const T* g_old, const double* gd, double* y_out_d,
                             T alpha, bool scale, std::int64_t len);
  CandidateSums (*norms)(const T* g, const double* gd, std::int64_t len);
  void (*pair_dots4)(const T* s, const T* y, const double* gd, const double* yd, std::int64_t len, double* out);
  void (*pair_dots2)(const T* s, const T* y, const double* gd, std::int64_t len, double* out);
  void (*axpy2)(T* acc, const T* s, const T* y, T a, T b, std::int64_t len);
  double (*finish_direction)(const T* acc, T* d, const T* x, T* x_trial, const T* g, T alpha, std::int64_t len);
  // L-BFGS-B's passes (lbfgsb.hpp): one pair against five chunk vectors, and
  // a double accumulator of W v.
  void (*pair_dots10)(const T* s, const T* y, const double* const* vecs, std::int64_t len, double* out);
  void (*axpy2_double)(double* acc, const T* s, const T* y, double a, double b, std::int64_t len);
};

// One SIMD target's chunk kernels for both dtypes (constant data, filled by
// lbfgs/instantiate.cpp), and the active target's (lbfgs/tables.cpp).
struct LbfgsChunkTable {
  LbfgsChunkKernels<float> f32;
  LbfgsChunkKernels<double> f64;
};
const LbfgsChunkTable& active_lbfgs_chunk_table();

template <class T>
const LbfgsChunkKernels<T>& active_chunk_kernels() {
  if constexpr (std::is_same_v<T, float>) return active_lbfgs_chunk_table().f32;
  else return active_lbfgs_chunk_table().f64;
}

}  // namespace fastopt

namespace fastopt {
namespace FASTOPT_TARGET_NAME {
namespace lbfgs_chunk {

template <class T>
void to_double(const T* __restrict src, double* __restrict dst,
                                                         std::int64_t len) {
#pragma omp simd
  for (std::int64_t j = 0; j < len; ++j) dst[j] = src[j];
}

// y = g_new - g_old (written), s = alpha*d in place when scale, and the
// candidate's products; gd is g_new as double, y_out_d receives y as double.
template <class T>
CandidateSums candidate(T* __restrict d, T* __restrict y,
                                                                  const T* __restrict g_new,
                                                                  const T* __restrict g_old,
                                                                  const double* __restrict gd,
                                                                  double* __restrict y_out_d, T alpha,
                                                                  bool scale, std::int64_t len) {
  double dg = 0, sg = 0, yg = 0, sy = 0, yy = 0, l1 = 0, sq = 0, mx = 0;
  // d'g needs the unscaled direction: take it before scaling d into s.
#pragma omp simd reduction(+ : dg)
  for (std::int64_t j = 0; j < len; ++j) dg += static_cast<double>(d[j]) * gd[j];
  if (scale) {
#pragma omp simd
    for (std::int64_t j = 0; j < len; ++j) d[j] = alpha * d[j];
  }
#pragma omp simd reduction(+ : sg, yg, sy, yy, l1, sq) reduction(max : mx)
  for (std::int64_t j = 0; j < len; ++j) {
    const T yj = g_new[j] - g_old[j];
    y[j] = yj;
    const double gv = gd[j], yv = yj, sv = d[j];
    y_out_d[j] = yv;
    sg += sv * gv;
    yg += yv * gv;
    sy += sv * yv;
    yy += yv * yv;
    const double a = std::fabs(gv);
    l1 += a;
    sq += gv * gv;
    mx = a > mx ? a : mx;
  }
  return {dg, sg, yg, sy, yy, l1, sq, mx};
}

template <class T>
CandidateSums norms(const T*, const double* __restrict gd, std::int64_t len) {
  double l1 = 0, sq = 0, mx = 0;
#pragma omp simd reduction(+ : l1, sq) reduction(max : mx)
  for (std::int64_t j = 0; j < len; ++j) {
    const double a = std::fabs(gd[j]);
    l1 += a;
    sq += gd[j] * gd[j];
    mx = a > mx ? a : mx;
  }
  return {0, 0, 0, 0, 0, l1, sq, mx};
}

// out += (s'g, y'g, s'y_new, y'y_new) over the chunk.
template <class T>
void pair_dots4(const T* __restrict s, const T* __restrict y,
                                                          const double* __restrict gd,
                                                          const double* __restrict yd, std::int64_t len,
                                                          double* __restrict out) {
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3)
  for (std::int64_t j = 0; j < len; ++j) {
    const double sv = s[j], yv = y[j];
    a0 += sv * gd[j];
    a1 += yv * gd[j];
    a2 += sv * yd[j];
    a3 += yv * yd[j];
  }
  out[0] += a0, out[1] += a1, out[2] += a2, out[3] += a3;
}

// out += (s'g, y'g) over the chunk.
template <class T>
void pair_dots2(const T* __restrict s, const T* __restrict y,
                                                          const double* __restrict gd, std::int64_t len,
                                                          double* __restrict out) {
  double a0 = 0, a1 = 0;
#pragma omp simd reduction(+ : a0, a1)
  for (std::int64_t j = 0; j < len; ++j) {
    a0 += static_cast<double>(s[j]) * gd[j];
    a1 += static_cast<double>(y[j]) * gd[j];
  }
  out[0] += a0, out[1] += a1;
}

// acc = acc + a*s + b*y (the direction, pair by pair).
template <class T>
void axpy2(T* __restrict acc, const T* __restrict s,
                                                     const T* __restrict y, T a, T b, std::int64_t len) {
#pragma omp simd
  for (std::int64_t j = 0; j < len; ++j) acc[j] = acc[j] + a * s[j] + b * y[j];
}

// d = acc (stored), x_trial = x + alpha*d; returns d'g.
template <class T>
double finish_direction(const T* __restrict acc, T* __restrict d,
                                                                  const T* __restrict x, T* __restrict x_trial,
                                                                  const T* __restrict g, T alpha,
                                                                  std::int64_t len) {
  double slope = 0;
#pragma omp simd reduction(+ : slope)
  for (std::int64_t j = 0; j < len; ++j) {
    const T dj = acc[j];
    d[j] = dj;
    x_trial[j] = x[j] + alpha * dj;
    slope += static_cast<double>(dj) * static_cast<double>(g[j]);
  }
  return slope;
}

// out[2v] += s'vecs[v], out[2v+1] += y'vecs[v] for v = 0..4 over the chunk.
template <class T>
void pair_dots10(const T* __restrict s, const T* __restrict y, const double* const* vecs, std::int64_t len,
                 double* __restrict out) {
  const double* __restrict v0 = vecs[0];
  const double* __restrict v1 = vecs[1];
  const double* __restrict v2 = vecs[2];
  const double* __restrict v3 = vecs[3];
  const double* __restrict v4 = vecs[4];
  double a0 = 0, a1 = 0, a2 = 0, a3 = 0, a4 = 0, b0 = 0, b1 = 0, b2 = 0, b3 = 0, b4 = 0;
#pragma omp simd reduction(+ : a0, a1, a2, a3, a4, b0, b1, b2, b3, b4)
  for (std::int64_t j = 0; j < len; ++j) {
    const double sv = s[j], yv = y[j];
    a0 += sv * v0[j], b0 += yv * v0[j];
    a1 += sv * v1[j], b1 += yv * v1[j];
    a2 += sv * v2[j], b2 += yv * v2[j];
    a3 += sv * v3[j], b3 += yv * v3[j];
    a4 += sv * v4[j], b4 += yv * v4[j];
  }
  out[0] += a0, out[1] += b0, out[2] += a1, out[3] += b1, out[4] += a2;
  out[5] += b2, out[6] += a3, out[7] += b3, out[8] += a4, out[9] += b4;
}

// acc = acc + a*s + b*y in double.
template <class T>
void axpy2_double(double* __restrict acc, const T* __restrict s, const T* __restrict y, double a, double b,
                  std::int64_t len) {
#pragma omp simd
  for (std::int64_t j = 0; j < len; ++j) acc[j] = acc[j] + a * static_cast<double>(s[j]) + b * static_cast<double>(y[j]);
}

template <class T>
constexpr LbfgsChunkKernels<T> chunk_kernels() {
  return {&to_double<T>, &candidate<T>, &norms<T>, &pair_dots4<T>, &pair_dots2<T>, &axpy2<T>, &finish_direction<T>,
          &pair_dots10<T>, &axpy2_double<T>};
}

}  // namespace lbfgs_chunk
}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
