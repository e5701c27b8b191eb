// Line searches along a descent direction d, for phi(t) = f(x + t*d).
//
// Both are written in reverse communication: the driver evaluates phi and
// phi' = g'd at step(), reports them with next(), and is told to evaluate
// again, to accept, or that the search failed. They never see a vector, so
// they cost nothing per element; a non-finite phi or phi' (the objective
// overflowed or returned NaN there) makes them step back towards the last
// good step, and both stop after maxls evaluations.
//
// MoreThuente: J. J. More and D. J. Thuente (1994), "Line search algorithms
// with guaranteed sufficient decrease", ACM TOMS 20(3) 286-307 (the logic of
// MINPACK-2's dcsrch/dcstep, written anew from the paper). It finds a step
// satisfying the strong Wolfe conditions
//     phi(t) <= phi(0) + c1*t*phi'(0)   and   |phi'(t)| <= c2*|phi'(0)|
// by safeguarded cubic/quadratic interpolation over an interval that is
// extrapolated until it brackets such a step, then shrunk.
//
// Backtracking: the Armijo condition only, with safeguarded quadratic
// interpolation (each step in [0.1, 0.5] times the previous one). Cheaper
// per iteration, but a step it accepts may fail the curvature test.
#pragma once

#include <algorithm>
#include <cmath>
#include <limits>
#include <string>

namespace fastopt {

struct LineSearchParams {
  double c1 = 1e-4;        // sufficient decrease (Armijo)
  double c2 = 0.9;         // curvature (strong Wolfe)
  double xtol = 0.1;       // relative width below which the interval is too small to shrink
  double step_min = 0.0;
  double step_max = 1e20;
  int maxls = 20;          // evaluations per search
};

enum class SearchAction {
  kEvaluate,  // evaluate phi and phi' at step()
  kConverged, // step() (already evaluated) satisfies the conditions
  kStalled,   // no further progress possible; step() is the last evaluated step: accept it if it decreased phi
  kFailed,    // give up; message() says why
};

namespace line_search_detail {

// Minimizer of the cubic interpolating phi and phi' at a and b (Nocedal &
// Wright, eq. 3.59). The discriminant is clamped at 0: where the cubic has no
// minimizer this returns the stationary point of its derivative instead.
inline double cubic_minimizer(double a, double fa, double da, double b, double fb, double db, double* d2_out = nullptr) {
  const double d1 = da + db - 3.0 * (fa - fb) / (a - b);
  const double scale = std::max({std::fabs(d1), std::fabs(da), std::fabs(db)});
  double d2 = scale * std::sqrt(std::max(0.0, (d1 / scale) * (d1 / scale) - (da / scale) * (db / scale)));
  if (b < a) d2 = -d2;
  if (d2_out) *d2_out = d2;
  return b - (b - a) * ((db + d2 - d1) / (db - da + 2.0 * d2));
}

// Minimizer of the quadratic through phi(a), phi'(a) and phi(b).
inline double quadratic_minimizer(double a, double fa, double da, double b, double fb) {
  return a + (da / ((fa - fb) / (b - a) + da)) / 2.0 * (b - a);
}

// Zero of the secant of phi' through a and b.
inline double secant(double a, double da, double b, double db) { return b + db / (db - da) * (a - b); }

}  // namespace line_search_detail

// What every line search keeps: its parameters, phi(0) and phi'(0), the
// current trial step, the evaluations so far and its last verdict's message.
class LineSearchState {
 public:
  double step() const { return step_; }
  int evaluations() const { return evals_; }
  const std::string& message() const { return message_; }

 protected:
  void begin(double f0, double dg0, double step, const LineSearchParams& p) {
    p_ = p;
    f0_ = f0;
    dg0_ = dg0;
    step_ = std::clamp(step, p.step_min, p.step_max);
    evals_ = 0;
    message_.clear();
  }

  LineSearchParams p_;
  double f0_ = 0, dg0_ = 0, step_ = 1;
  int evals_ = 0;
  std::string message_;
};

class MoreThuente : public LineSearchState {
 public:
  // Starts a search from phi(0) = f0 with slope dg0 < 0 and first trial `step`.
  void start(double f0, double dg0, double step, const LineSearchParams& p) {
    begin(f0, dg0, step, p);
    bracketed_ = false;
    stage1_ = true;
    width_ = p.step_max - p.step_min;
    width_prev_ = 2.0 * width_;
    stx_ = sty_ = 0.0;
    fx_ = fy_ = f0;
    dx_ = dy_ = dg0;
    lo_ = 0.0;
    hi_ = step_ + kExtrapolateUpper * step_;
    upper_limit_ = p.step_max;
  }

