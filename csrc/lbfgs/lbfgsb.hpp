// L-BFGS-B: L-BFGS with box bounds lo <= x <= hi (docs/algorithms.md, section 4.3).
//
// R. H. Byrd, P. Lu, J. Nocedal and C. Zhu (1995), "A limited memory algorithm
// for bound constrained optimization", SIAM J. Sci. Comput. 16(5) 1190-1208,
// with J. L. Morales and J. Nocedal (2011), "Remark on Algorithm 778", ACM
// TOMS 38(1). Written from the papers; the option names, defaults, stopping
// tests and messages are SciPy's (scipy.optimize.minimize(method="L-BFGS-B")).
//
// The quadratic model at x uses the compact form of the L-BFGS matrix
//   B = theta*I - W M W',  W = [Y  theta*S] (n x 2k),  M = K^-1,
//   K = [ -D   L'        ]     D = diag(s_i'y_i), L_ij = s_i'y_j (i > j),
//       [  L   theta*S'S ],    theta = y'y / s'y of the newest pair.
// One iteration:
//   1. generalized Cauchy point x_c: the first local minimizer of the model
//      along the projected steepest-descent path P(x - t*g), walking its
//      breakpoints in increasing order (a heap) with O(k^2) work per
//      breakpoint passed;
//   2. subspace minimization (direct primal method) of the model over the
//      variables free at x_c, with the active ones held at their bounds; the
//      minimizer is projected into the box, and if x_bar - x is then not a
//      descent direction the step is truncated at the box instead
//      (Morales-Nocedal);
//   3. a Moré-Thuente line search along d = x_bar - x (c1 = 1e-3, c2 = 0.9,
//      L-BFGS-B's), its largest step the one that keeps x in the box; the
//      first trial is 1 (x_bar exactly), except on the first iteration of a
//      problem that is not boxed on every side: min(1/||d||_2, 1);
//   4. the pair (s, y) is stored unless s'y <= eps_mach * (-g's).
// Stopping: ||P(x - g) - x||_inf <= gtol (the projected gradient);
// (f_k - f_k+1)/max(|f_k|, |f_k+1|, 1) <= ftol; maxiter; maxfun; a callback.
// Numerical trouble never throws: a failed line search, a direction that does
// not descend or a singular small system clears the memory and retries; with
// an empty memory it stops with status 2 at the last accepted point.
//
// Cost per iteration: two streams over the stored pairs. One at the accepted
// point forms the new pair's products (over all variables and over the free
// set) and W'd for the next walk; one after the walk writes x_bar. The walk
// and the small solves read no pair. Passes are split over threads in fixed
// blocks, so every result is independent of the thread count.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <string>
#include <utility>
#include <vector>

#include "lbfgs/blocks.hpp"
#include "lbfgs/driver.hpp"

namespace fastopt {

// The box. Infinite sides are unbounded; lo <= hi (checked by the caller).
template <class T>
struct BoxBounds {
  std::vector<T> lo, hi;
  bool constrained = false;  // some side is finite
  bool boxed = false;        // every variable is bounded on both sides

  void set(const T* lower, const T* upper, std::int64_t n) {
    lo.assign(lower, lower + n);
    hi.assign(upper, upper + n);
    constrained = false;
    boxed = true;
    for (std::int64_t i = 0; i < n; ++i) {
      const bool has_lo = std::isfinite(static_cast<double>(lo[i])), has_hi = std::isfinite(static_cast<double>(hi[i]));
      constrained = constrained || has_lo || has_hi;
      boxed = boxed && has_lo && has_hi;
    }
  }
  T clip(std::int64_t i, T v) const { return std::min(std::max(v, lo[i]), hi[i]); }
};

// Small dense linear algebra on row-major w x w matrices (w = 2k <= 2m).
namespace small {

// y = A x.
inline void matvec(const std::vector<double>& a, int w, const double* x, double* y) {
  for (int i = 0; i < w; ++i) {
    double acc = 0;
    for (int j = 0; j < w; ++j) acc += a[i * w + j] * x[j];
    y[i] = acc;
  }
}

inline double dot(const double* a, const double* b, int w) {
  double acc = 0;
  for (int i = 0; i < w; ++i) acc += a[i] * b[i];
  return acc;
}

// In-place Cholesky factor (lower, row-major) of a k x k symmetric matrix;
// false unless it is numerically positive definite.
inline bool cholesky(std::vector<double>& a, int k) {
  for (int j = 0; j < k; ++j) {
    double diag = a[j * k + j];
    for (int l = 0; l < j; ++l) diag -= a[j * k + l] * a[j * k + l];
    if (!(diag > 0.0) || !std::isfinite(diag)) return false;
    const double root = std::sqrt(diag);
    a[j * k + j] = root;
    for (int i = j + 1; i < k; ++i) {
      double acc = a[i * k + j];
      for (int l = 0; l < j; ++l) acc -= a[i * k + l] * a[j * k + l];
      a[i * k + j] = acc / root;
    }
  }
  return true;
}

// x = A^-1 b from the Cholesky factor of A (in place).
inline void cholesky_solve(const std::vector<double>& factor, int k, double* x) {
  for (int i = 0; i < k; ++i) {
    double acc = x[i];
    for (int l = 0; l < i; ++l) acc -= factor[i * k + l] * x[l];
    x[i] = acc / factor[i * k + i];
  }
  for (int i = k - 1; i >= 0; --i) {
    double acc = x[i];
    for (int l = i + 1; l < k; ++l) acc -= factor[l * k + i] * x[l];
    x[i] = acc / factor[i * k + i];
  }
}

// The symmetric indefinite 2k x 2k systems of L-BFGS-B,
//   [ -P  B' ] [a]   [u1]
//   [  B  C  ] [b] = [u2],   P positive definite, C + B P^-1 B' positive definite,
// solved by block elimination with two Cholesky factors (the LEL' scheme of
// Byrd et al. 1995): b = (C + B P^-1 B')^-1 (u2 + B P^-1 u1), a = P^-1 (B'b - u1).
// Factoring the blocks keeps the solve accurate where the whole matrix is
// badly conditioned (more pairs than variables make S'S singular).
class SaddleSolver {
 public:
  // P, B, C: k x k row-major. False if a factor is not positive definite.
  bool factor(std::vector<double> p, const std::vector<double>& b, const std::vector<double>& c, int k) {
    k_ = k;
    p_ = std::move(p);
    b_ = b;
    if (!cholesky(p_, k)) return false;
    // Schur complement C + B P^-1 B', column by column of B'.
    schur_ = c;
    std::vector<double> col(static_cast<std::size_t>(k));
    for (int j = 0; j < k; ++j) {
      for (int l = 0; l < k; ++l) col[l] = b_[j * k + l];  // row j of B = column j of B'
      cholesky_solve(p_, k, col.data());
      for (int i = 0; i < k; ++i) {
        double acc = 0;
        for (int l = 0; l < k; ++l) acc += b_[i * k + l] * col[l];
        schur_[i * k + j] += acc;
      }
    }
    return cholesky(schur_, k);
  }

