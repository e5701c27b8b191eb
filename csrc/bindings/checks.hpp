// Argument checking for the kernel bindings.
//
// Every buffer a kernel touches is checked here, and every check runs before
// the first write: a rejected call leaves all arrays untouched. Nothing is
// ever converted or copied, because an in-place update of a silent copy would
// be lost (pybind11's default py::array_t casting does exactly that).
//
// This runs on every optimizer step, so it is written to cost well under a
// microsecond: one allocation per container, list items read in place, and
// error messages formatted only when an error is raised.
#pragma once

#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>
#include <vector>

#include "kernels/common.hpp"

namespace fastopt {
namespace py = pybind11;

enum class Access { kRead, kWrite };

struct RoleArg {
  const char* name;      // the Python argument name, used in every message
  py::handle value;      // an ndarray, a list/tuple of ndarrays, or None
  Access access;
  const char* required;  // nullptr: optional (None allowed); else why it is needed, e.g. "when amsgrad=True"
};

// The validated buffers of one call: role-major raw pointers plus sizes.
class CheckedBuffers {
 public:
  CheckedBuffers(const RoleArg* roles, std::size_t n_roles);
  CheckedBuffers(std::initializer_list<RoleArg> roles) : CheckedBuffers(roles.begin(), roles.size()) {}

  bool is_double() const { return is_double_; }
  int n_tensors() const { return n_tensors_; }

  // The kernel's view; valid while this object lives. hyper_index may be
  // empty (every tensor uses hyperparameter set 0).
  template <class T>
  Batch<T> batch(const std::vector<std::int32_t>& hyper_index, int num_threads, int* threads_used,
                 double* unit_stats) const {
    return Batch<T>{n_tensors_, sizes_.data(), reinterpret_cast<T* const*>(raw_.data()),
                    hyper_index.empty() ? nullptr : hyper_index.data(), total_, num_threads, threads_used,
                    unit_stats};
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
  };

  void add(const RoleArg& role, std::size_t r, py::handle item, int i);
  void check_overlap() const;

  std::vector<Buffer> buffers_;
  std::vector<void*> raw_;            // raw_[role * n + i]; nullptr for an absent role
  std::vector<std::int64_t> sizes_;
  std::int64_t total_ = 0;
  int n_tensors_ = 0;
  bool is_double_ = false;
};

// Checks a hyperparameter-set index per tensor; None gives an empty vector
// (every tensor uses set 0).
std::vector<std::int32_t> check_hyper_index(const py::object& hyper_index, int n_tensors,
                                            std::size_t n_hypers);

}  // namespace fastopt
