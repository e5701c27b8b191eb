// RMSprop (Hinton, Coursera lecture 6e; centered form Graves 2013), in the
// torch.optim.RMSprop form, one fused pass over p, g, v (and a, b).
//
//   g = -g if maximize;  g = g + wd*p;  v = alpha*v + (1-alpha)*g*g
//   centered: a = alpha*a + (1-alpha)*g;  avg = sqrt(max(v - a*a, 0)) + eps
//   else:     avg = sqrt(v) + eps
//   momentum > 0: b = momentum*b + g/avg;  p = p - lr*b   else  p = p - lr*g/avg
//
// The max(., 0) guards the centered variance against a rounding-negative
// value (torch would return NaN there); it changes nothing else.
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct RmspropHyper {
  double lr = 1e-2, alpha = 0.99, eps = 1e-8, weight_decay = 0.0, momentum = 0.0;
  bool centered = false, maximize = false;

  void validate() const {
    require_nonnegative(lr, "lr");
    require_finite(alpha, "alpha");
    require(0.0 <= alpha && alpha <= 1.0,
            [&] { return std::string("invalid alpha value: " + num(alpha) + " (must be in [0, 1])"); });
    require_nonnegative(eps, "eps");
    require_nonnegative(weight_decay, "weight_decay");
    require_nonnegative(momentum, "momentum");
  }
};

enum RmspropRole { kRmspropParam, kRmspropGrad, kRmspropSquareAvg, kRmspropGradAvg, kRmspropMomentumBuffer, kRmspropRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct RmspropScalars {
  T sign, wd, lr, alpha, one_minus_alpha, eps, momentum;
  bool has_wd, centered, has_momentum;

  explicit RmspropScalars(const RmspropHyper& h)
      : sign(h.maximize ? T(-1) : T(1)),
        wd(static_cast<T>(h.weight_decay)),
        lr(static_cast<T>(h.lr)),
        alpha(static_cast<T>(h.alpha)),
        one_minus_alpha(static_cast<T>(1.0 - h.alpha)),
        eps(static_cast<T>(h.eps)),
        momentum(static_cast<T>(h.momentum)),
        has_wd(h.weight_decay != 0.0),
        centered(h.centered),
        has_momentum(h.momentum > 0.0) {}
};

template <class T, bool kCentered, bool kMomentum>
void rmsprop_span(const RmspropScalars<T> s, T* __restrict p, const T* __restrict g,
                  T* __restrict v, T* __restrict a, T* __restrict b, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T param = p[i];
    T grad = g[i] * s.sign;
    if (s.has_wd) grad = grad + s.wd * param;
    const T vi = s.alpha * v[i] + s.one_minus_alpha * (grad * grad);
    v[i] = vi;
    T var = vi;
    if constexpr (kCentered) {
      const T ai = s.alpha * a[i] + s.one_minus_alpha * grad;
      a[i] = ai;
      var = vi - ai * ai;
      var = var > T(0) ? var : T(0);
    }
    const T avg = std::sqrt(var) + s.eps;
    if constexpr (kMomentum) {
      const T bi = s.momentum * b[i] + grad / avg;
      b[i] = bi;
      p[i] = param - s.lr * bi;
    } else {
      p[i] = param - s.lr * (grad / avg);
    }
  }
}

}  // namespace detail

template <class T>
void rmsprop(const Batch<T>& batch, const RmspropHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::RmspropScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e) {
    const auto& s = scalars[hyper_of(batch, t)];
    auto offset = [&](int role) { T* q = role_ptr(batch, role, t); return q ? q + b : nullptr; };
    auto span = s.centered ? (s.has_momentum ? &detail::rmsprop_span<T, true, true> : &detail::rmsprop_span<T, true, false>)
                           : (s.has_momentum ? &detail::rmsprop_span<T, false, true> : &detail::rmsprop_span<T, false, false>);
    span(s, offset(kRmspropParam), offset(kRmspropGrad), offset(kRmspropSquareAvg),
         offset(kRmspropGradAvg), offset(kRmspropMomentumBuffer), e - b);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
