// pybind11 module fastopt._core: argument checks, GIL release, kernel calls.
//
// Each optimizer is bound twice: with lists of arrays (one list per buffer
// role) and a list of hyperparameter sets plus which set each tensor uses (the
// optimizer classes: a whole model's step, over any number of arrays and param
// groups, is one call and one parallel region), and with the hyperparameters
// as positional scalars (the fast path of fastopt.functional). The public,
// documented API is fastopt.functional / fastopt.optim.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <cmath>
#include <optional>

#include "bindings/checks.hpp"
#include "dispatch.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastopt {
void bind_lbfgs(py::module_& m);  // bindings/lbfgs.cpp

namespace {

// Threads for calls that pass num_threads=0; 0 means the OpenMP default
// (OMP_NUM_THREADS, or what threadpoolctl set through omp_set_num_threads).
std::atomic<int> g_num_threads{0};
// Threads the most recent kernel call ran on (a diagnostic for users and tests).
std::atomic<int> g_last_call_threads{0};

constexpr Access W = Access::kWrite, R = Access::kRead;
const char* const always = "";  // a required role: None is rejected

// Calls this small keep the GIL: they take a microsecond or two, and
// releasing and retaking it costs them about 440 instructions plus two mutex
// handoffs (callgrind) while no other thread could do much in that time
// (NumPy's ufuncs hold it likewise for small arrays).
constexpr std::int64_t kReleaseGilFrom = 4096;

template <class T>
const Kernels<T>& kernels_for(const Batch<T>&) {
  return active_kernels().get<T>();
}

using UnitStats = std::array<double, kMaxUnits * kStatFields>;

// Runs fn(batch) on the checked buffers with the GIL released. With
// unit_stats, the kernels add their step statistics there, per work unit.
template <class Fn>
void run_kernel(CheckedBuffers& buffers, const py::object& hyper_index, std::size_t n_hypers, int num_threads,
                bool check_only, double* unit_stats, Fn&& fn) {
  if (num_threads < 0) throw py::value_error("num_threads must be >= 0 (0 means the OpenMP default)");
  if (num_threads == 0) num_threads = g_num_threads.load(std::memory_order_relaxed);
  const std::vector<std::int32_t> index = check_hyper_index(hyper_index, buffers.n_tensors(), n_hypers);
  if (check_only) return;
  int threads_used = 1;
  auto run = [&](const auto& batch) {
    if (batch.total < kReleaseGilFrom) return fn(batch);
    py::gil_scoped_release release;
    fn(batch);
  };
  if (buffers.is_double()) {
    run(buffers.batch<double>(index, num_threads, &threads_used, unit_stats));
  } else {
    run(buffers.batch<float>(index, num_threads, &threads_used, unit_stats));
  }
  g_last_call_threads.store(threads_used, std::memory_order_relaxed);
}

// (sum g^2, sum p^2 before the step, sum (p_new - p)^2, non-finite gradient
// count), the unit partials added in unit order: the same bits for any
// number of threads.
py::tuple stats_result(const UnitStats& units) {
  double total[kStatFields] = {};
  for (int u = 0; u < kMaxUnits; ++u)
    for (int f = 0; f < kStatFields; ++f) total[f] += units[static_cast<std::size_t>(u) * kStatFields + f];
  return py::make_tuple(total[kStatGradSq], total[kStatParamSq], total[kStatUpdateSq],
                        static_cast<std::int64_t>(total[kStatNonfinite]));
}

// Checks the hyperparameters, then runs `kernel` over the buffers; returns
// the step statistics when asked (else None).
template <class Hyper, class Kernel>
py::object run_step(std::initializer_list<RoleArg> roles, const std::vector<Hyper>& hypers,
                    const py::object& hyper_index, int num_threads, bool check_only, bool stats, Kernel kernel) {
  CheckedBuffers buffers(roles);
  UnitStats units;  // 8 KiB: zeroed only when statistics are asked for
  if (stats) units.fill(0.0);
  run_kernel(buffers, hyper_index, hypers.size(), num_threads, check_only, stats ? units.data() : nullptr,
             [&](const auto& b) { kernel(b, hypers.data(), hypers.size()); });
  if (stats && !check_only) return stats_result(units);
  return py::none();
}

template <class Hyper, class Pred>
const char* required_if(const std::vector<Hyper>& hypers, Pred pred, const char* why) {
  for (const Hyper& h : hypers)
    if (pred(h)) return why;
  return nullptr;
}

template <class Hyper>
const std::vector<Hyper>& validated(const std::vector<Hyper>& hypers) {
  for (const Hyper& h : hypers) h.validate();
  return hypers;
}

RpropVariant parse_variant(const std::string& name) {
  if (name == "irprop-") return RpropVariant::kIrpropMinus;
  if (name == "rprop-") return RpropVariant::kRpropMinus;
  if (name == "rprop+") return RpropVariant::kRpropPlus;
  if (name == "irprop+") return RpropVariant::kIrpropPlus;
  throw py::value_error("invalid variant: '" + name + "' (expected 'irprop-', 'rprop-', 'rprop+' or 'irprop+')");
}

const char* variant_name(RpropVariant v) {
  switch (v) {
    case RpropVariant::kIrpropMinus: return "irprop-";
    case RpropVariant::kRpropMinus: return "rprop-";
    case RpropVariant::kRpropPlus: return "rprop+";
    case RpropVariant::kIrpropPlus: return "irprop+";
  }
  return "?";
}

SharedHyper shared_of(double l1, bool decoupled_weight_decay, double grad_scale, double clip_value) {
  return SharedHyper{grad_scale, clip_value, l1, decoupled_weight_decay};
}

RpropHyper make_rprop_hyper(double etaminus, double etaplus, double step_size_min, double step_size_max,
                            double weight_decay, bool maximize, const std::string& variant,
                            std::optional<double> loss, std::optional<double> prev_loss, const SharedHyper& shared) {
  RpropHyper h{etaminus, etaplus, step_size_min, step_size_max, weight_decay, maximize, parse_variant(variant), false,
               shared};
  if (h.variant == RpropVariant::kIrpropPlus) {
    if (!loss) throw py::value_error("loss is required for variant='irprop+' (it backtracks only when the loss rose)");
    h.loss_increased = prev_loss.has_value() && *loss > *prev_loss;
  }
  return h;
}

// ------------------------------------------------------- hyperparameter sets
// Keyword arguments every hyperparameter class accepts (SharedHyper).
#define FASTOPT_SHARED_ARGS                                                                       \
  "l1"_a = 0.0, "decoupled_weight_decay"_a = false, "grad_scale"_a = 1.0, "clip_value"_a = HUGE_VAL

template <class Hyper>
void add_shared_properties(py::class_<Hyper>& cls) {
  cls.def_property_readonly("l1", [](const Hyper& h) { return h.shared.l1; })
      .def_property_readonly("decoupled_weight_decay", [](const Hyper& h) { return h.shared.decoupled_weight_decay; })
      .def_property_readonly("grad_scale", [](const Hyper& h) { return h.shared.grad_scale; })
      .def_property_readonly("clip_value", [](const Hyper& h) { return h.shared.clip_value; });
}

template <class Hyper>
Hyper checked(Hyper h) {
  h.validate();
  return h;
}

void bind_hypers(py::module_& m) {
  py::class_<SgdHyper> sgd(m, "SgdHyper");
  sgd.def(py::init([](double lr, double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                      std::int64_t step, double l1, bool decoupled, double grad_scale, double clip_value) {
           return checked(SgdHyper{lr, momentum, dampening, weight_decay, nesterov, maximize, step,
                                   shared_of(l1, decoupled, grad_scale, clip_value)});
         }),
         py::kw_only(), "lr"_a, "momentum"_a = 0.0, "dampening"_a = 0.0, "weight_decay"_a = 0.0,
         "nesterov"_a = false, "maximize"_a = false, "step"_a = 1, FASTOPT_SHARED_ARGS)
      .def_readonly("lr", &SgdHyper::lr).def_readonly("momentum", &SgdHyper::momentum)
      .def_readonly("dampening", &SgdHyper::dampening).def_readonly("weight_decay", &SgdHyper::weight_decay)
      .def_readonly("nesterov", &SgdHyper::nesterov).def_readonly("maximize", &SgdHyper::maximize)
      .def_readonly("step", &SgdHyper::step);
  add_shared_properties(sgd);

  py::class_<AdagradHyper> adagrad(m, "AdagradHyper");
  adagrad.def(py::init([](double lr, double lr_decay, double weight_decay, double eps, bool maximize, std::int64_t step,
                          double l1, bool decoupled, double grad_scale, double clip_value) {
               return checked(AdagradHyper{lr, lr_decay, weight_decay, eps, maximize, step,
                                           shared_of(l1, decoupled, grad_scale, clip_value)});
             }),
             py::kw_only(), "lr"_a = 1e-2, "lr_decay"_a = 0.0, "weight_decay"_a = 0.0, "eps"_a = 1e-10,
             "maximize"_a = false, "step"_a = 1, FASTOPT_SHARED_ARGS)
      .def_readonly("lr", &AdagradHyper::lr).def_readonly("lr_decay", &AdagradHyper::lr_decay)
      .def_readonly("weight_decay", &AdagradHyper::weight_decay).def_readonly("eps", &AdagradHyper::eps)
      .def_readonly("maximize", &AdagradHyper::maximize).def_readonly("step", &AdagradHyper::step);
  add_shared_properties(adagrad);

  py::class_<RmspropHyper> rmsprop(m, "RmspropHyper");
  rmsprop.def(py::init([](double lr, double alpha, double eps, double weight_decay, double momentum, bool centered,
                          bool maximize, double l1, bool decoupled, double grad_scale, double clip_value) {
               return checked(RmspropHyper{lr, alpha, eps, weight_decay, momentum, centered, maximize,
                                           shared_of(l1, decoupled, grad_scale, clip_value)});
             }),
             py::kw_only(), "lr"_a = 1e-2, "alpha"_a = 0.99, "eps"_a = 1e-8, "weight_decay"_a = 0.0,
             "momentum"_a = 0.0, "centered"_a = false, "maximize"_a = false, FASTOPT_SHARED_ARGS)
      .def_readonly("lr", &RmspropHyper::lr).def_readonly("alpha", &RmspropHyper::alpha)
      .def_readonly("eps", &RmspropHyper::eps).def_readonly("weight_decay", &RmspropHyper::weight_decay)
      .def_readonly("momentum", &RmspropHyper::momentum).def_readonly("centered", &RmspropHyper::centered)
      .def_readonly("maximize", &RmspropHyper::maximize);
  add_shared_properties(rmsprop);

  py::class_<AdamHyper> adam(m, "AdamHyper");
  adam.def(py::init([](double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                       bool maximize, std::int64_t step, double l1, bool decoupled, double grad_scale,
                       double clip_value) {
            return checked(AdamHyper{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, step,
                                     shared_of(l1, decoupled, grad_scale, clip_value)});
          }),
          py::kw_only(), "lr"_a = 1e-3, "beta1"_a = 0.9, "beta2"_a = 0.999, "eps"_a = 1e-8, "weight_decay"_a = 0.0,
          "amsgrad"_a = false, "maximize"_a = false, "step"_a = 1, FASTOPT_SHARED_ARGS)
      .def_readonly("lr", &AdamHyper::lr).def_readonly("beta1", &AdamHyper::beta1)
      .def_readonly("beta2", &AdamHyper::beta2).def_readonly("eps", &AdamHyper::eps)
      .def_readonly("weight_decay", &AdamHyper::weight_decay).def_readonly("amsgrad", &AdamHyper::amsgrad)
      .def_readonly("maximize", &AdamHyper::maximize).def_readonly("step", &AdamHyper::step);
  add_shared_properties(adam);

  py::class_<RpropHyper> rprop(m, "RpropHyper");
  rprop.def(py::init([](double etaminus, double etaplus, double step_size_min, double step_size_max,
                        double weight_decay, bool maximize, const std::string& variant, std::optional<double> loss,
                        std::optional<double> prev_loss, double l1, bool decoupled, double grad_scale,
                        double clip_value) {
             return checked(make_rprop_hyper(etaminus, etaplus, step_size_min, step_size_max, weight_decay, maximize,
                                             variant, loss, prev_loss, shared_of(l1, decoupled, grad_scale, clip_value)));
           }),
           py::kw_only(), "etaminus"_a = 0.5, "etaplus"_a = 1.2, "step_size_min"_a = 1e-6, "step_size_max"_a = 50.0,
           "weight_decay"_a = 0.0, "maximize"_a = false, "variant"_a = "irprop-", "loss"_a = py::none(),
           "prev_loss"_a = py::none(), FASTOPT_SHARED_ARGS)
      .def_readonly("etaminus", &RpropHyper::eta_minus).def_readonly("etaplus", &RpropHyper::eta_plus)
      .def_readonly("step_size_min", &RpropHyper::step_size_min)
      .def_readonly("step_size_max", &RpropHyper::step_size_max)
      .def_readonly("weight_decay", &RpropHyper::weight_decay).def_readonly("maximize", &RpropHyper::maximize)
      .def_property_readonly("variant", [](const RpropHyper& h) { return variant_name(h.variant); })
      .def_readonly("loss_increased", &RpropHyper::loss_increased);
  add_shared_properties(rprop);

  py::class_<QuickpropHyper> quickprop(m, "QuickpropHyper");
  quickprop.def(py::init([](double lr, double mu, double decay, double mode_switch, double momentum,
                            double weight_decay, bool maximize, double l1, bool decoupled, double grad_scale,
                            double clip_value) {
                 return checked(QuickpropHyper{lr, mu, decay, mode_switch, momentum, weight_decay, maximize,
                                               shared_of(l1, decoupled, grad_scale, clip_value)});
               }),
               py::kw_only(), "lr"_a = 1e-2, "mu"_a = 1.75, "decay"_a = 1e-4, "mode_switch"_a = 0.0,
               "momentum"_a = 0.0, "weight_decay"_a = 0.0, "maximize"_a = false, FASTOPT_SHARED_ARGS)
      .def_readonly("lr", &QuickpropHyper::lr).def_readonly("mu", &QuickpropHyper::mu)
      .def_readonly("decay", &QuickpropHyper::decay).def_readonly("mode_switch", &QuickpropHyper::mode_switch)
      .def_readonly("momentum", &QuickpropHyper::momentum)
      .def_readonly("weight_decay", &QuickpropHyper::weight_decay)
      .def_readonly("maximize", &QuickpropHyper::maximize);
  add_shared_properties(quickprop);
}

// ---------------------------------------------------------------- the kernels
// One function per optimizer: check every buffer and hyperparameter set, then
// run the kernel once over all tensors.
py::object run_sgd(py::object params, py::object grads, py::object momentum_buffers, const std::vector<SgdHyper>& hypers,
                   py::object hyper_index, int num_threads, bool check_only, bool stats) {
  const auto& h = validated(hypers);
  const char* need_buf = required_if(h, [](const SgdHyper& x) { return x.momentum != 0.0; }, "when momentum != 0");
  return run_step({{"params", params, W, always}, {"grads", grads, R, always},
                   {"momentum_buffers", momentum_buffers, W, need_buf}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).sgd(b, rest...); });
}

