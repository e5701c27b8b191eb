// pybind11 module fastopt._core: argument checks, GIL release, kernel calls.
//
// Each optimizer binding takes lists of arrays (one list per buffer role),
// a list of hyperparameter sets and, optionally, which set each tensor uses:
// a whole model's step, over any number of arrays and param groups, is one
// call and one parallel region. The public, documented API is
// fastopt.functional; these entry points are its private back end.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <optional>

#include "bindings/checks.hpp"
#include "dispatch.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastopt {
void bind_lbfgs(py::module_& m);  // bindings/lbfgs.cpp

namespace {

template <class T>
const Kernels<T>& kernels_for(const Batch<T>&) {
  return active_kernels().get<T>();
}

// Runs fn(batch) on the checked buffers with the GIL released.
template <class Fn>
void run_kernel(CheckedBuffers& buffers, const py::object& hyper_index, std::size_t n_hypers,
                int num_threads, bool check_only, Fn&& fn) {
  if (num_threads < 0) throw py::value_error("num_threads must be >= 0 (0 means the OpenMP default)");
  const std::vector<std::int32_t> index = check_hyper_index(hyper_index, buffers.n_tensors(), n_hypers);
  if (check_only || buffers.n_tensors() == 0) return;
  if (buffers.is_double()) {
    const Batch<double> batch = buffers.batch<double>(index, num_threads);
    py::gil_scoped_release release;
    fn(batch);
  } else {
    const Batch<float> batch = buffers.batch<float>(index, num_threads);
    py::gil_scoped_release release;
    fn(batch);
  }
}

template <class Hyper, class Pred>
const char* required_if(const std::vector<Hyper>& hypers, Pred pred, const char* why) {
  for (const Hyper& h : hypers)
    if (pred(h)) return why;
  return nullptr;
}

template <class Hyper>
std::vector<Hyper> validated(const std::vector<Hyper>& hypers) {
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

void bind_hypers(py::module_& m) {
  py::class_<SgdHyper>(m, "SgdHyper")
      .def(py::init([](double lr, double momentum, double dampening, double weight_decay, bool nesterov,
                       bool maximize, std::int64_t step) {
             SgdHyper h{lr, momentum, dampening, weight_decay, nesterov, maximize, step};
             h.validate();
             return h;
           }),
           py::kw_only(), "lr"_a, "momentum"_a = 0.0, "dampening"_a = 0.0, "weight_decay"_a = 0.0,
           "nesterov"_a = false, "maximize"_a = false, "step"_a = 1)
      .def_readonly("lr", &SgdHyper::lr).def_readonly("momentum", &SgdHyper::momentum)
      .def_readonly("dampening", &SgdHyper::dampening).def_readonly("weight_decay", &SgdHyper::weight_decay)
      .def_readonly("nesterov", &SgdHyper::nesterov).def_readonly("maximize", &SgdHyper::maximize)
      .def_readonly("step", &SgdHyper::step);

  py::class_<AdagradHyper>(m, "AdagradHyper")
      .def(py::init([](double lr, double lr_decay, double weight_decay, double eps, bool maximize, std::int64_t step) {
             AdagradHyper h{lr, lr_decay, weight_decay, eps, maximize, step};
             h.validate();
             return h;
           }),
           py::kw_only(), "lr"_a = 1e-2, "lr_decay"_a = 0.0, "weight_decay"_a = 0.0, "eps"_a = 1e-10,
           "maximize"_a = false, "step"_a = 1)
      .def_readonly("lr", &AdagradHyper::lr).def_readonly("lr_decay", &AdagradHyper::lr_decay)
      .def_readonly("weight_decay", &AdagradHyper::weight_decay).def_readonly("eps", &AdagradHyper::eps)
      .def_readonly("maximize", &AdagradHyper::maximize).def_readonly("step", &AdagradHyper::step);

  py::class_<RmspropHyper>(m, "RmspropHyper")
      .def(py::init([](double lr, double alpha, double eps, double weight_decay, double momentum, bool centered,
                       bool maximize) {
             RmspropHyper h{lr, alpha, eps, weight_decay, momentum, centered, maximize};
             h.validate();
             return h;
           }),
           py::kw_only(), "lr"_a = 1e-2, "alpha"_a = 0.99, "eps"_a = 1e-8, "weight_decay"_a = 0.0,
           "momentum"_a = 0.0, "centered"_a = false, "maximize"_a = false)
      .def_readonly("lr", &RmspropHyper::lr).def_readonly("alpha", &RmspropHyper::alpha)
      .def_readonly("eps", &RmspropHyper::eps).def_readonly("weight_decay", &RmspropHyper::weight_decay)
      .def_readonly("momentum", &RmspropHyper::momentum).def_readonly("centered", &RmspropHyper::centered)
      .def_readonly("maximize", &RmspropHyper::maximize);

  py::class_<AdamHyper>(m, "AdamHyper")
      .def(py::init([](double lr, double beta1, double beta2, double eps, double weight_decay, bool amsgrad,
                       bool maximize, bool decoupled_weight_decay, std::int64_t step) {
             AdamHyper h{lr, beta1, beta2, eps, weight_decay, amsgrad, maximize, decoupled_weight_decay, step};
             h.validate();
             return h;
           }),
           py::kw_only(), "lr"_a = 1e-3, "beta1"_a = 0.9, "beta2"_a = 0.999, "eps"_a = 1e-8,
           "weight_decay"_a = 0.0, "amsgrad"_a = false, "maximize"_a = false,
           "decoupled_weight_decay"_a = false, "step"_a = 1)
      .def_readonly("lr", &AdamHyper::lr).def_readonly("beta1", &AdamHyper::beta1)
      .def_readonly("beta2", &AdamHyper::beta2).def_readonly("eps", &AdamHyper::eps)
      .def_readonly("weight_decay", &AdamHyper::weight_decay).def_readonly("amsgrad", &AdamHyper::amsgrad)
      .def_readonly("maximize", &AdamHyper::maximize)
      .def_readonly("decoupled_weight_decay", &AdamHyper::decoupled_weight_decay)
      .def_readonly("step", &AdamHyper::step);

  py::class_<RpropHyper>(m, "RpropHyper")
      .def(py::init([](double etaminus, double etaplus, double step_size_min, double step_size_max,
                       double weight_decay, bool maximize, const std::string& variant, std::optional<double> loss,
                       std::optional<double> prev_loss) {
             RpropHyper h{etaminus, etaplus, step_size_min, step_size_max, weight_decay, maximize,
                          parse_variant(variant), false};
             if (h.variant == RpropVariant::kIrpropPlus) {
               if (!loss) throw py::value_error("loss is required for variant='irprop+' (it backtracks only when the loss rose)");
               h.loss_increased = prev_loss.has_value() && *loss > *prev_loss;
             }
             h.validate();
             return h;
           }),
           py::kw_only(), "etaminus"_a = 0.5, "etaplus"_a = 1.2, "step_size_min"_a = 1e-6,
           "step_size_max"_a = 50.0, "weight_decay"_a = 0.0, "maximize"_a = false, "variant"_a = "irprop-",
           "loss"_a = py::none(), "prev_loss"_a = py::none())
      .def_readonly("etaminus", &RpropHyper::eta_minus).def_readonly("etaplus", &RpropHyper::eta_plus)
      .def_readonly("step_size_min", &RpropHyper::step_size_min)
      .def_readonly("step_size_max", &RpropHyper::step_size_max)
      .def_readonly("weight_decay", &RpropHyper::weight_decay).def_readonly("maximize", &RpropHyper::maximize)
      .def_property_readonly("variant", [](const RpropHyper& h) { return variant_name(h.variant); })
      .def_readonly("loss_increased", &RpropHyper::loss_increased);

  py::class_<QuickpropHyper>(m, "QuickpropHyper")
      .def(py::init([](double lr, double mu, double decay, double mode_switch, double momentum,
                       double weight_decay, bool maximize) {
             QuickpropHyper h{lr, mu, decay, mode_switch, momentum, weight_decay, maximize};
             h.validate();
             return h;
           }),
           py::kw_only(), "lr"_a = 1e-2, "mu"_a = 1.75, "decay"_a = 1e-4, "mode_switch"_a = 0.0,
           "momentum"_a = 0.0, "weight_decay"_a = 0.0, "maximize"_a = false)
      .def_readonly("lr", &QuickpropHyper::lr).def_readonly("mu", &QuickpropHyper::mu)
      .def_readonly("decay", &QuickpropHyper::decay).def_readonly("mode_switch", &QuickpropHyper::mode_switch)
      .def_readonly("momentum", &QuickpropHyper::momentum)
      .def_readonly("weight_decay", &QuickpropHyper::weight_decay)
      .def_readonly("maximize", &QuickpropHyper::maximize);
}

void bind_kernels(py::module_& m) {
  const auto W = Access::kWrite, R = Access::kRead;
  const char* always = "";

  m.def("sgd", [=](py::object params, py::object grads, py::object momentum_buffers,
                   const std::vector<SgdHyper>& hypers, py::object hyper_index, int num_threads, bool check_only) {
    const auto h = validated(hypers);
    const char* need_buf = required_if(h, [](const SgdHyper& x) { return x.momentum != 0.0; }, "when momentum != 0");
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always},
                        {"momentum_buffers", momentum_buffers, W, need_buf}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).sgd(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "momentum_buffers"_a, "hypers"_a, "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false);

  m.def("adagrad", [=](py::object params, py::object grads, py::object state_sums,
                       const std::vector<AdagradHyper>& hypers, py::object hyper_index, int num_threads, bool check_only) {
    const auto h = validated(hypers);
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always}, {"state_sums", state_sums, W, always}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).adagrad(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "state_sums"_a, "hypers"_a, "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false);

  m.def("rmsprop", [=](py::object params, py::object grads, py::object square_avgs, py::object grad_avgs,
                       py::object momentum_buffers, const std::vector<RmspropHyper>& hypers,
                       py::object hyper_index, int num_threads, bool check_only) {
    const auto h = validated(hypers);
    const char* need_avg = required_if(h, [](const RmspropHyper& x) { return x.centered; }, "when centered=True");
    const char* need_buf = required_if(h, [](const RmspropHyper& x) { return x.momentum > 0.0; }, "when momentum > 0");
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always},
                        {"square_avgs", square_avgs, W, always}, {"grad_avgs", grad_avgs, W, need_avg},
                        {"momentum_buffers", momentum_buffers, W, need_buf}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).rmsprop(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "square_avgs"_a, "grad_avgs"_a, "momentum_buffers"_a, "hypers"_a,
     "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false);

  m.def("adam", [=](py::object params, py::object grads, py::object exp_avgs, py::object exp_avg_sqs,
                    py::object max_exp_avg_sqs, const std::vector<AdamHyper>& hypers, py::object hyper_index,
                    int num_threads, bool check_only) {
    const auto h = validated(hypers);
    const char* need_max = required_if(h, [](const AdamHyper& x) { return x.amsgrad; }, "when amsgrad=True");
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always},
                        {"exp_avgs", exp_avgs, W, always}, {"exp_avg_sqs", exp_avg_sqs, W, always},
                        {"max_exp_avg_sqs", max_exp_avg_sqs, W, need_max}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).adam(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "exp_avgs"_a, "exp_avg_sqs"_a, "max_exp_avg_sqs"_a, "hypers"_a,
     "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false);

  m.def("rprop", [=](py::object params, py::object grads, py::object prevs, py::object step_sizes,
                     py::object prev_updates, const std::vector<RpropHyper>& hypers, py::object hyper_index,
                     int num_threads, bool check_only) {
    const auto h = validated(hypers);
    const char* need_upd = required_if(h, [](const RpropHyper& x) { return x.has_backtracking(); },
                                       "for variant 'rprop+' and 'irprop+'");
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always}, {"prevs", prevs, W, always},
                        {"step_sizes", step_sizes, W, always}, {"prev_updates", prev_updates, W, need_upd}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).rprop(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "prevs"_a, "step_sizes"_a, "prev_updates"_a, "hypers"_a,
     "hyper_index"_a = py::none(), "num_threads"_a = 0, "check_only"_a = false);

  m.def("quickprop", [=](py::object params, py::object grads, py::object prev_steps, py::object prev_grads,
                         const std::vector<QuickpropHyper>& hypers, py::object hyper_index, int num_threads, bool check_only) {
    const auto h = validated(hypers);
    CheckedBuffers buf({{"params", params, W, always}, {"grads", grads, R, always},
                        {"prev_steps", prev_steps, W, always}, {"prev_grads", prev_grads, W, always}});
    run_kernel(buf, hyper_index, h.size(), num_threads, check_only,
               [&](const auto& b) { kernels_for(b).quickprop(b, h.data(), h.size()); });
  }, "params"_a, "grads"_a, "prev_steps"_a, "prev_grads"_a, "hypers"_a, "hyper_index"_a = py::none(),
     "num_threads"_a = 0, "check_only"_a = false);
}

}  // namespace
}  // namespace fastopt

PYBIND11_MODULE(_core, m) {
  m.doc() = "fastopt's C++ kernels (private; use fastopt.functional and fastopt.optim)";
  fastopt::bind_hypers(m);
  fastopt::bind_kernels(m);
  fastopt::bind_lbfgs(m);
  m.attr("PARALLEL_GRAIN") = fastopt::kParallelGrain;
  m.def("kernel_target", [] { return std::string(fastopt::active_kernels().target); });
#ifdef FASTOPT_HAVE_OPENMP
  m.attr("OPENMP") = true;
  m.def("max_threads", [] { return omp_get_max_threads(); });
#else
  m.attr("OPENMP") = false;
  m.def("max_threads", [] { return 1; });
#endif
}
