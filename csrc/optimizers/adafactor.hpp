// Adafactor (Shazeer & Stern 2018, "Adafactor: Adaptive Learning Rates with
// Sublinear Memory Cost"), torch.optim.Adafactor's variant (torch 2.13).
// Rule: docs/algorithms.md, section 3.12.
//
//   w = t^beta2_decay;  rho = min(lr, 1/sqrt(t));  alpha = max(eps2, RMS(p)) * rho   (p before the decay)
//   g = pre(g) (maximize, clipping);  p = p*(1 - lr*wd)  (decoupled, always)
//   2-D and up, per matrix of the last two dimensions (R x C):
//     row_var = lerp(row_var, mean_c(g^2), w);  col_var = lerp(col_var, mean_r(g^2), w)
//     V[r, c] = row_var[r]*col_var[c] / max(mean_r(row_var), eps1)
//   below 2-D: variance = lerp(variance, g*g, w);  V = variance
//   u = g / sqrt(max(V, eps1^2));  p = prox_l1(p - alpha/max(1, RMS(u)/d) * u, lr*l1)
// eps1 None means the dtype's machine epsilon. lerp is torch's two-sided form.
//
// The sums run in double in a fixed order (docs/algorithms.md): RMS(p),
// RMS(u) and each row's sum by ordered_sum, each column's sum over the rows
// in row order, so results do not depend on threads or targets. Three
// passes over p and g per array (the norm of p, the moments, the update);
// u is recomputed in the last rather than stored.
#pragma once

#include "core/registry.hpp"
#include "simd/elementwise.hpp"
#include "simd/reductions.hpp"

#include <limits>

namespace fastopt {

struct Adafactor {
#define FASTOPT_ADAFACTOR_HYPERPARAMETERS(X)                                                         \
  X(lr, 1e-2, kNonNegative) X(beta2_decay, -0.8, kNonPositive)                                       \
  X(eps1, std::nan(""), kOptionalNonNegative, Origin::kHyper, "eps (index 0)", nullptr, "eps")       \
  X(eps2, 1e-3, kNonNegative, Origin::kHyper, "eps (index 1)", nullptr, "eps")                       \
  X(d, 1.0, kAtLeastOne, Origin::kHyper, "d (clipping threshold)") FASTOPT_WEIGHT_DECAY_AND_MAXIMIZE(X) \
  FASTOPT_STEP_COUNT(X)
  // The factored second moment: one value per row and one per column of
  // each matrix of a parameter of two or more dimensions, else per element.
  FASTOPT_DECLARE_OPTIMIZER("adafactor", FASTOPT_ADAFACTOR_HYPERPARAMETERS,
                            (row_var, kNoMap, StateShape::kRowsOfParam), (col_var, kNoMap, StateShape::kColsOfParam),
                            (variance));

  static bool needs_state(int role, const Hyper&, int ndim) { return (role == variance) == (ndim < 2); }
  static constexpr const char* kOwnWeightDecay = "Adafactor's weight_decay is always decoupled (p*(1 - lr*weight_decay))";
};

namespace FASTOPT_TARGET_NAME {

template <class T>
struct Kernel<Adafactor, T> {
  SharedScalars<T> pre;
  double lr, w, rho, eps1, eps2, d;
  T decay, tau, eps1_t, eps1_sq, w_t, one_minus_w;

  explicit Kernel(const Adafactor::Hyper& h)
      : pre(h.shared, 0.0, h.maximize, h.lr),
        lr(h.lr),
        w(std::pow(h.step, h.beta2_decay)),
        rho(std::min(h.lr, 1.0 / std::pow(h.step, 0.5))),
        eps1(std::isnan(h.eps1) ? static_cast<double>(std::numeric_limits<T>::epsilon()) : h.eps1),
        eps2(h.eps2),
        d(h.d),
        decay(static_cast<T>(1.0 - h.lr * h.weight_decay)),
        tau(static_cast<T>(h.lr * h.shared.l1)),
        eps1_t(static_cast<T>(eps1)),
        eps1_sq(static_cast<T>(eps1 * eps1)),
        w_t(static_cast<T>(w)),
        one_minus_w(static_cast<T>(1.0 - w)) {}