py::object run_adagrad(py::object params, py::object grads, py::object state_sums,
                       const std::vector<AdagradHyper>& hypers, py::object hyper_index, int num_threads,
                       bool check_only, bool stats) {
  const auto& h = validated(hypers);
  return run_step({{"params", params, W, always}, {"grads", grads, R, always}, {"state_sums", state_sums, W, always}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).adagrad(b, rest...); });
}

py::object run_rmsprop(py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                       py::object momentum_buffers, const std::vector<RmspropHyper>& hypers, py::object hyper_index,
                       int num_threads, bool check_only, bool stats) {
  const auto& h = validated(hypers);
  const char* need_avg = required_if(h, [](const RmspropHyper& x) { return x.centered; }, "when centered=True");
  const char* need_buf = required_if(h, [](const RmspropHyper& x) { return x.momentum > 0.0; }, "when momentum > 0");
  return run_step({{"params", params, W, always}, {"grads", grads, R, always},
                   {"square_avgs", square_avgs, W, always}, {"grad_avgs", grad_avgs, W, need_avg},
                   {"momentum_buffers", momentum_buffers, W, need_buf}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).rmsprop(b, rest...); });
}

py::object run_adam(py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                    py::object max_exp_avg_sqs, const std::vector<AdamHyper>& hypers, py::object hyper_index,
                    int num_threads, bool check_only, bool stats) {
  const auto& h = validated(hypers);
  const char* need_max = required_if(h, [](const AdamHyper& x) { return x.amsgrad; }, "when amsgrad=True");
  return run_step({{"params", params, W, always}, {"grads", grads, R, always}, {"exp_avgs", exp_avgs, W, always},
                   {"exp_avg_sqs", exp_avg_sqs, W, always}, {"max_exp_avg_sqs", max_exp_avg_sqs, W, need_max}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).adam(b, rest...); });
}

