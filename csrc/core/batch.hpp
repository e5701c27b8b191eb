// A kernel call updates a *batch*: n tensors, each made of several buffers
// (the parameter, its gradient, its state arrays), called roles. The batch
// holds raw pointers only; all checking (dtype, contiguity, sizes, aliasing)
// happened in the bindings before the batch was built.
//
// Work is split with a static partition of the concatenated element range, so
// every element is computed by exactly the same instructions whatever the
// thread count: results are bitwise identical for 1 or N threads.
#pragma once

#include <algorithm>
#include <initializer_list>
#include <type_traits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#include "core/hyper.hpp"

#ifdef FASTOPT_HAVE_OPENMP
#include <omp.h>
#endif

// Span functions (the vectorized loops) are kept out of line: inlined into
// their dispatch lambdas, GCC reads the per-call scalars through a reference
// again and no longer vectorizes selects on them ("control flow in loop").
#if defined(_MSC_VER)
#define FASTOPT_NOINLINE __declspec(noinline)
#else
#define FASTOPT_NOINLINE __attribute__((noinline))
#endif

namespace fastopt {

// Below this many elements in a whole call no parallel region is opened: a
// region costs a few microseconds, about the time one core needs for this much
// Adam work.
constexpr std::int64_t kParallelGrain = std::int64_t{1} << 15;

// Partition boundaries are rounded to this many elements (a multiple of a
// 64-byte cache line for both dtypes) so no two threads write one line.
constexpr std::int64_t kPartitionAlign = 64;

// The element range of a call is cut into work units whose boundaries depend
// only on the total size (never on the thread count); each thread takes a
// contiguous run of whole units. Reductions (norms, step statistics) keep one
// partial per unit and add the partials in unit order, so they are bitwise
// identical for any number of threads, with constant extra memory.
constexpr int kMaxUnits = 256;
constexpr std::int64_t kMinUnitSize = 4096;

// Step statistics accumulated per unit, in double, during the update pass.
enum StatField { kStatGradSq, kStatParamSq, kStatUpdateSq, kStatNonfinite, kStatFields };

// A plain aggregate of raw pointers (no member functions): it crosses from the
// bindings into kernels compiled for other SIMD targets, so it must not carry
// inline code that two targets would compile differently.
template <class T>
struct Batch {
  int n_tensors;
  const std::int64_t* sizes;   // elements of tensor i (same in every role)
  T* const* ptrs;              // ptrs[role * n_tensors + i]; nullptr if the role is absent
  const std::int32_t* hyper;   // which hyperparameter set tensor i uses; nullptr: set 0 for all
  std::int64_t total;          // sum of sizes
  int num_threads;             // 0: the OpenMP default
  int* threads_used;           // out: threads the call ran on (1 below the grain)
  const std::int64_t* dims;    // 3 per tensor: (leading size, rows, cols) of the last two dimensions; rows = cols = 0 below 2-D
  double* unit_stats;          // out, or nullptr: kMaxUnits x kStatFields partial sums (zeroed by the caller)
};

// 16-bit parameters (docs/algorithms.md, "16-bit parameters"). A call on
// float16 or bfloat16 parameters passes a Batch<float> whose parameter (and,
// unless float32, gradient) pointers point at 16-bit data, and this
// description of how to read and write them. Plain data, like Batch.
enum NarrowFormat : std::int32_t { kFormatFloat32 = 0, kFormatFloat16 = 1, kFormatBFloat16 = 2 };
enum WriteRounding : std::int32_t { kRoundNearest = 0, kRoundStochastic = 1 };
enum MasterWeights : std::int32_t { kNoMaster = 0, kSplitMaster = 1, kFloat32Master = 2 };

// How the parameters of one hyperparameter set are written back.
struct WriteBack {
  std::int32_t rounding;  // WriteRounding
  std::int32_t master;    // MasterWeights: its array is role NarrowCall::master_role
  std::uint64_t seed;     // stochastic rounding draws from the stream of (seed, step, tensor)
  std::uint64_t step;
};

// 8-bit optimizer state (docs/algorithms.md, "8-bit optimizer state"): a
// state array in blocks of kQuantBlock elements, a uint8 code per element
// and a float32 absmax per block; element i is map[code_i] * absmax.
// Each state key's map is in its StateDecl (core/hyper.hpp).
constexpr std::int64_t kQuantBlock = 256;

// A dynamic map and the table that finds the nearest code of y in [-1, 1]
// in one lookup instead of a binary search. The cell of y is its upper 16
// bits (sign, exponent, 7 mantissa bits); a cell holds at most one of the
// thresholds between neighbouring codes, so its entry is the code of the
// cell's lowest value in bits 0-7 and, in bits 16-31, the threshold's lower
// 16 bits (flipped in negative cells, where larger bits mean smaller y): y
// rounds one code up when its own lower bits, flipped alike, are above
// them. NaN cells hold the zero entry's code. Built once on the host
// (bindings/quantize.cpp); plain data.
constexpr std::uint32_t kCellShift = 16;
constexpr std::int32_t kCells = 1 << 16;
struct QuantMap {
  float value[256];               // ascending
  std::uint32_t cell[kCells];     // [bits(y) >> 16]: code | lower bits << 16
  std::uint8_t zero_code;
};

// How a call's parameters, gradients and state are stored when they are not
// all in the step's float format: float16/bfloat16 parameters and 8-bit state.
struct NarrowCall {
  std::int32_t param_format;       // kFormatFloat32, kFormatFloat16 or kFormatBFloat16
  std::int32_t grad_format;        // the parameters' format or kFormatFloat32
  const WriteBack* writes;         // writes[set] for the tensors of hyperparameter set `set`
  const std::int64_t* tensor_ids;  // tensor t's stream of random draws (its index in the optimizer)
  int master_role;                 // the role of the master arrays: uint16 low halves or float32 copies
  int absmax_role;                 // state role r's absmax arrays are role absmax_role + r - 2; where one
                                   // is present, role r holds uint8 codes
  const QuantMap* signed_map;
  const QuantMap* unsigned_map;
};

}  // namespace fastopt