  // out = the solution for u = [u1; u2] (2k).
  void solve(const double* u, double* out) const {
    const int k = k_;
    std::vector<double> t(u, u + k);
    cholesky_solve(p_, k, t.data());  // P^-1 u1
    double* a = out;
    double* b = out + k;
    for (int i = 0; i < k; ++i) {
      double acc = u[k + i];
      for (int l = 0; l < k; ++l) acc += b_[i * k + l] * t[l];
      b[i] = acc;
    }
    cholesky_solve(schur_, k, b);
    for (int i = 0; i < k; ++i) {
      double acc = -u[i];
      for (int l = 0; l < k; ++l) acc += b_[l * k + i] * b[l];  // (B'b)_i
      a[i] = acc;
    }
    cholesky_solve(p_, k, a);
  }

 private:
  int k_ = 0;
  std::vector<double> p_, b_, schur_;
};

}  // namespace small

// The products of a new pair (s, y) that the memory keeps: with each stored
// pair i (oldest first), over all variables and over the free set Z the
// free-variable products are kept for; and with itself.
struct NewPairProducts {
  std::vector<double> sy, ys, ss;     // s'y_i, y's_i, s's_i
  std::vector<double> zsy, zys, zss, zyy;  // the same over Z, and y'ZZ'y_i
  double self_sy = 0, self_yy = 0, self_ss = 0;
  double self_zsy = 0, self_zyy = 0, self_zss = 0;
  void resize(int k) {
    for (auto* v : {&sy, &ys, &ss, &zsy, &zys, &zss, &zyy}) v->assign(static_cast<std::size_t>(k), 0.0);
  }
};

// The stored pairs for L-BFGS-B: S and Y (k <= m columns of n, oldest
// first, in m + 1 slots so the candidate pair has a home), S'Y and S'S in
// full, theta, K factored (M = K^-1 is applied by solves), and the products over the free
// variables Z that the subspace step needs (Y'ZZ'Y, S'ZZ'Y, S'ZZ'S),
// updated as pairs come and go and as variables enter or leave Z.
template <class T>
class BoxedMemory {
 public:
  BoxedMemory(std::int64_t n, int m)
      : n_(n), m_(m), s_(static_cast<std::size_t>((m + 1) * n)), y_(static_cast<std::size_t>((m + 1) * n)) {
    for (auto* mat : {&sy_, &ss_, &zyy_, &zsy_, &zss_}) mat->assign(static_cast<std::size_t>(m * m), 0.0);
  }

  std::int64_t n() const { return n_; }
  int capacity() const { return m_; }
  int size() const { return static_cast<int>(order_.size()); }
  double theta() const { return theta_; }
  // out = M v = K^-1 v (2k).
  void apply_middle(const double* v, double* out) const { middle_.solve(v, out); }
  // The subspace system K - W'ZZ'W/theta (section 5.1 of Byrd et al.),
  // factored; false if it is not usable.
  bool factor_subspace(small::SaddleSolver& solver) const {
    const int k = size();
    std::vector<double> p(static_cast<std::size_t>(k * k)), b(p.size()), c(p.size());
    for (int i = 0; i < k; ++i)
      for (int j = 0; j < k; ++j) {
        // -P = -D - Y'ZZ'Y/theta;  B = L - S'ZZ'Y;  C = theta*(S'S - S'ZZ'S) = theta*S'AA'S
        p[i * k + j] = (i == j ? sy_[i * m_ + i] : 0.0) + zyy_[i * m_ + j] / theta_;
        b[i * k + j] = (i > j ? sy_[i * m_ + j] : 0.0) - zsy_[i * m_ + j];
        c[i * k + j] = theta_ * (ss_[i * m_ + j] - zss_[i * m_ + j]);
      }
    return solver.factor(std::move(p), b, c, k);
  }

  const T* s(int i) const { return s_.data() + order_[i] * n_; }
  const T* y(int i) const { return y_.data() + order_[i] * n_; }
  T* spare_s() { return s_.data() + spare_ * n_; }
  T* spare_y() { return y_.data() + spare_ * n_; }

  void clear() {
    order_.clear();
    spare_ = 0;
    theta_ = 1.0;
  }

  // Makes the spare pair the newest, given its products (oldest stored pair
  // first; the oldest is dropped when the memory is full). Returns false
  // (memory cleared) if K is singular.
  bool push_spare(const NewPairProducts& p) {
    int first = 0;
    if (size() == m_) {
      order_.erase(order_.begin());
      const int k = size();
      for (auto* mat : {&sy_, &ss_, &zyy_, &zsy_, &zss_})
        for (int i = 0; i < k; ++i)
          for (int j = 0; j < k; ++j) (*mat)[i * m_ + j] = (*mat)[(i + 1) * m_ + j + 1];
      first = 1;
    }
    const int k = size();
    for (int i = 0; i < k; ++i) {
      const int src = i + first;
      sy_[k * m_ + i] = p.sy[src], sy_[i * m_ + k] = p.ys[src];    // s_new'y_i, s_i'y_new
      zsy_[k * m_ + i] = p.zsy[src], zsy_[i * m_ + k] = p.zys[src];
      ss_[k * m_ + i] = ss_[i * m_ + k] = p.ss[src];
      zss_[k * m_ + i] = zss_[i * m_ + k] = p.zss[src];
      zyy_[k * m_ + i] = zyy_[i * m_ + k] = p.zyy[src];
    }
    sy_[k * m_ + k] = p.self_sy, ss_[k * m_ + k] = p.self_ss;
    zsy_[k * m_ + k] = p.self_zsy, zss_[k * m_ + k] = p.self_zss, zyy_[k * m_ + k] = p.self_zyy;
    order_.push_back(spare_);
    spare_ = free_slot();
    theta_ = p.self_yy / p.self_sy;
    if (form_middle()) return true;
    clear();
    return false;
  }

