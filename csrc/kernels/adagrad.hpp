// Adagrad (Duchi, Hazan & Singer 2011, torch.optim.Adagrad form), one fused
// pass over p, g, sum.
//
//   g = -g if maximize;  g = g + wd*p;  clr = lr / (1 + (t-1)*lr_decay)
//   sum = sum + g*g;  p = p - clr * g / (sqrt(sum) + eps)
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct AdagradHyper {
  double lr = 1e-2, lr_decay = 0.0, weight_decay = 0.0, eps = 1e-10;
  bool maximize = false;
  std::int64_t step = 1;

  void validate() const {
    require_nonnegative(lr, "lr");
    require_nonnegative(lr_decay, "lr_decay");
    require_nonnegative(weight_decay, "weight_decay");
    require_nonnegative(eps, "eps");
    require_step(step);
  }
};

enum AdagradRole { kAdagradParam, kAdagradGrad, kAdagradSum, kAdagradRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct AdagradScalars {
  T sign, wd, clr, eps;
  bool has_wd;

  explicit AdagradScalars(const AdagradHyper& h)
      : sign(h.maximize ? T(-1) : T(1)),
        wd(static_cast<T>(h.weight_decay)),
        clr(static_cast<T>(h.lr / (1.0 + static_cast<double>(h.step - 1) * h.lr_decay))),
        eps(static_cast<T>(h.eps)),
        has_wd(h.weight_decay != 0.0) {}
};

template <class T>
void adagrad_span(const AdagradScalars<T> s, T* __restrict p, const T* __restrict g,
                  T* __restrict sum, std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T param = p[i];
    T grad = g[i] * s.sign;
    if (s.has_wd) grad = grad + s.wd * param;
    const T acc = sum[i] + grad * grad;
    sum[i] = acc;
    p[i] = param - s.clr * (grad / (std::sqrt(acc) + s.eps));
  }
}

}  // namespace detail

template <class T>
void adagrad(const Batch<T>& batch, const AdagradHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::AdagradScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e) {
    detail::adagrad_span(scalars[hyper_of(batch, t)], role_ptr(batch, kAdagradParam, t) + b,
                         role_ptr(batch, kAdagradGrad, t) + b, role_ptr(batch, kAdagradSum, t) + b, e - b);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