  SearchAction next(double f, double dg) {
    ++evals_;
    if (!std::isfinite(f) || !std::isfinite(dg)) return step_back();
    const double sufficient = p_.c1 * dg0_;  // the Armijo line's slope
    const double armijo = f0_ + step_ * sufficient;

    // Switch from psi(t) = phi(t) - phi(0) - c1*t*phi'(0) to phi itself once
    // a step has psi <= 0 and psi' >= 0 (the paper's Theorem 3.2 situation).
    if (stage1_ && f <= armijo && dg >= sufficient) stage1_ = false;

    if (f <= armijo && std::fabs(dg) <= p_.c2 * -dg0_) return SearchAction::kConverged;
    if (bracketed_ && (step_ <= lo_ || step_ >= hi_)) return stall("rounding errors prevent progress");
    if (bracketed_ && hi_ - lo_ <= p_.xtol * hi_) return stall("the interval of uncertainty is below xtol");
    if (step_ == p_.step_max && f <= armijo && dg <= sufficient) return stall("the step is at the upper bound");
    if (step_ == p_.step_min && (f > armijo || dg >= sufficient)) return stall("the step is at the lower bound");
    if (evals_ >= p_.maxls) return fail("no step satisfying the strong Wolfe conditions within maxls evaluations");

    const double evaluated = step_;
    if (stage1_ && f <= fx_ && f > armijo) {
      // Interpolate psi: phi only where psi has already shown a decrease.
      double fx = fx_ - stx_ * sufficient, fy = fy_ - sty_ * sufficient;
      double dx = dx_ - sufficient, dy = dy_ - sufficient;
      update(fx, dx, fy, dy, f - step_ * sufficient, dg - sufficient);
      fx_ = fx + stx_ * sufficient, fy_ = fy + sty_ * sufficient;
      dx_ = dx + sufficient, dy_ = dy + sufficient;
    } else {
      update(fx_, dx_, fy_, dy_, f, dg);
    }

    if (bracketed_) {
      // Bisect when the interval did not shrink enough over two steps.
      if (std::fabs(sty_ - stx_) >= 0.66 * width_prev_) step_ = stx_ + 0.5 * (sty_ - stx_);
      width_prev_ = width_;
      width_ = std::fabs(sty_ - stx_);
      lo_ = std::min(stx_, sty_);
      hi_ = std::max(stx_, sty_);
    } else {
      lo_ = step_ + kExtrapolateLower * (step_ - stx_);
      hi_ = step_ + kExtrapolateUpper * (step_ - stx_);
    }
    step_ = std::clamp(step_, p_.step_min, std::min(p_.step_max, upper_limit_));
    if (!std::isfinite(step_)) step_ = bracketed_ ? 0.5 * (stx_ + sty_) : stx_;
    if (bracketed_ && (step_ <= lo_ || step_ >= hi_ || hi_ - lo_ <= p_.xtol * hi_)) step_ = stx_;
    if (step_ <= 0.0) return fail("the line search made no progress along the direction");
    if (step_ == evaluated) return stall("the next trial would repeat the last one");
    return SearchAction::kEvaluate;
  }

 private:
  static constexpr double kExtrapolateLower = 1.1;  // a new trial is at least this far beyond the last...
  static constexpr double kExtrapolateUpper = 4.0;  // ...and at most this far, relative to its distance from stx