  // Variable i enters (sign +1) or leaves (-1) the free set Z.
  void move_variable(std::int64_t i, double sign) {
    const int k = size();
    std::vector<double>& sv = scratch_s_;
    std::vector<double>& yv = scratch_y_;
    sv.resize(static_cast<std::size_t>(k)), yv.resize(static_cast<std::size_t>(k));
    for (int a = 0; a < k; ++a) sv[a] = static_cast<double>(s(a)[i]), yv[a] = static_cast<double>(y(a)[i]);
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b) {
        zyy_[a * m_ + b] += sign * yv[a] * yv[b];
        zsy_[a * m_ + b] += sign * sv[a] * yv[b];
        zss_[a * m_ + b] += sign * sv[a] * sv[b];
      }
  }

  // Replaces the free-set products (recomputed from scratch by the caller).
  void set_free_products(const std::vector<double>& zyy, const std::vector<double>& zsy, const std::vector<double>& zss) {
    const int k = size();
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b)
        zyy_[a * m_ + b] = zyy[a * k + b], zsy_[a * m_ + b] = zsy[a * k + b], zss_[a * m_ + b] = zss[a * k + b];
  }

  // G = W'ZZ'W for W = [Y theta*S], 2k x 2k.
  std::vector<double> free_gram() const {
    const int k = size(), w = 2 * k;
    std::vector<double> g(static_cast<std::size_t>(w * w));
    for (int a = 0; a < k; ++a)
      for (int b = 0; b < k; ++b) {
        g[a * w + b] = zyy_[a * m_ + b];
        g[(k + a) * w + b] = theta_ * zsy_[a * m_ + b];      // theta s_a'ZZ'y_b
        g[b * w + k + a] = theta_ * zsy_[a * m_ + b];
        g[(k + a) * w + k + b] = theta_ * theta_ * zss_[a * m_ + b];
      }
    return g;
  }

  // Stores the pair (s, y) computing its products here (serially), with Z
  // given by `free`: the tests' way to give the memory chosen pairs.
  bool push_pair(const T* s, const T* y, const std::uint8_t* free) {
    std::copy(s, s + n_, spare_s());
    std::copy(y, y + n_, spare_y());
    const int k = size();
    auto dot = [&](const T* a, const T* b, bool masked) {
      double acc = 0;
      for (std::int64_t i = 0; i < n_; ++i)
        if (!masked || free[i]) acc += static_cast<double>(a[i]) * static_cast<double>(b[i]);
      return acc;
    };
    NewPairProducts p;
    p.resize(k);
    for (int i = 0; i < k; ++i) {
      p.sy[i] = dot(s, this->y(i), false), p.ys[i] = dot(y, this->s(i), false), p.ss[i] = dot(s, this->s(i), false);
      p.zsy[i] = dot(s, this->y(i), true), p.zys[i] = dot(y, this->s(i), true);
      p.zss[i] = dot(s, this->s(i), true), p.zyy[i] = dot(y, this->y(i), true);
    }
    p.self_sy = dot(s, y, false), p.self_yy = dot(y, y, false), p.self_ss = dot(s, s, false);
    p.self_zsy = dot(s, y, true), p.self_zyy = dot(y, y, true), p.self_zss = dot(s, s, true);
    return push_spare(p);
  }

 private:
  // K = [-D L'; L theta*S'S] factored (see the header).
  bool form_middle() {
    const int k = size();
    std::vector<double> d(static_cast<std::size_t>(k * k), 0.0), l(d.size()), c(d.size());
    for (int i = 0; i < k; ++i) {
      d[i * k + i] = sy_[i * m_ + i];
      for (int j = 0; j < k; ++j) {
        l[i * k + j] = i > j ? sy_[i * m_ + j] : 0.0;
        c[i * k + j] = theta_ * ss_[i * m_ + j];
      }
    }
    return middle_.factor(std::move(d), l, c, k);
  }

  int free_slot() const {
    for (int slot = 0; slot <= m_; ++slot)
      if (std::find(order_.begin(), order_.end(), slot) == order_.end()) return slot;
    return m_;
  }

  std::int64_t n_;
  int m_;
  std::vector<T> s_, y_;
  // m x m, oldest first: (S'Y)_ij = s_i'y_j, S'S, and over Z: Y'ZZ'Y, S'ZZ'Y, S'ZZ'S.
  std::vector<double> sy_, ss_, zyy_, zsy_, zss_;
  std::vector<int> order_;
  int spare_ = 0;
  double theta_ = 1.0;
  small::SaddleSolver middle_;
  std::vector<double> scratch_s_, scratch_y_;
};

// Where a variable is at the Cauchy point.
enum VariableState : std::uint8_t { kFree = 0, kAtLower = 1, kAtUpper = 2 };

// What the walk along the projected path leaves for the subspace step.
struct CauchyWalk {
  double t_star = 0;             // x_c = P(x - t_star*g)
  std::vector<double> c;         // W'(x_c - x)
  std::vector<double> p;         // W'd over the variables still free at x_c (d = -g there): -W'Zg
  std::int64_t free_count = 0;   // variables free at x_c
};

// Sums over the search direction d = x_bar - x.
struct DirectionSums {
  double slope = 0, dd = 0;      // g'd, d'd
  double step_max = 1e10;        // the largest step that keeps x + step*d in the box
  double projected = 0;          // 1 if the box clipped x_bar somewhere
};

template <class T>
class LbfgsbDriver {
 public:
  LbfgsbDriver(std::int64_t n, int m)
      : n_(n), memory_(n, m), d_(static_cast<std::size_t>(n)), work_(static_cast<std::size_t>(n)),
        state_(static_cast<std::size_t>(n), kFree), gram_free_(static_cast<std::size_t>(n), 1) {}

  RunTotals totals;

  void set_bounds(const T* lo, const T* hi) { box_.set(lo, hi, n_); }
  const BoxedMemory<T>& memory() const { return memory_; }

  // ||P(x - g) - x||_inf: the projected gradient's largest component.
  double projected_gradient_norm(const T* x, const T* g) const {
    double norm = 0;
    for (std::int64_t i = 0; i < n_; ++i) norm = std::max(norm, std::fabs(projected_component(x, g, i)));
    return norm;
  }