  // torch.lerp: a + w*(b - a) for w < 0.5, b - (b - a)*(1 - w) otherwise.
  T lerp(T a, T b) const { return w < 0.5 ? a + w_t * (b - a) : b - (b - a) * one_minus_w; }

  // The gradient as the rule uses it (maximize, clipping), from locals.
  static T grad_of(T g, T p, T sign, T grad_scale, T clip) {
    return preprocess_grad<kAllExtras>(g, p, sign, grad_scale, clip, T(0));
  }
  // np.maximum(x, floor) with a finite floor: NaN propagates.
  static T at_least(T x, T floor) {
    return x > floor || x != x ? x : floor;
  }

  // One parameter array, its gradient and state, and its dimensions.
  struct Array {
    T *p, *g, *row_var, *col_var, *variance;
    std::int64_t n, rows, cols;  // rows = cols = 0 below 2-D
  };

  static Array array_of(const Batch<T>& batch, int t) {
    const std::int64_t* dims = batch.dims + 3 * t;
    return {role_ptr(batch, Adafactor::kParam, t), role_ptr(batch, Adafactor::kGrad, t),
            role_ptr(batch, Adafactor::row_var, t), role_ptr(batch, Adafactor::col_var, t),
            role_ptr(batch, Adafactor::variance, t), batch.sizes[t], dims[1], dims[2]};
  }

  // Runs body(i) for i in [0, n) on the batch's threads (static schedule:
  // each i is one independent piece of work, so the split changes nothing).
  template <class Body>
  static void parallel_for(const Batch<T>& batch, std::int64_t n, std::int64_t work, Body&& body) {
#ifdef FASTOPT_HAVE_OPENMP
    int threads = batch.num_threads > 0 ? batch.num_threads : omp_get_max_threads();
    threads = static_cast<int>(std::min<std::int64_t>({threads, std::max<std::int64_t>(1, work / kParallelGrain), n}));
    if (threads > 1) {
      *batch.threads_used = std::max(*batch.threads_used, threads);
#pragma omp parallel for schedule(static) num_threads(threads)
      for (std::int64_t i = 0; i < n; ++i) body(i);
      return;
    }
#endif
    for (std::int64_t i = 0; i < n; ++i) body(i);
  }

  // Squares of the used gradient, in double, for n elements.
  FASTOPT_NOINLINE static void grad_squares(const Kernel s, const T* __restrict g, const T* __restrict p,
                                            std::int64_t n, double* __restrict out) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) {
      const double x = grad_of(g[i], p[i], sign, grad_scale, clip);
      out[i] = x * x;
    }
  }

