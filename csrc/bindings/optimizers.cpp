// The one binding path of every optimizer: fastopt._core.optimizers() maps
// each registered optimizer's name to an OptimizerSpec object that
//   - describes it (hyperparameters with defaults and checks, state keys),
//     straight from the declaration in its header;
//   - checks and runs a step: spec.step(params, grads, state, hypers, ...);
//   - builds a StepPlan: parameters and state checked once, then each step
//     checks only the gradients and the hyperparameters (the classes' path).
// Nothing here knows any optimizer by name.
#define FASTOPT_HOST 1

#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <cstring>
#include <atomic>
#include <cmath>
#include <map>
#include <type_traits>
#include <memory>
#include <utility>

#include "bindings/checks.hpp"
#include "bindings/optimizers.hpp"
#include "core/registry.hpp"
#include "core/targets.hpp"

namespace fastopt {
namespace host {
constexpr int kFirstRegistration = __COUNTER__ + 1;
}  // namespace host
}  // namespace fastopt

#include "fastopt_optimizers.inc"

namespace fastopt {

#define FASTOPT_DECLARE_TABLE(target) extern const OptimizerTable optimizer_table_##target;
FASTOPT_FOR_EACH_TARGET(FASTOPT_DECLARE_TABLE)
#undef FASTOPT_DECLARE_TABLE

namespace {

namespace py = pybind11;
using namespace pybind11::literals;

constexpr int kRegistrations = __COUNTER__ - host::kFirstRegistration;

// --------------------------------------------------------------- host specs
struct HostSpec {
  const char* name;
  std::vector<HyperDecl> hypers;  // the optimizer's, then the shared ones
  std::vector<StateDecl> state;
  std::vector<std::string> state_args;  // "exp_avgs": the functional form's argument names
  bool (*needs_state)(int role, const double* values, int ndim);
  void (*validate)(const double* values);
  int index = -1;  // position in every target's optimizer table
};

template <class Opt>
typename Opt::Hyper as_hyper(const double* values) {
  typename Opt::Hyper h;
  std::memcpy(&h, values, sizeof h);
  return h;
}

// What an optimizer may declare beyond its FASTOPT_DECLARE_OPTIMIZER (each
// optional; without it, the default in brackets):
//   static void validate(const Hyper&)          cross-field checks [none]
//   static bool needs_state(int role, const Hyper&, int ndim)
//                                               which state arrays a tensor needs [all]
//   static constexpr bool kDecoupledByDefault   decoupled_weight_decay's default [false]
//   static constexpr const char* kOwnWeightDecay
//       weight_decay is the rule's own term, described by this text, so
//       decoupled_weight_decay does not apply (LAMB, Adafactor) [no such term]
#define FASTOPT_OPTIONAL_MEMBER(Trait, member)     \
  template <class Opt, class = void>               \
  struct Trait : std::false_type {};               \
  template <class Opt>                             \
  struct Trait<Opt, std::void_t<decltype(&Opt::member)>> : std::true_type {};
FASTOPT_OPTIONAL_MEMBER(HasValidate, validate)
FASTOPT_OPTIONAL_MEMBER(HasNeedsState, needs_state)
FASTOPT_OPTIONAL_MEMBER(HasDecoupledByDefault, kDecoupledByDefault)
FASTOPT_OPTIONAL_MEMBER(HasOwnWeightDecay, kOwnWeightDecay)
#undef FASTOPT_OPTIONAL_MEMBER

template <class Opt>
bool needs_state(int role, const double* values, int ndim) {
  if constexpr (HasNeedsState<Opt>::value) return Opt::needs_state(role, as_hyper<Opt>(values), ndim);
  else return true;
}

template <class Opt>
void validate(const double* values) {
  if constexpr (HasOwnWeightDecay<Opt>::value)
    require(as_hyper<Opt>(values).shared.decoupled_weight_decay == 0.0,
            [] { return std::string(Opt::kOwnWeightDecay) + ": decoupled_weight_decay does not apply"; });
  if constexpr (HasValidate<Opt>::value) Opt::validate(as_hyper<Opt>(values));
}

template <class Opt>
HostSpec host_spec() {
  HostSpec spec{Opt::kName, {}, {}, {}, nullptr, nullptr};
  spec.hypers.assign(std::begin(Opt::kHypers), std::end(Opt::kHypers));
  spec.hypers.insert(spec.hypers.end(), std::begin(kSharedHypers), std::end(kSharedHypers));
  if constexpr (HasDecoupledByDefault<Opt>::value)
    for (HyperDecl& d : spec.hypers)
      if (std::string(d.name) == "decoupled_weight_decay") d.default_value = Opt::kDecoupledByDefault;
  spec.state.assign(std::begin(Opt::kState), std::end(Opt::kState));
  for (const StateDecl& s : spec.state) spec.state_args.push_back(std::string(s.name) + "s");
  spec.needs_state = &needs_state<Opt>;
  spec.validate = &validate<Opt>;
  return spec;
}

template <int... kIndex>
std::vector<HostSpec> collect_specs(std::integer_sequence<int, kIndex...>) {
  return {host_spec<typename host::Registered<host::kFirstRegistration + kIndex>::type>()...};
}

// Every target's table lists the same optimizers (the same headers), in the
// same order; the host finds each one's position once by name.
const std::vector<HostSpec>& specs() {
  static const std::vector<HostSpec> all = [] {
    std::vector<HostSpec> v = collect_specs(std::make_integer_sequence<int, kRegistrations>{});
    const OptimizerTable& table = optimizer_table_baseline;
    for (HostSpec& s : v)
      for (int k = 0; k < table.count; ++k)
        if (std::string(table.entries[k].name) == s.name) s.index = k;
    return v;
  }();
  return all;
}

const OptimizerKernels& active_kernels_of(const HostSpec& spec) {
#define FASTOPT_TABLE_ENTRY(target) &optimizer_table_##target,
  static const OptimizerTable* const tables[] = {FASTOPT_FOR_EACH_TARGET(FASTOPT_TABLE_ENTRY)};
#undef FASTOPT_TABLE_ENTRY
  return tables[active_target()]->entries[spec.index];
}

// -------------------------------------------------------- hyperparameter sets
const char* check_text(const HyperDecl& d) {
  switch (d.check) {
    case Check::kFinite: return "a finite number";
    case Check::kNonNegative: return ">= 0";
    case Check::kPositive: return "> 0";
    case Check::kAtLeastOne: return ">= 1";
    case Check::kNonPositive: return "<= 0";
    case Check::kPositiveOrInf: return "> 0 (inf: none)";
    case Check::kUnitOpen: return "in [0, 1)";
    case Check::kUnitClosed: return "in [0, 1]";
    case Check::kFlag: return "a bool";
    case Check::kStep: return "an integer >= 1";
    case Check::kChoice: return "one of the choices";
    case Check::kOptionalNonNegative: return "None or >= 0";
  }
  return "?";
}

bool in_range(const HyperDecl& d, double x) {
  switch (d.check) {
    case Check::kFinite: return std::isfinite(x);
    case Check::kNonNegative: return std::isfinite(x) && x >= 0.0;
    case Check::kPositive: return std::isfinite(x) && x > 0.0;
    case Check::kAtLeastOne: return std::isfinite(x) && x >= 1.0;
    case Check::kNonPositive: return std::isfinite(x) && x <= 0.0;
    case Check::kPositiveOrInf: return x > 0.0;
    case Check::kUnitOpen: return x >= 0.0 && x < 1.0;
    case Check::kUnitClosed: return x >= 0.0 && x <= 1.0;
    case Check::kStep: return x >= 1.0 && x == std::floor(x) && x < 9007199254740992.0;
    case Check::kOptionalNonNegative: return std::isnan(x) || (std::isfinite(x) && x >= 0.0);
    case Check::kFlag:
    case Check::kChoice: return true;  // checked while parsing
  }
  return false;
}

std::string choices_text(const HyperDecl& d) {
  std::string s;
  for (const char* const* c = d.choices; *c; ++c) s += std::string(s.empty() ? "" : ", ") + "'" + *c + "'";
  return s;
}

// One value, parsed and checked; TypeError/ValueError name the hyperparameter.
double parse_value(const HyperDecl& d, PyObject* item) {
  if (d.check == Check::kChoice) {
    if (PyUnicode_Check(item)) {
      const std::string text = py::reinterpret_borrow<py::str>(item);
      for (int k = 0; d.choices[k]; ++k)
        if (text == d.choices[k]) return k;
      throw py::value_error("invalid " + std::string(d.shown()) + ": '" + text + "' (expected one of " +
                            choices_text(d) + ")");
    }
    throw py::type_error(std::string(d.name) + " must be a str, got " + type_name(item));
  }
  if (item == Py_None) {
    if (d.check == Check::kOptionalNonNegative) return std::nan("");
    if (d.check == Check::kPositiveOrInf) return HUGE_VAL;
    throw py::type_error(std::string(d.name) + " must be a number, got NoneType");
  }
  if (d.check == Check::kFlag) {
    if (item == Py_True) return 1.0;
    if (item == Py_False) return 0.0;
    const bool boolish = PyLong_Check(item) || std::strcmp(Py_TYPE(item)->tp_name, "numpy.bool") == 0 ||
                         std::strcmp(Py_TYPE(item)->tp_name, "numpy.bool_") == 0;
    const int truth = boolish ? PyObject_IsTrue(item) : -1;
    if (truth < 0 || (PyLong_Check(item) && !PyBool_Check(item) && PyLong_AsLong(item) > 1))
      throw py::type_error(std::string(d.name) + " must be a bool, got " + type_name(item));
    return truth;
  }
  if (d.check == Check::kStep && !PyLong_Check(item) && !PyIndex_Check(item))
    throw py::type_error(std::string(d.name) + " must be an integer, got " + type_name(item));
  const bool plain = PyFloat_CheckExact(item) || PyLong_CheckExact(item);
  if (!plain && (PyUnicode_Check(item) || PyBytes_Check(item) || !PyNumber_Check(item)))
    throw py::type_error(std::string(d.name) + " must be a number, got " + type_name(item));
  const double x = PyFloat_CheckExact(item) ? PyFloat_AS_DOUBLE(item) : PyFloat_AsDouble(item);
  if (x == -1.0 && PyErr_Occurred()) {
    PyErr_Clear();
    throw py::type_error(std::string(d.name) + " must be a number, got " + type_name(item));
  }
  if (!in_range(d, x)) {
    if (!std::isfinite(x) && d.check != Check::kUnitOpen && d.check != Check::kUnitClosed)
      throw py::value_error(std::string(d.name) + " must be finite, got " + num(x));
    throw py::value_error("invalid " + std::string(d.shown()) + ": " + num(x) + " (must be " + check_text(d) + ")");
  }
  return x;
}

// Whether field f is the first half of a pair (its second half is f + 1).
bool starts_pair(const HostSpec& spec, std::size_t f) {
  const HyperDecl& d = spec.hypers[f];
  return d.pair && f + 1 < spec.hypers.size() && spec.hypers[f + 1].pair &&
         std::strcmp(d.pair, spec.hypers[f + 1].pair) == 0;
}

// The values Python passes per set: one per field, one per pair.
std::size_t python_width(const HostSpec& spec) {
  std::size_t width = 0;
  for (std::size_t f = 0; f < spec.hypers.size(); f += starts_pair(spec, f) ? 2 : 1) ++width;
  return width;
}

// One set: the fields in declared order, a pair read from one 2-sequence.
void parse_set(const HostSpec& spec, PyObject* set, double* row) {
  PyObject* const* items = PySequence_Fast_ITEMS(set);
  std::size_t item = 0;
  for (std::size_t f = 0; f < spec.hypers.size(); ++f, ++item) {
    if (!starts_pair(spec, f)) {
      row[f] = parse_value(spec.hypers[f], items[item]);
      continue;
    }
    PyObject* both = items[item];
    if (!(PyTuple_Check(both) || PyList_Check(both)) || PySequence_Fast_GET_SIZE(both) != 2)
      throw py::value_error(std::string(spec.hypers[f].pair) + " must be a pair of numbers, got " +
                            std::string(py::repr(both)));
    row[f] = parse_value(spec.hypers[f], PySequence_Fast_ITEMS(both)[0]);
    row[f + 1] = parse_value(spec.hypers[f + 1], PySequence_Fast_ITEMS(both)[1]);
    ++f;
  }
}

// The hyperparameter sets of a call, flattened: set k is values[k*fields ...].
// The vector is this thread's scratch (no allocation per step), valid until
// the thread's next call.
const std::vector<double>& parse_hypers(const HostSpec& spec, py::handle hypers) {
  if (!PyList_Check(hypers.ptr()) && !PyTuple_Check(hypers.ptr()))
    throw py::type_error("hypers must be a list of hyperparameter sequences");
  const std::size_t fields = spec.hypers.size(), width = python_width(spec);
  const py::ssize_t n_sets = PySequence_Fast_GET_SIZE(hypers.ptr());
  if (n_sets == 0) throw py::value_error("hypers must hold at least one hyperparameter set");
  thread_local std::vector<double> values;
  values.assign(static_cast<std::size_t>(n_sets) * fields, 0.0);
  for (py::ssize_t k = 0; k < n_sets; ++k) {
    PyObject* set = PySequence_Fast_ITEMS(hypers.ptr())[k];
    if (!PyList_Check(set) && !PyTuple_Check(set))
      throw py::type_error("each hyperparameter set must be a tuple or list of " + std::to_string(width) + " values");
    if (static_cast<std::size_t>(PySequence_Fast_GET_SIZE(set)) != width)
      throw py::value_error(std::string(spec.name) + " takes " + std::to_string(width) +
                            " hyperparameters per set, got " + std::to_string(PySequence_Fast_GET_SIZE(set)));
    double* row = values.data() + static_cast<std::size_t>(k) * fields;
    parse_set(spec, set, row);
    spec.validate(row);
  }
  return values;
}

// ----------------------------------------------------------------- the step

// Calls this small keep the GIL: they take a microsecond or two, and
// releasing and retaking it costs them about 440 instructions plus two mutex
// handoffs (callgrind) while no other thread could do much in that time
// (NumPy's ufuncs hold it likewise for small arrays).
constexpr std::int64_t kReleaseGilFrom = 4096;

using UnitStats = std::array<double, kMaxUnits * kStatFields>;

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

// Every tensor has the state arrays its hyperparameter set needs.
void check_state_present(const HostSpec& spec, const CheckedBuffers& buffers, const std::vector<double>& values,
                         const std::vector<std::int32_t>& index) {
  const std::size_t width = spec.hypers.size();
  for (int t = 0; t < buffers.n_tensors(); ++t) {
    const double* row = values.data() + (index.empty() ? 0 : static_cast<std::size_t>(index[t])) * width;
    for (std::size_t r = 0; r < spec.state.size(); ++r) {
      const int role = static_cast<int>(r) + 2;
      if (!buffers.present(static_cast<std::size_t>(role), t) && spec.needs_state(role, row, buffers.ndim(t)))
        throw py::value_error(spec.state_args[r] + "[" + std::to_string(t) + "] is required by " + spec.name +
                              " with these hyperparameters (state '" + spec.state[r].name + "')");
    }
  }
}

// ---------------------------------------------------- 16-bit write-back
// The index of value among names (str; a nullptr name stands for None).
int parse_choice(py::handle value, const char* name, std::initializer_list<const char*> names) {
  std::string expected;
  int k = 0, none = -1;
  for (const char* c : names) {
    expected += std::string(expected.empty() ? "" : k + 1 == static_cast<int>(names.size()) ? " or " : ", ") +
                (c ? "'" + std::string(c) + "'" : "None");
    if (!c) none = k;
    ++k;
  }
  if (value.is_none() && none >= 0) return none;
  if (!py::isinstance<py::str>(value))
    throw py::type_error(std::string(name) + " must be " + expected + ", got " + type_name(value));
  const std::string text = py::str(value);
  k = 0;
  for (const char* c : names) {
    if (c && text == c) return k;
    ++k;
  }
  throw py::value_error("invalid " + std::string(name) + ": '" + text + "' (expected " + expected + ")");
}

// The write-back of each hyperparameter set, parsed: None (every set rounds
// to nearest, no master) or one (rounding, master_weights, seed, step) per set.
const std::vector<WriteBack>& parse_writes(py::handle writes, std::size_t n_sets) {
  thread_local std::vector<WriteBack> out;
  out.assign(n_sets, WriteBack{kRoundNearest, kNoMaster, 0, 0});
  if (writes.is_none()) return out;
  if (!PyList_Check(writes.ptr()) && !PyTuple_Check(writes.ptr()))
    throw py::type_error("writes must be a list of (rounding, master_weights, seed, step) tuples");
  if (static_cast<std::size_t>(PySequence_Fast_GET_SIZE(writes.ptr())) != n_sets)
    throw py::value_error("writes must have one entry per hyperparameter set (" + std::to_string(n_sets) + ")");
  for (std::size_t k = 0; k < n_sets; ++k) {
    const py::tuple w = py::reinterpret_borrow<py::object>(PySequence_Fast_ITEMS(writes.ptr())[k]);
    if (w.size() != 4) throw py::value_error("each writes entry is (rounding, master_weights, seed, step)");
    out[k].rounding = parse_choice(w[0], "rounding", {"nearest", "stochastic"}) == 1 ? kRoundStochastic
                                                                                     : kRoundNearest;
    const int master = parse_choice(w[1], "master_weights", {nullptr, "split", "float32"});
    out[k].master = master == 1 ? kSplitMaster : master == 2 ? kFloat32Master : kNoMaster;
    for (int f : {2, 3}) {
      const py::handle value = w[static_cast<std::size_t>(f)];
      const char* name = f == 2 ? "seed" : "step";
      if (!PyLong_Check(value.ptr()) && !PyIndex_Check(value.ptr()))
        throw py::type_error(std::string(name) + " must be an integer, got " + type_name(value));
      const py::object number = py::reinterpret_steal<py::object>(PyNumber_Index(value.ptr()));
      if (!number) throw py::error_already_set();
      const unsigned long long v = PyLong_AsUnsignedLongLong(number.ptr());
      if (v == static_cast<unsigned long long>(-1) && PyErr_Occurred()) {
        PyErr_Clear();
        throw py::value_error(std::string("invalid ") + name + ": " + std::string(py::str(value)) +
                              " (must be an integer in [0, 2**64))");
      }
      (f == 2 ? out[k].seed : out[k].step) = v;
    }
  }
  return out;
}

// Every 16-bit tensor has the master its set's master_weights asks for, and
// no other; split masters need bfloat16 parameters. A plan raises StalePlan
// instead (the optimizer makes the new master and rebuilds).
void check_masters(const CheckedBuffers& buffers, const std::vector<WriteBack>& writes,
                   const std::vector<std::int32_t>& index, void (*mismatch)(const std::string&)) {
  for (int t = 0; t < buffers.n_tensors(); ++t) {
    const WriteBack& w = writes[index.empty() ? 0 : static_cast<std::size_t>(index[t])];
    const MasterKind want = w.master == kSplitMaster     ? MasterKind::kLowHalves
                            : w.master == kFloat32Master ? MasterKind::kFloat32
                                                         : MasterKind::kNone;
    if (!buffers.is_narrow()) continue;  // float32/float64 parameters are written exactly: nothing to do
    if (w.master == kSplitMaster && buffers.format() != Format::kBFloat16)
      throw py::value_error(std::string("master_weights='split' needs bfloat16 parameters; params[") +
                            std::to_string(t) + "] is " + format_name(buffers.format()) +
                            " (use master_weights='float32')");
    if (buffers.master_kind(t) != want) {
      const char* names[] = {"none", "a uint16 array of low halves", "a float32 array"};
      mismatch("masters[" + std::to_string(t) + "] must be " + names[static_cast<int>(want)] +
               " for master_weights=" + (w.master == kNoMaster ? "None" : w.master == kSplitMaster ? "'split'" : "'float32'"));
    }
  }
}

[[noreturn]] void value_error(const std::string& why) { throw py::value_error(why); }

py::object run(const HostSpec& spec, const CheckedBuffers& buffers, const std::vector<double>& values,
               const std::vector<std::int32_t>& index, int num_threads, bool check_only, bool stats,
               const std::vector<WriteBack>& writes, const std::int64_t* tensor_ids) {
  check_state_present(spec, buffers, values, index);
  if (num_threads < 0) throw py::value_error("num_threads must be >= 0 (0 means the OpenMP default)");
  if (num_threads == 0) num_threads = default_num_threads().load(std::memory_order_relaxed);
  if (check_only) return py::none();
  UnitStats units;  // 8 KiB: zeroed only when statistics are asked for
  if (stats) units.fill(0.0);
  const std::size_t n_sets = values.size() / spec.hypers.size();
  const OptimizerKernels& kernels = active_kernels_of(spec);
  int threads_used = 1;
  auto go = [&](const auto& batch, auto&& step) {
    if (batch.total < kReleaseGilFrom) return step(batch);
    py::gil_scoped_release release;
    step(batch);
  };
  double* unit_stats = stats ? units.data() : nullptr;
  if (buffers.is_narrow() || buffers.has_8bit_state()) {
    const auto narrow = [](Format f) { return f == Format::kFloat16 ? kFormatFloat16 : f == Format::kBFloat16 ? kFormatBFloat16 : kFormatFloat32; };
    const NarrowCall call{narrow(buffers.format()), narrow(buffers.grad_format()), writes.data(), tensor_ids,
                          static_cast<int>(buffers.master_role()), static_cast<int>(buffers.first_absmax_role()),
                          &quant_map(kSignedMap), &quant_map(kUnsignedMap)};
    go(buffers.batch<float>(index, num_threads, &threads_used, unit_stats),
       [&](const Batch<float>& b) { kernels.narrow(b, call, values.data(), n_sets); });
  } else if (buffers.is_double()) {
    go(buffers.batch<double>(index, num_threads, &threads_used, unit_stats),
       [&](const Batch<double>& b) { kernels.f64(b, values.data(), n_sets); });
  } else {
    go(buffers.batch<float>(index, num_threads, &threads_used, unit_stats),
       [&](const Batch<float>& b) { kernels.f32(b, values.data(), n_sets); });
  }
  last_call_threads().store(threads_used, std::memory_order_relaxed);
  return stats ? py::object(stats_result(units)) : py::none();
}

// Parameters, gradients, the state keys, their 8-bit absmax arrays, the masters.
std::size_t role_count(const HostSpec& spec) { return 3 + 2 * spec.state.size(); }

void add_state_roles(const HostSpec& spec, CheckedBuffers& buffers, py::handle state) {
  std::vector<bool> quantizable;
  for (const StateDecl& d : spec.state) quantizable.push_back(d.map != kNoMap);
  buffers.allow_8bit_state(2 + spec.state.size(), std::move(quantizable));
  if (!PyList_Check(state.ptr()) && !PyTuple_Check(state.ptr()))
    throw py::type_error(std::string(spec.name) + ": state must be a list with one entry per state key");
  if (static_cast<std::size_t>(PySequence_Fast_GET_SIZE(state.ptr())) != spec.state.size())
    throw py::value_error(std::string(spec.name) + " takes " + std::to_string(spec.state.size()) +
                          " state arrays per parameter, got " + std::to_string(PySequence_Fast_GET_SIZE(state.ptr())));
  for (std::size_t r = 0; r < spec.state.size(); ++r)
    buffers.add_role(r + 2, RoleSpec{spec.state_args[r].c_str(), true, spec.state[r].shape},
                     PySequence_Fast_ITEMS(state.ptr())[r]);
}

// -------------------------------------------------------------- step plans
// Raised by StepPlan.run when the gradient list no longer has the None
// entries the plan was built for: the optimizer rebuilds its plan.
PyObject* g_stale_plan = nullptr;

// A class step's buffers, checked once: parameters and state arrays stay,
// the gradients and hyperparameter values change at every step. The plan
// takes the optimizer's whole gradient list (aligned with all its
// parameters) and picks its own tensors' entries by grad_index, so a step
// costs no Python work per array.
class StepPlan {
 public:
  StepPlan(const HostSpec& spec, py::handle params, py::handle state, py::handle hyper_index,
           std::vector<std::int64_t> grad_index, std::int64_t n_grads, std::int64_t n_none, py::handle masters)
      : spec_(spec),
        buffers_(params, role_count(spec)),
        grad_index_(std::move(grad_index)),
        n_grads_(n_grads),
        n_none_(n_none) {
    add_state_roles(spec, buffers_, state);
    buffers_.add_masters(masters);
    buffers_.check_overlap(true);
    index_ = check_hyper_index(hyper_index, buffers_.n_tensors(), INT32_MAX);  // sets come at run()
    if (grad_index_.size() != static_cast<std::size_t>(buffers_.n_tensors()))
      throw py::value_error("grad_index must have one entry per parameter of the plan");
    for (std::int64_t k : grad_index_)
      if (k < 0 || k >= n_grads_) throw py::value_error("grad_index entry out of range");
    picked_ = py::list(buffers_.n_tensors());
    release_grads();  // fills picked_ with None
  }

