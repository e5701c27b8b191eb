// pybind11 bindings of the quasi-Newton drivers: fastopt._core.Lbfgs, Bfgs, LbfgsOptions,
// lbfgs_direction (a test hook into the same passes) and lbfgs_roofline (the
// benchmark's memory-traffic reference).
//
// The driver runs with the GIL released; it takes the GIL back only to call
// the Python objective and callback. The objective sees read-only views of
// the solver's own x buffers (no copy per call) and, with grad_inplace=True,
// writes the gradient straight into the solver's buffer.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <cstring>
#include <memory>

#include "bindings/checks.hpp"
#include "bindings/optimizers.hpp"
#include "lbfgs/bfgs.hpp"
#include "lbfgs/driver.hpp"
#include "lbfgs/lbfgsb.hpp"
#include "lbfgs/owlqn.hpp"
#include "lbfgs/roofline.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastopt {
namespace {

LineSearchKind parse_line_search(const std::string& name) {
  if (name == "strong_wolfe") return LineSearchKind::kMoreThuente;
  if (name == "backtracking") return LineSearchKind::kBacktracking;
  if (name == "fixed") return LineSearchKind::kFixed;
  throw py::value_error("invalid line_search: '" + name + "' (expected 'strong_wolfe', 'backtracking' or 'fixed')");
}

FirstStep parse_first_step(const std::string& name) {
  if (name == "l1") return FirstStep::kL1;
  if (name == "l2") return FirstStep::kL2;
  throw py::value_error("invalid first_step: '" + name + "' (expected 'l1' or 'l2')");
}

const char* line_search_name(LineSearchKind kind) {
  switch (kind) {
    case LineSearchKind::kMoreThuente: return "strong_wolfe";
    case LineSearchKind::kBacktracking: return "backtracking";
    case LineSearchKind::kFixed: return "fixed";
  }
  return "?";
}

// The objective value: a Python number or a 0-d array.
double objective_value(py::handle r) {
  if (py::isinstance<py::array>(r) && py::reinterpret_borrow<py::array>(r).ndim() != 0)
    throw py::type_error("fun must return a scalar objective value, got an array of shape " +
                         shape_text(py::reinterpret_borrow<py::array>(r)));
  const double f = PyFloat_AsDouble(r.ptr());
  if (f == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error("fun must return a real number as the objective value, got " + type_name(r));
  }
  return f;
}

template <class T>
py::array_t<T> new_vector(std::int64_t n) { return py::array_t<T>(static_cast<py::ssize_t>(n)); }

// The solver for one dtype: the driver, its x/g buffers (NumPy arrays, so a
// view the objective kept stays valid) and the views handed to Python.
template <class T, class Driver>
struct Solver {
  template <class... DriverArgs>
  explicit Solver(std::int64_t n, DriverArgs... args) : driver(n, args...) {
    for (int k = 0; k < 2; ++k) {
      x[k] = new_vector<T>(n);
      g[k] = new_vector<T>(n);
      x_view[k] = x[k].attr("view")();
      x_view[k].attr("flags").attr("writeable") = false;
      ws.x[k] = x[k].mutable_data();
      ws.g[k] = g[k].mutable_data();
    }
  }
  Driver driver;
  py::array_t<T> x[2], g[2];
  py::array x_view[2];
  LbfgsWorkspace<T> ws;
};

// Calls the Python objective (with the GIL) for the driver.
template <class T, class Driver>
struct PythonObjective {
  Solver<T, Driver>& solver;
  py::object fun;
  bool grad_inplace;
  std::int64_t n;

