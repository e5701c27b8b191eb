// RMSprop (Hinton, Coursera lecture 6e; centered form Graves 2013), in the
// torch.optim.RMSprop form, one fused pass over p, g, v (and a, b).
// Rule: docs/algorithms.md, section 3.3.
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled;  v = alpha*v + (1-alpha)*g*g
//   centered: a = alpha*a + (1-alpha)*g;  avg = sqrt(max(v - a*a, 0)) + eps
//   else:     avg = sqrt(v) + eps
//   momentum > 0: b = momentum*b + g/avg;  p = p - lr*b   else  p = p - lr*g/avg
//   p = prox_l1(p, lr*l1)
//
// The max(., 0) guards the centered variance against a rounding-negative
// value (torch would return NaN there); it changes nothing else.
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Rmsprop {
#define FASTOPT_RMSPROP_HYPERPARAMETERS(X)                                                                 \
  X(lr, 1e-2, kNonNegative) X(alpha, 0.99, kUnitClosed, Origin::kHyper, "alpha value") X(eps, 1e-8, kNonNegative) \
  X(momentum, 0.0, kNonNegative) X(centered, 0, kFlag) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X)
  FASTOPT_DECLARE_OPTIMIZER("rmsprop", FASTOPT_RMSPROP_HYPERPARAMETERS, (square_avg, kUnsignedMap),
                            (grad_avg, kSignedMap), (momentum_buffer, kSignedMap));

  static bool needs_state(int role, const Hyper& h, int) {
    if (role == grad_avg) return h.centered != 0.0;
    if (role == momentum_buffer) return h.momentum > 0.0;
    return true;
  }
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Rmsprop, T> {
  static constexpr int kVariants = 4;  // 2*centered + (momentum > 0)

  SharedScalars<T> pre;
  Ema<T> average;
  T lr, eps, momentum;
  int variant;

  explicit Kernel(const Rmsprop::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        average(h.alpha),
        lr(static_cast<T>(h.lr)),
        eps(static_cast<T>(h.eps)),
        momentum(static_cast<T>(h.momentum)),
        variant(2 * (h.centered != 0.0) + (h.momentum > 0.0)) {}

  template <int kVariant, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    constexpr bool kCentered = kVariant / 2, kMomentum = kVariant % 2;
    T* __restrict v = x[Rmsprop::square_avg];
    T* __restrict a = x[Rmsprop::grad_avg];
    T* __restrict b = x[Rmsprop::momentum_buffer];
    const Ema<T> average = s.average;
    const T lr = s.lr, eps = s.eps, momentum = s.momentum;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto vi = average(load_as(v + i, lane), grad * grad);
      store_to(v + i, vi);
      auto var = vi;
      if constexpr (kCentered) {
        const auto ai = average(load_as(a + i, lane), grad);
        store_to(a + i, ai);
        var = vi - ai * ai;
        var = var < T(0) ? T(0) : var;  // np.maximum(var, 0): a NaN stays NaN
      }
      const auto avg = square_root(var) + eps;
      if constexpr (kMomentum) {
        const auto bi = momentum * load_as(b + i, lane) + divide(grad, avg);
        store_to(b + i, bi);
        return param - lr * bi;
      } else {
        return param - lr * divide(grad, avg);
      }
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Rmsprop)
