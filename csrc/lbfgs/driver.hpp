// The L-BFGS iteration (Nocedal 1980; Liu & Nocedal 1989), over raw buffers.
//
// One iteration, when the first trial step is accepted (the common case):
//   direction_pass  d = -H g into the spare slot, x_trial = x + alpha0*d, d'g
//   objective       f and g at x_trial (the caller's code, GIL held)
//   gradient_pass   y = g_trial - g, S'g, Y'g, s_i'y, y_i'y, ||g||: what the
//                   memory update and the next direction need
// so the stored pairs are streamed twice per iteration (see compact.hpp).
// Further trials cost a trial-point and a dot pass each, and a pass 1 at the
// step finally accepted.
//
// Stopping (docs/algorithms.md, section 4): ||g||_inf <= gtol; (f_k - f_k+1)/max(|f_k|, |f_k+1|, 1)
// <= ftol; maxiter iterations; maxfun evaluations; a callback asking to stop.
// Numerical trouble never throws: a line search that fails (NaN/Inf values it
// cannot step back from, maxls evaluations) first clears the memory and
// retries along -g, as L-BFGS-B does, and then stops with status 2. The
// result is always the last accepted iterate, which has the lowest objective
// value of all accepted iterates (each step decreases f).
#pragma once

#include <cmath>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "core/hyper.hpp"
#include "lbfgs/compact.hpp"
#include "lbfgs/line_search.hpp"

namespace fastopt {

enum class LineSearchKind { kMoreThuente, kBacktracking, kFixed };

// The first trial step while the memory is empty (H = I, scale unknown).
enum class FirstStep {
  kL1,  // min(1, 1/||g||_1): torch.optim.LBFGS
  kL2,  // 1/||g||_2, a unit-length first step: L-BFGS-B (SciPy)
};

// Option names follow scipy.optimize.minimize(method="L-BFGS-B").
struct LbfgsOptions {
  double gtol = 1e-5;
  double ftol = 2.2204460492503131e-09;  // SciPy's default (factr = 1e7)
  std::int64_t maxiter = 15000;
  std::int64_t maxfun = 15000;
  int maxls = 20;
  LineSearchKind line_search = LineSearchKind::kMoreThuente;
  double c1 = 1e-4, c2 = 0.9;
  double initial_step = 1.0;  // scales every first trial step (torch's lr)
  FirstStep first_step = FirstStep::kL1;
  int num_threads = 0;        // 0: the OpenMP default

  void validate() const {
    require_nonnegative(gtol, "gtol");
    require_nonnegative(ftol, "ftol");
    require(maxiter >= 0, [&] { return "invalid maxiter: " + std::to_string(maxiter) + " (must be >= 0)"; });
    require(maxfun >= 1, [&] { return "invalid maxfun: " + std::to_string(maxfun) + " (must be >= 1)"; });
    require(maxls >= 1, [&] { return "invalid maxls: " + std::to_string(maxls) + " (must be >= 1)"; });
    require_finite(c1, "c1");
    require_finite(c2, "c2");
    require(0.0 < c1 && c1 < c2 && c2 < 1.0,
            [&] { return "invalid line-search constants c1=" + num(c1) + ", c2=" + num(c2) + " (need 0 < c1 < c2 < 1)"; });
    require_finite(initial_step, "initial_step");
    require(initial_step > 0.0, [&] { return "invalid initial_step (lr): " + num(initial_step) + " (must be > 0)"; });
    require(num_threads >= 0, [&] { return std::string("num_threads must be >= 0 (0 means the OpenMP default)"); });
  }
};

enum LbfgsStatus { kLbfgsConverged = 0, kLbfgsLimit = 1, kLbfgsAbnormal = 2, kLbfgsCallbackStop = 99 };

struct LbfgsResult {
  int status = kLbfgsAbnormal;
  std::string message;
  double f = 0.0;
  double g_max = 0.0;        // ||g||_inf at the result
  std::int64_t nit = 0;      // accepted steps
  std::int64_t nfev = 0;     // objective (and gradient) evaluations
  std::int64_t nskipped = 0; // pairs that failed the curvature test
  std::int64_t nrestart = 0; // memory cleared after a failed line search or a non-descent direction
  int slot = 0;              // which workspace buffer holds x and g at the result
};

// Pairs are skipped when s'y <= kCurvatureTolerance * y'y (docs/algorithms.md, section 4).
constexpr double kCurvatureTolerance = 1e-10;

// The line search in use, behind one interface.
class LineSearch {
 public:
  void start(LineSearchKind kind, double f0, double dg0, double step, const LineSearchParams& p) {
    kind_ = kind;
    if (kind == LineSearchKind::kMoreThuente) more_thuente_.start(f0, dg0, step, p);
    else backtracking_.start(f0, dg0, step, p);
    fixed_step_ = step;
  }
  double step() const {
    if (kind_ == LineSearchKind::kFixed) return fixed_step_;
    return kind_ == LineSearchKind::kMoreThuente ? more_thuente_.step() : backtracking_.step();
  }
  SearchAction next(double f, double dg) {
    switch (kind_) {
      case LineSearchKind::kMoreThuente: return more_thuente_.next(f, dg);
      case LineSearchKind::kBacktracking: return backtracking_.next(f, dg);
      case LineSearchKind::kFixed: break;
    }
    // A fixed step (torch's line_search_fn=None) is taken unless it is not finite.
    return std::isfinite(f) && std::isfinite(dg) ? SearchAction::kConverged : SearchAction::kFailed;
  }
  std::string message() const {
    if (kind_ == LineSearchKind::kFixed) return "the objective is not finite at the fixed step";
    return kind_ == LineSearchKind::kMoreThuente ? more_thuente_.message() : backtracking_.message();
  }

