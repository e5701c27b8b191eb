// Quickprop (Fahlman 1988, "An empirical study of learning speed in
// back-propagation networks", CMU-CS-88-162), one fused pass over p, g,
// prev_step d and prev_grad gp.
//
//   g = pre(g) (maximize, clipping, coupled L2);  g = g + decay*p;  s = -g;  sp = -gp
//   p = p*(1 - lr*wd) first if the weight decay is decoupled
//   if |d| > theta (quadratic mode), measuring slopes along the last step:
//     no valid secant (sp did not agree with d)  -> step = lr*s          (guard)
//     otherwise step = (lr*s if s agrees with d else 0)
//                    + (mu*d               if s > shrink*sp   (maximum growth)
//                       d*s/(sp - s)       otherwise          (secant jump))
//   else (gradient mode): step = lr*s + momentum*d
//   p = prox_l1<kExtras>(p + step, lr*l1);  d = step;  gp = g
// with shrink = mu/(1+mu). The secant factor s/(sp - s) lies in (-1, mu]; it is
// computed first and clamped to that interval, so rounding can never turn it
// into an overflow or 0/0. Fahlman and FANN have no guard.
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct QuickpropHyper {
  double lr = 1e-2, mu = 1.75, decay = 1e-4, mode_switch = 0.0, momentum = 0.0, weight_decay = 0.0;
  bool maximize = false;
  SharedHyper shared{};

  void validate() const {
    require_nonnegative(lr, "lr");
    require_finite(mu, "mu");
    require(mu > 0.0,
            [&] { return std::string("invalid mu: " + num(mu) + " (the maximum growth factor must be > 0)"); });
    require_nonnegative(decay, "decay");
    require_nonnegative(mode_switch, "mode_switch");
    require_nonnegative(momentum, "momentum");
    require_nonnegative(weight_decay, "weight_decay");
    shared.validate();
  }
};

enum QuickpropRole { kQuickpropParam, kQuickpropGrad, kQuickpropPrevStep, kQuickpropPrevGrad, kQuickpropRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct QuickpropScalars {
  SharedScalars<T> pre;
  T decoupled, tau, decay, lr, mu, shrink, theta, momentum;

  explicit QuickpropScalars(const QuickpropHyper& h)
      : pre(h.shared, h.weight_decay, h.maximize),
        decoupled(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
        tau(static_cast<T>(h.lr * h.shared.l1)),
        decay(static_cast<T>(h.decay)),
        lr(static_cast<T>(h.lr)),
        mu(static_cast<T>(h.mu)),
        shrink(static_cast<T>(h.mu / (1.0 + h.mu))),
        theta(static_cast<T>(h.mode_switch)),
        momentum(static_cast<T>(h.momentum)) {}
};

template <class T, bool kStats, int kExtras>
FASTOPT_NOINLINE void quickprop_span(const QuickpropScalars<T> s, T* __restrict p, const T* __restrict g,
                    T* __restrict prev_step, T* __restrict prev_grad, std::int64_t n,
                    double (&sums)[kStatFields]) {
  // Scalars in locals, and conditions as comparisons of T values: GCC does not
  // vectorize selects on bools or on values it re-loads through the struct.
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decoupled = s.decoupled, tau = s.tau, decay = s.decay;
  const T lr = s.lr, mu = s.mu, shrink = s.shrink, theta = s.theta, momentum = s.momentum;
  double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
  for (std::int64_t i = 0; i < n; ++i) {
    const T g_raw = g[i], param0 = p[i];
    T grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    if (decay != T(0)) grad = grad + decay * param0;
    const T param = kExtras == kAllExtras ? param0 * decoupled : param0;
    const T d = prev_step[i];
    const T slope = -grad, prev_slope = -prev_grad[i];
    const T gradient_step = lr * slope;
    // dir = sign of the last step in quadratic mode, 0 in gradient mode.
    const T backward = d < -theta ? T(-1) : T(0);
    const T dir = d > theta ? T(1) : backward;
    const T s_along = dir * slope, sp_along = dir * prev_slope;  // slopes along the last step
    const T denom = sp_along - s_along;
    T factor = s_along / denom;
    factor = factor > T(-1) ? factor : T(-1);
    factor = factor < mu ? factor : mu;
    // Selects only (no if/else, no bool variables, which GCC cannot mix with
    // double vectors), so the loop vectorizes.
    const T secant_step = denom > T(0) ? d * factor : mu * d;                 // rounding-safe
    const T jump = s_along > shrink * sp_along ? mu * d : secant_step;        // max growth or secant
    const T quadratic_step = (s_along > T(0) ? gradient_step : T(0)) + jump;
    const T secant_or_guard = sp_along > T(0) ? quadratic_step : gradient_step;  // guard: no valid secant
    const T step = dir == T(0) ? gradient_step + momentum * d : secant_or_guard;
    const T updated = prox_l1<kExtras>(param + step, tau);
    p[i] = updated;
    prev_step[i] = step;
    prev_grad[i] = grad;
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  }
  if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
}

}  // namespace detail

template <class T>
void quickprop(const Batch<T>& batch, const QuickpropHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::QuickpropScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    double sums[kStatFields] = {};
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      detail::quickprop_span<T, decltype(stats)::value, decltype(extras)::value>(
          s, role_ptr(batch, kQuickpropParam, t) + b, role_ptr(batch, kQuickpropGrad, t) + b,
          role_ptr(batch, kQuickpropPrevStep, t) + b, role_ptr(batch, kQuickpropPrevGrad, t) + b, e - b, sums);
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
