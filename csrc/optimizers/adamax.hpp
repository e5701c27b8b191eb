// Adamax (Kingma & Ba 2015, section 7: Adam with the infinity norm),
// torch.optim.Adamax form, one fused pass over p, g, m, u.
// Rule: docs/algorithms.md, section 3.8.
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled
//   m = b1*m + (1-b1)*g;  u = max(b2*u, |g| + eps)  (NaN propagates, as torch's amax)
//   p = prox_l1(p - (lr/(1 - b1^t)) * m/u, lr*l1)
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Adamax {
#define FASTOPT_ADAMAX_HYPERPARAMETERS(X)                                         \
  X(lr, 2e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) X(eps, 1e-8, kNonNegative) \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("adamax", FASTOPT_ADAMAX_HYPERPARAMETERS, (exp_avg, kSignedMap), (exp_inf, kUnsignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Adamax, T> {
  SharedScalars<T> pre;
  Ema<T> first;
  T beta2, eps, step_size;
  int variant = 0;

  explicit Kernel(const Adamax::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        first(h.beta1),
        beta2(static_cast<T>(h.beta2)),
        eps(static_cast<T>(h.eps)),
        step_size(static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, h.step)))) {}

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Adamax::exp_avg];
    T* __restrict u = x[Adamax::exp_inf];
    const Ema<T> first = s.first;
    const T beta2 = s.beta2, eps = s.eps, step_size = s.step_size;
    update_elements<T, kStats, kExtras, kPlainRule, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad, T param) {
      const T mi = first(m[i], grad);
      const T decayed_inf = beta2 * u[i], bound = std::fabs(grad) + eps;
      const T keep = decayed_inf != decayed_inf ? decayed_inf : bound;  // NaN in either propagates
      const T ui = decayed_inf > bound ? decayed_inf : keep;
      m[i] = mi;
      u[i] = ui;
      return param - step_size * (mi / ui);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adamax)
