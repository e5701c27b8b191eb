// RMSprop (Hinton, Coursera lecture 6e; centered form Graves 2013), in the
// torch.optim.RMSprop form, one fused pass over p, g, v (and a, b).
//
//   g = pre(g);  p = p*(1 - lr*wd) if decoupled;  v = alpha*v + (1-alpha)*g*g
//   centered: a = alpha*a + (1-alpha)*g;  avg = sqrt(max(v - a*a, 0)) + eps
//   else:     avg = sqrt(v) + eps
//   momentum > 0: b = momentum*b + g/avg;  p = p - lr*b   else  p = p - lr*g/avg
//   p = prox_l1<kExtras>(p, lr*l1)
//
// The max(., 0) guards the centered variance against a rounding-negative
// value (torch would return NaN there); it changes nothing else.
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct RmspropHyper {
  double lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0.0, momentum = 0.0;
  bool centered = false, maximize = false;
  SharedHyper shared{};

  void validate() const {
    require_nonnegative(lr, "lr");
    require_finite(alpha, "alpha");
    require(0.0 <= alpha && alpha <= 1.0,
            [&] { return std::string("invalid alpha value: " + num(alpha) + " (must be in [0, 1])"); });
    require_nonnegative(eps, "eps");
    require_nonnegative(weight_decay, "weight_decay");
    require_nonnegative(momentum, "momentum");
    shared.validate();
  }
};

enum RmspropRole { kRmspropParam, kRmspropGrad, kRmspropSquareAvg, kRmspropGradAvg, kRmspropMomentumBuffer, kRmspropRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct RmspropScalars {
  SharedScalars<T> pre;
  T decay, tau, lr, alpha, one_minus_alpha, eps, momentum;
  bool centered, has_momentum;

  explicit RmspropScalars(const RmspropHyper& h)
      : pre(h.shared, h.weight_decay, h.maximize),
        decay(static_cast<T>(decoupled_decay(h.shared, h.lr, h.weight_decay))),
        tau(static_cast<T>(h.lr * h.shared.l1)),
        lr(static_cast<T>(h.lr)),
        alpha(static_cast<T>(h.alpha)),
        one_minus_alpha(static_cast<T>(1.0 - h.alpha)),
        eps(static_cast<T>(h.eps)),
        momentum(static_cast<T>(h.momentum)),
        centered(h.centered),
        has_momentum(h.momentum > 0.0) {}
};

template <class T, bool kCentered, bool kMomentum, bool kStats, int kExtras>
FASTOPT_NOINLINE void rmsprop_span(const RmspropScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict v,
                  T* __restrict a, T* __restrict b, std::int64_t n, double (&sums)[kStatFields]) {
  const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, coupled_wd = s.pre.coupled_wd;
  const T decay = s.decay, tau = s.tau, lr = s.lr, alpha = s.alpha, one_minus_alpha = s.one_minus_alpha;
  const T eps = s.eps, momentum = s.momentum;
  for_each_element<T, kStats>(n, sums, [=](auto lane, std::int64_t i, auto& gs, auto& ps, auto& us, auto& nf) {
    using V = decltype(lane);
    const V g_raw = load_as(g + i, lane), param0 = load_as(p + i, lane);
    const V grad = preprocess_grad<kExtras>(g_raw, param0, sign, grad_scale, clip, coupled_wd);
    const V param = kExtras == kAllExtras ? param0 * decay : param0;
    const V vi = alpha * load_as(v + i, lane) + one_minus_alpha * (grad * grad);
    store_to(v + i, vi);
    V var = vi;
    if constexpr (kCentered) {
      const V ai = alpha * load_as(a + i, lane) + one_minus_alpha * grad;
      store_to(a + i, ai);
      var = vi - ai * ai;
      var = var > T(0) ? var : T(0);
    }
    const V avg = square_root(var) + eps;
    V stepped;
    if constexpr (kMomentum) {
      const V bi = momentum * load_as(b + i, lane) + divide(grad, avg);
      store_to(b + i, bi);
      stepped = param - lr * bi;
    } else {
      stepped = param - lr * divide(grad, avg);
    }
    const V updated = prox_l1<kExtras>(stepped, tau);
    store_to(p + i, updated);
    if constexpr (kStats) accumulate_stats(g_raw, param0, updated, gs, ps, us, nf);
  });
}

}  // namespace detail

template <class T>
void rmsprop(const Batch<T>& batch, const RmspropHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::RmspropScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const auto& s = scalars[hyper_of(batch, t)];
    auto offset = [&](int role) { T* q = role_ptr(batch, role, t); return q ? q + b : nullptr; };
    double sums[kStatFields] = {};
    auto run = [&](auto centered, auto momentum, auto stats, auto extras) {
      detail::rmsprop_span<T, decltype(centered)::value, decltype(momentum)::value, decltype(stats)::value, decltype(extras)::value>(
          s, offset(kRmspropParam), offset(kRmspropGrad), offset(kRmspropSquareAvg), offset(kRmspropGradAvg),
          offset(kRmspropMomentumBuffer), e - b, sums);
    };
    with_flags(batch, s.pre.extras, [&](auto stats, auto extras) {
      using Yes = std::true_type;
      using No = std::false_type;
      if (s.centered) s.has_momentum ? run(Yes{}, Yes{}, stats, extras) : run(Yes{}, No{}, stats, extras);
      else s.has_momentum ? run(No{}, Yes{}, stats, extras) : run(No{}, No{}, stats, extras);
    });
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