  double operator()(const T* x, T* g) const {
    py::gil_scoped_acquire gil;
    const int xs = x == solver.ws.x[0] ? 0 : 1;
    const int gs = g == solver.ws.g[0] ? 0 : 1;
    if (grad_inplace) return objective_value(fun(solver.x_view[xs], solver.g[gs]));
    py::object r = fun(solver.x_view[xs]);
    if (!(py::isinstance<py::tuple>(r) || py::isinstance<py::list>(r)) || py::len(r) != 2)
      throw py::type_error("with jac=True, fun must return a pair (f, g), got " + type_name(r));
    const double f = objective_value(r[py::int_(0)]);
    py::object grad = r[py::int_(1)];
    auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(grad);
    if (!arr) {
      PyErr_Clear();
      throw py::type_error("fun returned a gradient of type " + type_name(grad) + "; expected an array of floats");
    }
    if (arr.ndim() != 1 || arr.shape(0) != n)
      throw py::value_error("fun returned a gradient of shape " + shape_text(arr) + " but x has shape (" +
                            std::to_string(n) + ",)");
    std::memcpy(g, arr.data(), static_cast<std::size_t>(n) * sizeof(T));
    return f;
  }
};

template <class T, class Driver>
struct PythonCallback {
  Solver<T, Driver>& solver;
  py::object callback;

  bool operator()(const T* x, double f, std::int64_t nit) const {
    if (callback.is_none()) return false;
    py::gil_scoped_acquire gil;
    return py::bool_(callback(solver.x_view[x == solver.ws.x[0] ? 0 : 1], f, nit));
  }
};

// x must be the solver's dtype and size; it receives the result.
template <class T>
void check_x(const py::array& x, std::int64_t n) {
  if (!x.dtype().is(py::dtype::of<T>()))
    throw py::type_error("x has dtype " + std::string(py::str(x.dtype())) + " but the solver runs in " +
                         std::string(py::str(py::dtype::of<T>())));
  if (x.ndim() != 1 || x.shape(0) != n)
    throw py::value_error("x has shape " + shape_text(x) + " but the solver has n=" + std::to_string(n));
  if (!(x.flags() & py::array::c_style) || !x.writeable())
    throw py::value_error("x must be a writeable C-contiguous array (it receives the result)");
}

// Minimizes from x (updated in place to the result) with the GIL released
// except in fun and callback. Returns the result's fields.
template <class T, class Driver>
py::dict run_solver(Solver<T, Driver>& s, std::int64_t n, py::object fun, py::array x, const LbfgsOptions& options,
                    bool grad_inplace, py::object callback) {
  options.validate();
  check_x<T>(x, n);
  const std::size_t bytes = static_cast<std::size_t>(n) * sizeof(T);
  std::memcpy(s.ws.x[0], x.data(), bytes);
  PythonObjective<T, Driver> objective{s, std::move(fun), grad_inplace, n};
  PythonCallback<T, Driver> on_iteration{s, std::move(callback)};
  LbfgsResult res;
  {
    py::gil_scoped_release release;
    res = s.driver.run(s.ws, options, objective, on_iteration);
  }
  std::memcpy(x.mutable_data(), s.ws.x[res.slot], bytes);
  py::array_t<T> jac = new_vector<T>(n);
  std::memcpy(jac.mutable_data(), s.ws.g[res.slot], bytes);
  return py::dict("status"_a = res.status, "message"_a = res.message, "fun"_a = res.f, "jac"_a = jac,
                  "nit"_a = res.nit, "nfev"_a = res.nfev, "njev"_a = res.nfev, "nskipped"_a = res.nskipped,
                  "nrestart"_a = res.nrestart, "grad_inf_norm"_a = res.g_max);
}

// A problem's solver in its dtype (float32 or float64: one of the two is
// built), with the checks every method shares; the Python classes below add
// their own methods.
template <template <class> class Driver>
class TypedSolver {
 public:
  std::int64_t n() const { return n_; }
  py::dtype dtype() const { return f64_ ? py::dtype::of<double>() : py::dtype::of<float>(); }

  // Minimizes from x (updated in place to the result). Returns the result's fields.
  py::dict run(py::object fun, py::array x, const LbfgsOptions& options, bool grad_inplace, py::object callback) {
    return visit([&](auto& s) { return run_solver(s, n_, fun, x, options, grad_inplace, callback); });
  }

