#include "bindings/checks.hpp"

#include <algorithm>

namespace fastopt {
namespace {

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

std::string shape_str(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d) s += std::to_string(a.shape(d)) + (a.ndim() == 1 || d + 1 < a.ndim() ? "," : "");
  return s + ")";
}

bool same_shape(const py::array& a, const py::array& b) {
  if (a.ndim() != b.ndim()) return false;
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    if (a.shape(d) != b.shape(d)) return false;
  return true;
}

// 0 = float32, 1 = float64, -1 = anything else (including non-native byte order).
int float_kind(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.kind() != 'f' || dt.byteorder() == '>') return -1;
  return dt.itemsize() == 4 ? 0 : dt.itemsize() == 8 ? 1 : -1;
}

// The arrays a role holds: the argument itself, or the items of a list/tuple
// (read in place, without building a container).
struct Items {
  PyObject* const* items;
  py::ssize_t count;
};

Items role_items(const RoleArg& role, PyObject* const& single) {
  if (py::isinstance<py::array>(role.value)) return {&single, 1};
  if (PyList_Check(role.value.ptr()) || PyTuple_Check(role.value.ptr())) {
    PyObject* seq = role.value.ptr();
    return {PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq)};
  }
  throw py::type_error(std::string(role.name) + " must be a numpy.ndarray or a list of numpy.ndarrays, got " +
                       type_name(role.value));
}

}  // namespace

CheckedBuffers::CheckedBuffers(const RoleArg* roles, std::size_t n_roles) {
  for (std::size_t r = 0; r < n_roles; ++r) {
    const RoleArg& role = roles[r];
    if (role.value.is_none()) {
      if (role.required) throw py::value_error(std::string(role.name) + " is required " + role.required);
      if (r == 0) throw py::type_error(std::string(role.name) + " must be a numpy.ndarray or a list of them");
      continue;
    }
    PyObject* const single = role.value.ptr();
    const Items items = role_items(role, single);
    if (r == 0) {
      n_tensors_ = static_cast<int>(items.count);
      raw_.assign(n_roles * items.count, nullptr);
      buffers_.reserve(n_roles * items.count);
      sizes_.reserve(items.count);
    } else if (items.count != n_tensors_) {
      throw py::value_error(std::string(role.name) + " has " + std::to_string(items.count) + " arrays but " +
                            roles[0].name + " has " + std::to_string(n_tensors_));
    }
    for (int i = 0; i < n_tensors_; ++i) add(role, r, items.items[i], i);
  }
  check_overlap();
}

void CheckedBuffers::add(const RoleArg& role, std::size_t r, py::handle item, int i) {
  const Label where{role.name, i};
  const bool written = role.access == Access::kWrite;
  if (!py::isinstance<py::array>(item))
    throw py::type_error(where.text() + " must be a numpy.ndarray, got " + type_name(item));
  py::array a = py::reinterpret_borrow<py::array>(item);
  const int kind = float_kind(a);
  if (kind < 0)
    throw py::type_error(where.text() + " has dtype " + std::string(py::str(a.dtype())) +
                         "; fastopt kernels take float32 or float64 (native byte order)");
  if (buffers_.empty()) is_double_ = kind == 1;
  if (kind != static_cast<int>(is_double_))
    throw py::type_error(where.text() + " has dtype " + std::string(py::str(a.dtype())) + " but " +
                         buffers_.front().label.role + "[0] has dtype " + (is_double_ ? "float64" : "float32") +
                         ": one call takes a single dtype");
  if (r == 0) {
    sizes_.push_back(static_cast<std::int64_t>(a.size()));
    total_ += sizes_.back();
  } else if (!same_shape(a, buffers_[static_cast<std::size_t>(i)].array)) {  // buffers_[i]: the first role's
    throw py::value_error(where.text() + " has shape " + shape_str(a) + " but " + buffers_.front().label.role + "[" +
                          std::to_string(i) + "] has shape " + shape_str(buffers_[static_cast<std::size_t>(i)].array));
  }
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(where.text() + " is not C-contiguous; fastopt updates arrays in place and never copies "
                          "(use np.ascontiguousarray and keep the result)");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(where.text() + " is not aligned to its dtype");
  if (written && !a.writeable())
    throw py::value_error(where.text() + " is read-only but is updated in place");
  raw_[r * static_cast<std::size_t>(n_tensors_) + static_cast<std::size_t>(i)] = const_cast<void*>(a.data());
  buffers_.push_back(Buffer{std::move(a), where, written});
}

// Rejects any two buffers that share memory when at least one is written
// (an aliased state buffer would be updated twice or read after a write).
// Sweep over intervals sorted by start, remembering the furthest end among
// all buffers and among written ones.
void CheckedBuffers::check_overlap() const {
  struct Interval { std::uintptr_t begin, end; std::size_t id; };
  constexpr std::size_t kOnStack = 8;  // one tensor of any optimizer: no allocation
  Interval stack[kOnStack];
  std::vector<Interval> heap;
  Interval* spans = stack;
  if (buffers_.size() > kOnStack) {
    heap.resize(buffers_.size());
    spans = heap.data();
  }
  std::size_t n = 0;
  for (std::size_t k = 0; k < buffers_.size(); ++k) {
    const py::array& a = buffers_[k].array;
    if (a.nbytes() == 0) continue;
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data());
    spans[n++] = {begin, begin + static_cast<std::uintptr_t>(a.nbytes()), k};
  }
  std::sort(spans, spans + n, [](const Interval& x, const Interval& y) { return x.begin < y.begin; });
  std::uintptr_t end_any = 0, end_written = 0;
  std::size_t owner_any = 0, owner_written = 0;
  for (std::size_t k = 0; k < n; ++k) {
    const Interval& s = spans[k];
    const bool written = buffers_[s.id].written;
    std::size_t clash = SIZE_MAX;
    if (written && s.begin < end_any) clash = owner_any;
    else if (s.begin < end_written) clash = owner_written;
    if (clash != SIZE_MAX)
      throw py::value_error(buffers_[clash].label.text() + " and " + buffers_[s.id].label.text() +
                            " share memory; every buffer that is updated in place must be a separate array");
    if (s.end > end_any) { end_any = s.end; owner_any = s.id; }
    if (written && s.end > end_written) { end_written = s.end; owner_written = s.id; }
  }
}

std::vector<std::int32_t> check_hyper_index(const py::object& hyper_index, int n_tensors, std::size_t n_hypers) {
  if (n_hypers == 0) throw py::value_error("hypers must hold at least one hyperparameter set");
  std::vector<std::int32_t> index;
  if (hyper_index.is_none()) return index;
  index.reserve(static_cast<std::size_t>(n_tensors));
  for (py::handle h : hyper_index) {
    const long long k = h.cast<long long>();
    if (k < 0 || k >= static_cast<long long>(n_hypers))
      throw py::value_error("hyper_index entry " + std::to_string(k) + " is out of range for " +
                            std::to_string(n_hypers) + " hyperparameter sets");
    index.push_back(static_cast<std::int32_t>(k));
  }
  if (static_cast<int>(index.size()) != n_tensors)
    throw py::value_error("hyper_index has " + std::to_string(index.size()) + " entries for " +
                          std::to_string(n_tensors) + " tensors");
  return index;
}

}  // namespace fastopt
