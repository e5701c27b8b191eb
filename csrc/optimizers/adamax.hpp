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
  static constexpr const char* kName = "adamax";
#define FASTOPT_ADAMAX_HYPERPARAMETERS(X)                   \
  X(lr, 2e-3, kNonNegative, "lr")                           \
  X(beta1, 0.9, kUnitOpen, "beta parameter at index 0")     \
  X(beta2, 0.999, kUnitOpen, "beta parameter at index 1")   \
  X(eps, 1e-8, kNonNegative, "eps")                         \
  X(weight_decay, 0.0, kNonNegative, "weight_decay")        \
  X(maximize, 0, kFlag, "maximize")                         \
  X(step, 1, kStep, "step", Origin::kPerStep)
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_ADAMAX_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"exp_avg"}, {"exp_inf"}};
  enum Role { kParam, kGrad, kExpAvg, kExpInf };

  static bool needs_state(int, const Hyper&, int) { return true; }
  static void validate(const Hyper&) {}
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Adamax> {
  static constexpr int kVariants = 1;

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, beta1, one_minus_beta1, beta2, eps, step_size;
    int variant = 0;

    explicit Scalars(const Adamax::Hyper& h)
        : pre(h.shared, h.weight_decay, h.maximize),
          decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
          tau(static_cast<T>(h.lr * h.shared.l1)),
          beta1(static_cast<T>(h.beta1)),
          one_minus_beta1(static_cast<T>(1.0 - h.beta1)),
          beta2(static_cast<T>(h.beta2)),
          eps(static_cast<T>(h.eps)),
          step_size(static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, h.step)))) {}
  };

  template <int, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Adamax::kExpAvg];
    T* __restrict u = x[Adamax::kExpInf];
    const T decay = s.decay, tau = s.tau, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
    const T beta2 = s.beta2, eps = s.eps, step_size = s.step_size;
    update_elements<T, kStats, kExtras, false>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad, T param0) {
      const T param = decayed<kExtras>(param0, decay);
      const T mi = beta1 * m[i] + one_minus_beta1 * grad;
      const T decayed_inf = beta2 * u[i], bound = std::fabs(grad) + eps;
      const T keep = decayed_inf != decayed_inf ? decayed_inf : bound;  // NaN in either propagates
      const T ui = decayed_inf > bound ? decayed_inf : keep;
      m[i] = mi;
      u[i] = ui;
      return prox_l1<kExtras>(param - step_size * (mi / ui), tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adamax)
