// NAdam (Dozat 2016, "Incorporating Nesterov Momentum into Adam"),
// torch.optim.NAdam form with momentum_decay, one fused pass over p, g, m, v.
// Rule: docs/algorithms.md, section 3.9.
//
//   mu_t = b1*(1 - 0.5*0.96^(t*psi)), mu_{t+1} likewise;  P = mu_product*mu_t (the class keeps it)
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  denom = sqrt(v)*(1/sqrt(1 - b2^t)) + eps
//   p = prox_l1(p - lr*(1-mu_t)/(1-P) * g/denom - lr*mu_{t+1}/(1-P*mu_{t+1}) * m/denom, lr*l1)
// torch divides v by the bias correction before the root; the reciprocal
// of its root in double, as in Adam, saves a division (one rounding apart).
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"

namespace fastopt {

struct Nadam {
  static constexpr const char* kName = "nadam";
#define FASTOPT_NADAM_HYPERPARAMETERS(X)                     \
  X(lr, 2e-3, kNonNegative, "lr")                            \
  X(beta1, 0.9, kUnitOpen, "beta parameter at index 0")      \
  X(beta2, 0.999, kUnitOpen, "beta parameter at index 1")    \
  X(eps, 1e-8, kNonNegative, "eps")                          \
  X(weight_decay, 0.0, kNonNegative, "weight_decay")         \
  X(momentum_decay, 4e-3, kNonNegative, "momentum_decay")    \
  X(maximize, 0, kFlag, "maximize")                          \
  X(step, 1, kStep, "step", Origin::kPerStep)                \
  X(mu_product, 1.0, kNonNegative, "mu_product", Origin::kPerStep)
  FASTOPT_DECLARE_HYPERPARAMETERS(FASTOPT_NADAM_HYPERPARAMETERS);
  static constexpr StateDecl kState[] = {{"exp_avg"}, {"exp_avg_sq"}};
  enum Role { kParam, kGrad, kExpAvg, kExpAvgSq };

  static bool needs_state(int, const Hyper&, int) { return true; }
  static void validate(const Hyper&) {}
};

namespace FASTOPT_TARGET_NAME {

template <>
struct Kernel<Nadam> {
  static constexpr int kVariants = 1;

  template <class T>
  struct Scalars {
    SharedScalars<T> pre;
    T decay, tau, beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bc2_sqrt, eps, grad_coef, avg_coef;
    int variant = 0;

    explicit Scalars(const Nadam::Hyper& h) : pre(h.shared, h.weight_decay, h.maximize) {
      const double mu = h.beta1 * (1.0 - 0.5 * std::pow(0.96, h.step * h.momentum_decay));
      const double mu_next = h.beta1 * (1.0 - 0.5 * std::pow(0.96, (h.step + 1.0) * h.momentum_decay));
      const double product = h.mu_product * mu, product_next = product * mu_next;
      decay = static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay));
      tau = static_cast<T>(h.lr * h.shared.l1);
      beta1 = static_cast<T>(h.beta1);
      one_minus_beta1 = static_cast<T>(1.0 - h.beta1);
      beta2 = static_cast<T>(h.beta2);
      one_minus_beta2 = static_cast<T>(1.0 - h.beta2);
      inv_bc2_sqrt = static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, h.step)));
      eps = static_cast<T>(h.eps);
      grad_coef = static_cast<T>(h.lr * (1.0 - mu) / (1.0 - product));
      avg_coef = static_cast<T>(h.lr * mu_next / (1.0 - product_next));
    }
  };

  template <int, bool kStats, int kExtras, class T>
  FASTOPT_NOINLINE static void span(const Scalars<T> s, T* const* x, std::int64_t n, double (&sums)[kStatFields]) {
    T* __restrict m = x[Nadam::kExpAvg];
    T* __restrict v = x[Nadam::kExpAvgSq];
    const T decay = s.decay, tau = s.tau, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
    const T beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2, inv_bc2_sqrt = s.inv_bc2_sqrt, eps = s.eps;
    const T grad_coef = s.grad_coef, avg_coef = s.avg_coef;
    update_elements<T, kStats, kExtras, true>(s.pre, x, n, sums, [=](auto lane, std::int64_t i, auto grad, auto param0) {
      using V = decltype(lane);
      const V param = decayed<kExtras>(param0, decay);
      const V mi = beta1 * load_as(m + i, lane) + one_minus_beta1 * grad;
      const V vi = beta2 * load_as(v + i, lane) + one_minus_beta2 * (grad * grad);
      store_to(m + i, mi);
      store_to(v + i, vi);
      const V denom = square_root(vi) * inv_bc2_sqrt + eps;
      return prox_l1<kExtras>((param - grad_coef * divide(grad, denom)) - avg_coef * divide(mi, denom), tau);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Nadam)