 private:
  LineSearchKind kind_ = LineSearchKind::kMoreThuente;
  MoreThuente more_thuente_;
  Backtracking backtracking_;
  double fixed_step_ = 1.0;
};

// Two x and two g buffers of n elements, owned by the caller (the bindings
// hand the objective views of them): slot `cur` holds the accepted iterate,
// the other one the trial.
template <class T>
struct LbfgsWorkspace {
  T* x[2];
  T* g[2];
};

// After pass 1 with a candidate: stores the candidate pair if it passes the
// curvature test, and leaves in a, b the products S'g, Y'g of the memory as it
// now is (g = g_new). Returns whether the pair was stored.
template <class T>
bool update_memory(LbfgsMemory<T>& memory, GradientDots& dots, const T* g_new, int num_threads,
                   BlockPartials& partials, std::vector<double>& a, std::vector<double>& b) {
  const int k = memory.size();
  const double sy = dots.sy_cand, yy = dots.yy_cand;
  if (sy > kCurvatureTolerance * yy && std::isfinite(sy) && std::isfinite(yy)) {
    std::vector<double> r_col(dots.sy_new), yy_col(dots.yy_new);
    r_col.push_back(sy), yy_col.push_back(yy);
    a = dots.sg, b = dots.yg;
    a.push_back(dots.sg_cand), b.push_back(dots.yg_cand);
    if (k == memory.capacity()) a.erase(a.begin()), b.erase(b.begin());  // the oldest pair is dropped
    memory.push_spare(r_col.data(), yy_col.data());
    return true;
  }
  if (k == memory.capacity()) oldest_pair_dots(memory, g_new, num_threads, partials, dots);
  a = dots.sg, b = dots.yg;
  return false;
}

template <class T>
class LbfgsDriver {
 public:
  LbfgsDriver(std::int64_t n, int m) : memory_(n, m) {}

  LbfgsMemory<T>& memory() { return memory_; }
  const LbfgsMemory<T>& memory() const { return memory_; }

  // Totals over every run (the torch-style optimizer's state).
  std::int64_t total_iterations = 0, total_evaluations = 0, total_skipped = 0;