  py::object run(py::handle grads, py::handle hypers, int num_threads, bool check_only, bool stats,
                 py::handle writes) {
    if (!PyList_Check(grads.ptr()) || PyList_GET_SIZE(grads.ptr()) != n_grads_)
      throw py::value_error("grads must be a list of " + std::to_string(n_grads_) + " entries");
    PyObject** items = PySequence_Fast_ITEMS(grads.ptr());
    std::int64_t none = 0;
    for (std::int64_t k = 0; k < n_grads_; ++k) none += items[k] == Py_None;
    if (none != n_none_) stale("the gradients that are None are not the ones this step plan was built for");
    for (std::size_t i = 0; i < grad_index_.size(); ++i) {
      PyObject* g = items[grad_index_[i]];
      if (g == Py_None) stale("a gradient this step plan uses is None");
      Py_INCREF(g);
      PyObject* old = PyList_GET_ITEM(picked_.ptr(), static_cast<py::ssize_t>(i));
      PyList_SET_ITEM(picked_.ptr(), static_cast<py::ssize_t>(i), g);
      Py_XDECREF(old);
    }
    struct ReleaseGrads {  // the plan keeps no gradient alive between steps
      StepPlan* plan;
      ~ReleaseGrads() { plan->release_grads(); }
    } release{this};
    buffers_.replace_grads(picked_);
    const std::vector<double>& values = parse_hypers(spec_, hypers);
    for (std::int32_t k : index_)
      if (static_cast<std::size_t>(k) >= values.size() / spec_.hypers.size())
        throw py::value_error("the plan's hyper_index refers to set " + std::to_string(k) + " but hypers has " +
                              std::to_string(values.size() / spec_.hypers.size()));
    // A group's settings now need a state array the plan does not hold
    // (amsgrad or momentum switched on): the optimizer rebuilds the plan.
    try {
      check_state_present(spec_, buffers_, values, index_);
    } catch (const py::value_error&) {
      stale("the hyperparameters need state arrays this step plan does not hold");
    }
    const std::vector<WriteBack>& write = parse_writes(writes, values.size() / spec_.hypers.size());
    check_masters(buffers_, write, index_, [](const std::string& why) { stale(why.c_str()); });
    return fastopt::run(spec_, buffers_, values, index_, num_threads, check_only, stats, write, grad_index_.data());
  }