  template <class Objective, class Callback>
  LbfgsResult run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective, Callback&& callback);

  // The tests' hooks: store a chosen pair as a run would; then the model
  // step at (x, g): the Cauchy point, the free variables there and x_bar.
  bool load_pair(const T* s, const T* y) {
    slopes_valid_ = false;
    return memory_.push_pair(s, y, gram_free_.data());
  }
  bool model_step(const T* x, const T* g, T* x_cauchy, std::uint8_t* free, T* x_bar) {
    if (!cauchy_point(x, g)) return false;
    for (std::int64_t i = 0; i < n_; ++i) {
      x_cauchy[i] = cauchy_component(x, g, i);
      free[i] = state_[i] == kFree;
    }
    sync_free_set();
    DirectionSums sums;
    return model_minimizer(x, g, x_bar, sums);
  }

 private:
  // ------------------------------------------------------------ elementwise
  // Variable i at the start of the projected path: held on a bound (fixed,
  // or on a bound with -g pointing out of the box or zero), or free.
  std::uint8_t start_state(T xi, double gi, std::int64_t i) const {
    const T lo = box_.lo[i], hi = box_.hi[i];
    if (lo == hi || (xi <= lo && gi >= 0)) return kAtLower;
    if (xi >= hi && gi <= 0) return kAtUpper;
    return kFree;
  }
  // One component of P(x - g) - x.
  double projected_component(const T* x, const T* g, std::int64_t i) const {
    const double xi = static_cast<double>(x[i]), gi = static_cast<double>(g[i]);
    const double target = std::min(std::max(xi - gi, static_cast<double>(box_.lo[i])), static_cast<double>(box_.hi[i]));
    return target - xi;
  }
  // Component i of the Cauchy point of the last walk.
  T cauchy_component(const T* x, const T* g, std::int64_t i) const {
    const std::uint8_t st = state_[i];
    if (st == kAtLower) return box_.lo[i];
    if (st == kAtUpper) return box_.hi[i];
    return box_.clip(i, static_cast<T>(static_cast<double>(x[i]) - walk_.t_star * static_cast<double>(g[i])));
  }
  // Adds component i of d = x_bar - x to the sums (and stores it in d_).
  void add_direction(std::int64_t i, T xb, T xi, double gi, DirectionSums& sums) {
    const T di = static_cast<T>(xb - xi);
    d_[i] = di;
    const double dv = static_cast<double>(di);
    sums.slope += dv * gi;
    sums.dd += dv * dv;
    const double to_bound = dv < 0 ? static_cast<double>(box_.lo[i]) - static_cast<double>(xi)
                                   : static_cast<double>(box_.hi[i]) - static_cast<double>(xi);
    if (dv != 0 && std::isfinite(to_bound)) sums.step_max = std::min(sums.step_max, std::max(0.0, to_bound / dv));
  }

  // ------------------------------------------------------------ the steps
  bool cauchy_point(const T* x, const T* g);
  void sync_free_set();
  bool model_minimizer(const T* x, const T* g, T* x_bar, DirectionSums& sums);
  void truncated_step(const T* x, const T* g, const std::vector<double>& coef, T* x_bar, DirectionSums& sums);
  void path_slopes(const T* x, const T* g);
  std::vector<double> initial_path_slopes(const T* x, const T* g);
  void trial_point(const T* x, double step, T* x_trial) const;
  double slope_at(const T* g);

  struct NewPair {
    NewPairProducts p;
    std::vector<double> sd, yd;  // s_i'd, y_i'd for the next path (d = -g free at x_new), stored pairs then the new one
    double gs = 0, pg_max = 0;   // s'g (the curvature test's), ||P(x_new - g_new) - x_new||_inf
  };
  NewPair new_pair(const T* x, const T* x_new, const T* g, const T* g_new);
  void keep_slopes(const NewPair& pair, bool pushed, bool dropped_oldest);
  void forget_pairs() {
    memory_.clear();
    path_sd_.clear(), path_yd_.clear();
    slopes_valid_ = true;
  }

  std::int64_t n_;
  BoxBounds<T> box_;
  BoxedMemory<T> memory_;
  std::vector<T> d_;                      // the search direction x_bar - x
  std::vector<double> work_;              // the truncated step's dz
  std::vector<std::uint8_t> state_;       // VariableState at the Cauchy point
  std::vector<std::uint8_t> gram_free_;   // the set Z the memory's free-variable products are over
  std::vector<std::int64_t> changed_;     // variables whose free/active state changed
  CauchyWalk walk_;
  std::vector<double> path_sd_, path_yd_; // S'd, Y'd at the current iterate (d = -g on its free variables)
  bool slopes_valid_ = true;
  BlockPartials partials_;
  int num_threads_ = 0;
};

