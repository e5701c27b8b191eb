// The one elementwise loop every optimizer's rule runs in: gradient
// preprocessing (maximize, clipping, coupled L2), decoupled weight decay, the
// L1 proximal step and the step statistics, around a rule that an optimizer
// header supplies; and the one driver that runs a rule over a batch.
#pragma once

#include "core/batch.hpp"
#include "core/hyper.hpp"
#include "simd/lanes.hpp"
#include "simd/narrow.hpp"

#include <cstring>
#include <iterator>

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

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

// Calls fn(extras) with the level above as an std::integral_constant<int>.
template <class Fn>
inline void with_extras(int extras, Fn&& fn) {
  if (extras == kAllExtras) fn(std::integral_constant<int, kAllExtras>{});
  else if (extras == kCoupledL2) fn(std::integral_constant<int, kCoupledL2>{});
  else fn(std::integral_constant<int, kNoExtras>{});
}

// Calls fn(stats, extras): stats is std::true_type/std::false_type for "the
// batch collects statistics", extras as with_extras: the loops are compiled
// for each, so a plain step pays for neither.
template <class T, class Fn>
inline void with_flags(const Batch<T>& batch, int extras, Fn&& fn) {
  auto with_stats = [&](auto stats) { with_extras(extras, [&](auto level) { fn(stats, level); }); };
  if (batch.unit_stats) with_stats(std::true_type{});
  else with_stats(std::false_type{});
}

// The shared preprocessing and regularization of SharedHyper, as T values so
// that the selects vectorize.
template <class T>
struct SharedScalars {
  T sign, grad_scale, clip, coupled_wd, wd, l1;
  T decay, tau;  // decoupled decay factor 1 - lr*wd (in double, then rounded); L1 threshold lr*l1

  int extras;  // kNoExtras, kCoupledL2 or kAllExtras (above)

