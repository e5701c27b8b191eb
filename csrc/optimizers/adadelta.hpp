// Adadelta (Zeiler 2012, "ADADELTA: An Adaptive Learning Rate Method"),
// torch.optim.Adadelta form, one fused pass over p, g, v, u.
// Rule: docs/algorithms.md, section 3.7.
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled
//   v = rho*v + (1-rho)*g*g;  delta = sqrt(u + eps)/sqrt(v + eps) * g
//   u = rho*u + (1-rho)*delta*delta;  p = prox_l1(p - lr*delta, lr*l1)
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Adadelta {
#define FASTOPT_ADADELTA_HYPERPARAMETERS(X)                                       \
  X(lr, 1.0, kNonNegative) X(rho, 0.9, kUnitClosed, Origin::kHyper, "rho value") \
  X(eps, 1e-6, kNonNegative) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X)
  FASTOPT_DECLARE_OPTIMIZER("adadelta", FASTOPT_ADADELTA_HYPERPARAMETERS, (square_avg, kUnsignedMap),
                            (acc_delta, kUnsignedMap));
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Adadelta, T> {
  SharedScalars<T> pre;
  Ema<T> average;
  T lr, eps;
  int variant = 0;

  explicit Kernel(const Adadelta::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        average(h.rho),
        lr(static_cast<T>(h.lr)), eps(static_cast<T>(h.eps)) {}

  template <int, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict v = x[Adadelta::square_avg];
    T* __restrict u = x[Adadelta::acc_delta];
    const Ema<T> average = s.average;
    const T lr = s.lr, eps = s.eps;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto vi = average(load_as(v + i, lane), grad * grad);
      const auto delta = divide(square_root(load_as(u + i, lane) + eps), square_root(vi + eps)) * grad;
      const auto ui = average(load_as(u + i, lane), delta * delta);
      store_to(v + i, vi);
      store_to(u + i, ui);
      return param - lr * delta;
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adadelta)
