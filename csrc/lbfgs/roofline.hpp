// A roofline for the L-BFGS passes: the same buffers, the same bytes and the
// same threads as one iteration of the driver whose first trial is accepted,
// with trivial math (sums instead of dot products and solves). Between the
// two passes an untimed sweep stands in for the objective (it reads x_trial
// and writes g, as a real one does), so the caches are in the state the
// solver meets. bench/lbfgs.py divides the solver's time by this one's:
// what is left is the cost of the arithmetic and of extra line-search trials.
#pragma once

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "lbfgs/blocks.hpp"

namespace fastopt {

// Seconds per iteration of the roofline, median-free: the mean over
// `iterations` after `warmup` iterations.
template <class T>
double lbfgs_roofline_seconds(std::int64_t n, int m, int iterations, int warmup, int num_threads) {
  std::unique_ptr<T[]> s(new T[static_cast<std::size_t>((m + 1) * n)]), y(new T[static_cast<std::size_t>((m + 1) * n)]);
  std::vector<T> x[2] = {std::vector<T>(n, T(1)), std::vector<T>(n, T(1))};
  std::vector<T> g[2] = {std::vector<T>(n, T(1)), std::vector<T>(n, T(1))};
  std::vector<T> c(n, T(1));
  for (std::int64_t j = 0; j < (m + 1) * n; ++j) s[j] = y[j] = T(1e-3);
  BlockPartials partials;
  partials.reset(n, 1);
  using clock = std::chrono::steady_clock;
  double timed = 0.0;
  for (int it = 0; it < warmup + iterations; ++it) {
    const int cur = it % 2, spare = it % (m + 1), oldest = (spare + 1) % (m + 1);
    const T* xc = x[cur].data();
    T* xt = x[1 - cur].data();
    const T* gc = g[cur].data();
    T* gt = g[1 - cur].data();
    T* d = s.get() + spare * n;
    T* y_new = y.get() + spare * n;
    const auto t0 = clock::now();
    // Pass 2: read every stored pair, g and x; write d and x_trial.
    for_each_block(n, num_threads, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
      T acc[kLbfgsChunk];
      for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
        const std::int64_t len = std::min(kLbfgsChunk, end - c0);
#pragma omp simd
        for (std::int64_t j = 0; j < len; ++j) acc[j] = gc[c0 + j];
        for (int i = 0; i <= m; ++i) {
          if (i == spare) continue;
          const T* __restrict si = s.get() + i * n + c0;
          const T* __restrict yi = y.get() + i * n + c0;
#pragma omp simd
          for (std::int64_t j = 0; j < len; ++j) acc[j] += si[j] + yi[j];
        }
#pragma omp simd
        for (std::int64_t j = 0; j < len; ++j) d[c0 + j] = acc[j], xt[c0 + j] = xc[c0 + j] + acc[j];
      }
    });
    const auto t1 = clock::now();
    for (std::int64_t j = 0; j < n; ++j) gt[j] = c[j] * xt[j];  // the objective, untimed
    const auto t2 = clock::now();
    // Pass 1: read d, g_new, g_old and every pair but the oldest; write y.
    // Chunk-wise sums without a loop-carried chain, so adding is never the
    // bottleneck at any ISA.
    for_each_block(n, num_threads, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
      T acc[kLbfgsChunk];
      T total = 0;
      for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
        const std::int64_t len = std::min(kLbfgsChunk, end - c0);
#pragma omp simd
        for (std::int64_t j = 0; j < len; ++j) {
          const T yj = gt[c0 + j] - gc[c0 + j];
          y_new[c0 + j] = yj;
          acc[j] = d[c0 + j] + yj;
        }
        for (int i = 0; i <= m; ++i) {
          if (i == spare || i == oldest) continue;
          const T* __restrict si = s.get() + i * n + c0;
          const T* __restrict yi = y.get() + i * n + c0;
#pragma omp simd
          for (std::int64_t j = 0; j < len; ++j) acc[j] += si[j] + yi[j];
        }
        total += acc[0] + acc[len - 1];
      }
      partials.row(block)[0] = total;
    });
    const auto t3 = clock::now();
    if (it >= warmup) timed += std::chrono::duration<double>((t1 - t0) + (t3 - t2)).count();
  }
  return timed / iterations;
}

}  // namespace fastopt
