// OWL-QN (Andrew & Gao 2007, "Scalable training of L1-regularized log-linear
// models"; docs/algorithms.md, section 4.2): minimizes F(x) = f(x) + c*||x||_1
// (c >= 0; variables outside the optional mask are not penalized) with a
// smooth f whose value and gradient the caller computes.
//
//   pg  = the pseudo-gradient: g_i + c*sign(x_i) where x_i != 0; at x_i = 0,
//         g_i + c if g_i < -c, g_i - c if g_i > c, else 0 (unpenalized: g_i)
//   d   = -H pg by the two-loop recursion over the last m pairs (s, y of the
//         smooth f), H0 = gamma*I, gamma = s'y/y'y of the newest pair (1 without);
//         then d_i = 0 where d_i*pg_i >= 0 for a penalized x_i (its sign
//         must agree with -pg's; unpenalized variables keep the quasi-Newton d_i)
//   xi  = the orthant: sign(x_i), or sign(-pg_i) where x_i = 0
//   x(a) = pi(x + a*d; xi): a component whose sign leaves its orthant is 0
//   backtracking from a = 1 (1/||pg||_2 while the memory is empty), halving,
//   until F(x(a)) <= F(x) + 1e-4 * pg'(x(a) - x)
//   pair (s, y) = (x_new - x, g_new - g), kept when s'y > 0
// Stops when ||pg||_inf <= gtol, when the relative reduction of F is at most
// ftol, or at maxiter / maxfun. Never throws on numerical trouble: a failed
// search clears the memory and retries along -pg once, then returns the last
// accepted point (the lowest F accepted). Dot products are accumulated in
// double in index order; the pairs are kept in double.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "lbfgs/driver.hpp"

namespace fastopt {

constexpr StopMessages kOwlqnMessages{kLbfgsMessages.callback, "CONVERGENCE: NORM OF PSEUDO-GRADIENT <= GTOL",
                                      kLbfgsMessages.ftol};

// The L1 term: weight c, and which variables it covers (empty: all).
struct OwlqnPenalty {
  double c = 0.0;
  std::vector<std::uint8_t> penalized;  // penalized[i] != 0: x_i is penalized
  bool on(std::int64_t i) const { return penalized.empty() || penalized[static_cast<std::size_t>(i)] != 0; }
};

template <class T>
class OwlqnDriver {
 public:
  OwlqnDriver(std::int64_t n, int m)
      : n_(n), m_(m), pg_(static_cast<std::size_t>(n)), d_(static_cast<std::size_t>(n)),
        alpha_(static_cast<std::size_t>(m)) {}

  RunTotals totals;

  // The penalized objective F at x, given the smooth value f.
  double penalized_value(double f, const T* x) const {
    double l1 = 0;
    for (std::int64_t i = 0; i < n_; ++i)
      if (penalty_.on(i)) l1 += std::fabs(static_cast<double>(x[i]));
    return f + penalty_.c * l1;
  }

  // Writes the pseudo-gradient into pg_; returns ||pg||_inf.
  double pseudo_gradient(const T* x, const T* g) {
    double pg_max = 0;
    const double c = penalty_.c;
    for (std::int64_t i = 0; i < n_; ++i) {
      const double gi = static_cast<double>(g[i]), xi = static_cast<double>(x[i]);
      double p = gi;
      if (penalty_.on(i)) {
        if (xi > 0) p = gi + c;
        else if (xi < 0) p = gi - c;
        else if (gi < -c) p = gi + c;
        else if (gi > c) p = gi - c;
        else p = 0.0;
      }
      pg_[static_cast<std::size_t>(i)] = p;
      pg_max = std::max(pg_max, std::fabs(p));
    }
    return pg_max;
  }

  // The penalty the next runs use.
  void set_penalty(OwlqnPenalty penalty) { penalty_ = std::move(penalty); }

