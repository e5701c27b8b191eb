// Adam, AdamW and AMSGrad (Kingma & Ba 2015; Loshchilov & Hutter 2019;
// Reddi et al. 2018), one fused pass over p, g, m, v (and vmax).
// Rule: docs/algorithms.md, section 3.4.
//
//   g = pre(g) (maximize, clipping, coupled L2)  |  p = p*(1 - lr*wd) (decoupled: AdamW)
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  vhat = amsgrad ? (vmax = max(vmax, v)) : v
//   p = prox_l1(p - (lr/bc1) * m / (sqrt(vhat)/sqrt(bc2) + eps), lr*l1),  bc_k = 1 - b_k^t
//
// Divides and square roots bound this loop (they are not faster per element
// with wider vectors on current x86 cores), so the division by sqrt(bc2) is a
// multiplication by its reciprocal, computed once in double: one division and
// one square root per element. torch divides; the two differ by one rounding.
// The division is divide() of simd/lanes.hpp: FMAs in the float64 AVX-512 loop.
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Adam {
  static constexpr const char* kName = "adam";
#define FASTOPT_ADAM_HYPERPARAMETERS(X)                         \
  X(lr, 1e-3, kNonNegative, "lr")                               \
  X(beta1, 0.9, kUnitOpen, "beta parameter at index 0")         \
  X(beta2, 0.999, kUnitOpen, "beta parameter at index 1")       \
  X(eps, 1e-8, kNonNegative, "eps")                             \
  X(weight_decay, 0.0, kNonNegative, "weight_decay")            \
  X(amsgrad, 0, kFlag, "amsgrad")                               \
  X(maximize, 0, kFlag, "maximize")                             \
  X(step, 1, kStep, "step", Origin::kPerStep)
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_ADAM_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"exp_avg"}, {"exp_avg_sq"}, {"max_exp_avg_sq"}};
  enum Role { kParam, kGrad, kExpAvg, kExpAvgSq, kMaxExpAvgSq };

  static bool needs_state(int role, const Hyper& h, int /*ndim*/) {
    return role != kMaxExpAvgSq || h.amsgrad != 0.0;
  }
  static void validate(const Hyper&) {}
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Adam> {
  static constexpr int kVariants = 2;  // amsgrad off, on

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_bc2_sqrt, eps;
    int variant;

    explicit Scalars(const Adam::Hyper& h) : pre(h.shared, h.weight_decay, h.maximize) {
      const double bc1 = 1.0 - std::pow(h.beta1, h.step), bc2 = 1.0 - std::pow(h.beta2, h.step);
      decay = static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay));
      tau = static_cast<T>(h.lr * h.shared.l1);
      beta1 = static_cast<T>(h.beta1);
      one_minus_beta1 = static_cast<T>(1.0 - h.beta1);
      beta2 = static_cast<T>(h.beta2);
      one_minus_beta2 = static_cast<T>(1.0 - h.beta2);
      step_size = static_cast<T>(h.lr / bc1);
      inv_bc2_sqrt = static_cast<T>(1.0 / std::sqrt(bc2));
      eps = static_cast<T>(h.eps);
      variant = h.amsgrad != 0.0;
    }
  };

  template <int kAmsgrad, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Adam::kExpAvg];
    T* __restrict v = x[Adam::kExpAvgSq];
    T* __restrict vmax = x[Adam::kMaxExpAvgSq];
    const T decay = s.decay, tau = s.tau, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
    const T beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2, step_size = s.step_size;
    const T inv_bc2_sqrt = s.inv_bc2_sqrt, eps = s.eps;
    update_elements<T, kStats, kExtras, true>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param0) {
      using V = decltype(lane);
      const V param = decayed<kExtras>(param0, decay);
      const V mi = beta1 * load_as(m + i, lane) + one_minus_beta1 * grad;
      const V vi = beta2 * load_as(v + i, lane) + one_minus_beta2 * (grad * grad);
      V vhat = vi;
      if constexpr (kAmsgrad) {
        const V vmax_old = load_as(vmax + i, lane);
        vhat = vmax_old > vi ? vmax_old : vi;
        store_to(vmax + i, vhat);
      }
      store_to(m + i, mi);
      store_to(v + i, vi);
      return prox_l1<kExtras>(param - step_size * divide(mi, square_root(vhat) * inv_bc2_sqrt + eps), tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adam)
