// Adagrad (Duchi, Hazan & Singer 2011, torch.optim.Adagrad form), one fused
// pass over p, g, sum. Rule: docs/algorithms.md, section 3.2.
//
//   g = pre(g);  clr = lr / (1 + (t-1)*lr_decay);  p = p*(1 - clr*wd) if decoupled
//   sum = sum + g*g;  p = prox_l1(p - clr * g / (sqrt(sum) + eps), clr*l1)
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Adagrad {
#define FASTOPT_ADAGRAD_HYPERPARAMETERS(X)                                                             \
  X(lr, 1e-2, kNonNegative) X(lr_decay, 0.0, kNonNegative)                                       \
  X(initial_accumulator_value, 0.0, kNonNegative, Origin::kClassOnly) X(eps, 1e-10, kNonNegative) \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("adagrad", FASTOPT_ADAGRAD_HYPERPARAMETERS, (sum, kUnsignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Adagrad, T> {
  SharedScalars<T> pre;
  T clr, eps;
  int variant = 0;

  explicit Kernel(const Adagrad::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, decayed_lr(h)),
        clr(static_cast<T>(decayed_lr(h))),
        eps(static_cast<T>(h.eps)) {}
  static double decayed_lr(const Adagrad::Hyper& h) { return h.lr / (1.0 + (h.step - 1.0) * h.lr_decay); }

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict sum = x[Adagrad::sum];
    const T clr = s.clr, eps = s.eps;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto acc = load_as(sum + i, lane) + grad * grad;
      store_to(sum + i, acc);
      return param - clr * divide(grad, square_root(acc) + eps);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adagrad)
