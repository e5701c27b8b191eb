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
#define FASTOPT_ADAM_HYPERPARAMETERS(X)                                                                   \
  X(lr, 1e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) X(eps, 1e-8, kNonNegative) X(amsgrad, 0, kFlag) \
  FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("adam", FASTOPT_ADAM_HYPERPARAMETERS, (exp_avg, kSignedMap), (exp_avg_sq, kUnsignedMap),
                            (max_exp_avg_sq, kUnsignedMap));

  static bool needs_state(int role, const Hyper& h, int /*ndim*/) { return role != max_exp_avg_sq || h.amsgrad != 0.0; }
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Adam, T> {
  static constexpr int kVariants = 2;  // amsgrad off, on

  SharedScalars<T> pre;
  Ema<T> first, second;
  T step_size, inv_bc2_sqrt, eps;
  int variant;

  explicit Kernel(const Adam::Hyper& h)
      : pre(h.shared, h.weight_decay, h.maximize, h.lr),
        first(h.beta1),
        second(h.beta2),
        step_size(static_cast<T>(h.lr / (1.0 - std::pow(h.beta1, h.step)))),
        inv_bc2_sqrt(static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, h.step)))),
        eps(static_cast<T>(h.eps)),
        variant(h.amsgrad != 0.0) {}

  template <int kAmsgrad, bool kStats, int kExtras, class IO = PlainIO>
  FASTOPT_NOINLINE static void span(const Kernel s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Adam::exp_avg];
    T* __restrict v = x[Adam::exp_avg_sq];
    T* __restrict vmax = x[Adam::max_exp_avg_sq];
    const Ema<T> first = s.first, second = s.second;
    const T step_size = s.step_size, inv_bc2_sqrt = s.inv_bc2_sqrt, eps = s.eps;
    update_elements<T, kStats, kExtras, kWideRule, IO>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param) {
      const auto mi = first(load_as(m + i, lane), grad);
      const auto vi = second(load_as(v + i, lane), grad * grad);
      auto vhat = vi;
      if constexpr (kAmsgrad) {
        const auto vmax_old = load_as(vmax + i, lane);
        vhat = vmax_old > vi ? vmax_old : vi;
        store_to(vmax + i, vhat);
      }
      store_to(m + i, mi);
      store_to(v + i, vi);
      return param - step_size * divide(mi, square_root(vhat) * inv_bc2_sqrt + eps);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adam)
