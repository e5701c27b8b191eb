// Argument checking for the kernel bindings.
//
// Every buffer a kernel touches is checked here, and every check runs before
// the first write: a rejected call leaves all arrays untouched. Nothing is
// ever converted or copied, because an in-place update of a silent copy would
// be lost (pybind11's default py::array_t casting does exactly that).
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

// The validated buffers of one call: role-major raw pointers plus shapes.
class CheckedBuffers {
 public:
  explicit CheckedBuffers(const std::vector<RoleArg>& roles);

  bool is_double() const { return is_double_; }
  int n_tensors() const { return n_tensors_; }

  // Builds the kernel's view; valid while this object lives.
  template <class T>
  Batch<T> batch(const std::vector<std::int32_t>& hyper_index, int num_threads, int* threads_used) {
    typed_.resize(raw_.size());
    for (std::size_t k = 0; k < raw_.size(); ++k) typed_[k] = raw_[k];
    return Batch<T>{n_tensors_, sizes_.data(), reinterpret_cast<T* const*>(typed_.data()),
                    hyper_index.data(), total_, num_threads, threads_used};
  }

 private:
  void check_overlap() const;

  std::vector<py::array> keep_alive_;
  struct Label { const char* role; int index; std::string text() const; };  // "params[3]"
  std::vector<Label> labels_;         // per buffer, formatted only for an error message
  std::vector<bool> written_;
  std::vector<void*> raw_;            // raw_[role * n + i]
  std::vector<void*> typed_;
  std::vector<std::int64_t> sizes_;
  std::int64_t total_ = 0;
  int n_tensors_ = 0;
  bool is_double_ = false;
};

// Checks a hyperparameter-set index per tensor (or builds all-zero).
std::vector<std::int32_t> check_hyper_index(const py::object& hyper_index, int n_tensors,
                                            std::size_t n_hypers);

}  // namespace fastopt
