// pybind11 module fastopt._core: the optimizers' one generic binding
// (bindings/optimizers.cpp), L-BFGS (bindings/lbfgs.cpp), and here the
// runtime controls, the gradient norm and the roofline. The public,
// documented API is fastopt.functional / fastopt.optim.
#include <pybind11/pybind11.h>
#include <pybind11/stl.h>

#include <array>
#include <atomic>
#include <cmath>
#include <type_traits>

#include "bindings/checks.hpp"
#include "bindings/optimizers.hpp"
#include "core/targets.hpp"
#include "simd/utilities.hpp"

namespace py = pybind11;
using namespace pybind11::literals;

namespace fastopt {

#define FASTOPT_DECLARE_TABLE(target) extern const UtilityKernels utility_kernels_##target;
FASTOPT_FOR_EACH_TARGET(FASTOPT_DECLARE_TABLE)
#undef FASTOPT_DECLARE_TABLE

std::atomic<int>& default_num_threads() {
  static std::atomic<int> n{0};
  return n;
}
std::atomic<int>& last_call_threads() {
  static std::atomic<int> n{0};
  return n;
}

const UtilityKernels& active_utilities() {
#define FASTOPT_TABLE_ENTRY(target) &utility_kernels_##target,
  static const UtilityKernels* const tables[] = {FASTOPT_FOR_EACH_TARGET(FASTOPT_TABLE_ENTRY)};
#undef FASTOPT_TABLE_ENTRY
  return *tables[active_target()];
}

namespace {

// Runs fn(kernels, batch) on checked buffers with the GIL released.
template <class Fn>
void run_utility(const CheckedBuffers& buffers, int num_threads, Fn&& fn) {
  if (num_threads < 0) throw py::value_error("num_threads must be >= 0 (0 means the OpenMP default)");
  if (num_threads == 0) num_threads = default_num_threads().load(std::memory_order_relaxed);
  if (buffers.is_narrow())
    throw py::type_error(std::string("this kernel takes float32 or float64 arrays, got ") +
                         format_name(buffers.format()) + " (widen 16-bit arrays with .astype(np.float32))");
  int threads_used = 1;
  const std::vector<std::int32_t> no_index;
  {
    py::gil_scoped_release release;
    if (buffers.is_double()) fn(active_utilities(), buffers.batch<double>(no_index, num_threads, &threads_used, nullptr));
    else fn(active_utilities(), buffers.batch<float>(no_index, num_threads, &threads_used, nullptr));
  }
  last_call_threads().store(threads_used, std::memory_order_relaxed);
}

// ----------------------------------------------------------- norms, roofline
void bind_norm_and_roofline(py::module_& m) {
  m.def("grad_norm", [](py::object grads, double norm_type, int num_threads) {
    NormType type;
    if (norm_type == 2.0) type = NormType::kL2;
    else if (norm_type == 1.0) type = NormType::kL1;
    else if (std::isinf(norm_type) && norm_type > 0) type = NormType::kInf;
    else throw py::value_error("norm_type must be 1, 2 or inf, got " + num(norm_type));
    CheckedBuffers buffers(grads, 1, RoleSpec{"grads", false, StateShape::kLikeParam});
    std::array<double, kMaxUnits * kNormFields> units{};
    run_utility(buffers, num_threads, [&](const UtilityKernels& k, const auto& batch) {
      if constexpr (std::is_same_v<decltype(batch), const Batch<double>&>) k.grad_norm_f64(batch, type, units.data());
      else k.grad_norm_f32(batch, type, units.data());
    });
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
    // Array k is role k of a batch of one tensor each; roles after the first
    // are checked like state arrays (same shape and dtype, separate memory).
    std::vector<std::string> names;
    for (int k = 0; k < n_written + n_read; ++k) names.push_back("arrays[" + std::to_string(k) + "]");
    CheckedBuffers buffers(written[0], static_cast<std::size_t>(n_written + n_read),
                           RoleSpec{names[0].c_str(), true, StateShape::kLikeParam});
    for (int k = 1; k < n_written + n_read; ++k)
      buffers.add_role(static_cast<std::size_t>(k), RoleSpec{names[k].c_str(), k < n_written, StateShape::kLikeParam},
                       k < n_written ? written[k] : read[k - n_written]);
    buffers.check_overlap();
    run_utility(buffers, num_threads, [&](const UtilityKernels& k, const auto& batch) {
      if constexpr (std::is_same_v<decltype(batch), const Batch<double>&>) k.roofline_f64(batch, n_written, n_read);
      else k.roofline_f32(batch, n_written, n_read);
    });
  }, "written"_a, "read"_a, "num_threads"_a = 0,
     "Benchmark yardstick: one pass reading every array and writing `written` with trivial math\n"
     "(each element becomes the mean of all arrays), so it moves the bytes of an optimizer step.");
}

// -------------------------------------------------------------------- runtime
void bind_runtime(py::module_& m) {
  m.attr("PARALLEL_GRAIN") = kParallelGrain;
  m.def("kernel_target", [] { return active_target_name(); },
        "The SIMD target whose kernels are in use.");
  m.def("compiled_targets", &compiled_targets, "SIMD targets compiled into this build, best last.");
  m.def("supported_targets", &supported_targets, "Compiled SIMD targets this CPU and OS can run.");
  m.def("select_target", &select_target, "name"_a,
        "Use the kernels of one SIMD target (for tests and benchmarks; FASTOPT_TARGET does it at import).");
  m.def("set_num_threads", [](int n) {
    if (n < 0) throw py::value_error("set_num_threads: n must be >= 0 (0 restores the OpenMP default)");
    default_num_threads().store(n, std::memory_order_relaxed);
  }, "n"_a, "Threads for every later call that does not pass num_threads (0: the OpenMP default).");
  m.def("get_num_threads", [] {
    const int n = default_num_threads().load(std::memory_order_relaxed);
#ifdef FASTOPT_HAVE_OPENMP
    return n > 0 ? n : omp_get_max_threads();
#else
    (void)n;
    return 1;
#endif
  }, "Threads a call without num_threads would use.");
  m.def("last_call_threads", [] { return last_call_threads().load(std::memory_order_relaxed); },
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
  fastopt::bind_optimizers(m);
  fastopt::bind_norm_and_roofline(m);
  fastopt::bind_runtime(m);
  fastopt::bind_lbfgs(m);
  fastopt::bind_quantize(m);
}
