// RAdam (Liu et al. 2020, "On the Variance of the Adaptive Learning Rate and
// Beyond"), torch.optim.RAdam form, one fused pass over p, g, m, v.
// Rule: docs/algorithms.md, section 3.10.
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled;  m, v as Adam
//   rho_inf = 2/(1-b2) - 1;  rho_t = rho_inf - 2t*b2^t/(1-b2^t)
//   rho_t > 5: p = prox_l1(p - (lr*r_t*sqrt(bc2)/bc1) * m/(sqrt(v) + eps), lr*l1)
//              r_t = sqrt((rho_t-4)(rho_t-2)rho_inf / ((rho_inf-4)(rho_inf-2)rho_t))
//   else:      p = prox_l1(p - (lr/bc1) * m, lr*l1)      (the un-adapted first steps)
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Radam {
#define FASTOPT_RADAM_HYPERPARAMETERS(X)              \
  X(lr, 1e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) \
  X(eps, 1e-8, kNonNegative) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("radam", FASTOPT_RADAM_HYPERPARAMETERS, (exp_avg, kSignedMap), (exp_avg_sq, kUnsignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Radam, T> {
  static constexpr int kVariants = 2;  // 0: un-adapted step, 1: rectified adaptive step

  SharedScalars<T> pre;
  Ema<T> first, second;
  T eps, step_size;
  int variant;

  explicit Kernel(const Radam::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr), first(h.beta1), second(h.beta2), eps(static_cast<T>(h.eps)) {
    const double t = h.step, bc1 = 1.0 - std::pow(h.beta1, t), bc2 = 1.0 - std::pow(h.beta2, t);
    const double rho_inf = 2.0 / (1.0 - h.beta2) - 1.0;
    const double rho_t = rho_inf - 2.0 * t * std::pow(h.beta2, t) / bc2;
    variant = rho_t > 5.0;
    if (variant) {
      const double r = std::sqrt((rho_t - 4.0) * (rho_t - 2.0) * rho_inf / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t));
      step_size = static_cast<T>(h.lr * r * std::sqrt(bc2) / bc1);
    } else {
      step_size = static_cast<T>(h.lr / bc1);
    }
  }

  template <int kRectified, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Radam::exp_avg];
    T* __restrict v = x[Radam::exp_avg_sq];
    const Ema<T> first = s.first, second = s.second;
    const T eps = s.eps, step_size = s.step_size;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto mi = first(load_as(m + i, lane), grad);
      const auto vi = second(load_as(v + i, lane), grad * grad);
      store_to(m + i, mi);
      store_to(v + i, vi);
      if constexpr (kRectified) return param - step_size * divide(mi, square_root(vi) + eps);
      else return param - step_size * mi;
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Radam)
