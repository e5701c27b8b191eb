// The Rprop family: resilient backpropagation with per-weight step sizes.
// Rule: docs/algorithms.md, section 3.5.
//   rprop+  Riedmiller & Braun 1993 (weight backtracking)
//   rprop-  the same without backtracking
//   irprop+ Igel & Huesken 2000 (backtrack only when the loss rose)
//   irprop- Igel & Huesken 2000 (what torch.optim.Rprop computes; the default)
// One fused pass over p, g, prev, step_size (and prev_update for the + variants).
//
// With s = sign(prev) * sign(g) (sign(0) = 0):
//   D = clamp(D * (s > 0 ? eta_plus : s < 0 ? eta_minus : 1), D_min, D_max)
//   irprop-: s < 0 -> g = 0;  p = p - sign(g)*D;  prev = g
//   rprop- : p = p - sign(g)*D;  prev = g
//   rprop+ : s < 0 -> p = p - prev_update, dw = 0, prev = 0;
//            else   -> dw = -sign(g)*D, p = p + dw, prev = g;   prev_update = dw
//   irprop+: like rprop+, but p is restored only if loss_t > loss_{t-1}
// Clipping and regularization use each weight's new step size D as its
// learning rate: p = p*(1 - D*wd) before (decoupled), prox_l1(p, D*l1) after.
// The sign test uses sign(prev)*sign(g) rather than sign(prev*g), so a product
// that underflows to 0 is not mistaken for "no sign information".
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Rprop {
    static constexpr const char* kVariantNames[] = {"irprop-", "rprop-", "rprop+", "irprop+", nullptr};
  enum Variant { kIrpropMinus, kRpropMinus, kRpropPlus, kIrpropPlus };
#define FASTOPT_RPROP_HYPERPARAMETERS(X)                                                            \
  X(lr, 1e-2, kPositive, Origin::kClassOnly, "lr (initial step size)")                            \
  X(etaminus, 0.5, kFinite, Origin::kHyper, nullptr, nullptr, "etas")                             \
  X(etaplus, 1.2, kFinite, Origin::kHyper, nullptr, nullptr, "etas")                              \
  X(step_size_min, 1e-6, kNonNegative, Origin::kHyper, nullptr, nullptr, "step_sizes")            \
  X(step_size_max, 50.0, kFinite, Origin::kHyper, nullptr, nullptr, "step_sizes")                 \
  X(variant, 0, kChoice, Origin::kHyper, nullptr, kVariantNames) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) \
  X(loss_increased, 0, kFlag, Origin::kPerStep)
  FASTOPT_DECLARE_OPTIMIZER("rprop", FASTOPT_RPROP_HYPERPARAMETERS, (prev), (step_size), (prev_update));

  static bool has_backtracking(const Hyper& h) { return h.variant >= kRpropPlus; }
  static bool needs_state(int role, const Hyper& h, int) { return role != prev_update || has_backtracking(h); }
  static void validate(const Hyper& h) {
    require(0.0 < h.etaminus && h.etaminus < 1.0 && 1.0 < h.etaplus, [&] {
      return "invalid eta values: (" + num(h.etaminus) + ", " + num(h.etaplus) + ") (need 0 < etaminus < 1 < etaplus)";
    });
    require(h.step_size_min <= h.step_size_max, [&] {
      return "invalid step sizes: step_size_min " + num(h.step_size_min) + " > step_size_max " + num(h.step_size_max);
    });
  }
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Rprop, T> {
  static constexpr int kVariants = 3;  // irprop-, rprop-, the + variants (irprop+: restore flag below)

  SharedScalars<T> pre;
  T decoupled_wd, eta_minus, eta_plus, step_min, step_max, restore;
  int variant;

  explicit Kernel(const Rprop::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, 0.0),  // per-weight step sizes: below
        decoupled_wd(static_cast<T>(h.shared.decoupled_weight_decay != 0.0 ? h.weight_decay : 0.0)),
        eta_minus(static_cast<T>(h.etaminus)),
        eta_plus(static_cast<T>(h.etaplus)),
        step_min(static_cast<T>(h.step_size_min)),
        step_max(static_cast<T>(h.step_size_max)),
        restore(h.variant == Rprop::kRpropPlus || (h.variant == Rprop::kIrpropPlus && h.loss_increased != 0.0)
                    ? T(1)
                    : T(0)),
        variant(std::min(static_cast<int>(h.variant), 2)) {}

  template <int kVariant, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict prev = x[Rprop::prev];
    T* __restrict step_size = x[Rprop::step_size];
    T* __restrict prev_update = x[Rprop::prev_update];
    // Scalars in locals, and conditions as comparisons of T values: GCC does
    // not vectorize selects on bools or on values it re-loads through the struct.
    const T decoupled_wd = s.decoupled_wd, l1 = s.pre.l1, eta_plus = s.eta_plus, eta_minus = s.eta_minus;
    const T step_min = s.step_min, step_max = s.step_max, restore = s.restore;
    update_elements<T, kStats, kExtras, kOwnRegularization, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad,
                                                                                       T param0) {
      const T agreement = sign_of(prev[i]) * sign_of(grad);
      const T shrink_or_keep = agreement < T(0) ? eta_minus : T(1);
      T d = step_size[i] * (agreement > T(0) ? eta_plus : shrink_or_keep);
      d = d < step_min ? step_min : d;  // np.clip: a NaN stays NaN
      d = d > step_max ? step_max : d;
      step_size[i] = d;
      const T param = kExtras == kAllExtras ? param0 * (T(1) - d * decoupled_wd) : param0;
      // Branch-free (selects, unconditional loads) so the loop vectorizes: a
      // short-circuit or a conditional load is control flow.
      const bool reversed = agreement < T(0);  // used only directly as a select condition
      T stepped;
      if constexpr (kVariant != 2) {
        if constexpr (kVariant == 0) grad = reversed ? T(0) : grad;  // irprop-
        stepped = param - sign_of(grad) * d;
        prev[i] = grad;
      } else {
        const T last_update = prev_update[i];
        const T dw = reversed ? T(0) : -sign_of(grad) * d;
        const T restored = restore != T(0) ? last_update : T(0);  // not last_update*restore: inf*0 is NaN
        const T undo = reversed ? restored : T(0);
        stepped = reversed ? param - undo : param + dw;
        prev[i] = reversed ? T(0) : grad;
        prev_update[i] = dw;
      }
      return prox_l1<kExtras>(stepped, d * l1);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Rprop)