  // Minimizes from the point in ws.x[0]. `objective(x, g)` returns f(x) and
  // writes the gradient into g; `callback(x, f, nit)` is called after every
  // accepted step and returns true to stop. Both may throw (a Python error):
  // the exception propagates and the run is abandoned.
  template <class Objective, class Callback>
  LbfgsResult run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective, Callback&& callback) {
    const std::int64_t n = memory_.n();
    LbfgsResult res;
    int cur = 0;
    auto evaluate = [&](int slot) {
      ++res.nfev;
      ++total_evaluations;
      return objective(ws.x[slot], ws.g[slot]);
    };
    auto finish = [&](int status, std::string message) {
      res.status = status;
      res.message = std::move(message);
      res.slot = cur;
      return res;
    };

    double f = evaluate(cur);
    res.f = f;
    gradient_pass(memory_, ws.g[cur], static_cast<const T*>(nullptr), 1.0, opt.num_threads, partials_, dots_);
    res.g_max = dots_.g_max;
    if (!std::isfinite(f) || !std::isfinite(dots_.g_l1))
      return finish(kLbfgsAbnormal, "ABNORMAL: the objective or its gradient is not finite at the starting point");
    a_ = dots_.sg, b_ = dots_.yg;
    double g_l1 = dots_.g_l1, g_sq = dots_.g_sq;
    if (dots_.g_max <= opt.gtol) return finish(kLbfgsConverged, "CONVERGENCE: NORM OF GRADIENT <= GTOL");

    LineSearchParams params;
    params.c1 = opt.c1, params.c2 = opt.c2, params.maxls = opt.maxls;
    std::vector<double> cs, cy;

    while (true) {
      if (res.nit >= opt.maxiter) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT");
      const int k = memory_.size();
      const int trial = 1 - cur;

      // Direction and first trial point. With an empty memory (first
      // iteration, or after a restart) d = -g and the first step is
      // min(1, 1/||g||_1) (or L-BFGS-B's 1/||g||_2), as H has no scale yet.
      double cg;
      cs.assign(k, 0.0), cy.assign(k, 0.0);
      memory_.direction_coefficients(a_.data(), b_.data(), cg, cs.data(), cy.data());
      const double empty_step =
          opt.first_step == FirstStep::kL1 ? std::min(1.0, 1.0 / g_l1) : 1.0 / std::sqrt(g_sq);
      const double alpha0 = opt.initial_step * (k == 0 ? empty_step : 1.0);
      const double dg0 = direction_pass(memory_, ws.g[cur], cg, cs.data(), cy.data(), ws.x[cur], alpha0,
                                        ws.x[trial], opt.num_threads, partials_);
      if (!(dg0 < 0.0)) {
        if (k > 0 && restart(res)) continue;
        return finish(kLbfgsAbnormal, "ABNORMAL: the search direction is not a descent direction");
      }

      // Line search. The first trial at step 1 runs pass 1 at once: it is
      // accepted almost always, and pass 1 also yields its slope d'g.
      search_.start(opt.line_search, f, dg0, alpha0, params);
      double alpha = alpha0, f_trial = 0.0;
      bool trial_ready = true, have_pass1 = false;
      SearchAction action;
      while (true) {
        if (!trial_ready) trial_point(ws.x[cur], memory_.spare_s(), alpha, ws.x[trial], n, opt.num_threads);
        if (res.nfev >= opt.maxfun) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT");
        f_trial = evaluate(trial);
        double dg;
        have_pass1 = trial_ready && alpha == 1.0;
        if (have_pass1) {
          gradient_pass(memory_, ws.g[trial], ws.g[cur], 1.0, opt.num_threads, partials_, dots_);
          dg = dots_.dg;
        } else {
          dg = std::isfinite(f_trial) ? dot(memory_.spare_s(), ws.g[trial], n, opt.num_threads, partials_) : NAN;
        }
        action = search_.next(f_trial, dg);
        if (action != SearchAction::kEvaluate) {
          if (action == SearchAction::kStalled) {
            // Accept the last trial only if it is a real, finite decrease.
            const bool decrease = std::isfinite(f_trial) && std::isfinite(dg) && alpha > 0.0 &&
                                  f_trial <= f + opt.c1 * alpha * dg0 && f_trial < f;
            action = decrease ? SearchAction::kConverged : SearchAction::kFailed;
          }
          break;
        }
        alpha = search_.step();
        trial_ready = false;
      }
      if (action == SearchAction::kFailed) {
        if (k > 0 && restart(res)) continue;
        return finish(kLbfgsAbnormal, "ABNORMAL: LINE SEARCH FAILED: " + search_.message());
      }

      // Accept x_trial: pass 1 (if the accepted trial was not the first),
      // then the curvature test and the memory update.
      if (!have_pass1)
        gradient_pass(memory_, ws.g[trial], ws.g[cur], alpha, opt.num_threads, partials_, dots_);
      accept_pair(res, ws.g[trial], opt.num_threads);
      const double f_old = f;
      f = f_trial;
      g_l1 = dots_.g_l1, g_sq = dots_.g_sq;
      cur = trial;
      ++res.nit;
      ++total_iterations;
      res.f = f;
      res.g_max = dots_.g_max;

      if (callback(ws.x[cur], f, res.nit)) return finish(kLbfgsCallbackStop, "`callback` raised `StopIteration`.");
      if (dots_.g_max <= opt.gtol) return finish(kLbfgsConverged, "CONVERGENCE: NORM OF GRADIENT <= GTOL");
      if (f_old - f <= opt.ftol * std::max({std::fabs(f_old), std::fabs(f), 1.0}))
        return finish(kLbfgsConverged, "CONVERGENCE: RELATIVE REDUCTION OF F <= FTOL");
    }
  }

 private:
  // Clears the memory so the next direction is -g. Returns false if that was
  // already the case (a second failure in a row along -g: give up).
  bool restart(LbfgsResult& res) {
    if (memory_.size() == 0) return false;
    memory_.clear();
    a_.clear(), b_.clear();
    ++res.nrestart;
    return true;
  }

  void accept_pair(LbfgsResult& res, const T* g_new, int num_threads) {
    if (!update_memory(memory_, dots_, g_new, num_threads, partials_, a_, b_)) {
      ++res.nskipped;
      ++total_skipped;
    }
  }

  LbfgsMemory<T> memory_;
  BlockPartials partials_;
  GradientDots dots_;
  LineSearch search_;
  std::vector<double> a_, b_;  // S'g and Y'g at the current iterate
};

}  // namespace fastopt