py::object run_rprop(py::object params, py::object grads, py::object prevs, py::object step_sizes,
                     py::object prev_updates, const std::vector<RpropHyper>& hypers, py::object hyper_index,
                     int num_threads, bool check_only, bool stats) {
  const auto& h = validated(hypers);
  const char* need_upd = required_if(h, [](const RpropHyper& x) { return x.has_backtracking(); },
                                     "for variant 'rprop+' and 'irprop+'");
  return run_step({{"params", params, W, always}, {"grads", grads, R, always}, {"prevs", prevs, W, always},
                   {"step_sizes", step_sizes, W, always}, {"prev_updates", prev_updates, W, need_upd}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).rprop(b, rest...); });
}

py::object run_quickprop(py::object params, py::object grads, py::object prev_steps, py::object prev_grads,
                         const std::vector<QuickpropHyper>& hypers, py::object hyper_index, int num_threads,
                         bool check_only, bool stats) {
  const auto& h = validated(hypers);
  return run_step({{"params", params, W, always}, {"grads", grads, R, always}, {"prev_steps", prev_steps, W, always},
                   {"prev_grads", prev_grads, W, always}},
                  h, hyper_index, num_threads, check_only, stats,
                  [](const auto& b, auto... rest) { kernels_for(b).quickprop(b, rest...); });
}

