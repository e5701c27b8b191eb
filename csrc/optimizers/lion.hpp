// Lion (Chen et al. 2023, "Symbolic Discovery of Optimization Algorithms";
// optax.lion's rule), one fused pass over p, g, m. torch has no Lion.
// Rule: docs/algorithms.md, section 3.13.
//
//   g = pre(g);  p = p*(1 - lr*wd)  (decoupled by default)
//   c = b1*m + (1-b1)*g;  p = prox_l1(p - lr*sign(c), lr*l1);  m = b2*m + (1-b2)*g
// sign(0) = 0 (and a NaN c gives 0, as the other kernels' sign).
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Lion {
    static constexpr bool kDecoupledByDefault = true;
#define FASTOPT_LION_HYPERPARAMETERS(X) \
  X(lr, 1e-4, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.99) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X)
  FASTOPT_DECLARE_OPTIMIZER("lion", FASTOPT_LION_HYPERPARAMETERS, (exp_avg, kSignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Lion, T> {
  SharedScalars<T> pre;
  Ema<T> interpolation, momentum;
  T lr;
  int variant = 0;

  explicit Kernel(const Lion::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        interpolation(h.beta1),
        momentum(h.beta2),
        lr(static_cast<T>(h.lr)) {}

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Lion::exp_avg];
    const Ema<T> interpolation = s.interpolation, momentum = s.momentum;
    const T lr = s.lr;
    update_elements<T, kStats, kExtras, kPlainRule, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad, T param) {
      const T direction = sign_of(interpolation(m[i], grad));
      m[i] = momentum(m[i], grad);
      return param - lr * direction;
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Lion)