 protected:
  template <class... DriverArgs>
  TypedSolver(std::int64_t n, const py::dtype& dtype, const char* method, DriverArgs... args) : n_(n) {
    if (n < 1) throw py::value_error("the problem needs at least one variable, got n=" + std::to_string(n));
    if (dtype.is(py::dtype::of<double>())) f64_ = std::make_unique<Solver<double, Driver<double>>>(n, args...);
    else if (dtype.is(py::dtype::of<float>())) f32_ = std::make_unique<Solver<float, Driver<float>>>(n, args...);
    else throw py::type_error(std::string(method) + " runs in float32 or float64, got dtype " + std::string(py::str(dtype)));
  }
  // f(solver) on the one that exists.
  template <class F>
  decltype(auto) visit(F&& f) { return f64_ ? f(*f64_) : f(*f32_); }
  template <class F>
  decltype(auto) visit(F&& f) const { return f64_ ? f(*f64_) : f(*f32_); }

  std::int64_t n_;
  std::unique_ptr<Solver<float, Driver<float>>> f32_;
  std::unique_ptr<Solver<double, Driver<double>>> f64_;
};

int checked_history_size(int history_size) {
  if (history_size < 1)
    throw py::value_error("invalid maxcor (history size): " + std::to_string(history_size) + " (must be >= 1)");
  return history_size;
}

// L-BFGS; its memory and counters are the torch-style optimizer's state.
class Lbfgs : public TypedSolver<LbfgsDriver> {
 public:
  Lbfgs(std::int64_t n, const py::dtype& dtype, int history_size)
      : TypedSolver(n, dtype, "L-BFGS", checked_history_size(history_size)), m_(history_size) {}

  int history_size() const { return m_; }

  // cross_rank(rows, out): a distributed run's combine (see blocks.hpp),
  // called with the GIL: rows is this rank's (blocks, width) float64 table,
  // out (2*width) receives the all-rank column sums, then the maxima.
  py::dict run_distributed(py::object fun, py::array x, const LbfgsOptions& options, bool grad_inplace,
                           py::object callback, py::object cross_rank) {
    return visit([&](auto& s) {
      if (cross_rank.is_none()) return run_solver(s, n_, fun, x, options, grad_inplace, callback);
      s.driver.set_cross_rank(
          [&cross_rank](const double* rows, std::int64_t blocks, int width, double* sums, double* maxes) {
            py::gil_scoped_acquire gil;
            py::array_t<double> table({static_cast<py::ssize_t>(blocks), static_cast<py::ssize_t>(width)});
            std::copy(rows, rows + blocks * width, table.mutable_data());
            py::array_t<double> out(2 * static_cast<py::ssize_t>(width));
            cross_rank(table, out);
            std::copy(out.data(), out.data() + width, sums);
            std::copy(out.data() + width, out.data() + 2 * width, maxes);
          });
      struct Unset {  // the solver may run again without ranks
        decltype(s.driver)& driver;
        ~Unset() { driver.set_cross_rank(nullptr); }
      } unset{s.driver};
      return run_solver(s, n_, fun, x, options, grad_inplace, callback);
    });
  }

  py::dict get_state() const { return visit([](const auto& s) { return state_of(s); }); }
  void set_state(const py::dict& state) { visit([&](auto& s) { load_state(s, state); }); }

 private:
  template <class T>
  static py::dict state_of(const Solver<T, LbfgsDriver<T>>& s) {
    const LbfgsMemory<T>& mem = s.driver.memory();
    const int k = mem.size();
    const auto n = static_cast<py::ssize_t>(mem.n());
    const std::vector<py::ssize_t> pairs_shape{k, n}, small_shape{k, k};
    py::array_t<T> s_rows(pairs_shape), y_rows(pairs_shape);
    py::array_t<double> r(small_shape), yy(small_shape);
    for (int i = 0; i < k; ++i) {
      std::memcpy(s_rows.mutable_data(i), mem.s(i), sizeof(T) * n);
      std::memcpy(y_rows.mutable_data(i), mem.y(i), sizeof(T) * n);
      for (int j = 0; j < k; ++j) {
        *r.mutable_data(i, j) = i <= j ? mem.r(i, j) : 0.0;
        *yy.mutable_data(i, j) = mem.yy(i, j);
      }
    }
    return py::dict("s"_a = s_rows, "y"_a = y_rows, "sy"_a = r, "yy"_a = yy, "gamma"_a = mem.gamma(),
                    "n_iter"_a = s.driver.totals.iterations, "func_evals"_a = s.driver.totals.evaluations,
                    "skipped"_a = s.driver.totals.skipped);
  }

