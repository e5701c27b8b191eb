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
  static constexpr const char* kName = "sgd";
#define FASTOPT_SGD_HYPERPARAMETERS(X)              \
  X(lr, 1e-3, kNonNegative, "lr")                   \
  X(momentum, 0.0, kNonNegative, "momentum")        \
  X(dampening, 0.0, kFinite, "dampening")           \
  X(weight_decay, 0.0, kNonNegative, "weight_decay") \
  X(nesterov, 0, kFlag, "nesterov")                 \
  X(maximize, 0, kFlag, "maximize")                 \
  X(step, 1, kStep, "step", Origin::kPerStep)
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_SGD_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"momentum_buffer"}};
  enum Role { kParam, kGrad, kMomentumBuffer };

  static bool needs_state(int /*role*/, const Hyper& h, int /*ndim*/) { return h.momentum != 0.0; }
  static void validate(const Hyper& h) {
    require(h.nesterov == 0.0 || (h.momentum > 0.0 && h.dampening == 0.0),
            [] { return "nesterov momentum requires a momentum > 0 and zero dampening"; });
  }
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Sgd> {
  // variant = 2*mode + nesterov; mode 0 plain, 1 momentum at its first step
  // (b = g), 2 momentum later. Nesterov needs momentum (validated).
  static constexpr int kVariants = 6;

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, lr, momentum, one_minus_dampening;
    int variant;

    explicit Scalars(const Sgd::Hyper& h)
        : pre(h.shared, h.weight_decay, h.maximize),
          decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
          tau(static_cast<T>(h.lr * h.shared.l1)),
          lr(static_cast<T>(h.lr)),
          momentum(static_cast<T>(h.momentum)),
          one_minus_dampening(static_cast<T>(1.0 - h.dampening)) {
      const int mode = h.momentum == 0.0 ? 0 : h.step == 1.0 ? 1 : 2;
      variant = 2 * mode + (h.nesterov != 0.0);
    }
  };

  template <int kVariant, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    constexpr int kMode = kVariant / 2;
    constexpr bool kNesterov = kVariant % 2;
    T* __restrict b = x[Sgd::kMomentumBuffer];
    const T decay = s.decay, tau = s.tau, lr = s.lr, momentum = s.momentum, damp = s.one_minus_dampening;
    update_elements<T, kStats, kExtras, false>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param0) {
      using V = decltype(lane);
      const V param = decayed<kExtras>(param0, decay);
      if constexpr (kMode != 0) {
        V buf = grad;
        if constexpr (kMode == 2) buf = momentum * load_as(b + i, lane) + damp * grad;
        store_to(b + i, buf);
        grad = kNesterov ? grad + momentum * buf : buf;
      }
      return prox_l1<kExtras>(param - lr * grad, tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Sgd)
