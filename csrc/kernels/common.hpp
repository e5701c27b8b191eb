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
#include <initializer_list>
#include <type_traits>
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
  double* unit_stats;          // out, or nullptr: kMaxUnits x kStatFields partial sums (zeroed by the caller)
};

// Gradient preprocessing and regularization that every optimizer offers,
// applied in the same pass as the update:
//   g = -g (maximize);  g = g * grad_scale;  g = clamp(g, -clip_value, clip_value)
//   g = g + weight_decay * p                      (coupled L2, unless decoupled)
//   p = p * (1 - lr * weight_decay)               (decoupled, before the update)
//   ... the optimizer's update ...
//   p = sign(p) * max(|p| - lr * l1, 0)           (L1 proximal step: exact zeros)
// where lr is the optimizer's step size (Adagrad: the decayed lr; Rprop: each
// weight's own step size). weight_decay and maximize live in each optimizer's
// own struct, where torch has them.
struct SharedHyper {
  double grad_scale = 1.0;                       // global-norm clipping factor
  double clip_value = HUGE_VAL;                  // gradient value clipping (inf: none)
  double l1 = 0.0;
  bool decoupled_weight_decay = false;

  void validate() const;
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

inline void SharedHyper::validate() const {
  require_finite(grad_scale, "grad_scale");
  require(grad_scale >= 0.0, [&] { return "invalid grad_scale: " + num(grad_scale) + " (must be >= 0)"; });
  require(clip_value > 0.0, [&] { return "invalid clip_value: " + num(clip_value) + " (must be > 0)"; });
  require_nonnegative(l1, "l1");
}

}  // namespace fastopt

// Everything below is compiled once per SIMD target, each time in its own
// namespace, so no inline function is shared between targets (an ODR clash
// could let the linker hand an AVX-512 copy to a baseline caller).
#ifndef FASTOPT_TARGET_NAME
#define FASTOPT_TARGET_NAME baseline
#endif

#include "kernels/wide_f64.hpp"

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

#ifdef FASTOPT_HAVE_OPENMP
  int threads = batch.num_threads > 0 ? batch.num_threads : omp_get_max_threads();
  const std::int64_t max_useful = (total + kParallelGrain - 1) / kParallelGrain;
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

// Adds a span's statistics to its unit's partial sums.
template <class T>
inline void add_unit_stats(const Batch<T>& batch, int unit, const double (&sums)[kStatFields]) {
  double* out = batch.unit_stats + static_cast<std::size_t>(unit) * kStatFields;
  for (int f = 0; f < kStatFields; ++f) out[f] += sums[f];
}

// Step statistics of one element, accumulated in double (no extra pass: the
// values are in registers during the update). x - x == 0 is false exactly
// for Inf and NaN.
template <class T>
inline void accumulate_stats(T g_raw, T param_before, T param_after, double& grad_sq, double& param_sq,
                             double& update_sq, double& nonfinite) {
  const double g = g_raw, p = param_before, du = static_cast<double>(param_after) - p;
  grad_sq += g * g;
  param_sq += p * p;
  update_sq += du * du;
  nonfinite += (g - g == 0.0) ? 0.0 : 1.0;
}

inline void add_sums(double (&sums)[kStatFields], double grad_sq, double param_sq, double update_sq,
                     double nonfinite) {
  sums[kStatGradSq] += grad_sq;
  sums[kStatParamSq] += param_sq;
  sums[kStatUpdateSq] += update_sq;
  sums[kStatNonfinite] += nonfinite;
}

// What a kernel loop does around its own rule, as its kExtras template
// argument: nothing (a plain step), coupled L2 only, or everything of
// SharedHyper (scaling, value clipping, coupled L2, L1, decoupled decay).
// Each level is its own loop with no loop-invariant test left inside: GCC's
// loop unswitching on such a test (coupled L2 on/off) once left some
// stats=True loops scalar, 4-9x slower (tests/test_dispatch.py checks).
constexpr int kNoExtras = 0, kCoupledL2 = 1, kAllExtras = 2;

// Calls fn(stats, extras): stats is std::true_type/std::false_type for "the
// batch collects statistics", extras the level above as an
// std::integral_constant<int>: the loops are compiled for each, so a plain
// step pays for neither.
template <class T, class Fn>
inline void with_flags(const Batch<T>& batch, int extras, Fn&& fn) {
  auto with_extras = [&](auto stats) {
    if (extras == kAllExtras) fn(stats, std::integral_constant<int, kAllExtras>{});
    else if (extras == kCoupledL2) fn(stats, std::integral_constant<int, kCoupledL2>{});
    else fn(stats, std::integral_constant<int, kNoExtras>{});
  };
  if (batch.unit_stats) with_extras(std::true_type{});
  else with_extras(std::false_type{});
}

