// Adam, AdamW and AMSGrad (Kingma & Ba 2015; Loshchilov & Hutter 2019;
// Reddi et al. 2018), one fused pass over p, g, m, v (and vmax).
//
//   g = -g if maximize;  g = g + wd*p (coupled, Adam)  |  p = p*(1 - lr*wd) (decoupled, AdamW)
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  vhat = amsgrad ? (vmax = max(vmax, v)) : v
//   p = p - (lr/bc1) * m / (sqrt(vhat)/sqrt(bc2) + eps),  bc_k = 1 - b_k^t
//
// Divides and square roots bound this loop (they are not faster per element
// with wider vectors on current x86 cores), so the division by sqrt(bc2) is a
// multiplication by its reciprocal, computed once in double: one division and
// one square root per element. torch divides; the two differ by one rounding.
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct AdamHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool amsgrad = false, maximize = false, decoupled_weight_decay = false;
  std::int64_t step = 1;

  void validate() const {
    require_nonnegative(lr, "lr");
    require_finite(beta1, "beta1");
    require_finite(beta2, "beta2");
    require(0.0 <= beta1 && beta1 < 1.0,
            [&] { return std::string("invalid beta parameter at index 0: " + num(beta1) + " (must be in [0, 1))"); });
    require(0.0 <= beta2 && beta2 < 1.0,
            [&] { return std::string("invalid beta parameter at index 1: " + num(beta2) + " (must be in [0, 1))"); });
    require_nonnegative(eps, "eps");
    require_nonnegative(weight_decay, "weight_decay");
    require_step(step);
  }
};

enum AdamRole { kAdamParam, kAdamGrad, kAdamExpAvg, kAdamExpAvgSq, kAdamMaxExpAvgSq, kAdamRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

// Per-call scalars, computed once in double and rounded to T once.
template <class T>
struct AdamScalars {
  T sign, wd, decay, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_bc2_sqrt, eps;
  bool coupled_wd, amsgrad;

  explicit AdamScalars(const AdamHyper& h) {
    const double t = static_cast<double>(h.step);
    const double bc1 = 1.0 - std::pow(h.beta1, t), bc2 = 1.0 - std::pow(h.beta2, t);
    sign = h.maximize ? T(-1) : T(1);
    coupled_wd = !h.decoupled_weight_decay && h.weight_decay != 0.0;
    wd = static_cast<T>(h.weight_decay);
    decay = static_cast<T>(h.decoupled_weight_decay ? 1.0 - h.lr * h.weight_decay : 1.0);
    beta1 = static_cast<T>(h.beta1);
    one_minus_beta1 = static_cast<T>(1.0 - h.beta1);
    beta2 = static_cast<T>(h.beta2);
    one_minus_beta2 = static_cast<T>(1.0 - h.beta2);
    step_size = static_cast<T>(h.lr / bc1);
    inv_bc2_sqrt = static_cast<T>(1.0 / std::sqrt(bc2));
    eps = static_cast<T>(h.eps);
    amsgrad = h.amsgrad;
  }
};

template <class T, bool kAmsgrad>
void adam_span(const AdamScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict m,
               T* __restrict v, T* __restrict vmax, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    T grad = g[i] * s.sign;
    T param = p[i];
    if (s.coupled_wd) grad = grad + s.wd * param;
    param = param * s.decay;
    const T mi = s.beta1 * m[i] + s.one_minus_beta1 * grad;
    const T vi = s.beta2 * v[i] + s.one_minus_beta2 * (grad * grad);
    T vhat = vi;
    if constexpr (kAmsgrad) {
      vhat = vmax[i] > vi ? vmax[i] : vi;
      vmax[i] = vhat;
    }
    m[i] = mi;
    v[i] = vi;
    p[i] = param - s.step_size * (mi / (std::sqrt(vhat) * s.inv_bc2_sqrt + s.eps));
  }
}

}  // namespace detail

template <class T>
void adam(const Batch<T>& batch, const AdamHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::AdamScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e) {
    const auto& s = scalars[hyper_of(batch, t)];
    T* vmax = role_ptr(batch, kAdamMaxExpAvgSq, t);
    auto span = s.amsgrad ? &detail::adam_span<T, true> : &detail::adam_span<T, false>;
    span(s, role_ptr(batch, kAdamParam, t) + b, role_ptr(batch, kAdamGrad, t) + b, role_ptr(batch, kAdamExpAvg, t) + b,
         role_ptr(batch, kAdamExpAvgSq, t) + b, vmax ? vmax + b : nullptr, e - b);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
