// Stochastic gradient descent with momentum, dampening and Nesterov momentum
// (Sutskever et al. 2013, torch.optim.SGD form), one fused pass over p, g, b.
//
//   g = -g if maximize;  g = g + wd*p
//   if momentum != 0:  b = g at t == 1, else b = momentum*b + (1-dampening)*g
//                      g = g + momentum*b if nesterov else b
//   p = p - lr*g
#pragma once

#include "kernels/common.hpp"

namespace fastopt {

struct SgdHyper {
  double lr = 1e-3, momentum = 0.0, dampening = 0.0, weight_decay = 0.0;
  bool nesterov = false, maximize = false;
  std::int64_t step = 1;

  void validate() const {
    require_nonnegative(lr, "lr");
    require_nonnegative(momentum, "momentum");
    require_finite(dampening, "dampening");
    require_nonnegative(weight_decay, "weight_decay");
    require(!nesterov || (momentum > 0.0 && dampening == 0.0),
            [&] { return std::string("nesterov momentum requires a momentum > 0 and zero dampening"); });
    require_step(step);
  }
};

enum SgdRole { kSgdParam, kSgdGrad, kSgdMomentumBuffer, kSgdRoles };

namespace FASTOPT_TARGET_NAME {
namespace detail {

template <class T>
struct SgdScalars {
  T sign, wd, lr, momentum, one_minus_dampening;
  bool has_wd, has_momentum, first_step, nesterov;

  explicit SgdScalars(const SgdHyper& h)
      : sign(h.maximize ? T(-1) : T(1)),
        wd(static_cast<T>(h.weight_decay)),
        lr(static_cast<T>(h.lr)),
        momentum(static_cast<T>(h.momentum)),
        one_minus_dampening(static_cast<T>(1.0 - h.dampening)),
        has_wd(h.weight_decay != 0.0),
        has_momentum(h.momentum != 0.0),
        first_step(h.step == 1),
        nesterov(h.nesterov) {}
};

// kMode: 0 plain, 1 momentum (first step: b = g), 2 momentum (later steps).
template <class T, int kMode>
void sgd_span(const SgdScalars<T> s, T* __restrict p, const T* __restrict g, T* __restrict b,
              std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const T param = p[i];
    T grad = g[i] * s.sign;
    if (s.has_wd) grad = grad + s.wd * param;
    if constexpr (kMode != 0) {
      T buf = grad;
      if constexpr (kMode == 2) buf = s.momentum * b[i] + s.one_minus_dampening * grad;
      b[i] = buf;
      grad = s.nesterov ? grad + s.momentum * buf : buf;
    }
    p[i] = param - s.lr * grad;
  }
}

}  // namespace detail

template <class T>
void sgd(const Batch<T>& batch, const SgdHyper* hypers, std::size_t n_hypers) {
  const std::vector<detail::SgdScalars<T>> scalars(hypers, hypers + n_hypers);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e) {
    const auto& s = scalars[hyper_of(batch, t)];
    T* buf = role_ptr(batch, kSgdMomentumBuffer, t);
    auto span = !s.has_momentum ? &detail::sgd_span<T, 0>
                : s.first_step  ? &detail::sgd_span<T, 1>
                                : &detail::sgd_span<T, 2>;
    span(s, role_ptr(batch, kSgdParam, t) + b, role_ptr(batch, kSgdGrad, t) + b, buf ? buf + b : nullptr, e - b);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
