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
  static constexpr const char* kName = "adadelta";
#define FASTOPT_ADADELTA_HYPERPARAMETERS(X)          \
  X(lr, 1.0, kNonNegative, "lr")                     \
  X(rho, 0.9, kUnitClosed, "rho value")              \
  X(eps, 1e-6, kNonNegative, "eps")                  \
  X(weight_decay, 0.0, kNonNegative, "weight_decay") \
  X(maximize, 0, kFlag, "maximize")
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_ADADELTA_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"square_avg"}, {"acc_delta"}};
  enum Role { kParam, kGrad, kSquareAvg, kAccDelta };

  static bool needs_state(int, const Hyper&, int) { return true; }
  static void validate(const Hyper&) {}
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Adadelta> {
  static constexpr int kVariants = 1;

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, lr, rho, one_minus_rho, eps;
    int variant = 0;

    explicit Scalars(const Adadelta::Hyper& h)
        : pre(h.shared, h.weight_decay, h.maximize),
          decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
          tau(static_cast<T>(h.lr * h.shared.l1)),
          lr(static_cast<T>(h.lr)),
          rho(static_cast<T>(h.rho)),
          one_minus_rho(static_cast<T>(1.0 - h.rho)),
          eps(static_cast<T>(h.eps)) {}
  };

  template <int, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict v = x[Adadelta::kSquareAvg];
    T* __restrict u = x[Adadelta::kAccDelta];
    const T decay = s.decay, tau = s.tau, lr = s.lr, rho = s.rho, one_minus_rho = s.one_minus_rho, eps = s.eps;
    update_elements<T, kStats, kExtras, true>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param0) {
      using V = decltype(lane);
      const V param = decayed<kExtras>(param0, decay);
      const V vi = rho * load_as(v + i, lane) + one_minus_rho * (grad * grad);
      const V delta = divide(square_root(load_as(u + i, lane) + eps), square_root(vi + eps)) * grad;
      const V ui = rho * load_as(u + i, lane) + one_minus_rho * (delta * delta);
      store_to(v + i, vi);
      store_to(u + i, ui);
      return prox_l1<kExtras>(param - lr * delta, tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adadelta)
