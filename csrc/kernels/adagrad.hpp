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
  for_each_element<T, kStats>(n, sums, [=](auto lane, std::int64_t i, auto& gs, auto& ps, auto& us, auto& nf) {
    using V = decltype(lane);
    const V g_raw = load_as(g + i, lane), param0 = load_as(p + i, lane);
    const V grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const V param = kExtras == kAllExtras ? param0 * decay : param0;
    const V acc = load_as(sum + i, lane) + grad * grad;
    store_to(sum + i, acc);
    const V updated = prox_l1<kExtras>(param - clr * divide(grad, square_root(acc) + eps), tau);
    store_to(p + i, updated);
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  });
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