  template <class T>
  void load_state(Solver<T, LbfgsDriver<T>>& s, const py::dict& state) {
    for (const char* key : {"s", "y", "sy", "yy", "gamma", "n_iter", "func_evals", "skipped"})
      if (!state.contains(key)) throw py::value_error(std::string("L-BFGS state is missing '") + key + "'");
    auto s_rows = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(state["s"]);
    auto y_rows = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(state["y"]);
    auto r = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(state["sy"]);
    auto yy = py::array_t<double, py::array::c_style | py::array::forcecast>::ensure(state["yy"]);
    if (!s_rows || !y_rows || !r || !yy) throw py::type_error("L-BFGS state arrays must be numeric arrays");
    const py::ssize_t k = s_rows.ndim() == 2 ? s_rows.shape(0) : -1;
    if (s_rows.ndim() != 2 || s_rows.shape(1) != n_ || y_rows.ndim() != 2 || y_rows.shape(0) != k ||
        y_rows.shape(1) != n_ || k > m_)
      throw py::value_error("L-BFGS state 's' and 'y' must have shape (k, " + std::to_string(n_) + ") with k <= " +
                            std::to_string(m_) + ", got " + shape_text(s_rows) + " and " + shape_text(y_rows));
    if (r.ndim() != 2 || r.shape(0) != k || r.shape(1) != k || yy.ndim() != 2 || yy.shape(0) != k || yy.shape(1) != k)
      throw py::value_error("L-BFGS state 'sy' and 'yy' must have shape (k, k) for k = " + std::to_string(k));
    s.driver.memory().load(static_cast<int>(k), s_rows.data(), y_rows.data(), r.data(), yy.data(),
                           py::cast<double>(state["gamma"]));
    s.driver.totals.iterations = py::cast<std::int64_t>(state["n_iter"]);
    s.driver.totals.evaluations = py::cast<std::int64_t>(state["func_evals"]);
    s.driver.totals.skipped = py::cast<std::int64_t>(state["skipped"]);
  }

  int m_;
};

// Dense BFGS for one problem (type-erased over the dtype); the inverse
// Hessian approximation is kept between runs until reset.
class Bfgs : public TypedSolver<BfgsDriver> {
 public:
  Bfgs(std::int64_t n, const py::dtype& dtype) : TypedSolver(n, dtype, "BFGS") {}

  py::array_t<double> inverse_hessian() const {
    const std::vector<double>& h = visit([](const auto& s) -> const std::vector<double>& { return s.driver.inverse_hessian(); });
    py::array_t<double> out(std::vector<py::ssize_t>{n_, n_});
    std::memcpy(out.mutable_data(), h.data(), h.size() * sizeof(double));
    return out;
  }

  // One update of H with the pair (s, y), s'y > 0: the tests' hook for the formula.
  void update(const py::array_t<double, py::array::c_style | py::array::forcecast>& h,
              const py::array_t<double, py::array::c_style | py::array::forcecast>& s,
              const py::array_t<double, py::array::c_style | py::array::forcecast>& y) {
    if (h.ndim() != 2 || h.shape(0) != n_ || h.shape(1) != n_ || s.ndim() != 1 || s.shape(0) != n_ ||
        y.ndim() != 1 || y.shape(0) != n_)
      throw py::value_error("update takes H of shape (n, n) and s, y of shape (n,)");
    double sy = 0;
    for (std::int64_t i = 0; i < n_; ++i) sy += s.data()[i] * y.data()[i];
    if (!(sy > 0)) throw py::value_error("update needs s'y > 0, got " + num(sy));
    auto apply = [&](auto& driver) {
      driver.set_inverse_hessian(h.data());
      driver.set_pair(s.data(), y.data());
      driver.update(sy);
    };
    visit([&](auto& s) { apply(s.driver); });
  }
};

// OWL-QN for one problem (type-erased over the dtype): L1 weight c and the
// penalized variables are set per run.
class Owlqn : public TypedSolver<OwlqnDriver> {
 public:
  Owlqn(std::int64_t n, const py::dtype& dtype, int history_size)
      : TypedSolver(n, dtype, "OWL-QN", checked_history_size(history_size)) {}

