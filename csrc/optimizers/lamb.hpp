// LAMB (You et al. 2020, "Large Batch Optimization for Deep Learning:
// Training BERT in 76 minutes"; optax.lamb's rule). torch has no LAMB.
// Rule: docs/algorithms.md, section 3.14.
//
//   g = pre(g) (maximize, clipping; no coupled L2: the decay is LAMB's own term)
//   m = b1*m + (1-b1)*g;  v = b2*v + (1-b2)*g*g
//   r = (m/bc1) / (sqrt(v)/sqrt(bc2) + eps) + wd*p              (bc_k = 1 - b_k^t)
//   per array: phi = ||p|| / ||r|| (1 if either is 0);  p = prox_l1(p - lr*phi*r, lr*l1)
//
// Two passes per array, both over chunks of the whole batch in one call:
// pass 1 updates m and v and sums p^2 and r^2 per chunk (ordered_sum,
// simd/reductions.hpp: the same bits for any thread count and target);
// pass 2 recomputes r from the stored m and v (the same bits as pass 1's)
// rather than storing it, which would cost a write and a read of n values.
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"
#include "simd/reductions.hpp"

#include <array>

namespace fastopt {

struct Lamb {
#define FASTOPT_LAMB_HYPERPARAMETERS(X)                                                                \
  X(lr, 1e-3, kNonNegative) FASTOPT_BETAS(X, 0.9, 0.999) X(eps, 1e-6, kNonNegative) FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) \
  FASTOPT_STEP_COUNT(X)
  FASTOPT_DECLARE_OPTIMIZER("lamb", FASTOPT_LAMB_HYPERPARAMETERS, (exp_avg, kSignedMap), (exp_avg_sq, kUnsignedMap));

  static constexpr const char* kOwnWeightDecay = "LAMB's weight_decay is its own term of the update (r + weight_decay*p)";
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Lamb, T> {
  SharedScalars<T> pre;
  T beta1, one_minus_beta1, beta2, one_minus_beta2, inv_bc1, inv_bc2_sqrt, eps, wd, tau;
  double lr;

  explicit Kernel(const Lamb::Hyper& h)
      : pre(h.shared, 0.0, h.maximize, h.lr),
        beta1(static_cast<T>(h.beta1)),
        one_minus_beta1(static_cast<T>(1.0 - h.beta1)),
        beta2(static_cast<T>(h.beta2)),
        one_minus_beta2(static_cast<T>(1.0 - h.beta2)),
        inv_bc1(static_cast<T>(1.0 / (1.0 - std::pow(h.beta1, h.step)))),
        inv_bc2_sqrt(static_cast<T>(1.0 / std::sqrt(1.0 - std::pow(h.beta2, h.step)))),
        eps(static_cast<T>(h.eps)),
        wd(static_cast<T>(h.weight_decay)),
        tau(static_cast<T>(h.lr * h.shared.l1)),
        lr(h.lr) {}

  // The update direction from the new moments: the same expression in both passes.
  T direction(T m, T v, T p) const { return (inv_bc1 * m) / (std::sqrt(v) * inv_bc2_sqrt + eps) + wd * p; }

  // Pass 1 over one chunk: the moments, and the chunk's sums of p^2 and r^2.
  template <int kExtras>
  FASTOPT_NOINLINE static void moments(const Kernel s, const T* __restrict p, const T* __restrict g,
                                       T* __restrict m, T* __restrict v, std::int64_t n, double* sums_out) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip;
    const T beta1 = s.beta1, one_minus_beta1 = s.one_minus_beta1, beta2 = s.beta2, one_minus_beta2 = s.one_minus_beta2;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
      const T grad = preprocess_grad<kExtras>(g[i], p[i], sign, grad_scale, clip, T(0));
      m[i] = beta1 * m[i] + one_minus_beta1 * grad;
      v[i] = beta2 * v[i] + one_minus_beta2 * (grad * grad);
    }
    sums_out[0] = chunk_sum(n, [&](std::int64_t i) { return static_cast<double>(p[i]) * static_cast<double>(p[i]); });
    sums_out[1] = chunk_sum(n, [&](std::int64_t i) {
      const double r = s.direction(m[i], v[i], p[i]);
      return r * r;
    });
  }

  // Pass 2 over one chunk: p = prox_l1(p - step*r, tau), with statistics.
  template <bool kStats, int kExtras>
  FASTOPT_NOINLINE static void update(const Kernel s, T step, T* __restrict p, const T* __restrict g,
                                      const T* __restrict m, const T* __restrict v, std::int64_t n,
                                      double (&sums)[kStatFields]) {
    const T tau = s.tau;
    double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
    for (std::int64_t i = 0; i < n; ++i) {
      const T param0 = p[i];
      const T updated = prox_l1<kExtras>(param0 - step * s.direction(m[i], v[i], param0), tau);
      p[i] = updated;
      if constexpr (kStats) accumulate_stats(g[i], param0, updated, gs, ps, us, nf);
    }
    if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
  }

  static void step(const Batch<T>& batch, const double* hypers, std::size_t n_sets) {
    std::vector<Kernel> scalars;
    for (std::size_t k = 0; k < n_sets; ++k) scalars.emplace_back(hyper_at<Lamb>(hypers, k));
    const Chunks chunks(batch);
    std::vector<double> partials(static_cast<std::size_t>(chunks.count()) * 2);
    auto pointers = [&](int t, std::int64_t b) {
      return std::array<T*, 4>{role_ptr(batch, Lamb::kParam, t) + b, role_ptr(batch, Lamb::kGrad, t) + b,
                               role_ptr(batch, Lamb::exp_avg, t) + b, role_ptr(batch, Lamb::exp_avg_sq, t) + b};
    };
    for_each_chunk(batch, chunks, [&](int t, std::int64_t b, std::int64_t e, std::int64_t c, int) {
      const Kernel& s = scalars[hyper_of(batch, t)];
      const auto x = pointers(t, b);
      double* out = partials.data() + 2 * c;
      if (s.pre.extras == kAllExtras) moments<kAllExtras>(s, x[0], x[1], x[2], x[3], e - b, out);
      else moments<kNoExtras>(s, x[0], x[1], x[2], x[3], e - b, out);
    });
    std::vector<T> steps(static_cast<std::size_t>(batch.n_tensors));
    for (int t = 0; t < batch.n_tensors; ++t) {
      const double p_sq = chunks.tensor_sum(partials, t, 2, 0), r_sq = chunks.tensor_sum(partials, t, 2, 1);
      const double phi = p_sq > 0.0 && r_sq > 0.0 ? std::sqrt(p_sq) / std::sqrt(r_sq) : 1.0;
      steps[static_cast<std::size_t>(t)] = static_cast<T>(scalars[hyper_of(batch, t)].lr * phi);
    }
    for_each_chunk(batch, chunks, [&](int t, std::int64_t b, std::int64_t e, std::int64_t, int unit) {
      const Kernel& s = scalars[hyper_of(batch, t)];
      const auto x = pointers(t, b);
      double sums[kStatFields] = {};
      with_flags(batch, s.pre.extras == kAllExtras ? kAllExtras : kNoExtras, [&](auto stats, auto extras) {
        update<decltype(stats)::value, decltype(extras)::value>(s, steps[static_cast<std::size_t>(t)], x[0], x[1],
                                                                x[2], x[3], e - b, sums);
      });
      if (batch.unit_stats) add_unit_stats(batch, unit, sums);
    });
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Lamb)
