// Quickprop (Fahlman 1988, "An empirical study of learning speed in
// back-propagation networks", CMU-CS-88-162), one fused pass over p, g,
// prev_step d and prev_grad gp. Rule: docs/algorithms.md, section 3.6.
//
//   g = pre(g) (maximize, clipping, coupled L2);  g = g + decay*p;  s = -g;  sp = -gp
//   p = p*(1 - lr*wd) first if the weight decay is decoupled
//   if |d| > theta (quadratic mode), measuring slopes along the last step:
//     no valid secant (sp did not agree with d)  -> step = lr*s          (guard)
//     otherwise step = (lr*s if s agrees with d else 0)
//                    + (mu*d               if s > shrink*sp   (maximum growth)
//                       d*s/(sp - s)       otherwise          (secant jump))
//   else (gradient mode): step = lr*s + momentum*d
//   p = prox_l1(p + step, lr*l1);  d = step;  gp = g
// with shrink = mu/(1+mu). The secant factor s/(sp - s) lies in (-1, mu]; it is
// computed first and clamped to that interval, so rounding can never turn it
// into an overflow or 0/0. Fahlman and FANN have no guard.
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Quickprop {
#define FASTOPT_QUICKPROP_HYPERPARAMETERS(X)                                                                \
  X(lr, 1e-2, kNonNegative) X(mu, 1.75, kPositive, Origin::kHyper, "mu (the maximum growth factor)")        \
  X(decay, 1e-4, kNonNegative) X(mode_switch, 0.0, kNonNegative) X(momentum, 0.0, kNonNegative)             \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X)
  FASTOPT_DECLARE_OPTIMIZER("quickprop", FASTOPT_QUICKPROP_HYPERPARAMETERS, (prev_step), (prev_grad));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Quickprop, T> {
  SharedScalars<T> pre;
  T decay, lr, mu, shrink, theta, momentum;
  int variant = 0;

  explicit Kernel(const Quickprop::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        decay(static_cast<T>(h.decay)),
        lr(static_cast<T>(h.lr)),
        mu(static_cast<T>(h.mu)),
        shrink(static_cast<T>(h.mu / (1.0 + h.mu))),
        theta(static_cast<T>(h.mode_switch)),
        momentum(static_cast<T>(h.momentum)) {}

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict prev_step = x[Quickprop::prev_step];
    T* __restrict prev_grad = x[Quickprop::prev_grad];
    const T decoupled = s.pre.decay, tau = s.pre.tau, decay = s.decay;
    const T lr = s.lr, mu = s.mu, shrink = s.shrink, theta = s.theta, momentum = s.momentum;
    // Its own regularization: the decay term needs p before the decoupled decay.
    update_elements<T, kStats, kExtras, kOwnRegularization, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad,
                                                                                       T param0) {
      if (decay != T(0)) grad = grad + decay * param0;
      const T param = decayed<kExtras>(param0, decoupled);
      const T d = prev_step[i];
      const T slope = -grad, prev_slope = -prev_grad[i];
      const T gradient_step = lr * slope;
      // dir = sign of the last step in quadratic mode, 0 in gradient mode.
      const T backward = d < -theta ? T(-1) : T(0);
      const T dir = d > theta ? T(1) : backward;
      const T s_along = dir * slope, sp_along = dir * prev_slope;  // slopes along the last step
      const T denom = sp_along - s_along;
      T factor = s_along / denom;
      factor = factor < T(-1) ? T(-1) : factor;  // np.clip: a NaN (only from non-finite inputs) stays NaN
      factor = factor > mu ? mu : factor;
      // Selects only (no if/else, no bool variables, which GCC cannot mix
      // with double vectors), so the loop vectorizes.
      const T secant_step = denom > T(0) ? d * factor : mu * d;                 // rounding-safe
      const T jump = s_along > shrink * sp_along ? mu * d : secant_step;        // max growth or secant
      const T quadratic_step = (s_along > T(0) ? gradient_step : T(0)) + jump;
      const T secant_or_guard = sp_along > T(0) ? quadratic_step : gradient_step;  // guard: no valid secant
      const T mode_step = dir == T(0) ? gradient_step + momentum * d : secant_or_guard;
      // A NaN slope fails every comparison above and would pick a finite jump.
      const T step = slope != slope ? slope : mode_step;
      prev_step[i] = step;
      prev_grad[i] = grad;
      return prox_l1<kExtras>(param + step, tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Quickprop)