  // Minimizes f(x) + l1*||x[penalized]||_1 from x (updated in place).
  py::dict run(py::object fun, py::array x, const LbfgsOptions& options, double l1, py::object penalized,
               bool grad_inplace, py::object callback) {
    OwlqnPenalty penalty;
    penalty.c = l1;
    if (!std::isfinite(l1) || l1 < 0) throw py::value_error("invalid l1: " + num(l1) + " (must be finite and >= 0)");
    if (!penalized.is_none()) {
      auto mask = py::array_t<bool, py::array::c_style | py::array::forcecast>::ensure(penalized);
      if (!mask || mask.ndim() != 1 || mask.shape(0) != n_)
        throw py::value_error("penalized must be a boolean array of shape (" + std::to_string(n_) + ",)");
      penalty.penalized.assign(mask.data(), mask.data() + n_);
    }
    visit([&](auto& s) { s.driver.set_penalty(penalty); });
    return TypedSolver::run(fun, x, options, grad_inplace, callback);
  }
};

// Bounds as arrays of the solver's dtype and size n (the Python layer has
// already parsed SciPy's forms and rounded them inward to the dtype).
template <class T>
py::array_t<T, py::array::c_style | py::array::forcecast> checked_bound(const py::object& bound, std::int64_t n,
                                                                      const char* name) {
  auto arr = py::array_t<T, py::array::c_style | py::array::forcecast>::ensure(bound);
  if (!arr) throw py::type_error(std::string(name) + " must be an array of floats");
  if (arr.ndim() != 1 || arr.shape(0) != n)
    throw py::value_error(std::string(name) + " has shape " + shape_text(arr) + " but x has shape (" +
                          std::to_string(n) + ",)");
  return arr;
}

template <class T>
void check_box(const T* lo, const T* hi, std::int64_t n) {
  for (std::int64_t i = 0; i < n; ++i) {
    const double l = static_cast<double>(lo[i]), h = static_cast<double>(hi[i]);
    if (std::isnan(l) || std::isnan(h)) throw py::value_error("bounds of variable " + std::to_string(i) + " are NaN");
    if (l > h)
      throw py::value_error("lower bound > upper bound for variable " + std::to_string(i) + ": " + num(l) + " > " + num(h));
    if (l == INFINITY || h == -INFINITY)
      throw py::value_error("bounds of variable " + std::to_string(i) + " leave no feasible value: [" + num(l) + ", " +
                            num(h) + "]");
  }
}

// L-BFGS-B for one problem (type-erased over the dtype): the box is set per run.
class Lbfgsb : public TypedSolver<LbfgsbDriver> {
 public:
  Lbfgsb(std::int64_t n, const py::dtype& dtype, int history_size)
      : TypedSolver(n, dtype, "L-BFGS-B", checked_history_size(history_size)) {}

  // Minimizes f over lower <= x <= upper from x (projected into the box, then updated in place).
  py::dict run(py::object fun, py::array x, const LbfgsOptions& options, const py::object& lower,
               const py::object& upper, bool grad_inplace, py::object callback) {
    visit([&](auto& s) {
      using T = std::remove_reference_t<decltype(*s.ws.x[0])>;
      auto lo = checked_bound<T>(lower, n_, "lower");
      auto hi = checked_bound<T>(upper, n_, "upper");
      check_box(lo.data(), hi.data(), n_);
      s.driver.set_bounds(lo.data(), hi.data());
    });
    return TypedSolver::run(fun, x, options, grad_inplace, callback);
  }