// Everything below is compiled once per SIMD target, each time in its own
// namespace, so no inline function is shared between targets (an ODR clash
// could let the linker hand an AVX-512 copy to a baseline caller).
#ifndef FASTOPT_TARGET_NAME
#define FASTOPT_TARGET_NAME baseline
#endif

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

template <class T>
inline T* role_ptr(const Batch<T>& batch, int role, int tensor) {
  return batch.ptrs[static_cast<std::size_t>(role) * batch.n_tensors + tensor];
}

template <class T>
inline std::int32_t hyper_of(const Batch<T>& batch, int tensor) {
  return batch.hyper ? batch.hyper[tensor] : 0;
}

// Work units: a count that depends only on the total size, and unit u's
// first element (aligned, so no two units share a cache line).
inline int unit_count(std::int64_t total) {
  return static_cast<int>(std::clamp<std::int64_t>(total / kMinUnitSize, 1, kMaxUnits));
}
inline std::int64_t unit_begin(std::int64_t total, int units, int u) {
  if (u >= units) return total;
  const std::int64_t raw = total / units * u + std::min<std::int64_t>(u, total % units);
  return std::min(total, raw / kPartitionAlign * kPartitionAlign);
}

// Runs run_units(u0, u1) on each thread for a contiguous run [u0, u1) of
// the `units` work units, in one parallel region when the batch is above the
// grain (1 thread below it, or without OpenMP).
template <class T, class RunUnits>
void for_each_thread(const Batch<T>& batch, int units, RunUnits&& run_units) {
  *batch.threads_used = 1;
#ifdef FASTOPT_HAVE_OPENMP
  int threads = batch.num_threads > 0 ? batch.num_threads : omp_get_max_threads();
  const std::int64_t max_useful = (batch.total + kParallelGrain - 1) / kParallelGrain;
  threads = static_cast<int>(std::min<std::int64_t>({threads, max_useful, units}));
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      if (k == 0) *batch.threads_used = nt;
      run_units(units * k / nt, units * (k + 1) / nt);
    }
    return;
  }
#endif
  run_units(0, units);
}

// Calls body(tensor, begin, end, unit) over disjoint spans covering every
// element of the batch, each span inside one work unit, units in increasing
// order within a thread. One parallel region per call, whatever the number
// of tensors.
template <class T, class Body>
void for_each_span(const Batch<T>& batch, Body&& body) {
  const std::int64_t total = batch.total;
  *batch.threads_used = 1;
  if (total == 0) return;
  const int units = unit_count(total);

  // Runs units [u0, u1), walking the tensors once (a cursor, not a search).
  auto run_units = [&](int u0, int u1) {
    int t = 0;
    std::int64_t offset = 0;  // global index of tensor t's element 0
    for (int u = u0; u < u1; ++u) {
      const std::int64_t lo = unit_begin(total, units, u), hi = unit_begin(total, units, u + 1);
      while (t < batch.n_tensors && offset + batch.sizes[t] <= lo) offset += batch.sizes[t++];
      for (int k = t; k < batch.n_tensors && offset < hi;) {
        const std::int64_t n = batch.sizes[k];
        const std::int64_t b = std::max(lo, offset), e = std::min(hi, offset + n);
        if (b < e) body(k, b - offset, e - offset, u);
        if (offset + n > hi) break;  // tensor k continues in the next unit
        offset += n;
        t = ++k;
      }
    }
  };

  for_each_thread(batch, units, run_units);
}

// Adds a span's statistics to its unit's partial sums.
template <class T>
inline void add_unit_stats(const Batch<T>& batch, int unit, const double (&sums)[kStatFields]) {
  double* out = batch.unit_stats + static_cast<std::size_t>(unit) * kStatFields;
  for (int f = 0; f < kStatFields; ++f) out[f] += sums[f];
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
