// ASGD, averaged stochastic gradient descent (Polyak & Juditsky 1992),
// torch.optim.ASGD form, one fused pass over p, g, ax.
// Rule: docs/algorithms.md, section 3.11.
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled
//   p = prox_l1(p*(1 - lambd*eta) - eta*g, eta*l1)
//   ax = p if mu == 1 else ax + mu*(p - ax)
// eta and mu are the values before this step; the class then sets
// eta = lr/(1 + lambd*lr*t)^alpha and mu = 1/max(1, t - t0).
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Asgd {
#define FASTOPT_ASGD_HYPERPARAMETERS(X)                                                                        \
  X(lr, 1e-2, kNonNegative) X(lambd, 1e-4, kNonNegative)                                                       \
  X(alpha, 0.75, kFinite, Origin::kClassOnly) X(t0, 1e6, kNonNegative, Origin::kClassOnly)                     \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) X(eta, 1e-2, kNonNegative, Origin::kPerStep) X(mu, 1.0, kNonNegative, Origin::kPerStep)
  FASTOPT_DECLARE_OPTIMIZER("asgd", FASTOPT_ASGD_HYPERPARAMETERS, (ax));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Asgd, T> {
  static constexpr int kVariants = 2;  // 0: mu == 1 (ax = p), 1: running average

  SharedScalars<T> pre;
  T tau, shrink, eta, mu;
  int variant;

  explicit Kernel(const Asgd::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        tau(static_cast<T>(h.eta * h.shared.l1)),
        shrink(static_cast<T>(1.0 - h.lambd * h.eta)),
        eta(static_cast<T>(h.eta)),
        mu(static_cast<T>(h.mu)),
        variant(h.mu != 1.0) {}

  template <int kAverage, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict ax = x[Asgd::ax];
    const T decay = s.pre.decay, tau = s.tau, shrink = s.shrink, eta = s.eta, mu = s.mu;
    // Its own regularization: the L1 threshold follows eta, and ax averages the thresholded p.
    update_elements<T, kStats, kExtras, kOwnRegularization, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad,
                                                                                       T param0) {
      const T updated = prox_l1<kExtras>(decayed<kExtras>(param0, decay) * shrink - eta * grad, tau);
      ax[i] = kAverage ? ax[i] + mu * (updated - ax[i]) : updated;
      return updated;
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Asgd)