// The shared preprocessing and regularization of SharedHyper, as T values so
// that the selects vectorize.
template <class T>
struct SharedScalars {
  T sign, grad_scale, clip, coupled_wd, wd, l1;

  int extras;  // kNoExtras, kCoupledL2 or kAllExtras (above)

  SharedScalars(const SharedHyper& h, double weight_decay, bool maximize)
      : sign(maximize ? T(-1) : T(1)),
        grad_scale(static_cast<T>(h.grad_scale)),
        clip(static_cast<T>(h.clip_value)),
        coupled_wd(static_cast<T>(h.decoupled_weight_decay ? 0.0 : weight_decay)),
        wd(static_cast<T>(weight_decay)),
        l1(static_cast<T>(h.l1)),
        extras(h.grad_scale != 1.0 || h.clip_value != HUGE_VAL || h.l1 != 0.0 || h.decoupled_weight_decay
                   ? kAllExtras
                   : coupled_wd != T(0) ? kCoupledL2 : kNoExtras) {}  // the test the loop made before
};

// The gradient an optimizer uses: maximize, clipping (scale, then value),
// coupled L2, in that order. Below kAllExtras no scaling or clipping is in
// use (compiled out; the same bits, since g*1 and clamping to +-inf change
// nothing); kCoupledL2 adds L2 without a test (its weight decay is not 0).
// Free over scalars held in the caller's locals: the form GCC vectorizes in
// every kernel (a member call on the struct sometimes is not).
template <int kExtras, class V, class T>
inline V preprocess_grad(V g, V param, T sign, T grad_scale, T clip, T coupled_wd) {
  g = g * sign;
  if constexpr (kExtras == kAllExtras) {
    g = g * grad_scale;
    g = g > clip ? clip : (g < -clip ? -clip : g);
    if (coupled_wd != T(0)) g = g + coupled_wd * param;
  }
  if constexpr (kExtras == kCoupledL2) g = g + coupled_wd * param;
  return g;
}

// The decoupled decay factor 1 - lr*wd, computed once in double.
inline double decoupled_decay(const SharedHyper& h, double lr, double weight_decay) {
  return h.decoupled_weight_decay ? 1.0 - lr * weight_decay : 1.0;
}

// L1 proximal step with threshold tau = lr*l1 (no-op, NaN kept, when tau is 0).
// V is T, or a group of lanes of T (wide_f64.hpp).
template <int kExtras, class V, class T>
inline V prox_l1(V p, T tau) {
  if constexpr (kExtras != kAllExtras) return p;
  const V shrunk = magnitude(p) - tau;
  const V thresholded = shrunk > T(0) ? with_sign_of(shrunk, p) : T(0);
  return tau > T(0) ? thresholded : p;
}

// sign(x) with sign(0) = 0, as a value of the buffer's type.
// Selects in T, not (x > 0) - (x < 0) in int: mixing int with double lanes
// stops the vectorizer.
template <class T>
inline T sign_of(T x) {
  const T negative_or_zero = x < T(0) ? T(-1) : T(0);
  return x > T(0) ? T(1) : negative_or_zero;
}

// Runs step(lane, i, grad_sq, param_sq, update_sq, nonfinite) for every
// element i of [0, n), lane being a T (one element) or an F64x8 (elements i to
// i + 7), then adds the statistics into sums. The wide groups come first where
// kWideLoop<T>; the rest, or everything elsewhere, is an auto-vectorized loop.
// Both run the same step, so the same bits come out of either.
template <class T, bool kStats, class Step>
inline void for_each_element(std::int64_t n, double (&sums)[kStatFields], Step step) {
  double gs = 0, ps = 0, us = 0, nf = 0;
  std::int64_t i = 0;
#ifdef FASTOPT_WIDE_F64
  if constexpr (kWideLoop<T>) {
    F64x8 wide_gs{}, wide_ps{}, wide_us{}, wide_nf{};
    for (; i + kWideLanes <= n; i += kWideLanes) step(F64x8{}, i, wide_gs, wide_ps, wide_us, wide_nf);
    if constexpr (kStats) {
      gs = sum_lanes(wide_gs), ps = sum_lanes(wide_ps), us = sum_lanes(wide_us), nf = sum_lanes(wide_nf);
    }
  }
#endif
#pragma omp simd reduction(+ : gs, ps, us, nf)
  for (std::int64_t k = i; k < n; ++k) step(T{}, k, gs, ps, us, nf);
  if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
