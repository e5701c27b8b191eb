#include "bindings/checks.hpp"

#include <algorithm>

namespace fastopt {

std::string type_name(py::handle h) { return py::str(py::type::handle_of(h).attr("__name__")); }

std::string shape_text(const py::array& a) {
  std::string s = "(";
  for (py::ssize_t d = 0; d < a.ndim(); ++d)
    s += std::to_string(a.shape(d)) + (a.ndim() == 1 || d + 1 < a.ndim() ? "," : "");
  return s + ")";
}

const char* format_name(Format f) {
  switch (f) {
    case Format::kFloat32: return "float32";
    case Format::kFloat64: return "float64";
    case Format::kFloat16: return "float16";
    case Format::kBFloat16: return "bfloat16";
  }
  return "?";
}

namespace {

// Whether a state array has the shape its rule derives from the parameter's
// (no allocation: this runs for every state array of every step).
bool has_expected_shape(const py::array& a, const py::array& param, StateShape rule) {
  if (a.ndim() != param.ndim()) return false;
  const py::ssize_t nd = param.ndim();
  for (py::ssize_t d = 0; d < nd; ++d) {
    py::ssize_t want = param.shape(d);
    if (rule == StateShape::kRowsOfParam && d == nd - 1) want = 1;
    if (rule == StateShape::kColsOfParam && nd >= 2 && d == nd - 2) want = 1;
    if (a.shape(d) != want) return false;
  }
  return true;
}

std::string expected_shape_text(const py::array& param, StateShape rule) {
  std::string s = "(";
  const py::ssize_t nd = param.ndim();
  for (py::ssize_t d = 0; d < nd; ++d) {
    py::ssize_t want = param.shape(d);
    if (rule == StateShape::kRowsOfParam && d == nd - 1) want = 1;
    if (rule == StateShape::kColsOfParam && nd >= 2 && d == nd - 2) want = 1;
    s += std::to_string(want) + (nd == 1 || d + 1 < nd ? "," : "");
  }
  return s + ")";
}

// An array's float format (native byte order only), or -1. bfloat16 is
// ml_dtypes' dtype, recognized by name (NumPy has none of its own).
int float_format(const py::array& a) {
  const py::dtype dt = a.dtype();
  if (dt.byteorder() == '>') return -1;
  if (dt.kind() == 'f') {
    switch (dt.itemsize()) {
      case 4: return static_cast<int>(Format::kFloat32);
      case 8: return static_cast<int>(Format::kFloat64);
      case 2: return static_cast<int>(Format::kFloat16);
      default: return -1;
    }
  }
  if (dt.kind() == 'V' && dt.itemsize() == 2 && std::string(py::str(dt.attr("name"))) == "bfloat16")
    return static_cast<int>(Format::kBFloat16);
  return -1;
}

std::size_t item_size(Format f) {
  return f == Format::kFloat64 ? 8 : f == Format::kFloat32 ? 4 : 2;
}

// The arrays a role holds: the argument itself, or the items of a list/tuple
// (read in place, without building a container).
struct Items {
  PyObject* const* items;
  py::ssize_t count;
};

// An 8-bit state array: a (codes, absmax) pair whose codes are uint8.
bool is_8bit_pair(py::handle value) {
  if (!PyTuple_Check(value.ptr()) || PyTuple_GET_SIZE(value.ptr()) != 2) return false;
  py::handle codes = PyTuple_GET_ITEM(value.ptr(), 0);
  return py::isinstance<py::array>(codes) && py::reinterpret_borrow<py::array>(codes).dtype().kind() == 'u' &&
         py::reinterpret_borrow<py::array>(codes).dtype().itemsize() == 1;
}

Items role_items(const char* name, py::handle value, PyObject* const& single) {
  if (py::isinstance<py::array>(value) || is_8bit_pair(value)) return {&single, 1};
  if (PyList_Check(value.ptr()) || PyTuple_Check(value.ptr())) {
    PyObject* seq = value.ptr();
    return {PySequence_Fast_ITEMS(seq), PySequence_Fast_GET_SIZE(seq)};
  }
  throw py::type_error(std::string(name) + " must be a numpy.ndarray or a list of numpy.ndarrays, got " +
                       type_name(value));
}

}  // namespace

CheckedBuffers::CheckedBuffers(py::handle params, std::size_t n_roles, const RoleSpec& first) : n_roles_(n_roles) {
  if (params.is_none()) throw py::type_error(std::string(first.name) + " must be a numpy.ndarray or a list of them");
  PyObject* const single = params.ptr();
  const Items items = role_items(first.name, params, single);
  n_tensors_ = static_cast<int>(items.count);
  raw_.assign(n_roles * items.count, nullptr);
  buffers_.reserve(n_roles * items.count);
  sizes_.reserve(items.count);
  dims_.reserve(3 * items.count);
  for (int i = 0; i < n_tensors_; ++i) add_array(0, first, items.items[i], i);
}

void CheckedBuffers::add_role(std::size_t role, const RoleSpec& spec, py::handle value) {
  if (value.is_none()) return;
  PyObject* const single = value.ptr();
  const Items items = role_items(spec.name, value, single);
  if (items.count != n_tensors_)
    throw py::value_error(std::string(spec.name) + " has " + std::to_string(items.count) + " arrays but params has " +
                          std::to_string(n_tensors_));
  if (role == 1) grads_.clear();
  for (int i = 0; i < n_tensors_; ++i) {
    if (role == 1) add_grad(items.items[i], i);
    else if (PyTuple_Check(items.items[i]) && role >= 2 && role < master_role()) add_8bit_state(role, spec, items.items[i], i);
    else if (items.items[i] != Py_None) add_array(role, spec, items.items[i], i);
  }
}

// The item as an array of a float format the role accepts: the parameters
// set the call's format (the first one) and share it; gradients have it, or
// float32 under 16-bit parameters, one format for all of a call's gradients;
// state arrays have it, float32 under 16-bit parameters.
py::array CheckedBuffers::float_array(const Label& where, py::handle item, std::size_t role) {
  if (!py::isinstance<py::array>(item))
    throw py::type_error(where.text() + " must be a numpy.ndarray, got " + type_name(item));
  py::array a = py::reinterpret_borrow<py::array>(item);
  const int kind = float_format(a);
  if (kind < 0)
    throw py::type_error(where.text() + " has dtype " + std::string(py::str(a.dtype())) +
                         "; fastopt kernels take float32, float64, float16 or bfloat16 (native byte order)");
  const Format f = static_cast<Format>(kind);
  auto wrong = [&](const std::string& why) {
    return py::type_error(where.text() + " has dtype " + format_name(f) + " but " + why);
  };
  if (role == 0) {
    if (buffers_.empty()) {
      format_ = f;
      param_type_num_ = py::detail::array_descriptor_proxy(py::detail::array_proxy(a.ptr())->descr)->type_num;
    }
    if (f != format_)
      throw wrong(buffers_.front().label.text() + " has dtype " + format_name(format_) +
                  ": one call takes a single dtype");
  } else if (role == 1) {
    if (f != format_ && !(is_narrow() && f == Format::kFloat32))
      throw wrong(std::string("the parameters are ") + format_name(format_) +
                  (is_narrow() ? " (gradients: the parameters' dtype or float32)" : ""));
    if (grads_.empty()) grad_format_ = f;
    if (f != grad_format_)
      throw wrong(grads_.front().label.text() + " has dtype " + format_name(grad_format_) +
                  ": a call's gradients share one dtype");
  } else {
    if (is_narrow() && f != Format::kFloat32)
      throw wrong(std::string("the state of ") + format_name(format_) + " parameters is float32");
    if (!is_narrow() && f != format_)
      throw wrong(buffers_.front().label.text() + " has dtype " + format_name(format_) +
                  ": one call takes a single dtype");
  }
  return a;
}

void CheckedBuffers::add_array(std::size_t role, const RoleSpec& spec, py::handle item, int i) {
  const Label where{spec.name, i};
  py::array a = role == master_role() ? py::reinterpret_borrow<py::array>(item) : float_array(where, item, role);
  if (role == 0) {
    sizes_.push_back(static_cast<std::int64_t>(a.size()));
    total_ += sizes_.back();
    const py::ssize_t nd = a.ndim();
    const std::int64_t rows = nd >= 2 ? a.shape(nd - 2) : 0, cols = nd >= 2 ? a.shape(nd - 1) : 0;
    dims_.insert(dims_.end(), {rows * cols ? sizes_.back() / (rows * cols) : 0, rows, cols});
  } else {
    const py::array& param = buffers_[static_cast<std::size_t>(i)].array;
    if (!has_expected_shape(a, param, spec.shape))
      throw py::value_error(where.text() + " has shape " + shape_text(a) + " but " +
                            (spec.shape == StateShape::kLikeParam ? std::string(buffers_.front().label.role) + "[" +
                                                                        std::to_string(i) + "] has shape "
                                                                  : std::string("it must have shape ")) +
                            expected_shape_text(param, spec.shape));
  }
  add_checked(role, std::move(a), where, spec.written);
}

// The layout checks every array takes, then its place in the call.
void CheckedBuffers::add_checked(std::size_t role, py::array a, const Label& where, bool written) {
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(where.text() + " is not C-contiguous; fastopt updates arrays in place and never copies "
                          "(use np.ascontiguousarray and keep the result)");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(where.text() + " is not aligned to its dtype");
  if (written && !a.writeable())
    throw py::value_error(where.text() + " is read-only but is updated in place");
  void* data = const_cast<void*>(a.data());
  raw_[role * static_cast<std::size_t>(n_tensors_) + static_cast<std::size_t>(where.index)] = data;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const auto end = begin + static_cast<std::uintptr_t>(a.nbytes());
  buffers_.push_back(Buffer{std::move(a), where, written, begin, end});
}

// The gradients are checked at every step of a plan, so this reads the
// array's fields directly (type number, dimensions, flags) rather than
// through the pybind11 accessors, each a call; any failure takes the slow
// path below, which forms the message.
void CheckedBuffers::add_grad(py::handle item, int i) {
  constexpr int kFloat32 = 11;  // NPY_FLOAT
  constexpr int kContiguous = 0x1, kAligned = 0x100;  // NPY_ARRAY_C_CONTIGUOUS, NPY_ARRAY_ALIGNED
  if (py::isinstance<py::array>(item)) {
    const auto* a = py::detail::array_proxy(item.ptr());
    const auto* descr = py::detail::array_descriptor_proxy(a->descr);
    const auto* param = py::detail::array_proxy(buffers_[static_cast<std::size_t>(i)].array.ptr());
    const bool same = descr->type_num == param_type_num_;
    const bool single = !same && descr->type_num == kFloat32 && is_narrow();  // float32 gradients of 16-bit params
    const Format f = single ? Format::kFloat32 : format_;
    const bool fast = (same || single) && (grads_.empty() || f == grad_format_) && descr->byteorder != '>' &&
                      (a->flags & (kContiguous | kAligned)) == (kContiguous | kAligned) && a->nd == param->nd &&
                      std::equal(a->dimensions, a->dimensions + a->nd, param->dimensions);
    if (fast) {
      if (grads_.empty()) grad_format_ = f;
      raw_[static_cast<std::size_t>(n_tensors_) + static_cast<std::size_t>(i)] = a->data;
      const auto begin = reinterpret_cast<std::uintptr_t>(a->data);
      const auto bytes = static_cast<std::uintptr_t>(sizes_[static_cast<std::size_t>(i)]) * item_size(f);
      grads_.push_back(Buffer{py::reinterpret_borrow<py::array>(item), Label{"grads", i}, false, begin, begin + bytes});
      return;
    }
  }
  add_grad_checked(item, i);
}

void CheckedBuffers::add_grad_checked(py::handle item, int i) {
  const Label where{"grads", i};
  py::array a = float_array(where, item, 1);
  const py::array& param = buffers_[static_cast<std::size_t>(i)].array;
  if (a.ndim() != param.ndim() || !std::equal(a.shape(), a.shape() + a.ndim(), param.shape()))
    throw py::value_error(where.text() + " has shape " + shape_text(a) + " but params[" + std::to_string(i) +
                          "] has shape " + shape_text(param));
  if (!(a.flags() & py::array::c_style))
    throw py::value_error(where.text() + " is not C-contiguous; fastopt reads arrays in place and never copies "
                          "(use np.ascontiguousarray)");
  if (!(a.flags() & py::detail::npy_api::NPY_ARRAY_ALIGNED_))
    throw py::value_error(where.text() + " is not aligned to its dtype");
  void* data = const_cast<void*>(a.data());
  raw_[static_cast<std::size_t>(n_tensors_) + static_cast<std::size_t>(i)] = data;
  const auto begin = reinterpret_cast<std::uintptr_t>(data);
  const auto end = begin + static_cast<std::uintptr_t>(a.nbytes());
  grads_.push_back(Buffer{std::move(a), where, false, begin, end});
}

// An 8-bit state array (docs/algorithms.md, "8-bit optimizer state"): uint8
// codes shaped like the parameter and float32 absmax, one per block of 256.
void CheckedBuffers::add_8bit_state(std::size_t role, const RoleSpec& spec, py::handle pair, int i) {
  const Label where{spec.name, i};
  const std::size_t key = role - 2;
  if (key >= quantizable_.size() || !quantizable_[key])
    throw py::type_error(where.text() + " is a tuple, but this state has no 8-bit form (an 8-bit state is a "
                         "(codes, absmax) pair of a moving average or momentum)");
  if (!is_8bit_pair(pair))
    throw py::type_error(where.text() + " must be an array or an 8-bit (codes, absmax) pair with uint8 codes");
  if (format_ == Format::kFloat64)
    throw py::type_error(where.text() + " is 8-bit state, which takes float32, float16 or bfloat16 parameters; "
                         "params are float64");
  const py::array codes = py::reinterpret_borrow<py::array>(PyTuple_GET_ITEM(pair.ptr(), 0));
  const py::handle absmax_item = PyTuple_GET_ITEM(pair.ptr(), 1);
  const py::array& param = buffers_[static_cast<std::size_t>(i)].array;
  if (!has_expected_shape(codes, param, StateShape::kLikeParam) || spec.shape != StateShape::kLikeParam)
    throw py::value_error(where.text() + " codes have shape " + shape_text(codes) + " but params[" +
                          std::to_string(i) + "] has shape " + shape_text(param));
  if (!py::isinstance<py::array>(absmax_item))
    throw py::type_error(where.text() + " absmax must be a numpy.ndarray, got " + type_name(absmax_item));
  const py::array absmax = py::reinterpret_borrow<py::array>(absmax_item);
  const std::int64_t blocks = (static_cast<std::int64_t>(param.size()) + kQuantBlock - 1) / kQuantBlock;
  if (float_format(absmax) != static_cast<int>(Format::kFloat32))
    throw py::type_error(where.text() + " absmax has dtype " + std::string(py::str(absmax.dtype())) +
                         "; expected float32");
  if (absmax.ndim() != 1 || absmax.size() != blocks)
    throw py::value_error(where.text() + " absmax has shape " + shape_text(absmax) + " but " +
                          std::to_string(param.size()) + " elements make " + std::to_string(blocks) +
                          " blocks of 256: shape (" + std::to_string(blocks) + ",)");
  const Label absmax_label{spec.name, i};
  add_checked(role, codes, where);
  add_checked(first_absmax_role_ + key, absmax, absmax_label);
  has_8bit_state_ = true;
}

// Masters of 16-bit parameters: per tensor None, a uint16 array (the low
// halves of a split master) or a float32 copy, shaped like the parameter.
void CheckedBuffers::add_masters(py::handle value) {
  master_role_ = n_roles_ - 1;
  master_kinds_.assign(static_cast<std::size_t>(n_tensors_), MasterKind::kNone);
  if (value.is_none()) return;
  PyObject* const single = value.ptr();
  const Items items = role_items("masters", value, single);
  if (items.count != n_tensors_)
    throw py::value_error("masters has " + std::to_string(items.count) + " arrays but params has " +
                          std::to_string(n_tensors_));
  for (int i = 0; i < n_tensors_; ++i) {
    py::handle item = items.items[i];
    if (item.is_none()) continue;
    const Label where{"masters", i};
    if (!py::isinstance<py::array>(item))
      throw py::type_error(where.text() + " must be a numpy.ndarray, got " + type_name(item));
    const py::array a = py::reinterpret_borrow<py::array>(item);
    const py::dtype dt = a.dtype();
    const bool low = dt.kind() == 'u' && dt.itemsize() == 2, single_precision = float_format(a) == 0;
    if (!is_narrow())
      throw py::value_error(where.text() + " is given but masters are for float16/bfloat16 parameters only");
    if ((!low && !single_precision) || dt.byteorder() == '>')
      throw py::type_error(where.text() + " has dtype " + std::string(py::str(dt)) +
                           "; a master is uint16 (master_weights='split') or float32 (master_weights='float32')");
    add_array(master_role(), RoleSpec{"masters", true, StateShape::kLikeParam}, item, i);
    master_kinds_[static_cast<std::size_t>(i)] = low ? MasterKind::kLowHalves : MasterKind::kFloat32;
  }
}

std::pmr::vector<CheckedBuffers::Interval> CheckedBuffers::intervals(bool written_only) {
  std::pmr::vector<Interval> spans(&memory_);
  spans.reserve(buffers_.size() + grads_.size());
  auto add = [&](const std::pmr::vector<Buffer>& from, std::size_t offset) {
    for (std::size_t k = 0; k < from.size(); ++k) {
      const Buffer& b = from[k];
      if (b.begin == b.end || (written_only && !b.written)) continue;
      spans.push_back({b.begin, b.end, offset + k});
    }
  };
  add(buffers_, 0);
  if (!written_only) add(grads_, buffers_.size());
  std::sort(spans.begin(), spans.end(), [](const Interval& x, const Interval& y) { return x.begin < y.begin; });
  return spans;
}

// A sweep over intervals sorted by start, remembering the furthest end among
// all buffers and among written ones. On success the written intervals are
// disjoint and kept (sorted) for replace_grads.
void CheckedBuffers::check_overlap(bool keep_written) {
  const std::pmr::vector<Interval> spans = intervals(false);
  auto label = [&](std::size_t id) {
    return id < buffers_.size() ? buffers_[id].label.text() : grads_[id - buffers_.size()].label.text();
  };
  auto written = [&](std::size_t id) { return id < buffers_.size() && buffers_[id].written; };
  std::uintptr_t end_any = 0, end_written = 0;
  std::size_t owner_any = 0, owner_written = 0;
  for (const Interval& s : spans) {
    std::size_t clash = SIZE_MAX;
    if (written(s.id) && s.begin < end_any) clash = owner_any;
    else if (s.begin < end_written) clash = owner_written;
    if (clash != SIZE_MAX)
      throw py::value_error(label(clash) + " and " + label(s.id) +
                            " share memory; every buffer that is updated in place must be a separate array");
    if (s.end > end_any) { end_any = s.end; owner_any = s.id; }
    if (written(s.id) && s.end > end_written) { end_written = s.end; owner_written = s.id; }
  }
  if (keep_written) written_ = intervals(true);
}

CheckedBuffers::Interval CheckedBuffers::clash_with_written(const Buffer& b) const {
  // The first written interval that ends after b begins (they are disjoint and sorted).
  auto it = std::upper_bound(written_.begin(), written_.end(), b.begin,
                             [](std::uintptr_t x, const Interval& s) { return x < s.end; });
  if (b.begin != b.end && it != written_.end() && it->begin < b.end) return *it;
  return Interval{0, 0, SIZE_MAX};
}

void CheckedBuffers::replace_grads(py::handle grads) {
  if (grads.is_none()) throw py::type_error("grads must be a numpy.ndarray or a list of them");
  add_role(1, RoleSpec{"grads", false, StateShape::kLikeParam}, grads);
  for (const Buffer& g : grads_) {
    const Interval clash = clash_with_written(g);
    if (clash.id != SIZE_MAX)
      throw py::value_error(buffers_[clash.id].label.text() + " and " + g.label.text() +
                            " share memory; every buffer that is updated in place must be a separate array");
  }
  // A plan outlives its checks: an array may have been made read-only since.
  for (const Buffer& b : buffers_)
    if (b.written && !b.array.writeable())
      throw py::value_error(b.label.text() + " is read-only but is updated in place");
}

std::vector<std::int32_t> check_hyper_index(const py::handle& hyper_index, int n_tensors, std::size_t n_hypers) {
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
