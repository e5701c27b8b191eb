// The Rprop family: resilient backpropagation with per-weight step sizes.
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
// Clipping and regularization (common.hpp) use each weight's new step size D
// as its learning rate: p = p*(1 - D*wd) before (decoupled), prox_l1<kExtras>(p, D*l1) after.
// The sign test uses sign(prev)*sign(g) rather than sign(prev*g), so a product
// that underflows to 0 is not mistaken for "no sign information".
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

enum class RpropVariant : int { kIrpropMinus = 0, kRpropMinus = 1, kRpropPlus = 2, kIrpropPlus = 3 };

struct RpropHyper {
  double eta_minus = 0.5, eta_plus = 1.2, step_size_min = 1e-6, step_size_max = 50.0;
  double weight_decay = 0.0;
  bool maximize = false;
  RpropVariant variant = RpropVariant::kIrpropMinus;
  bool loss_increased = false;  // irprop+ only: loss_t > loss_{t-1}
  SharedHyper shared{};

  bool has_backtracking() const {
    return variant == RpropVariant::kRpropPlus || variant == RpropVariant::kIrpropPlus;
  }

  void validate() const {
    require_finite(eta_minus, "etaminus");
    require_finite(eta_plus, "etaplus");
    require(0.0 < eta_minus && eta_minus < 1.0 && 1.0 < eta_plus,
            [&] { return std::string("invalid eta values: (" + num(eta_minus) + ", " + num(eta_plus) +
                ") (need 0 < etaminus < 1 < etaplus)"); });
    require_nonnegative(step_size_min, "step_size_min");
    require_finite(step_size_max, "step_size_max");
    require(step_size_min <= step_size_max,
            [&] { return std::string("invalid step sizes: step_size_min " + num(step_size_min) +
                " > step_size_max " + num(step_size_max)); });
    require_nonnegative(weight_decay, "weight_decay");
    shared.validate();
  }
};

enum RpropRole { kRpropParam, kRpropGrad, kRpropPrev, kRpropStepSize, kRpropPrevUpdate, kRpropRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct RpropScalars {
  SharedScalars<T> pre;
  T decoupled_wd, eta_minus, eta_plus, step_min, step_max, restore;
  RpropVariant variant;

  explicit RpropScalars(const RpropHyper& h)
      : pre(h.shared, h.weight_decay, h.maximize),
        decoupled_wd(static_cast<T>(h.shared.decoupled_weight_decay ? h.weight_decay : 0.0)),
        eta_minus(static_cast<T>(h.eta_minus)),
        eta_plus(static_cast<T>(h.eta_plus)),
        step_min(static_cast<T>(h.step_size_min)),
        step_max(static_cast<T>(h.step_size_max)),
        restore(h.variant == RpropVariant::kRpropPlus ||
                (h.variant == RpropVariant::kIrpropPlus && h.loss_increased) ? T(1) : T(0)),
        variant(h.variant) {}
};

template <class T, RpropVariant kVariant, bool kStats, int kExtras>
FASTOPT_NOINLINE void rprop_span(const RpropScalars<T> s, T* __restrict p, const T* __restrict g,
                T* __restrict prev, T* __restrict step_size, T* __restrict prev_update,
                std::int64_t n, double (&sums)[kStatFields]) {
  // Scalars in locals, and conditions as comparisons of T values: GCC does not
  // vectorize selects on bools or on values it re-loads through the struct.
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decoupled_wd = s.decoupled_wd, l1 = s.pre.l1, eta_plus = s.eta_plus, eta_minus = s.eta_minus;
  const T step_min = s.step_min, step_max = s.step_max, restore = s.restore;
  double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
  for (std::int64_t i = 0; i < n; ++i) {
    const T g_raw = g[i], param0 = p[i];
    T grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const T agreement = sign_of(prev[i]) * sign_of(grad);
    const T shrink_or_keep = agreement < T(0) ? eta_minus : T(1);
    T d = step_size[i] * (agreement > T(0) ? eta_plus : shrink_or_keep);
    d = d > step_min ? d : step_min;
    d = d < step_max ? d : step_max;
    step_size[i] = d;
    const T param = kExtras == kAllExtras ? param0 * (T(1) - d * decoupled_wd) : param0;
    // Branch-free (selects, unconditional loads) so the loop vectorizes: a
    // short-circuit or a conditional load is control flow.
    const bool reversed = agreement < T(0);  // used only directly as a select condition
    T stepped;
    if constexpr (kVariant == RpropVariant::kIrpropMinus || kVariant == RpropVariant::kRpropMinus) {
      if constexpr (kVariant == RpropVariant::kIrpropMinus) grad = reversed ? T(0) : grad;
      stepped = param - sign_of(grad) * d;
      prev[i] = grad;
    } else {
      const T last_update = prev_update[i];
      const T dw = reversed ? T(0) : -sign_of(grad) * d;
      const T undo = reversed ? last_update * restore : T(0);  // last_update is finite
      stepped = reversed ? param - undo : param + dw;
      prev[i] = reversed ? T(0) : grad;
      prev_update[i] = dw;
    }
    const T updated = prox_l1<kExtras>(stepped, d * l1);
    p[i] = updated;
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  }
  if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
}

}  // namespace detail

template <class T>
void rprop(const Batch<T>& batch, const RpropHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::RpropScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    auto offset = [&](int role) { T* q = role_ptr(batch, role, t); return q ? q + b : nullptr; };
    double sums[kStatFields] = {};
    using V = RpropVariant;
    auto run = [&](auto variant, auto stats, auto extras) {
      detail::rprop_span<T, decltype(variant)::value, decltype(stats)::value, decltype(extras)::value>(
          s, offset(kRpropParam), offset(kRpropGrad), offset(kRpropPrev), offset(kRpropStepSize),
          offset(kRpropPrevUpdate), e - b, sums);
    };
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      if (s.variant == V::kIrpropMinus) run(std::integral_constant<V, V::kIrpropMinus>{}, stats, extras);
      else if (s.variant == V::kRpropMinus) run(std::integral_constant<V, V::kRpropMinus>{}, stats, extras);
      else run(std::integral_constant<V, V::kRpropPlus>{}, stats, extras);  // irprop+: restore flag set above
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