  // The stored pairs after a run: (S, Y), rows oldest first.
  py::tuple pairs() const {
    return visit([](const auto& s) -> py::tuple {
      using T = std::remove_const_t<std::remove_reference_t<decltype(*s.ws.x[0])>>;
      const BoxedMemory<T>& mem = s.driver.memory();
      const int k = mem.size();
      const auto n = static_cast<py::ssize_t>(mem.n());
      py::array_t<T> s_rows(std::vector<py::ssize_t>{k, n}), y_rows(std::vector<py::ssize_t>{k, n});
      for (int i = 0; i < k; ++i) {
        std::memcpy(s_rows.mutable_data(i), mem.s(i), sizeof(T) * n);
        std::memcpy(y_rows.mutable_data(i), mem.y(i), sizeof(T) * n);
      }
      return py::make_tuple(s_rows, y_rows);
    });
  }
};

// The generalized Cauchy point and the subspace step x_bar of L-BFGS-B at
// (x, g) with the pairs (rows of s, y) stored as a run stores them (float64):
// the tests' hook. Returns (x_c, free mask at x_c, x_bar).
py::tuple lbfgsb_model_step(const py::array_t<double, py::array::c_style | py::array::forcecast>& x,
                            const py::array_t<double, py::array::c_style | py::array::forcecast>& g,
                            const py::object& lower, const py::object& upper,
                            const py::array_t<double, py::array::c_style | py::array::forcecast>& s,
                            const py::array_t<double, py::array::c_style | py::array::forcecast>& y) {
  const std::int64_t n = x.ndim() == 1 ? x.shape(0) : -1;
  if (n < 1 || g.ndim() != 1 || g.shape(0) != n || s.ndim() != 2 || y.ndim() != 2 || s.shape(1) != n ||
      y.shape(1) != n || s.shape(0) != y.shape(0))
    throw py::value_error("lbfgsb_model_step takes x, g of shape (n,) and s, y of shape (k, n)");
  auto lo = checked_bound<double>(lower, n, "lower");
  auto hi = checked_bound<double>(upper, n, "upper");
  check_box(lo.data(), hi.data(), n);
  const int k = static_cast<int>(s.shape(0));
  LbfgsbDriver<double> driver(n, std::max(k, 1));
  driver.set_bounds(lo.data(), hi.data());
  for (int i = 0; i < k; ++i)
    if (!driver.load_pair(s.data(i), y.data(i))) throw py::value_error("the pairs give a singular K");
  py::array_t<double> xc = new_vector<double>(n), xbar = new_vector<double>(n);
  py::array_t<bool> free_mask(static_cast<py::ssize_t>(n));
  std::vector<std::uint8_t> free(static_cast<std::size_t>(n));
  if (!driver.model_step(x.data(), g.data(), xc.mutable_data(), free.data(), xbar.mutable_data()))
    throw py::value_error("the model's small system is singular");
  for (std::int64_t i = 0; i < n; ++i) free_mask.mutable_data()[i] = free[i] != 0;
  return py::make_tuple(xc, free_mask, xbar);
}

// -H g from the given pairs, through the driver's own passes: each pair
// enters the memory exactly as in a run (pass 1 with the pair as candidate,
// the curvature test with gs[i] = g_old's_i, the ring update), then pass 2
// forms the direction. Returns (d, number of pairs skipped by the curvature test).
template <class T>
py::tuple direction_from_pairs(const py::array_t<T, py::array::c_style>& s, const py::array_t<T, py::array::c_style>& y,
                               const py::array_t<T, py::array::c_style>& g, int m, const std::vector<double>& gs) {
  const std::int64_t n = g.shape(0);
  const py::ssize_t k = s.shape(0);
  LbfgsMemory<T> mem(n, m);
  BlockPartials partials;
  GradientDots dots;
  std::vector<double> a, b;
  std::vector<T> zeros(static_cast<std::size_t>(n), T(0));
  int skipped = 0;
  {
    py::gil_scoped_release release;
    for (py::ssize_t i = 0; i < k; ++i) {
      // As candidate: d = s_i (alpha = 1) and y = g_new - g_old = y_i - 0.
      std::memcpy(mem.spare_s(), s.data(i), sizeof(T) * n);
      gradient_pass(mem, y.data(i), zeros.data(), 1.0, 0, partials, dots);
      if (!update_memory(mem, dots, y.data(i), gs[static_cast<std::size_t>(i)], 0, partials, a, b)) ++skipped;
    }
    gradient_pass(mem, g.data(), static_cast<const T*>(nullptr), 1.0, 0, partials, dots);
    double cg;
    std::vector<double> cs(mem.size()), cy(mem.size());
    mem.direction_coefficients(dots.sg.data(), dots.yg.data(), cg, cs.data(), cy.data());
    std::vector<T> trial(static_cast<std::size_t>(n));
    direction_pass(mem, g.data(), cg, cs.data(), cy.data(), zeros.data(), 0.0, trial.data(), 0, partials);
  }
  py::array_t<T> d = new_vector<T>(n);
  std::memcpy(d.mutable_data(), mem.spare_s(), sizeof(T) * n);
  return py::make_tuple(d, skipped);
}

template <class T>
py::tuple checked_direction(const py::array& s, const py::array& y, const py::array& g, int m,
                            std::vector<double> gs) {
  if (g.ndim() != 1 || s.ndim() != 2 || y.ndim() != 2 || s.shape(1) != g.shape(0) || y.shape(0) != s.shape(0) ||
      y.shape(1) != g.shape(0))
    throw py::value_error("lbfgs_direction takes s and y of shape (k, n) and g of shape (n,)");
  if (gs.empty()) gs.assign(static_cast<std::size_t>(s.shape(0)), 0.0);
  if (static_cast<py::ssize_t>(gs.size()) != s.shape(0))
    throw py::value_error("lbfgs_direction takes one gs value (g_old's) per pair");
  if (g.shape(0) < 1 || m < 1) throw py::value_error("lbfgs_direction needs n >= 1 and m >= 1");
  using Arr = py::array_t<T, py::array::c_style>;
  for (const py::array* a : {&s, &y, &g})
    if (!a->dtype().is(py::dtype::of<T>()) || !(a->flags() & py::array::c_style))
      throw py::type_error("lbfgs_direction takes C-contiguous arrays of one dtype");
  return direction_from_pairs<T>(py::reinterpret_borrow<Arr>(s), py::reinterpret_borrow<Arr>(y),
                                 py::reinterpret_borrow<Arr>(g), m, gs);
}

}  // namespace

