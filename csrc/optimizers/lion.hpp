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
  static constexpr const char* kName = "lion";
  static constexpr bool kDecoupledByDefault = true;
#define FASTOPT_LION_HYPERPARAMETERS(X)                    \
  X(lr, 1e-4, kNonNegative, "lr")                          \
  X(beta1, 0.9, kUnitOpen, "beta parameter at index 0")    \
  X(beta2, 0.99, kUnitOpen, "beta parameter at index 1")   \
  X(weight_decay, 0.0, kNonNegative, "weight_decay")       \
  X(maximize, 0, kFlag, "maximize")
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_LION_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"exp_avg"}};
  enum Role { kParam, kGrad, kExpAvg };

  static bool needs_state(int, const Hyper&, int) { return true; }
  static void validate(const Hyper&) {}
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Lion> {
  static constexpr int kVariants = 1;

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, lr, beta1, one_minus_beta1, beta2, one_minus_beta2;
    int variant = 0;

    explicit Scalars(const Lion::Hyper& h)
        : pre(h.shared, h.weight_decay, h.maximize),
          decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
          tau(static_cast<T>(h.lr * h.shared.l1)),
          lr(static_cast<T>(h.lr)),
          beta1(static_cast<T>(h.beta1)),
          one_minus_beta1(static_cast<T>(1.0 - h.beta1)),
          beta2(static_cast<T>(h.beta2)),
          one_minus_beta2(static_cast<T>(1.0 - h.beta2)) {}
  };

  template <int, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Lion::kExpAvg];
    const T decay = s.decay, tau = s.tau, lr = s.lr, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
    const T beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2;
    update_elements<T, kStats, kExtras, false>(s.pre, x, n, sums, [=](auto, std::int64_t i, T grad, T param0) {
      const T param = decayed<kExtras>(param0, decay);
      const T interpolated = beta1 * m[i] + one_minus_beta1 * grad;
      m[i] = beta2 * m[i] + one_minus_beta2 * grad;
      return prox_l1<kExtras>(param - lr * sign_of(interpolated), tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Lion)
