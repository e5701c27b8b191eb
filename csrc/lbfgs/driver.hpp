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
#include <type_traits>
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

// A pair is stored only if s'y > eps_mach * (-g's), g the gradient where
// the step started (L-BFGS-B's scale-free test: curvature positive relative
// to the step's first-order decrease; docs/algorithms.md, section 4), with s'y
// and y'y finite. Otherwise it is skipped and counted.
constexpr double kCurvatureTolerance = 2.220446049250313e-16;  // eps_mach of float64
inline bool passes_curvature_test(double sy, double yy, double gs) {
  return sy > kCurvatureTolerance * -gs && std::isfinite(sy) && std::isfinite(yy);
}

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
// curvature test (gs = g_old's of the candidate), and leaves in a, b the
// products S'g, Y'g of the memory as it now is (g = g_new). Returns whether
// the pair was stored.
template <class T>
bool update_memory(LbfgsMemory<T>& memory, GradientDots& dots, const T* g_new, double gs, int num_threads,
                   BlockPartials& partials, std::vector<double>& a, std::vector<double>& b) {
  const int k = memory.size();
  const double sy = dots.sy_cand, yy = dots.yy_cand;
  if (passes_curvature_test(sy, yy, gs)) {
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

// Norms of the gradient at the current iterate, for the stopping test and
// the first trial step.
struct GradientNorms {
  double g_max = 0, g_l1 = 0, g_sq = 0;  // ||g||_inf, ||g||_1 (NaN/Inf if g is not finite), ||g||_2^2
};

// Totals over every run (the torch-style optimizer's state).
struct RunTotals {
  std::int64_t iterations = 0, evaluations = 0, skipped = 0;
};

// What a method says when it stops after a step.
struct StopMessages {
  const char* callback;  // the callback asked to stop
  const char* gtol;      // the (projected, pseudo-) gradient is small
  const char* ftol;      // the relative reduction of f is small
};
// SciPy's L-BFGS-B messages (without bounds the projected gradient is the gradient).
constexpr StopMessages kLbfgsMessages{"STOP: CALLBACK REQUESTED HALT", "CONVERGENCE: NORM OF PROJECTED GRADIENT <= PGTOL",
                                      "CONVERGENCE: RELATIVE REDUCTION OF F <= FACTR*EPSMCH"};

// One run's bookkeeping: its result so far, the slot holding the accepted
// point, and the objective's evaluations (counted here and in the totals).
template <class T, class Objective>
struct RunState {
  const LbfgsWorkspace<T>& ws;
  RunTotals& totals;
  Objective& objective;
  LbfgsResult res;
  int cur = 0;

  double evaluate(int slot) {
    ++res.nfev;
    ++totals.evaluations;
    return objective(ws.x[slot], ws.g[slot]);
  }
  LbfgsResult finish(int status, std::string message) {
    res.status = status;
    res.message = std::move(message);
    res.slot = cur;
    return res;
  }
  void count_skipped() {
    ++res.nskipped;
    ++totals.skipped;
  }

  // The trial slot becomes the accepted point (objective f, stopping norm
  // g_max); then the callback and the stopping tests, in that order. Returns
  // whether the run stops (with the result in `out`).
  template <class Callback>
  bool accept_and_test(double f_old, double f, double g_max, const LbfgsOptions& opt, const StopMessages& say,
                       Callback& callback, LbfgsResult& out) {
    cur = 1 - cur;
    ++res.nit;
    ++totals.iterations;
    res.f = f;
    res.g_max = g_max;
    if (callback(ws.x[cur], f, res.nit)) out = finish(kLbfgsCallbackStop, say.callback);
    else if (g_max <= opt.gtol) out = finish(kLbfgsConverged, say.gtol);
    else if (f_old - f <= opt.ftol * std::max({std::fabs(f_old), std::fabs(f), 1.0})) out = finish(kLbfgsConverged, say.ftol);
    else return false;
    return true;
  }
};

// The iteration every quasi-Newton method here shares: direction, line
// search, acceptance, stopping tests, restart on trouble. A Method supplies
// what differs (LbfgsDriver: the compact form; BfgsDriver: a dense H):
//   GradientNorms start(const T* g)            at x0
//   bool empty() const                         H has no curvature information yet
//   double first_trial(x, g, alpha0, x_trial)  d = -H g; x_trial = x + alpha0*d; returns d'g
//   void move_trial(x, alpha, x_trial)         x_trial = x + alpha*d
//   double slope(g_trial, g, f_trial, unit)    d'g_trial (unit: the first trial, at step 1)
//   bool accept(x, x_trial, g, g_trial, alpha, unit)  update H; returns whether the pair was kept
//   GradientNorms norms() const                at the accepted point
//   bool restart()                             H = I; false if it already was
//
// `objective(x, g)` returns f(x) and writes the gradient into g;
// `callback(x, f, nit)` is called after every accepted step and returns true
// to stop. Both may throw (a Python error): the exception propagates and the
// run is abandoned.
template <class T, class Method, class Objective, class Callback>
LbfgsResult run_quasi_newton(Method& method, RunTotals& totals, LineSearch& search, const LbfgsWorkspace<T>& ws,
                             const LbfgsOptions& opt, Objective&& objective, Callback&& callback) {
  RunState<T, std::remove_reference_t<Objective>> run{ws, totals, objective};
  LbfgsResult& res = run.res;
  int& cur = run.cur;
  auto evaluate = [&](int slot) { return run.evaluate(slot); };
  auto finish = [&](int status, std::string message) { return run.finish(status, std::move(message)); };
  auto try_restart = [&] {
    if (method.empty() || !method.restart()) return false;
    ++res.nrestart;
    return true;
  };

  double f = evaluate(cur);
  res.f = f;
  GradientNorms norms = method.start(ws.g[cur]);
  res.g_max = norms.g_max;
  if (!std::isfinite(f) || !std::isfinite(norms.g_l1))
    return finish(kLbfgsAbnormal, "ABNORMAL: the objective or its gradient is not finite at the starting point");
  if (norms.g_max <= opt.gtol) return finish(kLbfgsConverged, kLbfgsMessages.gtol);

  LineSearchParams params;
  params.c1 = opt.c1, params.c2 = opt.c2, params.maxls = opt.maxls;

  while (true) {
    if (res.nit >= opt.maxiter) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF ITERATIONS REACHED LIMIT");
    const int trial = 1 - cur;

    // Direction and first trial point. While H has no curvature
    // information (first iteration, or after a restart) d = -g and the first
    // step is min(1, 1/||g||_1) (or L-BFGS-B's 1/||g||_2), as H has no scale yet.
    const double empty_step =
        opt.first_step == FirstStep::kL1 ? std::min(1.0, 1.0 / norms.g_l1) : 1.0 / std::sqrt(norms.g_sq);
    const double alpha0 = opt.initial_step * (method.empty() ? empty_step : 1.0);
    const double dg0 = method.first_trial(ws.x[cur], ws.g[cur], alpha0, ws.x[trial]);
    if (!(dg0 < 0.0)) {
      if (try_restart()) continue;
      return finish(kLbfgsAbnormal, "ABNORMAL: the search direction is not a descent direction");
    }

    // Line search. The first trial at step 1 gets the method's full
    // gradient pass at once: it is accepted almost always.
    search.start(opt.line_search, f, dg0, alpha0, params);
    double alpha = alpha0, f_trial = 0.0;
    bool trial_ready = true, unit_trial = false;
    SearchAction action;
    while (true) {
      if (!trial_ready) method.move_trial(ws.x[cur], alpha, ws.x[trial]);
      if (res.nfev >= opt.maxfun) return finish(kLbfgsLimit, "STOP: TOTAL NO. OF F,G EVALUATIONS EXCEEDS LIMIT");
      f_trial = evaluate(trial);
      unit_trial = trial_ready && alpha == 1.0;
      const double dg = method.slope(ws.g[trial], ws.g[cur], f_trial, unit_trial);
      action = search.next(f_trial, dg);
      if (action != SearchAction::kEvaluate) {
        if (action == SearchAction::kStalled) {
          // Accept the last trial only if it is a real, finite decrease.
          const bool decrease = std::isfinite(f_trial) && std::isfinite(dg) && alpha > 0.0 &&
                                f_trial <= f + opt.c1 * alpha * dg0 && f_trial < f;
          action = decrease ? SearchAction::kConverged : SearchAction::kFailed;
        }
        break;
      }
      alpha = search.step();
      trial_ready = false;
    }
    if (action == SearchAction::kFailed) {
      if (try_restart()) continue;
      return finish(kLbfgsAbnormal, "ABNORMAL: LINE SEARCH FAILED: " + search.message());
    }

    // Accept x_trial: the curvature test and the update of H.
    if (!method.accept(ws.x[cur], ws.x[trial], ws.g[cur], ws.g[trial], alpha, unit_trial)) run.count_skipped();
    const double f_old = f;
    f = f_trial;
    norms = method.norms();
    LbfgsResult out;
    if (run.accept_and_test(f_old, f, norms.g_max, opt, kLbfgsMessages, callback, out)) return out;
  }
}

// L-BFGS in the compact form: the stored pairs stream twice per iteration
// (pass 1 in slope/accept, pass 2 in first_trial; see compact.hpp).
template <class T>
class LbfgsDriver {
 public:
  LbfgsDriver(std::int64_t n, int m) : memory_(n, m) {}

  LbfgsMemory<T>& memory() { return memory_; }
  const LbfgsMemory<T>& memory() const { return memory_; }

  RunTotals totals;

  // Distributed runs: this rank holds a slice of x, g and every pair, and
  // each dot product's rank total combines with the others' (blocks.hpp).
  void set_cross_rank(CrossRankCombine combine) { partials_.set_cross_rank(std::move(combine)); }

  template <class Objective, class Callback>
  LbfgsResult run(const LbfgsWorkspace<T>& ws, const LbfgsOptions& opt, Objective&& objective, Callback&& callback) {
    num_threads_ = opt.num_threads;
    return run_quasi_newton<T>(*this, totals, search_, ws, opt, objective, callback);
  }

  // The Method interface of run_quasi_newton.
  GradientNorms start(const T* g) {
    gradient_pass(memory_, g, static_cast<const T*>(nullptr), 1.0, num_threads_, partials_, dots_);
    a_ = dots_.sg, b_ = dots_.yg;
    return norms();
  }
  bool empty() const { return memory_.size() == 0; }
  double first_trial(const T* x, const T* g, double alpha0, T* x_trial) {
    const int k = memory_.size();
    double cg;
    cs_.assign(k, 0.0), cy_.assign(k, 0.0);
    memory_.direction_coefficients(a_.data(), b_.data(), cg, cs_.data(), cy_.data());
    dg_ = direction_pass(memory_, g, cg, cs_.data(), cy_.data(), x, alpha0, x_trial, num_threads_, partials_);
    return dg_;
  }
  void move_trial(const T* x, double alpha, T* x_trial) {
    trial_point(x, memory_.spare_s(), alpha, x_trial, memory_.n(), num_threads_);
  }
  double slope(const T* g_trial, const T* g, double f_trial, bool unit_trial) {
    if (unit_trial) {  // pass 1 at once: its products serve the memory update too
      gradient_pass(memory_, g_trial, g, 1.0, num_threads_, partials_, dots_);
      return dots_.dg;
    }
    return std::isfinite(f_trial) ? dot(memory_.spare_s(), g_trial, memory_.n(), num_threads_, partials_) : NAN;
  }
  bool accept(const T*, const T*, const T* g, const T* g_trial, double alpha, bool unit_trial) {
    if (!unit_trial) gradient_pass(memory_, g_trial, g, alpha, num_threads_, partials_, dots_);
    return update_memory(memory_, dots_, g_trial, alpha * dg_, num_threads_, partials_, a_, b_);
  }
  GradientNorms norms() const { return {dots_.g_max, dots_.g_l1, dots_.g_sq}; }
  bool restart() {
    if (memory_.size() == 0) return false;
    memory_.clear();
    a_.clear(), b_.clear();
    return true;
  }

 private:
  LbfgsMemory<T> memory_;
  BlockPartials partials_;
  GradientDots dots_;
  LineSearch search_;
  std::vector<double> a_, b_;    // S'g and Y'g at the current iterate
  std::vector<double> cs_, cy_;  // the direction's coefficients
  double dg_ = 0;                // d'g at the iterate: g's of the candidate is alpha*dg_
  int num_threads_ = 0;
};

}  // namespace fastopt