  // One step of the paper's interval update (their "Updating algorithm" and
  // its four cases), over the function values and slopes given, which are
  // those of phi or of psi. (stx, fx, dx) is the best step so far, (sty, fy,
  // dy) the other end of the interval, (step, fp, dp) the new trial.
  void update(double& fx, double& dx, double& fy, double& dy, double fp, double dp) {
    using namespace line_search_detail;
    const double t = step_;
    const bool opposite = dp * (dx / std::fabs(dx)) < 0.0;
    double next;
    if (fp > fx) {
      // Case 1: higher value. The minimizer is bracketed; take the cubic
      // step if it is closer to stx than the quadratic one, else their mean.
      const double c = cubic_minimizer(stx_, fx, dx, t, fp, dp);
      const double q = quadratic_minimizer(stx_, fx, dx, t, fp);
      next = std::fabs(c - stx_) < std::fabs(q - stx_) ? c : c + (q - c) / 2.0;
      bracketed_ = true;
    } else if (opposite) {
      // Case 2: lower value, slopes of opposite sign: bracketed; take the
      // cubic or secant step, whichever is farther from the trial.
      const double c = cubic_minimizer(stx_, fx, dx, t, fp, dp);
      const double s = secant(stx_, dx, t, dp);
      next = std::fabs(c - t) > std::fabs(s - t) ? c : s;
      bracketed_ = true;
    } else if (std::fabs(dp) < std::fabs(dx)) {
      // Case 3: lower value, same sign, slope decreasing in magnitude. The
      // cubic step is used only if it lies beyond the trial (the cubic tends
      // to infinity in that direction); else the far end of the bounds.
      double d2 = 0.0;
      double c = cubic_minimizer(t, fp, dp, stx_, fx, dx, &d2);
      if (!((c - t) / (stx_ - t) < 0.0 && d2 != 0.0)) c = t > stx_ ? hi_ : lo_;
      const double s = secant(stx_, dx, t, dp);
      if (bracketed_) {
        next = std::fabs(c - t) < std::fabs(s - t) ? c : s;
        next = t > stx_ ? std::min(t + 0.66 * (sty_ - t), next) : std::max(t + 0.66 * (sty_ - t), next);
      } else {
        next = std::fabs(c - t) > std::fabs(s - t) ? c : s;
        next = std::clamp(next, std::min(lo_, hi_), std::max(lo_, hi_));
      }
    } else {
      // Case 4: lower value, same sign, slope not decreasing: extrapolate to
      // the bound, or interpolate towards the far end when bracketed.
      next = bracketed_ ? cubic_minimizer(t, fp, dp, sty_, fy, dy) : (t > stx_ ? hi_ : lo_);
    }
    if (!std::isfinite(next)) next = bracketed_ ? 0.5 * (stx_ + sty_) : (t > stx_ ? hi_ : lo_);

    if (fp > fx) {
      sty_ = t, fy = fp, dy = dp;
    } else {
      if (opposite) sty_ = stx_, fy = fx, dy = dx;
      stx_ = t, fx = fp, dx = dp;
    }
    step_ = next;
  }

  // A non-finite value at step_: no later trial may go this far; retreat
  // halfway towards the best step so far.
  SearchAction step_back() {
    if (evals_ >= p_.maxls) return fail("the objective is not finite along the direction (maxls evaluations)");
    const double back = stx_ + 0.5 * (step_ - stx_);
    // Later trials stay clearly short of the bad step (not at it again).
    if (step_ > stx_) upper_limit_ = std::min(upper_limit_, stx_ + 0.75 * (step_ - stx_));
    if (!(back > 0.0) || back == step_) return fail("the objective is not finite along the direction");
    step_ = back;
    return SearchAction::kEvaluate;
  }

  SearchAction stall(const char* why) {
    message_ = why;
    return SearchAction::kStalled;
  }
  SearchAction fail(const char* why) {
    message_ = why;
    return SearchAction::kFailed;
  }

  bool bracketed_ = false, stage1_ = true;
  double width_ = 0, width_prev_ = 0;
  double stx_ = 0, fx_ = 0, dx_ = 0;  // best step so far
  double sty_ = 0, fy_ = 0, dy_ = 0;  // other end of the interval
  double lo_ = 0, hi_ = 0;            // where the next trial may go
  double upper_limit_ = 1e20;         // below every step where phi was not finite
};

class Backtracking : public LineSearchState {
 public:
  void start(double f0, double dg0, double step, const LineSearchParams& p) { begin(f0, dg0, step, p); }

  SearchAction next(double f, double dg) {
    ++evals_;
    const bool finite = std::isfinite(f) && std::isfinite(dg);
    if (finite && f <= f0_ + p_.c1 * step_ * dg0_) return SearchAction::kConverged;
    if (evals_ >= p_.maxls) {
      message_ = finite ? "no step satisfying the Armijo condition within maxls evaluations"
                        : "the objective is not finite along the direction (maxls evaluations)";
      return SearchAction::kFailed;
    }
    double next = 0.5 * step_;
    if (finite) {
      // Minimizer of the quadratic through phi(0), phi'(0) and phi(step).
      const double q = -dg0_ * step_ * step_ / (2.0 * (f - f0_ - dg0_ * step_));
      if (std::isfinite(q)) next = std::clamp(q, 0.1 * step_, 0.5 * step_);
    }
    if (!(next > p_.step_min) || next == step_) {
      message_ = "the step became too small";
      return SearchAction::kFailed;
    }
    step_ = next;
    return SearchAction::kEvaluate;
  }
};

}  // namespace fastopt