// ----------------------------------------------------------------- the loop
template <class T>
template <class Objective, class Callback>
LbfgsResult LbfgsbDriver<T>::run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective,
                                 Callback&& callback) {
  num_threads_ = opt.num_threads;
  forget_pairs();
  RunState<T, std::remove_reference_t<Objective>> run{ws, totals, objective};
  LbfgsResult& res = run.res;
  int& cur = run.cur;
  auto finish = [&](int status, std::string message) { return run.finish(status, std::move(message)); };
  auto try_restart = [&] {
    if (memory_.size() == 0) return false;
    forget_pairs();
    ++res.nrestart;
    return true;
  };
  for (std::int64_t i = 0; i < n_; ++i) ws.x[cur][i] = box_.clip(i, ws.x[cur][i]);

  double f = run.evaluate(cur);
  res.f = f;
  const double pg0 = projected_gradient_norm(ws.x[cur], ws.g[cur]);
  res.g_max = pg0;
  if (!std::isfinite(f) || !std::isfinite(pg0))
    return finish(kLbfgsAbnormal, "ABNORMAL: the objective or its gradient is not finite at the starting point");
  if (pg0 <= opt.gtol) return finish(kLbfgsConverged, kLbfgsMessages.gtol);

  LineSearch search;
  LineSearchParams params;
  params.c1 = 1e-3, params.c2 = 0.9, params.maxls = opt.maxls;  // L-BFGS-B's constants

  while (true) {
    if (res.nit >= opt.maxiter) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT");
    const int trial = 1 - cur;
    const T* x = ws.x[cur];
    const T* g = ws.g[cur];

    // x_bar, into the trial slot: the Cauchy point, then the subspace step.
    // Without bounds and with pairs, x_c = x (L-BFGS-B skips the walk there).
    DirectionSums dir;
    bool ok = true;
    if (!box_.constrained && memory_.size() > 0) {
      std::fill(state_.begin(), state_.end(), kFree);
      walk_.t_star = 0;
      walk_.c.assign(static_cast<std::size_t>(2 * memory_.size()), 0.0);
      walk_.p = initial_path_slopes(x, g);
      walk_.free_count = n_;
    } else {
      ok = cauchy_point(x, g);
    }
    if (ok) {
      sync_free_set();
      ok = model_minimizer(x, g, ws.x[trial], dir);
    }
    if (!ok) {
      if (try_restart()) continue;
      return finish(kLbfgsAbnormal, "ABNORMAL: the model's small system is singular");
    }
    if (!(dir.slope < 0.0)) {
      if (try_restart()) continue;
      return finish(kLbfgsAbnormal, "ABNORMAL: the search direction is not a descent direction");
    }

    // The line search along d = x_bar - x. L-BFGS-B: the first iteration of
    // a constrained problem steps at most 1 (d reaches the Cauchy point);
    // later the box decides, and a step of 1 (x_bar, in the box) stays allowed
    // whatever rounding in d says.
    const bool first = res.nit == 0;
    params.step_max = !box_.constrained ? 1e10 : first ? 1.0 : std::max(dir.step_max, 1.0);
    const double step0 = first && !box_.boxed ? std::min(1.0 / std::sqrt(dir.dd), params.step_max) : 1.0;
    search.start(LineSearchKind::kMoreThuente, f, dir.slope, step0, params);
    double step = step0, f_trial = 0;
    bool slot_holds_x_bar = true;
    SearchAction action;
    while (true) {
      if (!(slot_holds_x_bar && step == 1.0)) {  // x_bar itself at step 1, exactly
        trial_point(x, step, ws.x[trial]);
        slot_holds_x_bar = false;
      }
      if (res.nfev >= opt.maxfun) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT");
      f_trial = run.evaluate(trial);
      const double dg = std::isfinite(f_trial) ? slope_at(ws.g[trial]) : NAN;
      action = search.next(f_trial, dg);
      if (action == SearchAction::kStalled) {
        const bool decrease = std::isfinite(f_trial) && std::isfinite(dg) && step > 0.0 &&
                              f_trial <= f + params.c1 * step * dir.slope && f_trial < f;
        action = decrease ? SearchAction::kConverged : SearchAction::kFailed;
      }
      if (action != SearchAction::kEvaluate) break;
      step = search.step();
    }
    if (action == SearchAction::kFailed) {
      if (try_restart()) continue;
      return finish(kLbfgsAbnormal, "ABNORMAL: LINE SEARCH FAILED: " + search.message());
    }

    // Accept: the new pair's products, the next path's slopes, the memory.
    const NewPair pair = new_pair(ws.x[cur], ws.x[trial], ws.g[cur], ws.g[trial]);
    const bool full = memory_.size() == memory_.capacity();
    bool pushed = false;
    if (passes_curvature_test(pair.p.self_sy, pair.p.self_yy, pair.gs)) {
      pushed = memory_.push_spare(pair.p);
      if (!pushed) ++res.nrestart;  // K singular: the memory was cleared
    } else {
      run.count_skipped();
    }
    if (memory_.size() == 0) forget_pairs();
    else keep_slopes(pair, pushed, pushed && full);
    const double f_old = f;
    f = f_trial;
    LbfgsResult out;
    if (run.accept_and_test(f_old, f, pair.pg_max, opt, kLbfgsMessages, callback, out)) return out;
  }
}

// ------------------------------------------------------------ Cauchy point
//
// Along x(t) = P(x - t*g), variable i moves with d_i = -g_i until its
// breakpoint t_i (where it reaches the bound it heads for), then stays.
// Between breakpoints the model m(t) = g'z + z'Bz/2, z = x(t) - x, is a
// quadratic whose slope f1 and curvature f2 are updated in O(k^2) per
// breakpoint passed (Byrd et al. 1995, section 4, with p = W'd and
// c = W'z); the walk stops in the first segment holding a minimizer,
// t* = t_j - f1/f2. p = W'd at the start comes from the previous
// iteration's pass over the pairs (keep_slopes), so the walk itself reads
// x, g and the box only.
template <class T>
bool LbfgsbDriver<T>::cauchy_point(const T* x, const T* g) {
  const int w = 2 * memory_.size();
  const double theta = memory_.theta();
  std::vector<double> p = initial_path_slopes(x, g);
  // The breakpoint of free variable i: where it reaches the bound it heads
  // for (infinite if there is none).
  auto breakpoint = [&](std::int64_t i, double gi) {
    const double bound = static_cast<double>(gi < 0 ? box_.hi[i] : box_.lo[i]);
    return (bound - static_cast<double>(x[i])) / -gi;
  };

  // Pass: states, f1 = g'd = -d'd, the free count and the first breakpoint.
  partials_.reset(n_, 4);
  for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double* row = partials_.row(block);
    row[3] = std::numeric_limits<double>::infinity();
    for (std::int64_t i = begin; i < end; ++i) {
      const double gi = static_cast<double>(g[i]);
      const std::uint8_t st = start_state(x[i], gi, i);
      state_[i] = st;
      if (st != kFree) continue;
      row[2] += 1;
      if (gi == 0) continue;
      row[0] -= gi * gi;
      const double t = breakpoint(i, gi);
      if (std::isfinite(t)) row[3] = std::min(row[3], t);
      else row[1] += 1;  // moves without a bound ahead
    }
  });
  double sums[4];
  partials_.sum(sums);
  double f1 = sums[0];
  const bool some_unbounded = sums[1] > 0;
  std::int64_t free_count = static_cast<std::int64_t>(sums[2]);
  double first_break = std::numeric_limits<double>::infinity();
  for (std::int64_t b = 0; b < lbfgs_block_count(n_); ++b) first_break = std::min(first_break, partials_.row(b)[3]);

  // The breakpoints in a heap, collected only when the walk reaches the
  // first one (near a solution it mostly stops before).
  std::vector<std::pair<double, std::int64_t>> heap;
  auto collect_breakpoints = [&] {
    const std::int64_t blocks = lbfgs_block_count(n_);
    std::vector<std::vector<std::pair<double, std::int64_t>>> block_breaks(static_cast<std::size_t>(blocks));
    for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
      auto& breaks = block_breaks[static_cast<std::size_t>(block)];
      for (std::int64_t i = begin; i < end; ++i) {
        const double gi = static_cast<double>(g[i]);
        if (state_[i] != kFree || gi == 0) continue;
        const double t = breakpoint(i, gi);
        if (std::isfinite(t)) breaks.emplace_back(t, i);
      }
    });
    std::size_t total = 0;
    for (const auto& b : block_breaks) total += b.size();
    heap.reserve(total);
    for (const auto& b : block_breaks) heap.insert(heap.end(), b.begin(), b.end());
  };

  std::vector<double> c(static_cast<std::size_t>(w), 0.0), mv(static_cast<std::size_t>(w)), wb(static_cast<std::size_t>(w));
  double t_old = 0, dtm = 0;
  if (f1 < 0) {
    if (w) memory_.apply_middle(p.data(), mv.data());
    double f2 = -theta * f1 - small::dot(p.data(), mv.data(), w);
    const double f2_org = f2;
    dtm = -f1 / f2;
    if (!(dtm < first_break)) collect_breakpoints();
    // A min-heap on (t, i): ties are passed in index order.
    auto later = [](const std::pair<double, std::int64_t>& a, const std::pair<double, std::int64_t>& b) { return a > b; };
    std::make_heap(heap.begin(), heap.end(), later);
    while (!heap.empty()) {
      const auto [tb, b] = heap.front();
      const double dt = tb - t_old;
      if (dtm < dt) break;  // the minimizer lies in this segment
      std::pop_heap(heap.begin(), heap.end(), later);
      heap.pop_back();
      // Pass breakpoint b: variable b stops at its bound.
      const double gb = static_cast<double>(g[b]);
      const bool to_upper = gb < 0;
      state_[b] = to_upper ? kAtUpper : kAtLower;
      --free_count;
      const double zb = static_cast<double>(to_upper ? box_.hi[b] : box_.lo[b]) - static_cast<double>(x[b]);
      for (int j = 0; j < w; ++j) c[j] += dt * p[j];
      double wmc = 0, wmp = 0, wmw = 0;
      if (w) {
        const int k = w / 2;
        for (int j = 0; j < k; ++j) {  // row b of W = [Y theta*S]
          wb[j] = static_cast<double>(memory_.y(j)[b]);
          wb[k + j] = theta * static_cast<double>(memory_.s(j)[b]);
        }
        memory_.apply_middle(wb.data(), mv.data());  // M w_b (M is symmetric)
        wmc = small::dot(mv.data(), c.data(), w);
        wmp = small::dot(mv.data(), p.data(), w);
        wmw = small::dot(mv.data(), wb.data(), w);
      }
      f1 += dt * f2 + gb * gb + theta * gb * zb - gb * wmc;
      f2 -= theta * gb * gb + 2.0 * gb * wmp + gb * gb * wmw;
      f2 = std::max(f2, 2.220446049250313e-16 * f2_org);
      for (int j = 0; j < w; ++j) p[j] += gb * wb[j];
      t_old = tb;
      dtm = heap.empty() && !some_unbounded ? 0.0 : -f1 / f2;
    }
    dtm = std::max(dtm, 0.0);
  }
  if (!std::isfinite(dtm)) return false;
  for (int j = 0; j < w; ++j) c[j] += dtm * p[j];
  walk_.t_star = t_old + dtm;
  walk_.c = std::move(c);
  walk_.p = std::move(p);
  walk_.free_count = free_count;
  return true;
}

