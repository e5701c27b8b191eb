// Argument checking for the kernel bindings.
//
// Every buffer a kernel touches is checked here, and every check runs before
// the first write: a rejected call leaves all arrays untouched. Nothing is
// ever converted or copied, because an in-place update of a silent copy would
// be lost (pybind11's default py::array_t casting does exactly that).
//
// This runs on every optimizer step, so it is written to cost well under a
// microsecond per array: list items read in place, and error messages
// formatted only when an error is raised. A step plan (bindings/optimizers.cpp)
// checks the parameters and state once and only the gradients at each step.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <array>
#include <cstddef>
#include <cstdint>
#include <memory_resource>
#include <string>
#include <vector>

#include "core/batch.hpp"
#include "core/hyper.hpp"

namespace fastopt {
namespace py = pybind11;

std::string type_name(py::handle h);
std::string shape_text(const py::array& a);

// The role a buffer plays in a call: the parameters (role 0, written), the
// gradients (role 1, read), the optimizer's state arrays (written) and, for
// 16-bit parameters, their masters (the last role, written).
struct RoleSpec {
  const char* name;     // the Python argument name, used in every message ("exp_avgs")
  bool written;
  StateShape shape;     // how its shape follows the parameter's
};

// The element types a call can hold. Parameters set the call's format; the
// gradients have it too, or float32 under 16-bit parameters; state arrays
// are float32 under 16-bit parameters.
enum class Format : int { kFloat32, kFloat64, kFloat16, kBFloat16 };
const char* format_name(Format f);

// A master array: the low halves of a split float32 master (uint16) or a
// float32 copy; which one a tensor needs depends on its write-back mode.
enum class MasterKind : std::int8_t { kNone, kLowHalves, kFloat32 };

// The validated buffers of one call: role-major raw pointers plus sizes.
class CheckedBuffers {
 public:
  // params: an ndarray or a list/tuple of them (role 0). The roles after the
  // parameters are added with add_role, in kernel order (gradients first).
  // `first` names role 0 in messages and says whether it is written.
  CheckedBuffers(py::handle params, std::size_t n_roles,
                 const RoleSpec& first = RoleSpec{"params", true, StateShape::kLikeParam});
  CheckedBuffers(const CheckedBuffers&) = delete;  // its containers point into its own arena
  CheckedBuffers& operator=(const CheckedBuffers&) = delete;

  // value: an ndarray, a list/tuple of ndarrays (items may be None: absent
  // for that tensor) or None (absent for every tensor).
  void add_role(std::size_t role, const RoleSpec& spec, py::handle value);
  // Rejects any two buffers that share memory when at least one is written;
  // keep_written: remember the written intervals for replace_grads (a plan).
  void check_overlap(bool keep_written = false);

  // Replaces role 1 (the gradients) in a checked set whose other roles do
  // not change (a step plan): checks them and their overlap with the written
  // buffers only.
  void replace_grads(py::handle grads);
  // Drops the references to the gradients (a plan keeps none between steps).
  void release_grads() { grads_.clear(); }

  Format format() const { return format_; }
  bool is_double() const { return format_ == Format::kFloat64; }
  bool is_narrow() const { return format_ == Format::kFloat16 || format_ == Format::kBFloat16; }
  Format grad_format() const { return grad_format_; }
  // The masters role (the last one), once add_masters has run.
  std::size_t master_role() const { return master_role_; }
  void add_masters(py::handle value);
  // 8-bit state (before the state roles are added): state role r may hold
  // (codes, absmax) pairs where quantizable[r - 2]; their absmax arrays are
  // role first_absmax_role + r - 2.
  void allow_8bit_state(std::size_t first_absmax_role, std::vector<bool> quantizable) {
    first_absmax_role_ = first_absmax_role;
    quantizable_ = std::move(quantizable);
  }
  std::size_t first_absmax_role() const { return first_absmax_role_; }
  bool has_8bit_state() const { return has_8bit_state_; }
  MasterKind master_kind(int tensor) const {
    return master_kinds_.empty() ? MasterKind::kNone : master_kinds_[static_cast<std::size_t>(tensor)];
  }
  int n_tensors() const { return n_tensors_; }
  int ndim(int tensor) const { return static_cast<int>(buffers_[static_cast<std::size_t>(tensor)].array.ndim()); }
  bool present(std::size_t role, int tensor) const { return raw_[role * n_tensors_ + tensor] != nullptr; }
  std::int64_t total() const { return total_; }