  template <class Objective, class Callback>
  LbfgsResult run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective, Callback&& callback) {
    RunState<T, std::remove_reference_t<Objective>> run{ws, totals, objective};
    LbfgsResult& res = run.res;
    int& cur = run.cur;
    auto evaluate = [&](int slot) { return run.evaluate(slot); };
    auto finish = [&](int status, std::string message) { return run.finish(status, std::move(message)); };

    double f = evaluate(cur);
    double F = penalized_value(f, ws.x[cur]);
    res.f = F;
    double pg_max = pseudo_gradient(ws.x[cur], ws.g[cur]);
    res.g_max = pg_max;
    if (!std::isfinite(F) || !std::isfinite(pg_max))
      return finish(kLbfgsAbnormal, "ABNORMAL: the objective or its gradient is not finite at the starting point");
    if (pg_max <= opt.gtol) return finish(kLbfgsConverged, kOwlqnMessages.gtol);

    while (true) {
      if (res.nit >= opt.maxiter) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT");
      const int trial = 1 - cur;
      const T* x = ws.x[cur];
      const double dpg = direction();
      if (!(dpg < 0.0)) {
        if (restart(res)) continue;
        // -pg projected onto itself is -pg: only an all-zero pseudo-gradient gets here.
        return finish(kLbfgsConverged, kOwlqnMessages.gtol);
      }

      // Backtracking on the orthant-projected path.
      double a = opt.initial_step * (s_.empty() ? 1.0 / std::sqrt(dot(pg_, pg_)) : 1.0);
      double f_trial = 0, F_trial = 0;
      bool accepted = false;
      for (int ls = 0; ls < opt.maxls; ++ls) {
        if (res.nfev >= opt.maxfun) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT");
        double decrease = 0;  // pg'(x(a) - x)
        for (std::int64_t i = 0; i < n_; ++i) {
          const double xi = static_cast<double>(x[i]);
          const double orthant = xi != 0 ? (xi > 0 ? 1.0 : -1.0) : (pg_[i] < 0 ? 1.0 : (pg_[i] > 0 ? -1.0 : 0.0));
          T next = static_cast<T>(xi + a * d_[static_cast<std::size_t>(i)]);
          if (penalty_.on(i) && static_cast<double>(next) * orthant <= 0) next = T(0);
          ws.x[trial][i] = next;
          decrease += pg_[static_cast<std::size_t>(i)] * (static_cast<double>(next) - xi);
        }
        f_trial = evaluate(trial);
        F_trial = penalized_value(f_trial, ws.x[trial]);
        if (std::isfinite(F_trial) && F_trial <= F + 1e-4 * decrease) {
          accepted = true;
          break;
        }
        a *= 0.5;
      }
      if (!accepted) {
        if (restart(res)) continue;
        return finish(kLbfgsAbnormal, "ABNORMAL: LINE SEARCH FAILED: no sufficient decrease along the projected path");
      }

      if (!store_pair(ws.x[cur], ws.x[trial], ws.g[cur], ws.g[trial])) run.count_skipped();
      const double F_old = F;
      F = F_trial;
      pg_max = pseudo_gradient(ws.x[trial], ws.g[trial]);
      LbfgsResult out;
      if (run.accept_and_test(F_old, F, pg_max, opt, kOwlqnMessages, callback, out)) return out;
    }
  }

  const std::vector<double>& pseudo_gradient_values() const { return pg_; }

 private:
  double dot(const std::vector<double>& a, const std::vector<double>& b) const {
    double acc = 0;
    for (std::int64_t i = 0; i < n_; ++i) acc += a[static_cast<std::size_t>(i)] * b[static_cast<std::size_t>(i)];
    return acc;
  }

  // d = -H pg (two-loop recursion), projected onto the sign of -pg; returns d'pg.
  double direction() {
    const int k = static_cast<int>(s_.size());
    std::vector<double>& q = d_;
    q = pg_;
    for (int j = k - 1; j >= 0; --j) {
      alpha_[static_cast<std::size_t>(j)] = rho_[static_cast<std::size_t>(j)] * dot(s_[static_cast<std::size_t>(j)], q);
      const std::vector<double>& y = y_[static_cast<std::size_t>(j)];
      for (std::int64_t i = 0; i < n_; ++i) q[static_cast<std::size_t>(i)] -= alpha_[static_cast<std::size_t>(j)] * y[static_cast<std::size_t>(i)];
    }
    const double gamma = k > 0 ? 1.0 / (rho_.back() * dot(y_.back(), y_.back())) : 1.0;
    for (double& v : q) v *= gamma;
    for (int j = 0; j < k; ++j) {
      const std::vector<double>& s = s_[static_cast<std::size_t>(j)];
      const double beta = rho_[static_cast<std::size_t>(j)] * dot(y_[static_cast<std::size_t>(j)], q);
      const double coef = alpha_[static_cast<std::size_t>(j)] - beta;
      for (std::int64_t i = 0; i < n_; ++i) q[static_cast<std::size_t>(i)] += coef * s[static_cast<std::size_t>(i)];
    }
    double dpg = 0;
    for (std::int64_t i = 0; i < n_; ++i) {
      double& di = q[static_cast<std::size_t>(i)];
      di = -di;
      if (penalty_.on(i) && di * pg_[static_cast<std::size_t>(i)] >= 0) di = 0;
      dpg += di * pg_[static_cast<std::size_t>(i)];
    }
    return dpg;
  }

  bool store_pair(const T* x, const T* x_new, const T* g, const T* g_new) {
    std::vector<double> s(static_cast<std::size_t>(n_)), y(static_cast<std::size_t>(n_));
    double sy = 0, yy = 0;
    for (std::int64_t i = 0; i < n_; ++i) {
      s[static_cast<std::size_t>(i)] = static_cast<double>(x_new[i]) - static_cast<double>(x[i]);
      y[static_cast<std::size_t>(i)] = static_cast<double>(g_new[i]) - static_cast<double>(g[i]);
      sy += s[static_cast<std::size_t>(i)] * y[static_cast<std::size_t>(i)];
      yy += y[static_cast<std::size_t>(i)] * y[static_cast<std::size_t>(i)];
    }
    if (!(sy > 0.0) || !std::isfinite(sy) || !std::isfinite(yy)) return false;
    if (static_cast<int>(s_.size()) == m_) {
      s_.pop_front(), y_.pop_front(), rho_.pop_front();
    }
    s_.push_back(std::move(s)), y_.push_back(std::move(y)), rho_.push_back(1.0 / sy);
    return true;
  }

  bool restart(LbfgsResult& res) {
    if (s_.empty()) return false;
    s_.clear(), y_.clear(), rho_.clear();
    ++res.nrestart;
    return true;
  }

  std::int64_t n_;
  int m_;
  OwlqnPenalty penalty_;
  std::vector<double> pg_, d_, alpha_;
  std::deque<std::vector<double>> s_, y_;
  std::deque<double> rho_;
};

}  // namespace fastopt