// W'd at the current iterate, d = -g on the variables free at the start of
// the path: [Y'd; theta*S'd], from the products keep_slopes saved (or a
// pass over the pairs when they are not at hand: the tests' chosen pairs).
template <class T>
std::vector<double> LbfgsbDriver<T>::initial_path_slopes(const T* x, const T* g) {
  const int k = memory_.size();
  if (!slopes_valid_) path_slopes(x, g);
  std::vector<double> p(static_cast<std::size_t>(2 * k));
  for (int j = 0; j < k; ++j) p[j] = path_yd_[j], p[k + j] = memory_.theta() * path_sd_[j];
  return p;
}

template <class T>
void LbfgsbDriver<T>::path_slopes(const T* x, const T* g) {
  const int k = memory_.size();
  partials_.reset(n_, 2 * k);
  for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double* row = partials_.row(block);
    for (std::int64_t i = begin; i < end; ++i) {
      const double gi = static_cast<double>(g[i]);
      const double di = start_state(x[i], gi, i) == kFree ? -gi : 0.0;
      for (int j = 0; j < k; ++j) {
        row[2 * j] += static_cast<double>(memory_.s(j)[i]) * di;
        row[2 * j + 1] += static_cast<double>(memory_.y(j)[i]) * di;
      }
    }
  });
  std::vector<double> sums(static_cast<std::size_t>(2 * k));
  partials_.sum(sums.data());
  path_sd_.resize(static_cast<std::size_t>(k)), path_yd_.resize(static_cast<std::size_t>(k));
  for (int j = 0; j < k; ++j) path_sd_[j] = sums[2 * j], path_yd_[j] = sums[2 * j + 1];
  slopes_valid_ = true;
}

// ------------------------------------------------------------ the free set
//
// Brings the memory's free-variable products to the free set of the last
// Cauchy point: variable by variable when few changed, else anew.
template <class T>
void LbfgsbDriver<T>::sync_free_set() {
  changed_.clear();
  for (std::int64_t i = 0; i < n_; ++i)
    if ((state_[i] == kFree) != (gram_free_[i] != 0)) changed_.push_back(i);
  for (std::int64_t i : changed_) gram_free_[i] = state_[i] == kFree ? 1 : 0;
  const int k = memory_.size();
  if (k == 0 || changed_.empty()) return;
  // Each change costs O(k^2) scattered reads; a fresh pass costs O(k^2) per
  // free variable, streamed. Past n/8 changes the pass is cheaper, and it
  // also clears the rounding the updates accumulate.
  if (static_cast<std::int64_t>(changed_.size()) * 8 <= n_) {
    for (std::int64_t i : changed_) memory_.move_variable(i, gram_free_[i] ? 1.0 : -1.0);
    return;
  }
  const int cells = k * k;
  partials_.reset(n_, 3 * cells);
  for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double* row = partials_.row(block);
    double za[kLbfgsChunk];
    for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
      const std::int64_t len = std::min(kLbfgsChunk, end - c0);
      for (int a = 0; a < k; ++a) {
        for (int side = 0; side < 2; ++side) {  // za = Z s_a, then Z y_a
          const T* va = side ? memory_.y(a) + c0 : memory_.s(a) + c0;
          for (std::int64_t t = 0; t < len; ++t) za[t] = gram_free_[c0 + t] ? static_cast<double>(va[t]) : 0.0;
          for (int b = 0; b < k; ++b) {
            const T* yb = memory_.y(b) + c0;
            const T* sb = memory_.s(b) + c0;
            double with_y = 0, with_s = 0;
#pragma omp simd reduction(+ : with_y, with_s)
            for (std::int64_t t = 0; t < len; ++t) {
              with_y += za[t] * static_cast<double>(yb[t]);
              with_s += za[t] * static_cast<double>(sb[t]);
            }
            if (side == 0) row[cells + a * k + b] += with_y, row[2 * cells + a * k + b] += with_s;  // s'ZZ'y, s'ZZ's
            else row[a * k + b] += with_y;                                                         // y'ZZ'y
          }
        }
      }
    }
  });
  std::vector<double> sums(static_cast<std::size_t>(3 * cells));
  partials_.sum(sums.data());
  memory_.set_free_products(std::vector<double>(sums.begin(), sums.begin() + cells),
                            std::vector<double>(sums.begin() + cells, sums.begin() + 2 * cells),
                            std::vector<double>(sums.begin() + 2 * cells, sums.end()));
}

