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
  }
};

enum RpropRole { kRpropParam, kRpropGrad, kRpropPrev, kRpropStepSize, kRpropPrevUpdate, kRpropRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct RpropScalars {
  T sign, wd, eta_minus, eta_plus, step_min, step_max;
  bool has_wd, restore;
  RpropVariant variant;

  explicit RpropScalars(const RpropHyper& h)
      : sign(h.maximize ? T(-1) : T(1)),
        wd(static_cast<T>(h.weight_decay)),
        eta_minus(static_cast<T>(h.eta_minus)),
        eta_plus(static_cast<T>(h.eta_plus)),
        step_min(static_cast<T>(h.step_size_min)),
        step_max(static_cast<T>(h.step_size_max)),
        has_wd(h.weight_decay != 0.0),
        restore(h.variant == RpropVariant::kRpropPlus ||
                (h.variant == RpropVariant::kIrpropPlus && h.loss_increased)),
        variant(h.variant) {}
};

template <class T, RpropVariant kVariant>
void rprop_span(const RpropScalars<T> s, T* __restrict p, const T* __restrict g,
                T* __restrict prev, T* __restrict step_size, T* __restrict prev_update,
                std::int64_t n) {
  // Scalars in locals, and conditions as comparisons of T values: GCC does not
  // vectorize selects on bools or on values it re-loads through the struct.
  const T sign = s.sign, wd = s.wd, eta_plus = s.eta_plus, eta_minus = s.eta_minus;
  const T step_min = s.step_min, step_max = s.step_max;
  const T restore = s.restore ? T(1) : T(0);
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T param = p[i];
    T grad = g[i] * sign;
    if (wd != T(0)) grad = grad + wd * param;
    const T agreement = sign_of(prev[i]) * sign_of(grad);
    const T shrink_or_keep = agreement < T(0) ? eta_minus : T(1);
    T d = step_size[i] * (agreement > T(0) ? eta_plus : shrink_or_keep);
    d = d > step_min ? d : step_min;
    d = d < step_max ? d : step_max;
    step_size[i] = d;
    // Branch-free (selects, unconditional loads, & instead of &&) so the loop
    // vectorizes: a short-circuit or a conditional load is control flow.
    const bool reversed = agreement < T(0);  // used only directly as a select condition
    if constexpr (kVariant == RpropVariant::kIrpropMinus || kVariant == RpropVariant::kRpropMinus) {
      if constexpr (kVariant == RpropVariant::kIrpropMinus) grad = reversed ? T(0) : grad;
      p[i] = param - sign_of(grad) * d;
      prev[i] = grad;
    } else {
      const T last_update = prev_update[i];
      const T dw = reversed ? T(0) : -sign_of(grad) * d;
      const T undo = reversed ? last_update * restore : T(0);  // last_update is finite
      p[i] = reversed ? param - undo : param + dw;
      prev[i] = reversed ? T(0) : grad;
      prev_update[i] = dw;
    }
  }
}

}  // namespace detail

template <class T>
void rprop(const Batch<T>& batch, const RpropHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::RpropScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e) {
    const auto& s = scalars[hyper_of(batch, t)];
    auto offset = [&](int role) { T* q = role_ptr(batch, role, t); return q ? q + b : nullptr; };
    using V = RpropVariant;
    auto span = s.variant == V::kIrpropMinus ? &detail::rprop_span<T, V::kIrpropMinus>
                : s.variant == V::kRpropMinus ? &detail::rprop_span<T, V::kRpropMinus>
                                              : &detail::rprop_span<T, V::kRpropPlus>;
    span(s, offset(kRpropParam), offset(kRpropGrad), offset(kRpropPrev), offset(kRpropStepSize),
         offset(kRpropPrevUpdate), e - b);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
