// Dense BFGS (docs/algorithms.md, section 4, "BFGS (dense)"): the lectures'
// quasi-Newton method for small problems, n up to a few thousand (H is n*n
// doubles: 32 MB at n = 2000). Same iteration, line search, stopping tests
// and result as L-BFGS (run_quasi_newton in driver.hpp); only H differs:
//
//   d = -H g;  after an accepted step, with s = x_new - x, y = g_new - g and
//   s'y > eps_mach * (-g's) (L-BFGS's curvature test, passes_curvature_test;
//   the pair is skipped otherwise, and counted):
//     H = (I - rho s y') H (I - rho y s') + rho s s',   rho = 1/(y's)
//   where H = I until the first update, which starts from (y's / y'y) I.
//
// Expanded with u = H y, the update is H += rho*((1 + rho*y'u) s s' - (u s' + s u')):
// one pass over H for u and one for the rank-two update, plus one for H g.
// Row i of every pass is one thread's fixed-order loop, so results do not
// depend on the thread count; the update is written so that H stays exactly
// symmetric.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <vector>

#include "core/batch.hpp"
#include "lbfgs/driver.hpp"

namespace fastopt {

template <class T>
class BfgsDriver {
 public:
  explicit BfgsDriver(std::int64_t n)
      : n_(n), h_(static_cast<std::size_t>(n * n)), d_(static_cast<std::size_t>(n)),
        s_(static_cast<std::size_t>(n)), y_(static_cast<std::size_t>(n)), u_(static_cast<std::size_t>(n)) {
    reset();
  }

  RunTotals totals;

  std::int64_t n() const { return n_; }
  // The inverse-Hessian approximation, n*n row-major.
  const std::vector<double>& inverse_hessian() const { return h_; }

  template <class Objective, class Callback>
  LbfgsResult run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective, Callback&& callback) {
    num_threads_ = opt.num_threads;
    return run_quasi_newton<T>(*this, totals, search_, ws, opt, objective, callback);
  }

  // The Method interface of run_quasi_newton.
  GradientNorms start(const T* g) { return norms_ = norms_of(g); }
  bool empty() const { return identity_; }
  double first_trial(const T* x, const T* g, double alpha0, T* x_trial) {
    if (identity_) {
      for (std::int64_t i = 0; i < n_; ++i) d_[i] = -static_cast<double>(g[i]);
    } else {
      for_rows([&](std::int64_t i) { d_[i] = -row_dot(i, g); });
    }
    move_trial(x, alpha0, x_trial);
    return dot_d(g);
  }
  void move_trial(const T* x, double alpha, T* x_trial) const {
    for (std::int64_t i = 0; i < n_; ++i) x_trial[i] = static_cast<T>(static_cast<double>(x[i]) + alpha * d_[i]);
  }
  double slope(const T* g_trial, const T*, double f_trial, bool) const {
    return std::isfinite(f_trial) ? dot_d(g_trial) : NAN;
  }
  bool accept(const T* x, const T* x_trial, const T* g, const T* g_trial, double, bool) {
    norms_ = norms_of(g_trial);
    double sy = 0, yy = 0, gs = 0;
    for (std::int64_t i = 0; i < n_; ++i) {
      s_[i] = static_cast<double>(x_trial[i]) - static_cast<double>(x[i]);
      y_[i] = static_cast<double>(g_trial[i]) - static_cast<double>(g[i]);
      sy += s_[i] * y_[i];
      yy += y_[i] * y_[i];
      gs += static_cast<double>(g[i]) * s_[i];
    }
    if (!passes_curvature_test(sy, yy, gs)) return false;
    if (identity_) {
      for (std::int64_t i = 0; i < n_; ++i) h_[static_cast<std::size_t>(i * n_ + i)] = sy / yy;
      identity_ = false;
    }
    update(sy);
    return true;
  }
  GradientNorms norms() const { return norms_; }
  bool restart() {
    if (identity_) return false;
    reset();
    return true;
  }

  // H += rho*((1 + rho*y'u) s s' - (u s' + s u')) with u = H y, for the
  // pair in s_, y_ (s'y = sy > 0). Public for the tests' update check.
  void update(double sy) {
    for_rows([&](std::int64_t i) { u_[i] = row_dot(i, y_.data()); });
    double yu = 0;
    for (std::int64_t i = 0; i < n_; ++i) yu += y_[i] * u_[i];
    const double rho = 1.0 / sy, coef = rho * (1.0 + rho * yu);
    for_rows([&](std::int64_t i) {
      double* __restrict row = h_.data() + i * n_;
      const double si = s_[i], ui = u_[i];
      for (std::int64_t j = 0; j < n_; ++j) row[j] += coef * (si * s_[j]) - rho * (ui * s_[j] + si * u_[j]);
    });
  }
  void set_pair(const double* s, const double* y) {
    std::copy(s, s + n_, s_.begin());
    std::copy(y, y + n_, y_.begin());
  }
  void set_inverse_hessian(const double* h) {
    std::copy(h, h + n_ * n_, h_.begin());
    identity_ = false;
  }

 private:
  void reset() {
    std::fill(h_.begin(), h_.end(), 0.0);
    for (std::int64_t i = 0; i < n_; ++i) h_[static_cast<std::size_t>(i * n_ + i)] = 1.0;
    identity_ = true;
  }

  // body(i) for every row; rows split over threads when H is large enough.
  template <class Body>
  void for_rows(Body&& body) const {
#ifdef FASTOPT_HAVE_OPENMP
    int threads = num_threads_ > 0 ? num_threads_ : omp_get_max_threads();
    if (threads > 1 && n_ * n_ >= kParallelGrain) {
#pragma omp parallel for schedule(static) num_threads(threads)
      for (std::int64_t i = 0; i < n_; ++i) body(i);
      return;
    }
#endif
    for (std::int64_t i = 0; i < n_; ++i) body(i);
  }

  template <class V>
  double row_dot(std::int64_t i, const V* v) const {
    const double* __restrict row = h_.data() + i * n_;
    double acc = 0;
    for (std::int64_t j = 0; j < n_; ++j) acc += row[j] * static_cast<double>(v[j]);
    return acc;
  }
  double dot_d(const T* g) const {
    double acc = 0;
    for (std::int64_t i = 0; i < n_; ++i) acc += d_[i] * static_cast<double>(g[i]);
    return acc;
  }
  GradientNorms norms_of(const T* g) const {
    GradientNorms out;
    for (std::int64_t i = 0; i < n_; ++i) {
      const double gi = static_cast<double>(g[i]), a = std::fabs(gi);
      out.g_l1 += a;
      out.g_sq += gi * gi;
      out.g_max = a > out.g_max ? a : out.g_max;
    }
    return out;
  }

  std::int64_t n_;
  std::vector<double> h_, d_, s_, y_, u_;
  bool identity_ = true;
  GradientNorms norms_;
  LineSearch search_;
  int num_threads_ = 0;
};

}  // namespace fastopt