// ------------------------------------------------------- subspace minimization
//
// Over the free variables Z (the rest held at x_c), the model is
//   r'dz + dz' Bz dz / 2,  r = Z'(g + theta*(x_c - x) - W M c),
//   Bz = theta*I - Z'W M W'Z,
// minimized by dz = -(1/theta) r - (1/theta^2) Z'W q, q = (K - W'ZZ'W/theta)^-1 W'Z r
// (Sherman-Morrison-Woodbury on Bz, with K = M^-1; Byrd et al.,
// section 5.1). On Z, x_c - x = -t* g, so W'Z r = -p + theta t* p - G M c
// with p the walk's final slopes and G = W'ZZ'W the memory's free products:
// no pass over the pairs. Per component, x_c + dz = x - g/theta + w_i'v with
// v = M c/theta - q/theta^2: one pass over the pairs gives x_bar = P(x_c + dz),
// fused with d = x_bar - x and its sums. If the projection changed x_bar and
// (x_bar - x)'g > 0, the step is truncated at the box instead (Morales-Nocedal).
template <class T>
bool LbfgsbDriver<T>::model_minimizer(const T* x, const T* g, T* x_bar, DirectionSums& sums) {
  const int k = memory_.size(), w = 2 * k;
  const bool subspace = k > 0 && walk_.free_count > 0;
  const double theta = memory_.theta();
  std::vector<double> coef(static_cast<std::size_t>(w), 0.0);  // v
  if (subspace) {
    const std::vector<double> gram = memory_.free_gram();
    std::vector<double> mc(static_cast<std::size_t>(w)), u(static_cast<std::size_t>(w)), q(static_cast<std::size_t>(w));
    memory_.apply_middle(walk_.c.data(), mc.data());
    small::matvec(gram, w, mc.data(), u.data());
    for (int j = 0; j < w; ++j) u[j] = -walk_.p[j] + theta * walk_.t_star * walk_.p[j] - u[j];
    small::SaddleSolver subspace_system;
    if (!memory_.factor_subspace(subspace_system)) return false;
    subspace_system.solve(u.data(), q.data());
    for (int j = 0; j < w; ++j) coef[j] = mc[j] / theta - q[j] / (theta * theta);
    for (int j = 0; j < k; ++j) coef[k + j] *= theta;  // W's S columns carry theta
  }

  const LbfgsChunkKernels<T>& chunk = active_chunk_kernels<T>();  // the active SIMD target's
  partials_.reset(n_, 5);
  for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    DirectionSums part;
    double wv[kLbfgsChunk];
    for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
      const std::int64_t len = std::min(kLbfgsChunk, end - c0);
      if (subspace) {
        std::fill(wv, wv + len, 0.0);
        for (int j = 0; j < k; ++j) chunk.axpy2_double(wv, memory_.s(j) + c0, memory_.y(j) + c0, coef[k + j], coef[j], len);
      }
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t i = c0 + t;
        const double gi = static_cast<double>(g[i]);
        T xb = cauchy_component(x, g, i);
        if (subspace && state_[i] == kFree) {
          const T moved = static_cast<T>(static_cast<double>(x[i]) - gi / theta + wv[t]);
          xb = box_.clip(i, moved);
          if (xb != moved) part.projected = 1;
        }
        x_bar[i] = xb;
        add_direction(i, xb, x[i], gi, part);
      }
    }
    double* row = partials_.row(block);
    row[0] = part.slope, row[1] = part.dd, row[2] = part.step_max, row[3] = part.projected;
  });
  double totals[5];
  partials_.sum(totals);
  sums = DirectionSums{};
  sums.slope = totals[0], sums.dd = totals[1], sums.projected = partials_.max(3);
  for (std::int64_t b = 0; b < lbfgs_block_count(n_); ++b) sums.step_max = std::min(sums.step_max, partials_.row(b)[2]);
  if (subspace && sums.projected > 0 && sums.slope > 0) truncated_step(x, g, coef, x_bar, sums);
  return true;
}

// Morales-Nocedal: the projected subspace point does not descend, so step
// from x_c along dz only as far as the box allows: x_bar = x_c + alpha*dz,
// alpha the largest in [0, 1] keeping every free variable feasible, the one
// that limits it placed exactly on its bound. Rare; serial.
template <class T>
void LbfgsbDriver<T>::truncated_step(const T* x, const T* g, const std::vector<double>& coef, T* x_bar,
                                     DirectionSums& sums) {
  const int k = memory_.size();
  const double theta = memory_.theta();
  double alpha = 1.0;
  std::int64_t binding = -1;
  for (std::int64_t i = 0; i < n_; ++i) {
    if (state_[i] != kFree) continue;
    double wv = 0;
    for (int j = 0; j < k; ++j)
      wv += coef[j] * static_cast<double>(memory_.y(j)[i]) + coef[k + j] * static_cast<double>(memory_.s(j)[i]);
    const double xc = static_cast<double>(cauchy_component(x, g, i));
    const double dz = static_cast<double>(x[i]) - static_cast<double>(g[i]) / theta + wv - xc;
    work_[i] = dz;
    const double room = dz < 0 ? static_cast<double>(box_.lo[i]) - xc : static_cast<double>(box_.hi[i]) - xc;
    if (dz != 0 && room / dz < alpha) alpha = std::max(room / dz, 0.0), binding = i;
  }
  sums = DirectionSums{};
  for (std::int64_t i = 0; i < n_; ++i) {
    T xb = cauchy_component(x, g, i);
    if (i == binding) xb = work_[i] > 0 ? box_.hi[i] : box_.lo[i];
    else if (state_[i] == kFree) xb = box_.clip(i, static_cast<T>(static_cast<double>(xb) + alpha * work_[i]));
    x_bar[i] = xb;
    add_direction(i, xb, x[i], static_cast<double>(g[i]), sums);
  }
}

