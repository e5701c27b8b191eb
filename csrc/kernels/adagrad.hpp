// Adagrad (Duchi, Hazan & Singer 2011, torch.optim.Adagrad form), one fused
// pass over p, g, sum.
//
//   g = pre(g);  clr = lr / (1 + (t-1)*lr_decay);  p = p*(1 - clr*wd) if decoupled
//   sum = sum + g*g;  p = prox_l1<kExtras>(p - clr * g / (sqrt(sum) + eps), clr*l1)
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct AdagradHyper {
  double lr = 1e-2, lr_decay = 0.0, weight_decay = 0.0, eps = 1e-10;
  bool maximize = false;
  std::int64_t step = 1;
  SharedHyper shared{};

  double decayed_lr() const { return lr / (1.0 + static_cast<double>(step - 1) * lr_decay); }

  void validate() const {
    require_nonnegative(lr, "lr");
    require_nonnegative(lr_decay, "lr_decay");
    require_nonnegative(weight_decay, "weight_decay");
    require_nonnegative(eps, "eps");
    require_step(step);
    shared.validate();
  }
};

enum AdagradRole { kAdagradParam, kAdagradGrad, kAdagradSum, kAdagradRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct AdagradScalars {
  SharedScalars<T> pre;
  T decay, tau, clr, eps;

  explicit AdagradScalars(const AdagradHyper& h)
      : pre(h.shared, h.weight_decay, h.maximize),
        decay(static_cast<T>(decoupled_decay(h.shared, h.decayed_lr(), h.weight_decay))),
        tau(static_cast<T>(h.decayed_lr() * h.shared.l1)),
        clr(static_cast<T>(h.decayed_lr())),
        eps(static_cast<T>(h.eps)) {}
};

template <class T, bool kStats, int kExtras>
FASTOPT_NOINLINE void adagrad_span(const AdagradScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict sum,
                  std::int64_t n, double (&sums)[kStatFields]) {
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decay = s.decay, tau = s.tau, clr = s.clr, eps = s.eps;
  double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
  for (std::int64_t i = 0; i < n; ++i) {
    const T g_raw = g[i], param0 = p[i];
    const T grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const T param = kExtras == kAllExtras ? param0 * decay : param0;
    const T acc = sum[i] + grad * grad;
    sum[i] = acc;
    const T updated = prox_l1<kExtras>(param - clr * (grad / (std::sqrt(acc) + eps)), tau);
    p[i] = updated;
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  }
  if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
}

}  // namespace detail

template <class T>
void adagrad(const Batch<T>& batch, const AdagradHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::AdagradScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    double sums[kStatFields] = {};
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      detail::adagrad_span<T, decltype(stats)::value, decltype(extras)::value>(s, role_ptr(batch, kAdagradParam, t) + b,
                                                      role_ptr(batch, kAdagradGrad, t) + b,
                                                      role_ptr(batch, kAdagradSum, t) + b, e - b, sums);
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
