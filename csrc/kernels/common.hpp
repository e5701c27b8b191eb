// Shared machinery for the elementwise optimizer kernels.
//
// A kernel call updates a *batch*: n tensors, each made of several buffers of
// the same length (the parameter, its gradient, its state arrays), called
// roles. The batch holds raw pointers only; all checking (dtype, contiguity,
// sizes, aliasing) happened in the bindings before the batch was built.
//
// Work is split with a static partition of the concatenated element range, so
// every element is computed by exactly the same instructions whatever the
// thread count: results are bitwise identical for 1 or N threads.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstdint>
#include <stdexcept>
#include <string>
#include <vector>

#ifdef FASTOPT_HAVE_OPENMP
#include <omp.h>
#endif

namespace fastopt {

// Below this many elements in a whole call no parallel region is opened: a
// region costs a few microseconds, about the time one core needs for this much
// Adam work.
constexpr std::int64_t kParallelGrain = std::int64_t{1} << 15;

// Partition boundaries are rounded to this many elements (a multiple of a
// 64-byte cache line for both dtypes) so no two threads write one line.
constexpr std::int64_t kPartitionAlign = 64;

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
};

// Hyperparameter checks shared by every optimizer. They throw
// std::invalid_argument, which the bindings surface as ValueError.
// Shortest round-trip text of a double, for error messages ("-1", "0.999").
inline std::string num(double x) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.17g", x);
  std::string shortest = buf;
  for (int digits = 1; digits < 17; ++digits) {
    std::snprintf(buf, sizeof buf, "%.*g", digits, x);
    if (std::strtod(buf, nullptr) == x) return buf;
  }
  return shortest;
}

// `message` is a callable that builds the text: it runs only on failure, so
// a valid call (every call, in a training loop) formats nothing.
template <class Message>
inline void require(bool ok, Message&& message) {
  if (!ok) throw std::invalid_argument(std::string(message()));
}
inline void require_finite(double x, const char* name) {
  require(std::isfinite(x), [&] { return std::string(name) + " must be finite, got " + num(x); });
}
inline void require_nonnegative(double x, const char* name) {
  require_finite(x, name);
  require(x >= 0.0, [&] { return std::string("invalid ") + name + ": " + num(x) + " (must be >= 0)"; });
}
inline void require_step(std::int64_t step) {
  require(step >= 1, [&] { return "invalid step: " + std::to_string(step) + " (the step count is 1-based, must be >= 1)"; });
}

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

// Calls body(tensor, begin, end) over disjoint spans covering every element of
// the batch. One parallel region per call, whatever the number of tensors.
template <class T, class Body>
void for_each_span(const Batch<T>& batch, Body&& body) {
  const std::int64_t total = batch.total;
  *batch.threads_used = 1;
  if (total == 0) return;

  auto run_range = [&](std::int64_t lo, std::int64_t hi) {
    std::int64_t offset = 0;  // global index of the current tensor's element 0
    for (int t = 0; t < batch.n_tensors && offset < hi; ++t) {
      const std::int64_t n = batch.sizes[t];
      const std::int64_t b = std::max(lo, offset), e = std::min(hi, offset + n);
      if (b < e) body(t, b - offset, e - offset);
      offset += n;
    }
  };

#ifdef FASTOPT_HAVE_OPENMP
  int threads = batch.num_threads > 0 ? batch.num_threads : omp_get_max_threads();
  const std::int64_t max_useful = (total + kParallelGrain - 1) / kParallelGrain;
  threads = static_cast<int>(std::min<std::int64_t>(threads, max_useful));
  if (threads > 1) {
#pragma omp parallel num_threads(threads)
    {
      const int k = omp_get_thread_num(), nt = omp_get_num_threads();
      if (k == 0) *batch.threads_used = nt;
      auto boundary = [&](int j) {
        if (j >= nt) return total;
        const std::int64_t raw = total / nt * j + std::min<std::int64_t>(j, total % nt);
        return std::min(total, raw / kPartitionAlign * kPartitionAlign);
      };
      run_range(boundary(k), boundary(k + 1));
    }
    return;
  }
#endif
  run_range(0, total);
}

// sign(x) with sign(0) = 0, as a value of the buffer's type.
template <class T>
inline T sign_of(T x) {
  return static_cast<T>((x > T(0)) - (x < T(0)));
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