#define FASTOPT_RUN_ARGS "hypers"_a, "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false, \
                         "stats"_a = false

void bind_kernels(py::module_& m) {
  m.def("sgd", &run_sgd, "params"_a, "grads"_a, "momentum_buffers"_a, FASTOPT_RUN_ARGS);
  m.def("adagrad", &run_adagrad, "params"_a, "grads"_a, "state_sums"_a, FASTOPT_RUN_ARGS);
  m.def("rmsprop", &run_rmsprop, "params"_a, "grads"_a, "square_avgs"_a, "grad_avgs"_a, "momentum_buffers"_a,
        FASTOPT_RUN_ARGS);
  m.def("adam", &run_adam, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a, "max_exp_avg_sqs"_a,
        FASTOPT_RUN_ARGS);
  m.def("rprop", &run_rprop, "params"_a, "grads"_a, "prevs"_a, "step_sizes"_a, "prev_updates"_a, FASTOPT_RUN_ARGS);
  m.def("quickprop", &run_quickprop, "params"_a, "grads"_a, "prev_steps"_a, "prev_grads"_a, FASTOPT_RUN_ARGS);
}

// The fast path of fastopt.functional: one hyperparameter set, passed as
// positional scalars (building a Hyper object through keyword arguments
// costs more than a whole step on 1,000 elements). The last five arguments
// of each are the shared ones: l1, decoupled_weight_decay, grad_scale,
// clip_value, then num_threads and stats.
void bind_fast_steps(py::module_& m) {
  const auto none = py::none();
  m.def("sgd_step", [none](py::object params, py::object grads, py::object momentum_buffers, double lr,
                           double momentum, double dampening, double weight_decay, bool nesterov, bool maximize,
                           std::int64_t step, double l1, bool decoupled, double grad_scale, double clip_value,
                           int num_threads, bool stats) {
    return run_sgd(params, grads, momentum_buffers,
                   {SgdHyper{lr, momentum, dampening, weight_decay, nesterov, maximize, step,
                             shared_of(l1, decoupled, grad_scale, clip_value)}},
                   none, num_threads, false, stats);
  });
  m.def("adagrad_step", [none](py::object params, py::object grads, py::object state_sums, double lr,
                               double lr_decay, double weight_decay, double eps, bool maximize, std::int64_t step,
                               double l1, bool decoupled, double grad_scale, double clip_value, int num_threads,
                               bool stats) {
    return run_adagrad(params, grads, state_sums,
                       {AdagradHyper{lr, lr_decay, weight_decay, eps, maximize, step,
                                     shared_of(l1, decoupled, grad_scale, clip_value)}},
                       none, num_threads, false, stats);
  });
  m.def("rmsprop_step", [none](py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                               py::object momentum_buffers, double lr, double alpha, double eps, double weight_decay,
                               double momentum, bool centered, bool maximize, double l1, bool decoupled,
                               double grad_scale, double clip_value, int num_threads, bool stats) {
    return run_rmsprop(params, grads, square_avgs, grad_avgs, momentum_buffers,
                       {RmspropHyper{lr, alpha, eps, weight_decay, momentum, centered, maximize,
                                     shared_of(l1, decoupled, grad_scale, clip_value)}},
                       none, num_threads, false, stats);
  });
  m.def("adam_step", [none](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                            py::object max_exp_avg_sqs, double lr, double beta1, double beta2, double eps,
                            double weight_decay, bool amsgrad, bool maximize, std::int64_t step, double l1,
                            bool decoupled, double grad_scale, double clip_value, int num_threads, bool stats) {
    return run_adam(params, grads, exp_avgs, exp_avg_sqs, max_exp_avg_sqs,
                    {AdamHyper{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, step,
                               shared_of(l1, decoupled, grad_scale, clip_value)}},
                    none, num_threads, false, stats);
  });
  m.def("rprop_step", [none](py::object params, py::object grads, py::object prevs, py::object step_sizes,
                             py::object prev_updates, double etaminus, double etaplus, double step_size_min,
                             double step_size_max, double weight_decay, bool maximize, const std::string& variant,
                             std::optional<double> loss, std::optional<double> prev_loss, double l1, bool decoupled,
                             double grad_scale, double clip_value, int num_threads, bool stats) {
    return run_rprop(params, grads, prevs, step_sizes, prev_updates,
                     {make_rprop_hyper(etaminus, etaplus, step_size_min, step_size_max, weight_decay, maximize,
                                       variant, loss, prev_loss, shared_of(l1, decoupled, grad_scale, clip_value))},
                     none, num_threads, false, stats);
  });
  m.def("quickprop_step", [none](py::object params, py::object grads, py::object prev_steps, py::object prev_grads,
                                 double lr, double mu, double decay, double mode_switch, double momentum,
                                 double weight_decay, bool maximize, double l1, bool decoupled, double grad_scale,
                                 double clip_value, int num_threads, bool stats) {
    return run_quickprop(params, grads, prev_steps, prev_grads,
                         {QuickpropHyper{lr, mu, decay, mode_switch, momentum, weight_decay, maximize,
                                         shared_of(l1, decoupled, grad_scale, clip_value)}},
                         none, num_threads, false, stats);
  });
}