// -------------------------------------------------------------- line search

// x + step*d, in the box.
template <class T>
void LbfgsbDriver<T>::trial_point(const T* x, double step, T* x_trial) const {
  for_each_block(n_, num_threads_, [&](std::int64_t, std::int64_t begin, std::int64_t end) {
    for (std::int64_t i = begin; i < end; ++i)
      x_trial[i] = box_.clip(i, static_cast<T>(static_cast<double>(x[i]) + step * static_cast<double>(d_[i])));
  });
}

// d'g at a trial point.
template <class T>
double LbfgsbDriver<T>::slope_at(const T* g) {
  return dot(d_.data(), g, n_, num_threads_, partials_);
}

// --------------------------------------------------------------- new pair

// s = x_new - x and y = g_new - g into the spare slot; in one pass over the
// stored pairs: their products with s and y (over all variables and over the
// free set Z), with themselves and with g; S'd and Y'd for the next
// iteration's path (d = -g_new on the variables free at the start of it);
// and ||P(x_new - g_new) - x_new||_inf.
template <class T>
typename LbfgsbDriver<T>::NewPair LbfgsbDriver<T>::new_pair(const T* x, const T* x_new, const T* g, const T* g_new) {
  const int k = memory_.size();
  T* s_new = memory_.spare_s();
  T* y_new = memory_.spare_y();
  const LbfgsChunkKernels<T>& chunk = active_chunk_kernels<T>();  // the active SIMD target's
  constexpr int kPerPair = 10;  // s_j's, y_j's products with s, y, Zs, Zy, d_next
  const int tail = kPerPair * k;
  const int width = tail + 10;
  partials_.reset(n_, width);
  for_each_block(n_, num_threads_, [&](std::int64_t block, std::int64_t begin, std::int64_t end) {
    double* row = partials_.row(block);
    double sv[kLbfgsChunk], yv[kLbfgsChunk], zs[kLbfgsChunk], zy[kLbfgsChunk], dn[kLbfgsChunk];
    const double* const vecs[5] = {sv, yv, zs, zy, dn};
    for (std::int64_t c0 = begin; c0 < end; c0 += kLbfgsChunk) {
      const std::int64_t len = std::min(kLbfgsChunk, end - c0);
      double pg = row[tail + 9];
      for (std::int64_t t = 0; t < len; ++t) {
        const std::int64_t i = c0 + t;
        s_new[i] = static_cast<T>(x_new[i] - x[i]);
        y_new[i] = static_cast<T>(g_new[i] - g[i]);
        sv[t] = static_cast<double>(s_new[i]), yv[t] = static_cast<double>(y_new[i]);
        const double z = gram_free_[i] ? 1.0 : 0.0;
        zs[t] = z * sv[t], zy[t] = z * yv[t];
        const double gn = static_cast<double>(g_new[i]);
        dn[t] = start_state(x_new[i], gn, i) == kFree ? -gn : 0.0;
        pg = std::max(pg, std::fabs(projected_component(x_new, g_new, i)));
      }
      double sy = 0, yy = 0, ss = 0, gs = 0, zsy = 0, zyy = 0, zss = 0, sd = 0, yd = 0;
#pragma omp simd reduction(+ : sy, yy, ss, gs, zsy, zyy, zss, sd, yd)
      for (std::int64_t t = 0; t < len; ++t) {
        sy += sv[t] * yv[t], yy += yv[t] * yv[t], ss += sv[t] * sv[t];
        gs += sv[t] * static_cast<double>(g[c0 + t]);
        zsy += zs[t] * yv[t], zyy += zy[t] * yv[t], zss += zs[t] * sv[t];
        sd += sv[t] * dn[t], yd += yv[t] * dn[t];
      }
      double* out = row + tail;
      out[0] += sy, out[1] += yy, out[2] += ss, out[3] += gs, out[4] += zsy, out[5] += zyy, out[6] += zss;
      out[7] += sd, out[8] += yd, out[9] = pg;
      // Per stored pair j: s_j and y_j against (s, y, Zs, Zy, d_next).
      for (int j = 0; j < k; ++j) chunk.pair_dots10(memory_.s(j) + c0, memory_.y(j) + c0, vecs, len, row + kPerPair * j);
    }
  });
  std::vector<double> sums(static_cast<std::size_t>(width));
  partials_.sum(sums.data());
  NewPair out;
  NewPairProducts& p = out.p;
  p.resize(k);
  out.sd.resize(static_cast<std::size_t>(k + 1)), out.yd.resize(static_cast<std::size_t>(k + 1));
  for (int j = 0; j < k; ++j) {
    // in[2v] = s_j'vecs[v], in[2v+1] = y_j'vecs[v], vecs = (s, y, Zs, Zy, d_next)
    const double* in = sums.data() + kPerPair * j;
    p.ss[j] = in[0], p.sy[j] = in[1], p.ys[j] = in[2];
    p.zss[j] = in[4], p.zsy[j] = in[5], p.zys[j] = in[6], p.zyy[j] = in[7];
    out.sd[j] = in[8], out.yd[j] = in[9];
  }
  const double* t = sums.data() + tail;
  p.self_sy = t[0], p.self_yy = t[1], p.self_ss = t[2], out.gs = t[3];
  p.self_zsy = t[4], p.self_zyy = t[5], p.self_zss = t[6];
  out.sd[k] = t[7], out.yd[k] = t[8];
  out.pg_max = partials_.max(tail + 9);
  return out;
}

// The next path's S'd and Y'd for the memory as it is after the update.
template <class T>
void LbfgsbDriver<T>::keep_slopes(const NewPair& pair, bool pushed, bool dropped_oldest) {
  const std::size_t stored = pair.sd.size() - 1, first = dropped_oldest ? 1 : 0;
  const std::size_t last = pushed ? stored + 1 : stored;
  path_sd_.assign(pair.sd.begin() + first, pair.sd.begin() + last);
  path_yd_.assign(pair.yd.begin() + first, pair.yd.begin() + last);
  slopes_valid_ = true;
}

}  // namespace fastopt