  // The kernel's view; valid while this object lives. hyper_index may be
  // empty (every tensor uses hyperparameter set 0).
  template <class T>
  Batch<T> batch(const std::vector<std::int32_t>& hyper_index, int num_threads, int* threads_used,
                 double* unit_stats) const {
    return Batch<T>{n_tensors_, sizes_.data(), reinterpret_cast<T* const*>(raw_.data()),
                    hyper_index.empty() ? nullptr : hyper_index.data(), total_, num_threads, threads_used,
                    dims_.data(), unit_stats};
  }

 private:
  struct Label {  // "params[3]", formatted only for an error message
    const char* role;
    int index;
    std::string text() const { return std::string(role) + "[" + std::to_string(index) + "]"; }
  };
  struct Buffer {
    py::array array;  // a strong reference: the GIL is released while kernels run
    Label label;
    bool written;
    std::uintptr_t begin, end;  // its bytes
  };
  struct Interval {
    std::uintptr_t begin, end;
    std::size_t id;  // index into buffers_
  };

  void add_array(std::size_t role, const RoleSpec& spec, py::handle item, int i);
  void add_8bit_state(std::size_t role, const RoleSpec& spec, py::handle pair, int i);
  void add_checked(std::size_t role, py::array a, const Label& where, bool written = true);
  std::pmr::vector<Interval> intervals(bool written_only);

  py::array float_array(const Label& where, py::handle item, std::size_t role);
  void add_grad(py::handle item, int i);
  void add_grad_checked(py::handle item, int i);
  Interval clash_with_written(const Buffer& b) const;

  // A step of a few arrays allocates nothing: the containers below start in
  // this arena (malloc/free pairs were a third of a small step's binding cost).
  std::array<std::byte, 4096> arena_;
  std::pmr::monotonic_buffer_resource memory_{arena_.data(), arena_.size()};

  std::size_t n_roles_;
  std::pmr::vector<Buffer> buffers_{&memory_};        // params first (buffers_[i] is params[i]), then state
  std::pmr::vector<Buffer> grads_{&memory_};          // role 1, replaced at every step of a plan
  std::pmr::vector<void*> raw_{&memory_};             // raw_[role * n + i]; nullptr for an absent buffer
  std::pmr::vector<std::int64_t> sizes_{&memory_};    // elements of params[i]
  std::pmr::vector<std::int64_t> dims_{&memory_};     // (leading, rows, cols) of params[i] (Batch::dims)
  std::pmr::vector<Interval> written_{&memory_};      // sorted, disjoint written intervals, for replace_grads
  std::pmr::vector<MasterKind> master_kinds_{&memory_};  // per tensor, once add_masters ran
  std::size_t master_role_ = SIZE_MAX;
  std::size_t first_absmax_role_ = SIZE_MAX;
  std::vector<bool> quantizable_;
  bool has_8bit_state_ = false;
  std::int64_t total_ = 0;
  int n_tensors_ = 0;
  Format format_ = Format::kFloat32;       // the parameters'
  Format grad_format_ = Format::kFloat32;  // this call's gradients'
  int param_type_num_ = 0;                 // NumPy's type number of the parameters' dtype
};

// Checks a hyperparameter-set index per tensor; None gives an empty vector
// (every tensor uses set 0).
std::vector<std::int32_t> check_hyper_index(const py::handle& hyper_index, int n_tensors,
                                            std::size_t n_hypers);

}  // namespace fastopt