// ----------------------------------------------------------- norms, roofline
void bind_norm_and_roofline(py::module_& m) {
  m.def("grad_norm", [](py::object grads, double norm_type, int num_threads) {
    NormType type;
    if (norm_type == 2.0) type = NormType::kL2;
    else if (norm_type == 1.0) type = NormType::kL1;
    else if (std::isinf(norm_type) && norm_type > 0) type = NormType::kInf;
    else throw py::value_error("norm_type must be 1, 2 or inf, got " + num(norm_type));
    CheckedBuffers buffers({{"grads", grads, R, always}});
    std::array<double, kMaxUnits * kNormFields> units{};
    run_kernel(buffers, py::none(), 1, num_threads, false, nullptr,
               [&](const auto& b) { kernels_for(b).grad_norm(b, type, units.data()); });
    double norm = 0, nonfinite = 0;
    for (int u = 0; u < kMaxUnits; ++u) {  // unit order: deterministic
      const double part = units[static_cast<std::size_t>(u) * kNormFields];
      norm = type == NormType::kInf ? (part > norm ? part : norm) : norm + part;
      nonfinite += units[static_cast<std::size_t>(u) * kNormFields + 1];
    }
    if (type == NormType::kL2) norm = std::sqrt(norm);
    return py::make_tuple(norm, static_cast<std::int64_t>(nonfinite));
  }, "grads"_a, "norm_type"_a = 2.0, "num_threads"_a = 0,
     "(norm, count of non-finite elements) over all arrays, as one vector; bitwise identical for any thread count.");

  m.def("roofline", [](py::list written, py::list read, int num_threads) {
    const int n_written = static_cast<int>(written.size()), n_read = static_cast<int>(read.size());
    if (n_written < 1 || n_read > 2 || n_written + n_read > kRooflineMaxArrays)
      throw py::value_error("roofline takes 1 to 5 written arrays and 0 to 2 read-only arrays");
    std::vector<std::string> names;
    for (int k = 0; k < n_written + n_read; ++k) names.push_back("arrays[" + std::to_string(k) + "]");
    std::vector<RoleArg> roles;
    for (int k = 0; k < n_written + n_read; ++k)
      roles.push_back({names[k].c_str(), k < n_written ? written[k] : read[k - n_written],
                       k < n_written ? Access::kWrite : Access::kRead, always});
    CheckedBuffers buf(roles.data(), roles.size());
    run_kernel(buf, py::none(), 1, num_threads, false, nullptr,
               [&](const auto& b) { kernels_for(b).roofline(b, n_written, n_read); });
  }, "written"_a, "read"_a, "num_threads"_a = 0,
     "Benchmark yardstick: one pass reading every array and writing `written` with trivial math\n"
     "(each element becomes the mean of all arrays), so it moves the bytes of an optimizer step.");
}