  // Each column's sum of g^2 over the rows, in row order, for columns [c0, c1).
  FASTOPT_NOINLINE static void column_sums(const Kernel s, const T* g, const T* p, std::int64_t rows,
                                           std::int64_t cols, std::int64_t c0, std::int64_t c1,
                                           double* __restrict sums) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip;
    for (std::int64_t r = 0; r < rows; ++r) {
      const T* __restrict gr = g + r * cols;
      const T* __restrict pr = p + r * cols;
#pragma omp simd
      for (std::int64_t c = c0; c < c1; ++c) {
        const double x = grad_of(gr[c], pr[c], sign, grad_scale, clip);
        sums[c - c0] += x * x;
      }
    }
  }

  // The factored second moments of one R x C matrix; returns
  // max(mean_r(row_var), eps1).
  static T factored_moments(const Batch<T>& batch, const Kernel& s, const T* p, const T* g, T* row_var,
                            T* col_var, std::int64_t rows, std::int64_t cols) {
    parallel_for(batch, rows, rows * cols, [&](std::int64_t r) {
      std::vector<double> squares(static_cast<std::size_t>(cols));
      grad_squares(s, g + r * cols, p + r * cols, cols, squares.data());
      const double sum = ordered_sum(cols, [&](std::int64_t c) { return squares[static_cast<std::size_t>(c)]; });
      row_var[r] = s.lerp(row_var[r], static_cast<T>(sum / static_cast<double>(cols)));
    });
    constexpr std::int64_t kBlock = 256;
    parallel_for(batch, (cols + kBlock - 1) / kBlock, rows * cols, [&](std::int64_t k) {
      const std::int64_t c0 = k * kBlock, c1 = std::min(cols, c0 + kBlock);
      double sums[kBlock] = {};
      column_sums(s, g, p, rows, cols, c0, c1, sums);
      for (std::int64_t c = c0; c < c1; ++c)
        col_var[c] = s.lerp(col_var[c], static_cast<T>(sums[c - c0] / static_cast<double>(rows)));
    });
    double row_total = 0.0;
    for (std::int64_t r = 0; r < rows; ++r) row_total += static_cast<double>(row_var[r]);
    return at_least(static_cast<T>(row_total / static_cast<double>(rows)), s.eps1_t);
  }

  // The unfactored second moment of n elements.
  FASTOPT_NOINLINE static void full_moments(const Kernel s, const T* __restrict g, const T* __restrict p,
                                            T* __restrict variance, std::int64_t n) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip;
    const T w = s.w_t, one_minus_w = s.one_minus_w;
    const bool near_start = s.w < 0.5;
    if (near_start) {
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T grad = grad_of(g[i], p[i], sign, grad_scale, clip);
        variance[i] = variance[i] + w * (grad * grad - variance[i]);
      }
    } else {
#pragma omp simd
      for (std::int64_t i = 0; i < n; ++i) {
        const T grad = grad_of(g[i], p[i], sign, grad_scale, clip);
        variance[i] = grad * grad - (grad * grad - variance[i]) * one_minus_w;
      }
    }
  }

  // u = g / sqrt(max(V, eps1^2)) for n consecutive elements whose estimate
  // is V = row_var * col_var[i] / row_mean (one row of a matrix) ...
  FASTOPT_NOINLINE static void factored_directions(const Kernel s, const T* __restrict g, const T* __restrict p,
                                                   T row_var, const T* __restrict col_var, T row_mean, std::int64_t n,
                                                   T* __restrict u) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, eps1_sq = s.eps1_sq;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i)
      u[i] = grad_of(g[i], p[i], sign, grad_scale, clip) / std::sqrt(at_least((row_var * col_var[i]) / row_mean, eps1_sq));
  }

  // ... or V = variance[i].
  FASTOPT_NOINLINE static void full_directions(const Kernel s, const T* __restrict g, const T* __restrict p,
                                               const T* __restrict variance, std::int64_t n, T* __restrict u) {
    const T sign = s.pre.sign, grad_scale = s.pre.grad_scale, clip = s.pre.clip, eps1_sq = s.eps1_sq;
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i)
      u[i] = grad_of(g[i], p[i], sign, grad_scale, clip) / std::sqrt(at_least(variance[i], eps1_sq));
  }

  // u for elements [b, e) of an array (e - b <= kSumChunk), into u.
  static void directions(const Kernel& s, const Array& a, const std::vector<T>& row_means, std::int64_t b,
                         std::int64_t e, T* u) {
    if (a.rows == 0) return full_directions(s, a.g + b, a.p + b, a.variance + b, e - b, u);
    for (std::int64_t k = b; k < e;) {
      const std::int64_t row = k / a.cols, c = k % a.cols, len = std::min(e - k, a.cols - c);
      const std::int64_t matrix = row / a.rows;
      factored_directions(s, a.g + k, a.p + k, a.row_var[row], a.col_var + matrix * a.cols + c,
                          row_means[static_cast<std::size_t>(matrix)], len, u + (k - b));
      k += len;
    }
  }

  // p = prox_l1(p*decay - step*u, tau) for n elements, with statistics.
  template <bool kStats>
  FASTOPT_NOINLINE static void update(const Kernel s, T step, T* __restrict p, const T* __restrict g,
                                      const T* __restrict u, std::int64_t n, double (&sums)[kStatFields]) {
    const T decay = s.decay, tau = s.tau;
    double gs = 0, ps = 0, us = 0, nf = 0;
#pragma omp simd reduction(+ : gs, ps, us, nf)
    for (std::int64_t i = 0; i < n; ++i) {
      const T param0 = p[i];
      const T updated = prox_l1<kAllExtras>(param0 * decay - step * u[i], tau);
      p[i] = updated;
      if constexpr (kStats) accumulate_stats(g[i], param0, updated, gs, ps, us, nf);
    }
    if constexpr (kStats) add_sums(sums, gs, ps, us, nf);
  }

  static void step_array(const Batch<T>& batch, const Kernel& s, const Array& a, double* stats) {
    const std::int64_t chunks = (a.n + kSumChunk - 1) / kSumChunk;
    std::vector<double> partial(static_cast<std::size_t>(chunks) * kStatFields);
    auto in_chunks = [&](auto&& body) {  // body(chunk, begin, end)
      parallel_for(batch, chunks, a.n, [&](std::int64_t c) { body(c, c * kSumChunk, std::min(a.n, (c + 1) * kSumChunk)); });
    };
    auto chunk_total = [&] {
      double total = 0.0;
      for (std::int64_t c = 0; c < chunks; ++c) total += partial[static_cast<std::size_t>(c * kStatFields)];
      return total;
    };
    in_chunks([&](std::int64_t c, std::int64_t b, std::int64_t e) {
      partial[static_cast<std::size_t>(c * kStatFields)] = chunk_sum(e - b, [&](std::int64_t i) {
        return static_cast<double>(a.p[b + i]) * static_cast<double>(a.p[b + i]);
      });
    });
    const double n = static_cast<double>(a.n);
    const double alpha = std::max(s.eps2, std::sqrt(chunk_total()) / std::sqrt(n)) * s.rho;
    const std::int64_t matrices = a.rows > 0 ? a.n / (a.rows * a.cols) : 0;
    std::vector<T> row_means(static_cast<std::size_t>(matrices));
    for (std::int64_t m = 0; m < matrices; ++m) {
      const std::int64_t offset = m * a.rows * a.cols;
      row_means[static_cast<std::size_t>(m)] = factored_moments(
          batch, s, a.p + offset, a.g + offset, a.row_var + m * a.rows, a.col_var + m * a.cols, a.rows, a.cols);
    }
    if (a.rows == 0) in_chunks([&](std::int64_t, std::int64_t b, std::int64_t e) {
      full_moments(s, a.g + b, a.p + b, a.variance + b, e - b);
    });
    in_chunks([&](std::int64_t c, std::int64_t b, std::int64_t e) {
      T u[kSumChunk];
      directions(s, a, row_means, b, e, u);
      partial[static_cast<std::size_t>(c * kStatFields)] =
          chunk_sum(e - b, [&](std::int64_t i) { return static_cast<double>(u[i]) * static_cast<double>(u[i]); });
    });
    const double denom = std::max(1.0, std::sqrt(chunk_total()) / (std::sqrt(n) * s.d));
    const T step_size = static_cast<T>(alpha / denom);
    in_chunks([&](std::int64_t c, std::int64_t b, std::int64_t e) {
      T u[kSumChunk];
      directions(s, a, row_means, b, e, u);
      double sums[kStatFields] = {};
      if (stats) update<true>(s, step_size, a.p + b, a.g + b, u, e - b, sums);
      else update<false>(s, step_size, a.p + b, a.g + b, u, e - b, sums);
      std::copy(sums, sums + kStatFields, partial.begin() + c * kStatFields);
    });
    if (stats)  // in chunk order: the same bits for any thread count
      for (std::int64_t c = 0; c < chunks; ++c)
        for (int f = 0; f < kStatFields; ++f) stats[f] += partial[static_cast<std::size_t>(c * kStatFields + f)];
  }

  static void step(const Batch<T>& batch, const double* hypers, std::size_t n_sets) {
    std::vector<Kernel> scalars;
    for (std::size_t k = 0; k < n_sets; ++k) scalars.emplace_back(hyper_at<Adafactor>(hypers, k));
    *batch.threads_used = 1;
    for (int t = 0; t < batch.n_tensors; ++t)
      if (batch.sizes[t] > 0)  // an empty array has nothing to update (its row state may be (R, 1) still)
        step_array(batch, scalars[hyper_of(batch, t)], array_of(batch, t), batch.unit_stats);
  }
};

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt

FASTOPT_REGISTER_OPTIMIZER(Adafactor)
