// NAdam (Dozat 2016, "Incorporating Nesterov Momentum into Adam"),
// torch.optim.NAdam form with momentum_decay, one fused pass over p, g, m, v.
// Rule: docs/algorithms.md, section 3.9.
//
//   mu_t = b1*(1 - 0.5*0.96^(t*psi)), mu_{t+1} likewise;  P = mu_product*mu_t (the class keeps it)
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  denom = sqrt(v)*(1/sqrt(1 - b2^t)) + eps
//   p = prox_l1(p - lr*(1-mu_t)/(1-P) * g/denom - lr*mu_{t+1}/(1-P*mu_{t+1}) * m/denom, lr*l1)
// torch divides v by the bias correction before the root; the reciprocal
// of its root in double, as in Adam, saves a division (one rounding apart).
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Nadam {
#define FASTOPT_NADAM_HYPERPARAMETERS(X)                                                                       \
  X(lr, 2e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) X(eps, 1e-8, kNonNegative) X(momentum_decay, 4e-3, kNonNegative) \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X) X(mu_product, 1.0, kNonNegative, Origin::kPerStep)
  FASTOPT_DECLARE_OPTIMIZER("nadam", FASTOPT_NADAM_HYPERPARAMETERS, (exp_avg, kSignedMap), (exp_avg_sq, kUnsignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Nadam, T> {
  SharedScalars<T> pre;
  Ema<T> first, second;
  T inv_bc2_sqrt, eps, grad_coef, avg_coef;
  int variant = 0;

  explicit Kernel(const Nadam::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        first(h.beta1),
        second(h.beta2),
        inv_bc2_sqrt(static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, h.step)))),
        eps(static_cast<T>(h.eps)) {
    const double mu = h.beta1 * (1.0 - 0.5 * std::pow(0.96, h.step * h.momentum_decay));
    const double mu_next = h.beta1 * (1.0 - 0.5 * std::pow(0.96, (h.step + 1.0) * h.momentum_decay));
    const double product = h.mu_product * mu, product_next = product * mu_next;
    grad_coef = static_cast<T>(h.lr * (1.0 - mu) / (1.0 - product));
    avg_coef = static_cast<T>(h.lr * mu_next / (1.0 - product_next));
  }

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Nadam::exp_avg];
    T* __restrict v = x[Nadam::exp_avg_sq];
    const Ema<T> first = s.first, second = s.second;
    const T inv_bc2_sqrt = s.inv_bc2_sqrt, eps = s.eps, grad_coef = s.grad_coef, avg_coef = s.avg_coef;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto mi = first(load_as(m + i, lane), grad);
      const auto vi = second(load_as(v + i, lane), grad * grad);
      store_to(m + i, mi);
      store_to(v + i, vi);
      const auto denom = square_root(vi) * inv_bc2_sqrt + eps;
      return (param - grad_coef * divide(grad, denom)) - avg_coef * divide(mi, denom);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Nadam)