// -------------------------------------------------------------------- runtime
void bind_runtime(py::module_& m) {
  m.attr("PARALLEL_GRAIN") = kParallelGrain;
  m.def("kernel_target", [] { return std::string(active_kernels().target); },
        "The SIMD target whose kernels are in use.");
  m.def("compiled_targets", &compiled_targets, "SIMD targets compiled into this build, best last.");
  m.def("supported_targets", &supported_targets, "Compiled SIMD targets this CPU and OS can run.");
  m.def("select_target", &select_target, "name"_a,
        "Use the kernels of one SIMD target (for tests and benchmarks; FASTOPT_TARGET does it at import).");
  m.def("set_num_threads", [](int n) {
    if (n < 0) throw py::value_error("set_num_threads: n must be >= 0 (0 restores the OpenMP default)");
    g_num_threads.store(n, std::memory_order_relaxed);
  }, "n"_a, "Threads for every later call that does not pass num_threads (0: the OpenMP default).");
  m.def("get_num_threads", [] {
    const int n = g_num_threads.load(std::memory_order_relaxed);
#ifdef FASTOPT_HAVE_OPENMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
  }, "Threads a call without num_threads would use.");
  m.def("last_call_threads", [] { return g_last_call_threads.load(std::memory_order_relaxed); },
        "Threads the most recent kernel call ran on (1 below the parallel grain).");
#ifdef FASTOPT_HAVE_OPENMP
  m.attr("OPENMP") = true;
#else
  m.attr("OPENMP") = false;
#endif
}

}  // namespace
}  // namespace fastopt

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastopt's C++ kernels (private; use fastopt.functional and fastopt.optim)";
  fastopt::init_dispatch();  // FASTOPT_TARGET naming an unusable target fails the import, clearly
  fastopt::bind_hypers(m);
  fastopt::bind_kernels(m);
  fastopt::bind_fast_steps(m);
  fastopt::bind_norm_and_roofline(m);
  fastopt::bind_runtime(m);
  fastopt::bind_lbfgs(m);
}