void bind_lbfgs(py::module_& m) {
  py::class_<LbfgsOptions>(m, "LbfgsOptions")
      .def(py::init([](double gtol, double ftol, std::int64_t maxiter, std::int64_t maxfun, int maxls,
                       const std::string& line_search, double c1, double c2, double initial_step,
                       const std::string& first_step, int num_threads) {
             LbfgsOptions o;
             o.gtol = gtol, o.ftol = ftol, o.maxiter = maxiter, o.maxfun = maxfun, o.maxls = maxls;
             o.line_search = parse_line_search(line_search);
             o.c1 = c1, o.c2 = c2, o.initial_step = initial_step, o.num_threads = num_threads;
             o.first_step = parse_first_step(first_step);
             o.validate();
             return o;
           }),
           py::kw_only(), "gtol"_a = 1e-5, "ftol"_a = 2.2204460492503131e-09, "maxiter"_a = 15000,
           "maxfun"_a = 15000, "maxls"_a = 20, "line_search"_a = "strong_wolfe", "c1"_a = 1e-4, "c2"_a = 0.9,
           "initial_step"_a = 1.0, "first_step"_a = "l1", "num_threads"_a = 0)
      .def_readonly("gtol", &LbfgsOptions::gtol).def_readonly("ftol", &LbfgsOptions::ftol)
      .def_readonly("maxiter", &LbfgsOptions::maxiter).def_readonly("maxfun", &LbfgsOptions::maxfun)
      .def_readonly("maxls", &LbfgsOptions::maxls)
      .def_property_readonly("line_search", [](const LbfgsOptions& o) { return line_search_name(o.line_search); })
      .def_readonly("c1", &LbfgsOptions::c1).def_readonly("c2", &LbfgsOptions::c2)
      .def_readonly("initial_step", &LbfgsOptions::initial_step)
      .def_property_readonly("first_step", [](const LbfgsOptions& o) { return o.first_step == FirstStep::kL1 ? "l1" : "l2"; })
      .def_readonly("num_threads", &LbfgsOptions::num_threads);

  py::class_<Lbfgs>(m, "Lbfgs")
      .def(py::init<std::int64_t, const py::dtype&, int>(), "n"_a, "dtype"_a, "history_size"_a = 10)
      .def_property_readonly("n", &Lbfgs::n)
      .def_property_readonly("history_size", &Lbfgs::history_size)
      .def_property_readonly("dtype", &Lbfgs::dtype)
      .def("run", &Lbfgs::run_distributed, "fun"_a, "x"_a, "options"_a, "grad_inplace"_a = false,
           "callback"_a = py::none(), "cross_rank"_a = py::none())
      .def("get_state", &Lbfgs::get_state)
      .def("set_state", &Lbfgs::set_state, "state"_a);

  py::class_<Bfgs>(m, "Bfgs")
      .def(py::init<std::int64_t, const py::dtype&>(), "n"_a, "dtype"_a)
      .def_property_readonly("n", &Bfgs::n)
      .def_property_readonly("dtype", &Bfgs::dtype)
      .def("run", &Bfgs::run, "fun"_a, "x"_a, "options"_a, "grad_inplace"_a = false, "callback"_a = py::none())
      .def("inverse_hessian", &Bfgs::inverse_hessian)
      .def("update", &Bfgs::update, "h"_a, "s"_a, "y"_a);

  py::class_<Owlqn>(m, "Owlqn")
      .def(py::init<std::int64_t, const py::dtype&, int>(), "n"_a, "dtype"_a, "history_size"_a = 10)
      .def_property_readonly("n", &Owlqn::n)
      .def("run", &Owlqn::run, "fun"_a, "x"_a, "options"_a, "l1"_a, "penalized"_a = py::none(),
           "grad_inplace"_a = false, "callback"_a = py::none());

  py::class_<Lbfgsb>(m, "Lbfgsb")
      .def(py::init<std::int64_t, const py::dtype&, int>(), "n"_a, "dtype"_a, "history_size"_a = 10)
      .def_property_readonly("n", &Lbfgsb::n)
      .def("run", &Lbfgsb::run, "fun"_a, "x"_a, "options"_a, "lower"_a, "upper"_a, "grad_inplace"_a = false,
           "callback"_a = py::none())
      .def("pairs", &Lbfgsb::pairs, "The stored pairs (S, Y) after a run, rows oldest first.");

  m.def("lbfgsb_model_step", &lbfgsb_model_step, "x"_a, "g"_a, "lower"_a, "upper"_a, "s"_a, "y"_a,
        "L-BFGS-B's generalized Cauchy point, the free variables there and the subspace step x_bar, "
        "from the pairs (rows of s, y) (float64; the tests' hook).");

  m.def("lbfgs_direction", [](const py::array& s, const py::array& y, const py::array& g, int m,
                              const std::vector<double>& gs) {
    if (g.dtype().is(py::dtype::of<double>())) return checked_direction<double>(s, y, g, m, gs);
    return checked_direction<float>(s, y, g, m, gs);
  }, "s"_a, "y"_a, "g"_a, "m"_a = 10, "gs"_a = std::vector<double>{},
     "-H g from the pairs (rows of s, y) as a run stores them; gs[i] = g_old's_i for the curvature test (default 0).");

  m.def("lbfgs_roofline", [](std::int64_t n, const py::dtype& dtype, int m, int iterations, int warmup,
                             int num_threads) {
    if (n < 1 || m < 1 || iterations < 1 || warmup < 0 || num_threads < 0)
      throw py::value_error("lbfgs_roofline needs n, m, iterations >= 1 and warmup, num_threads >= 0");
    const bool is_double = dtype.is(py::dtype::of<double>());
    if (!is_double && !dtype.is(py::dtype::of<float>())) throw py::type_error("lbfgs_roofline takes float32 or float64");
    py::gil_scoped_release release;
    return is_double ? lbfgs_roofline_seconds<double>(n, m, iterations, warmup, num_threads)
                     : lbfgs_roofline_seconds<float>(n, m, iterations, warmup, num_threads);
  }, "n"_a, "dtype"_a, "m"_a = 10, "iterations"_a = 25, "warmup"_a = 15, "num_threads"_a = 0,
     "Seconds per iteration of a kernel moving the bytes of one L-BFGS iteration with trivial math (bench).");

  m.attr("LBFGS_CURVATURE_TOLERANCE") = kCurvatureTolerance;
  m.attr("LBFGS_BLOCK") = kLbfgsBlock;  // the distributed L-BFGS's exact-split unit
}

}  // namespace fastopt
