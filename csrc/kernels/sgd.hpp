// Stochastic gradient descent with momentum, dampening and Nesterov momentum
// (Sutskever et al. 2013, torch.optim.SGD form), one fused pass over p, g, b.
//
//   g = pre(g) (maximize, clipping, coupled L2; common.hpp);  p = p*(1 - lr*wd) if decoupled
//   if momentum != 0:  b = g at t == 1, else b = momentum*b + (1-dampening)*g
//                      g = g + momentum*b if nesterov else b
//   p = prox_l1<kExtras>(p - lr*g, lr*l1)
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct SgdHyper {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false, maximize = false;
  std::int64_t step = 1;
  SharedHyper shared{};

  void validate() const {
    require_nonnegative(lr, "lr");
    require_nonnegative(momentum, "momentum");
    require_finite(dampening, "dampening");
    require_nonnegative(weight_decay, "weight_decay");
    require(!nesterov || (momentum > 0.0 && dampening == 0.0),
            [&] { return std::string("nesterov momentum requires a momentum > 0 and zero dampening"); });
    require_step(step);
    shared.validate();
  }
};

enum SgdRole { kSgdParam, kSgdGrad, kSgdMomentumBuffer, kSgdRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct SgdScalars {
  SharedScalars<T> pre;
  T decay, tau, lr, momentum, one_minus_dampening;
  bool has_momentum, nesterov, first_step;

  explicit SgdScalars(const SgdHyper& h)
      : pre(h.shared, h.weight_decay, h.maximize),
        decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
        tau(static_cast<T>(h.lr * h.shared.l1)),
        lr(static_cast<T>(h.lr)),
        momentum(static_cast<T>(h.momentum)),
        one_minus_dampening(static_cast<T>(1.0 - h.dampening)),
        has_momentum(h.momentum != 0.0),
        nesterov(h.nesterov),
        first_step(h.step == 1) {}
};

// kMode: 0 plain, 1 momentum (first step: b = g), 2 momentum (later steps).
// kNesterov a template flag too: no loop-invariant test inside the loop.
template <class T, int kMode, bool kNesterov, bool kStats, int kExtras>
FASTOPT_NOINLINE void sgd_span(const SgdScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict b,
              std::int64_t n, double (&sums)[kStatFields]) {
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decay = s.decay, tau = s.tau, lr = s.lr, momentum = s.momentum, damp = s.one_minus_dampening;
  double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
  for (std::int64_t i = 0; i < n; ++i) {
    const T g_raw = g[i], param0 = p[i];
    T grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const T param = kExtras == kAllExtras ? param0 * decay : param0;
    if constexpr (kMode != 0) {
      T buf = grad;
      if constexpr (kMode == 2) buf = momentum * b[i] + damp * grad;
      b[i] = buf;
      grad = kNesterov ? grad + momentum * buf : buf;
    }
    const T updated = prox_l1<kExtras>(param - lr * grad, tau);
    p[i] = updated;
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  }
  if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
}

}  // namespace detail

template <class T>
void sgd(const Batch<T>& batch, const SgdHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::SgdScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    T* buf = role_ptr(batch, kSgdMomentumBuffer, t);
    double sums[kStatFields] = {};
    auto run = [&](auto mode, auto nesterov, auto stats, auto extras) {
      detail::sgd_span<T, decltype(mode)::value, decltype(nesterov)::value, decltype(stats)::value,
                       decltype(extras)::value>(s, role_ptr(batch, kSgdParam, t) + b, role_ptr(batch, kSgdGrad, t) + b,
                                                buf ? buf + b : nullptr, e - b, sums);
    };
    // Nesterov needs momentum (validated), so plain SGD has one version only.
    auto with_momentum = [&](auto mode, auto stats, auto extras) {
      if (s.nesterov) run(mode, std::true_type{}, stats, extras);
      else run(mode, std::false_type{}, stats, extras);
    };
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      if (!s.has_momentum) run(std::integral_constant<int, 0>{}, std::false_type{}, stats, extras);
      else if (s.first_step) with_momentum(std::integral_constant<int, 1>{}, stats, extras);
      else with_momentum(std::integral_constant<int, 2>{}, stats, extras);
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
