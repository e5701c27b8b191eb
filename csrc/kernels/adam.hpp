// Adam, AdamW and AMSGrad (Kingma & Ba 2015; Loshchilov & Hutter 2019;
// Reddi et al. 2018), one fused pass over p, g, m, v (and vmax).
//
//   g = pre(g) (maximize, clipping, coupled L2)  |  p = p*(1 - lr*wd) (decoupled: AdamW)
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g;  vhat = amsgrad ? (vmax = max(vmax, v)) : v
//   p = prox_l1<kExtras>(p - (lr/bc1) * m / (sqrt(vhat)/sqrt(bc2) + eps), lr*l1),  bc_k = 1 - b_k^t
//
// Divides and square roots bound this loop (they are not faster per element
// with wider vectors on current x86 cores), so the division by sqrt(bc2) is a
// multiplication by its reciprocal, computed once in double: one division and
// one square root per element. torch divides; the two differ by one rounding.
// The division is divide() of wide_f64.hpp: FMAs in the float64 AVX-512 loop.
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct AdamHyper {
  double lr = 1e-3, beta1 = 0.9, beta2 = 0.999, eps = 1e-8, weight_decay = 0.0;
  bool amsgrad = false, maximize = false;
  std::int64_t step = 1;
  SharedHyper shared{};  // decoupled_weight_decay there makes this AdamW

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
    shared.validate();
  }
};

enum AdamRole { kAdamParam, kAdamGrad, kAdamExpAvg, kAdamExpAvgSq, kAdamMaxExpAvgSq, kAdamRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

// Per-call scalars, computed once in double and rounded to T once.
template <class T>
struct AdamScalars {
  SharedScalars<T> pre;
  T decay, tau, beta1, one_minus_beta1, beta2, one_minus_beta2, step_size, inv_bc2_sqrt, eps;
  bool amsgrad;

  explicit AdamScalars(const AdamHyper& h) : pre(h.shared, h.weight_decay, h.maximize) {
    const double t = static_cast<double>(h.step);
    const double bc1 = 1.0 - std::pow(h.beta1, t), bc2 = 1.0 - std::pow(h.beta2, t);
    decay = static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay));
    tau = static_cast<T>(h.lr * h.shared.l1);
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

template <class T, bool kAmsgrad, bool kStats, int kExtras>
FASTOPT_NOINLINE void adam_span(const AdamScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict m,
               T* __restrict v, T* __restrict vmax, std::int64_t n, double (&sums)[kStatFields]) {
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decay = s.decay, tau = s.tau, beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1;
  const T beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2, step_size = s.step_size;
  const T inv_bc2_sqrt = s.inv_bc2_sqrt, eps = s.eps;
  for_each_element<T, kStats>(n, sums, [=](auto lane, std::int64_t i, auto& gs, auto& ps, auto& us, auto& nf) {
    using V = decltype(lane);
    const V g_raw = load_as(g + i, lane), param0 = load_as(p + i, lane);
    const V grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const V param = kExtras == kAllExtras ? param0 * decay : param0;
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
    const V updated =
        prox_l1<kExtras>(param - step_size * divide(mi, square_root(vhat) * inv_bc2_sqrt + eps), tau);
    store_to(p + i, updated);
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  });
}

}  // namespace detail

template <class T>
void adam(const Batch<T>& batch, const AdamHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::AdamScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    T* vmax = role_ptr(batch, kAdamMaxExpAvgSq, t);
    double sums[kStatFields] = {};
    auto run = [&](auto amsgrad, auto stats, auto extras) {
      detail::adam_span<T, decltype(amsgrad)::value, decltype(stats)::value, decltype(extras)::value>(
          s, role_ptr(batch, kAdamParam, t) + b, role_ptr(batch, kAdamGrad, t) + b, role_ptr(batch, kAdamExpAvg, t) + b,
          role_ptr(batch, kAdamExpAvgSq, t) + b, vmax ? vmax + b : nullptr, e - b, sums);
    };
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      if (s.amsgrad) run(std::true_type{}, stats, extras);
      else run(std::false_type{}, stats, extras);
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