  // weight_decay is the optimizer's own (coupled L2 unless h.decoupled_weight_decay);
  // lr the step size the decoupled decay and the L1 threshold scale with.
  SharedScalars(const SharedHyper& h, double weight_decay, double maximize, double lr)
      : sign(maximize != 0.0 ? T(-1) : T(1)),
        grad_scale(static_cast<T>(h.grad_scale)),
        clip(static_cast<T>(h.clip_value)),
        coupled_wd(static_cast<T>(h.decoupled_weight_decay != 0.0 ? 0.0 : weight_decay)),
        wd(static_cast<T>(weight_decay)),
        l1(static_cast<T>(h.l1)),
        decay(static_cast<T>(h.decoupled_weight_decay != 0.0 ? 1.0 - lr * weight_decay : 1.0)),
        tau(static_cast<T>(lr * h.l1)),
        extras(h.grad_scale != 1.0 || h.clip_value != HUGE_VAL || h.l1 != 0.0 ||
                       (h.decoupled_weight_decay != 0.0 && weight_decay != 0.0)
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

// The parameter the rule starts from: decayed (decoupled weight decay) at
// the kAllExtras level, as is below it.
template <int kExtras, class V, class T>
inline V decayed(V param, T decay) {
  if constexpr (kExtras == kAllExtras) return param * decay;
  return param;
}

// L1 proximal step with threshold tau = lr*l1 (no-op, NaN kept, when tau is 0).
// V is T, or a group of lanes of T (simd/lanes.hpp).
template <int kExtras, class V, class T>
inline V prox_l1(V p, T tau) {
  if constexpr (kExtras != kAllExtras) return p;
  const V shrunk = magnitude(p) - tau;
  const V zero_or_nan = shrunk != shrunk ? shrunk : T(0);  // a NaN p or tau stays NaN
  const V thresholded = shrunk > T(0) ? with_sign_of(shrunk, p) : zero_or_nan;
  return tau == T(0) ? p : thresholded;
}

// An exponential moving average's coefficients, rounded to T once:
// average(x, y) = beta*x + (1 - beta)*y, with 1 - beta computed in double.
template <class T>
struct Ema {
  T beta, rest;
  explicit Ema(double b) : beta(static_cast<T>(b)), rest(static_cast<T>(1.0 - b)) {}
  template <class V>
  V operator()(V x, V y) const {
    return beta * x + rest * y;
  }
};

// sign(x) as np.sign: sign(+-0) = +0, sign(NaN) = NaN, as a value of the
// buffer's type. Selects in T, not (x > 0) - (x < 0) in int: mixing int with
// double lanes stops the vectorizer.
template <class T>
inline T sign_of(T x) {
  const T zero_or_nan = x == x ? T(0) : x;
  const T negative_zero_or_nan = x < T(0) ? T(-1) : zero_or_nan;
  return x > T(0) ? T(1) : negative_zero_or_nan;
}

// Runs step(lane, i, grad_sq, param_sq, update_sq, nonfinite) for every
// element i of [0, n), lane being a T (one element) or an F64x8 (elements i to
// i + 7), then adds the statistics into sums. The wide groups come first where
// kWideLoop<T>; the rest, or everything elsewhere, is an auto-vectorized loop.
// Both run the same step, so the same bits come out of either.
// kWide: the rule is written for F64x8 lanes too (optimizers bound by the
// divide/sqrt unit, whose float64 division then runs on the FMA ports).
template <class T, bool kStats, bool kWide, class Step>
inline void for_each_element(std::int64_t n, double (&sums)[kStatFields], Step step) {
  double gs = 0, ps = 0, us = 0, nf = 0;
  std::int64_t i = 0;
#ifdef FASTOPT_WIDE_F64
  if constexpr (kWide && kWideLoop<T>) {
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

// How a rule runs in update_elements (a template argument).
enum RuleForm {
  kPlainRule = 0,           // T lanes only
  kWideRule = 1,            // also F64x8 lanes (bound by the divide/sqrt unit: see for_each_element)
  kOwnRegularization = 2,   // the rule decays and thresholds p itself (its own step size per element)
};

// Where update_elements reads p and g and writes p. PlainIO: arrays of T
// (roles 0 and 1). NarrowIO: bfloat16 parameters and gradients converted in
// registers, the parameter (or its master: x[kMasterSlot] holds the split's
// low halves or the float32 copy) written back by kMaster's rule and the
// rounding: the common 16-bit steps fused into the one pass
// (simd/narrow_step.hpp; x[kDrawSlot] then points at the span's DrawPosition).
struct PlainIO {
  static constexpr bool kNarrow = false;
};
template <std::int32_t kParamFormat, bool kStochasticRounding, std::int32_t kMasterWeights>
struct NarrowIO {
  static constexpr bool kNarrow = true;
  static constexpr std::int32_t kFormat = kParamFormat;
  static constexpr bool kStochastic = kStochasticRounding;
  static constexpr std::int32_t kMaster = kMasterWeights;
};
constexpr int kMasterSlot = 6, kDrawSlot = 7;  // roles no optimizer uses (kMaxRoles - 2, kMaxRoles - 1)
struct DrawPosition {
  std::uint64_t stream;  // the tensor's stream of draws
  std::int64_t first;    // the tensor's index of the span's element 0
};

// What every elementwise optimizer does around its rule, for each element:
// load p and g (roles 0 and 1), the shared gradient preprocessing and the
// decoupled decay, then rule(lane, i, grad, param) -> the stepped
// parameter, the L1 proximal step, the store and the step statistics.
template <class T, bool kStats, int kExtras, int kForm, class IO = PlainIO, class Rule>
inline void update_elements(const SharedScalars<T>& pre, T* const* x, std::int64_t n, double (&sums)[kStatFields],
                            Rule rule) {
  constexpr bool kRegularize = !(kForm & kOwnRegularization);
  const T sign = pre.sign, grad_scale = pre.grad_scale, clip = pre.clip, coupled_wd = pre.coupled_wd;
  const T decay = pre.decay, tau = pre.tau;
  auto stepped = [=](auto lane, std::int64_t i, auto g_raw, auto param0) {
    const auto grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    if constexpr (kRegularize) return prox_l1<kExtras>(rule(lane, i, grad, decayed<kExtras>(param0, decay)), tau);
    else return rule(lane, i, grad, param0);
  };
  if constexpr (IO::kNarrow) {
    static_assert(std::is_same_v<T, float>);
    std::uint16_t* __restrict p = reinterpret_cast<std::uint16_t*>(x[0]);
    const std::uint16_t* __restrict g = reinterpret_cast<const std::uint16_t*>(x[1]);
    const DrawPosition at = *reinterpret_cast<const DrawPosition*>(x[kDrawSlot]);
    std::uint16_t* __restrict low = reinterpret_cast<std::uint16_t*>(x[kMasterSlot]);  // kSplitMaster
    T* __restrict master = x[kMasterSlot];                                              // kFloat32Master
    auto element = [=](auto, std::int64_t i, auto& gs, auto& ps, auto& us, auto& nf) {
      const T g_raw = widen_as<IO::kFormat>(g[i]);
      T param0;
      if constexpr (IO::kMaster == kSplitMaster) param0 = float_of(static_cast<std::uint32_t>(p[i]) << 16 | low[i]);
      else if constexpr (IO::kMaster == kFloat32Master) param0 = master[i];
      else param0 = widen_as<IO::kFormat>(p[i]);
      const T updated = stepped(T{}, i, g_raw, param0);
      if constexpr (IO::kMaster == kSplitMaster) {
        const std::uint32_t u = bits_of(updated);
        p[i] = static_cast<std::uint16_t>(u >> 16);
        low[i] = static_cast<std::uint16_t>(u & 0xFFFFu);
      } else {
        if constexpr (IO::kMaster == kFloat32Master) master[i] = updated;
        p[i] = narrow_as<IO::kFormat, IO::kStochastic>(updated, at.stream, at.first + i);
      }
      if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
    };
    for_each_element<T, kStats, false>(n, sums, element);
  } else {
    T* __restrict p = x[0];
    const T* __restrict g = x[1];
    auto element = [=](auto lane, std::int64_t i, auto& gs, auto& ps, auto& us, auto& nf) {
      using V = decltype(lane);
      const V g_raw = load_as(g + i, lane), param0 = load_as(p + i, lane);
      const V updated = stepped(lane, i, g_raw, param0);
      store_to(p + i, updated);
      if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
    };
    for_each_element<T, kStats, (kForm & kWideRule) != 0>(n, sums, element);
  }
}

// Calls fn(std::integral_constant<int, v>) for a runtime v in [0, kCount):
// each variant of a rule (amsgrad, centered, ...) is its own compiled loop.
template <int kCount, class Fn, int... kIndex>
inline void with_variant_impl(int v, Fn&& fn, std::integer_sequence<int, kIndex...>) {
  ((v == kIndex ? (fn(std::integral_constant<int, kIndex>{}), true) : false) || ...);
}
template <int kCount, class Fn>
inline void with_variant(int v, Fn&& fn) {
  with_variant_impl<kCount>(v, fn, std::make_integer_sequence<int, kCount>{});
}

// The number of compiled variants of a rule: K::kVariants, 1 if it has none.
template <class K, class = void>
struct VariantCount : std::integral_constant<int, 1> {};
template <class K>
struct VariantCount<K, std::void_t<decltype(K::kVariants)>> : std::integral_constant<int, K::kVariants> {};
template <class K>
constexpr int variants_of() {
  return VariantCount<K>::value;
}

// The optimizer's element rule, specialized in its header (optimizers/):
//   template <class T> struct Kernel<Opt, T> {
//     SharedScalars<T> pre; int variant; ...;  // the per-call scalars, in T
//     explicit Kernel(const Opt::Hyper&);
//     static constexpr int kVariants;           // optional: 1
//     template <int kVariant, bool kStats, int kExtras, class IO = PlainIO>
//     static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]);
//   (span passes IO on to update_elements)
//   };
// x[role] points at element 0 of the span in each role (nullptr: absent).
// span takes its scalars by value: locals the compiler knows no store aliases.
template <class Opt, class T>
struct Kernel;

constexpr int kMaxRoles = 8;

// Hyperparameter set k of a call: each set is the optimizer's declared
// hyperparameters then the shared ones, as doubles (core/hyper.hpp).
template <class Opt>
inline typename Opt::Hyper hyper_at(const double* hypers, std::size_t k) {
  typename Opt::Hyper h;
  std::memcpy(&h, hypers + k * (sizeof h / sizeof(double)), sizeof h);
  return h;
}

// Each hyperparameter set's per-call scalars (computed once, in double,
// rounded to T once), in the calling thread's scratch (no allocation per
// step). Worker threads must read the returned reference: naming the
// thread_local itself in a parallel region would give each worker its own,
// empty, vector.
template <class Opt, class T>
const std::vector<Kernel<Opt, T>>& scalars_of_sets(const double* hypers, std::size_t n_sets) {
  thread_local std::vector<Kernel<Opt, T>> scratch;
  scratch.clear();
  for (std::size_t k = 0; k < n_sets; ++k) scratch.emplace_back(hyper_at<Opt>(hypers, k));
  return scratch;
}

// One span of n elements (x[role] at its element 0) through the loop compiled
// for the set's variant, for statistics on or off and its regularization level.
template <class K, class T>
inline void run_span(const Batch<T>& batch, const K& s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
  with_variant<variants_of<K>()>(s.variant, [&](auto variant) {
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      K::template span<decltype(variant)::value, decltype(stats)::value, decltype(extras)::value>(s, x, n, sums);
    });
  });
}

// The same through an IO other than PlainIO (NarrowIO), without statistics.
template <class IO, class K>
inline void run_span_io(const K& s, float* const* x, std::int64_t n) {
  double unused[kStatFields] = {};
  with_variant<variants_of<K>()>(s.variant, [&](auto variant) {
    with_extras(s.pre.extras, [&](auto extras) {
      K::template span<decltype(variant)::value, false, decltype(extras)::value, IO>(s, x, n, unused);
    });
  });
}

// The one driver of every elementwise optimizer: each span of the batch runs
// its hyperparameter set's rule.
template <class Opt, class T>
void step_elementwise(const Batch<T>& batch, const double* hypers, std::size_t n_sets) {
  using K = Kernel<Opt, T>;
  constexpr int kRoles = 2 + static_cast<int>(std::size(Opt::kState));
  static_assert(kRoles <= kMaxRoles);
  const std::vector<K>& scalars = scalars_of_sets<Opt, T>(hypers, n_sets);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    T* x[kRoles];
    for (int r = 0; r < kRoles; ++r) {
      T* base = role_ptr(batch, r, t);
      x[r] = base ? base + b : nullptr;
    }
    double sums[kStatFields] = {};
    run_span(batch, scalars[hyper_of(batch, t)], x, e - b, sums);
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
