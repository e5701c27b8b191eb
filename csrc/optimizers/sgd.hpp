// Stochastic gradient descent with momentum, dampening and Nesterov momentum
// (Sutskever et al. 2013, torch.optim.SGD form), one fused pass over p, g, b.
// Rule: docs/algorithms.md, section 3.1.
//
//   g = pre(g) (maximize, clipping, coupled L2);  p = p*(1 - lr*wd) if decoupled
//   if momentum != 0:  b = g at t == 1, else b = momentum*b + (1-dampening)*g
//                      g = g + momentum*b if nesterov else b
//   p = prox_l1(p - lr*g, lr*l1)
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Sgd {
#define FASTOPT_SGD_HYPERPARAMETERS(X)                                                                       \
  X(lr, 1e-3, kNonNegative) X(momentum, 0.0, kNonNegative) X(dampening, 0.0, kFinite) X(nesterov, 0, kFlag) \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("sgd", FASTOPT_SGD_HYPERPARAMETERS, (momentum_buffer, kSignedMap));

  static bool needs_state(int /*role*/, const Hyper& h, int /*ndim*/) { return h.momentum != 0.0; }
  static void validate(const Hyper& h) {
    require(h.nesterov == 0.0 || (h.momentum > 0.0 && h.dampening == 0.0),
            [] { return "nesterov momentum requires a momentum > 0 and zero dampening"; });
  }
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Sgd, T> {
  // variant = 2*mode + nesterov; mode 0 plain, 1 momentum at its first step
  // (b = g), 2 momentum later. Nesterov needs momentum (validated).
  static constexpr int kVariants = 6;

  SharedScalars<T> pre;
  T lr, momentum, one_minus_dampening;
  int variant;

  explicit Kernel(const Sgd::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        lr(static_cast<T>(h.lr)),
        momentum(static_cast<T>(h.momentum)),
        one_minus_dampening(static_cast<T>(1.0 - h.dampening)),
        variant(2 * (h.momentum == 0.0 ? 0 : h.step == 1.0 ? 1 : 2) + (h.nesterov != 0.0)) {}

  template <int kVariant, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    constexpr int kMode = kVariant / 2;
    constexpr bool kNesterov = kVariant % 2;
    T* __restrict b = x[Sgd::momentum_buffer];
    const T lr = s.lr, momentum = s.momentum, damp = s.one_minus_dampening;
    update_elements<T, kStats, kExtras, kPlainRule, IO>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad, T param) {
      if constexpr (kMode != 0) {
        T buf = grad;
        if constexpr (kMode == 2) buf = momentum * b[i] + damp * grad;
        b[i] = buf;
        grad = kNesterov ? grad + momentum * buf : buf;
      }
      return param - lr * grad;
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Sgd)