  int n_tensors() const { return buffers_.n_tensors(); }

  void release_grads() {
    buffers_.release_grads();
    for (py::ssize_t i = 0; i < PyList_GET_SIZE(picked_.ptr()); ++i) {
      PyObject* old = PyList_GET_ITEM(picked_.ptr(), i);
      Py_INCREF(Py_None);
      PyList_SET_ITEM(picked_.ptr(), i, Py_None);
      Py_XDECREF(old);
    }
  }

 private:
  const HostSpec& spec_;
  CheckedBuffers buffers_;
  std::vector<std::int32_t> index_;
  std::vector<std::int64_t> grad_index_;
  std::int64_t n_grads_, n_none_;
  py::list picked_;

  [[noreturn]] static void stale(const char* why) {
    PyErr_SetString(g_stale_plan, why);
    throw py::error_already_set();
  }  // this plan's gradients, reused
};

py::object step(const HostSpec& spec, py::handle params, py::handle grads, py::handle state, py::handle hypers,
                py::handle hyper_index, int num_threads, bool check_only, bool stats, py::handle writes,
                py::handle masters) {
  CheckedBuffers buffers(params, role_count(spec));
  buffers.add_role(1, RoleSpec{"grads", false, StateShape::kLikeParam}, grads);
  if (grads.is_none()) throw py::type_error("grads must be a numpy.ndarray or a list of them");
  add_state_roles(spec, buffers, state);
  buffers.add_masters(masters);
  buffers.check_overlap();
  const std::vector<double>& values = parse_hypers(spec, hypers);
  const std::size_t n_sets = values.size() / spec.hypers.size();
  const std::vector<std::int32_t> index = check_hyper_index(hyper_index, buffers.n_tensors(), n_sets);
  const std::vector<WriteBack>& write = parse_writes(writes, n_sets);
  check_masters(buffers, write, index, [](const std::string& why) { value_error(why); });
  thread_local std::vector<std::int64_t> tensor_ids;
  tensor_ids.resize(static_cast<std::size_t>(buffers.n_tensors()));
  for (std::size_t t = 0; t < tensor_ids.size(); ++t) tensor_ids[t] = static_cast<std::int64_t>(t);
  return run(spec, buffers, values, index, num_threads, check_only, stats, write, tensor_ids.data());
}

const char* check_name(Check c) {
  switch (c) {
    case Check::kFinite: return "finite";
    case Check::kNonNegative: return "nonnegative";
    case Check::kPositive: return "positive";
    case Check::kAtLeastOne: return "at_least_one";
    case Check::kNonPositive: return "nonpositive";
    case Check::kPositiveOrInf: return "positive_or_inf";
    case Check::kUnitOpen: return "unit_open";
    case Check::kUnitClosed: return "unit_closed";
    case Check::kFlag: return "flag";
    case Check::kStep: return "step";
    case Check::kChoice: return "choice";
    case Check::kOptionalNonNegative: return "optional_nonnegative";
  }
  return "?";
}

const char* origin_name(Origin o) {
  switch (o) {
    case Origin::kHyper: return "hyper";
    case Origin::kClassOnly: return "class_only";
    case Origin::kPerStep: return "per_step";
    case Origin::kShared: return "shared";
  }
  return "?";
}

// What Python sees of a default: bools for flags, the choice's name, None for
// "the kernel's own default" (NaN), and numbers.
py::object default_of(const HyperDecl& d) {
  if (d.check == Check::kFlag) return py::bool_(d.default_value != 0.0);
  if (d.check == Check::kChoice) return py::str(d.choices[static_cast<int>(d.default_value)]);
  if (d.check == Check::kStep) return py::int_(static_cast<long long>(d.default_value));
  if (std::isnan(d.default_value)) return py::none();
  return py::float_(d.default_value);
}

const char* shape_name(StateShape s) {
  static constexpr const char* kNames[] = {"param", "rows", "cols"};  // in StateShape's order
  return kNames[static_cast<int>(s)];
}

}  // namespace

void bind_optimizers(py::module_& m) {
  py::class_<StepPlan>(m, "StepPlan", "A class step's checked buffers (see OptimizerSpec.plan).")
      .def("run", &StepPlan::run, "grads"_a, "hypers"_a, "num_threads"_a = 0, "check_only"_a = false,
           "stats"_a = false, "writes"_a = py::none())
      .def_property_readonly("n_tensors", &StepPlan::n_tensors);

  py::class_<HostSpec>(m, "OptimizerSpec",
                       "One optimizer's declaration (from its C++ header) and its step. Private: use the classes "
                       "and functions of fastopt.optim / fastopt.functional.")
      .def_property_readonly("name", [](const HostSpec& s) { return std::string(s.name); })
      .def_property_readonly("hypers", [](const HostSpec& s) {
        py::list out;
        for (const HyperDecl& d : s.hypers) {
          py::list choices;
          for (const char* const* c = d.choices; c && *c; ++c) choices.append(*c);
          out.append(py::make_tuple(d.name, default_of(d), check_name(d.check), origin_name(d.origin),
                                    py::tuple(choices)));
        }
        return out;
      }, "(name, default, check, origin, choices) per hyperparameter, in declared order (step() takes "
         "the two halves of a pair as one pair: see pairs).")
      .def_property_readonly("pairs", [](const HostSpec& s) {
        py::dict out;
        for (std::size_t f = 0; f < s.hypers.size(); ++f)
          if (starts_pair(s, f)) out[s.hypers[f].pair] = py::make_tuple(s.hypers[f].name, s.hypers[f + 1].name);
        return out;
      }, "{pair: (first, second)}: two consecutive hyperparameters that step() takes as one pair.")
      .def_property_readonly("state", [](const HostSpec& s) {
        py::list out;
        for (const StateDecl& d : s.state) out.append(py::make_tuple(d.name, shape_name(d.shape)));
        return out;
      }, "(key, shape rule) per state array, in the order step() takes them.")
      .def_property_readonly("state_maps", [](const HostSpec& s) {
        py::list out;
        for (const StateDecl& d : s.state) out.append(d.map == kSignedMap ? py::str("signed") : d.map == kUnsignedMap ? py::str("unsigned") : py::object(py::none()));
        return out;
      }, "Per state key, the dynamic map of its 8-bit form ('signed' or 'unsigned'; None: float state only). "
         "step() takes an 8-bit state array as a (codes, absmax) pair.")
      .def("needed_state", [](const HostSpec& s, py::handle values, int ndim) {
        const std::vector<double> row = parse_hypers(s, py::make_tuple(values));  // a copy
        py::list out;
        for (std::size_t r = 0; r < s.state.size(); ++r)
          if (s.needs_state(static_cast<int>(r) + 2, row.data(), ndim)) out.append(s.state[r].name);
        return out;
      }, "values"_a, "ndim"_a,
           "The state keys a parameter with `ndim` dimensions needs under these hyperparameter values "
           "(checked: raises like step()).")
      .def("step", [](const HostSpec& s, py::handle params, py::handle grads, py::handle state, py::handle hypers,
                      py::handle hyper_index, int num_threads, bool check_only, bool stats, py::handle writes,
                      py::handle masters) {
        return step(s, params, grads, state, hypers, hyper_index, num_threads, check_only, stats, writes, masters);
      }, "params"_a, "grads"_a, "state"_a, "hypers"_a, "hyper_index"_a = py::none(), "num_threads"_a = 0,
         "check_only"_a = false, "stats"_a = false, "writes"_a = py::none(), "masters"_a = py::none(),
         "One fused step over every tensor: state is a list (one entry per state key) of arrays or lists of "
         "arrays (None: absent); hypers a list of hyperparameter sets (tuples in `hypers` order); hyper_index "
         "which set each tensor uses. Everything is checked before any buffer is written. Returns the step "
         "statistics' sums with stats=True, else None. float16/bfloat16 parameters: writes holds one "
         "(rounding, master_weights, seed, step) per set (None: round to nearest), masters one master per "
         "tensor (a uint16 array for 'split', float32 for 'float32', None).")
      .def("plan", [](const HostSpec& s, py::handle params, py::handle state, py::handle hyper_index,
                      std::vector<std::int64_t> grad_index, std::int64_t n_grads, std::int64_t n_none,
                      py::handle masters) {
        return std::make_unique<StepPlan>(s, params, state, hyper_index, std::move(grad_index), n_grads, n_none,
                                          masters);
      }, "params"_a, "state"_a, "hyper_index"_a, "grad_index"_a, "n_grads"_a, "n_none"_a,
         "masters"_a = py::none(), py::keep_alive<0, 1>(),
         "A StepPlan: params and state checked once; run(grads, hypers, ...) takes the optimizer's whole "
         "gradient list (n_grads entries, n_none of them None), uses entry grad_index[i] for params[i], and "
         "checks only the gradients and hyperparameters. Raises StalePlan when the None entries changed or "
         "the hyperparameters need state the plan does not hold.");

  static py::exception<std::runtime_error> stale(m, "StalePlan");
  g_stale_plan = stale.ptr();

  m.def("optimizers", [] {
    py::dict out;
    for (const HostSpec& s : specs()) out[py::str(s.name)] = py::cast(&s, py::return_value_policy::reference);
    return out;
  }, "Every registered optimizer's OptimizerSpec, by name.");
}

}  // namespace fastopt
