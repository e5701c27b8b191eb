#include "bindings/checks.hpp"

#include <algorithm>
#include <cstring>

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

std::vector<py::handle> as_array_list(const RoleArg& role) {
  if (py::isinstance<py::array>(role.value)) return {role.value};
  if (py::isinstance<py::list>(role.value) || py::isinstance<py::tuple>(role.value)) {
    std::vector<py::handle> items;
    for (py::handle item : role.value) {
      if (!py::isinstance<py::array>(item))
        throw py::type_error(std::string(role.name) + "[" + std::to_string(items.size()) +
                             "] must be a numpy.ndarray, got " + type_name(item));
      items.push_back(item);
    }
    return items;
  }
  throw py::type_error(std::string(role.name) + " must be a numpy.ndarray or a list of numpy.ndarrays, got " +
                       type_name(role.value));
}

}  // namespace

std::string CheckedBuffers::Label::text() const { return std::string(role) + "[" + std::to_string(index) + "]"; }

CheckedBuffers::CheckedBuffers(const std::vector<RoleArg>& roles) {
  const RoleArg& first = roles.front();
  const std::vector<py::handle> first_items = as_array_list(first);
  n_tensors_ = static_cast<int>(first_items.size());
  raw_.assign(roles.size() * n_tensors_, nullptr);
  std::vector<py::array> reference;  // the first role's arrays: they fix shape and dtype

  for (std::size_t r = 0; r < roles.size(); ++r) {
    const RoleArg& role = roles[r];
    if (role.value.is_none()) {
      if (role.required) throw py::value_error(std::string(role.name) + " is required " + role.required);
      continue;
    }
    const std::vector<py::handle> items = r == 0 ? first_items : as_array_list(role);
    if (static_cast<int>(items.size()) != n_tensors_)
      throw py::value_error(std::string(role.name) + " has " + std::to_string(items.size()) + " arrays but " +
                            first.name + " has " + std::to_string(n_tensors_));
    for (int i = 0; i < n_tensors_; ++i) {
      const Label where{role.name, i};
      if (!py::isinstance<py::array>(items[i]))
        throw py::type_error(where.text() + " must be a numpy.ndarray, got " + type_name(items[i]));
      py::array a = py::reinterpret_borrow<py::array>(items[i]);
      const int kind = float_kind(a);
      if (kind < 0)
        throw py::type_error(where.text() + " has dtype " + std::string(py::str(a.dtype())) +
                             "; fastopt kernels take float32 or float64 (native byte order)");
      if (r == 0 && i == 0) is_double_ = kind == 1;
      if (kind != static_cast<int>(is_double_))
        throw py::type_error(where.text() + " has dtype " + std::string(py::str(a.dtype())) + " but " + first.name +
                             "[0] has dtype " + (is_double_ ? "float64" : "float32") +
                             ": one call takes a single dtype");
      if (r == 0) {
        reference.push_back(a);
      } else if (!same_shape(a, reference[i])) {
        throw py::value_error(where.text() + " has shape " + shape_str(a) + " but " + first.name + "[" +
                              std::to_string(i) + "] has shape " + shape_str(reference[i]));
      }
      if (!(a.flags() & py::array::c_style))
        throw py::value_error(where.text() + " is not C-contiguous; fastopt updates arrays in place and never copies "
                              "(use np.ascontiguousarray and keep the result)");
      if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
        throw py::value_error(where.text() + " is not aligned to its dtype");
      if (role.access == Access::kWrite && !a.writeable())
        throw py::value_error(where.text() + " is read-only but is updated in place");
      raw_[r * n_tensors_ + i] = const_cast<void*>(a.data());
      keep_alive_.push_back(a);
      labels_.push_back(where);
      written_.push_back(role.access == Access::kWrite);
    }
  }
  for (const py::array& a : reference) {
    sizes_.push_back(static_cast<std::int64_t>(a.size()));
    total_ += sizes_.back();
  }
  check_overlap();
}

// Rejects any two buffers that share memory when at least one is written
// (an aliased state buffer would be updated twice or read after a write).
// Sweep over intervals sorted by start, remembering the furthest end among
// all buffers and among written ones.
void CheckedBuffers::check_overlap() const {
  struct Interval { std::uintptr_t begin, end; std::size_t id; };
  std::vector<Interval> spans;
  for (std::size_t k = 0; k < keep_alive_.size(); ++k) {
    const py::array& a = keep_alive_[k];
    if (a.nbytes() == 0) continue;
    const auto begin = reinterpret_cast<std::uintptr_t>(a.data());
    spans.push_back({begin, begin + static_cast<std::uintptr_t>(a.nbytes()), k});
  }
  std::sort(spans.begin(), spans.end(), [](const Interval& x, const Interval& y) { return x.begin < y.begin; });
  std::uintptr_t end_any = 0, end_written = 0;
  std::size_t owner_any = 0, owner_written = 0;
  for (const Interval& s : spans) {
    std::size_t clash = SIZE_MAX;
    if (written_[s.id] && s.begin < end_any) clash = owner_any;
    else if (s.begin < end_written) clash = owner_written;
    if (clash != SIZE_MAX)
      throw py::value_error(labels_[clash].text() + " and " + labels_[s.id].text() +
                            " share memory; every buffer that is updated in place must be a separate array");
    if (s.end > end_any) { end_any = s.end; owner_any = s.id; }
    if (written_[s.id] && s.end > end_written) { end_written = s.end; owner_written = s.id; }
  }
}

std::vector<std::int32_t> check_hyper_index(const py::object& hyper_index, int n_tensors, std::size_t n_hypers) {
  if (n_hypers == 0) throw py::value_error("hypers must hold at least one hyperparameter set");
  if (hyper_index.is_none()) return std::vector<std::int32_t>(static_cast<std::size_t>(n_tensors), 0);
  std::vector<std::int32_t> index;
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
