// The dynamic maps of 8-bit state with their lookup tables (core/batch.hpp:
// QuantMap), built once here on the host, and fastopt.quantize_blockwise /
// dequantize_blockwise, which run the active SIMD target's kernels.
#include <pybind11/numpy.h>
#include <pybind11/pybind11.h>

#include <cmath>
#include <cstring>
#include <memory>
#include <stdexcept>
#include <string>

#include "bindings/checks.hpp"
#include "bindings/optimizers.hpp"
#include "core/dynamic_maps.hpp"
#include "simd/utilities.hpp"

namespace fastopt {
namespace {

namespace py = pybind11;
using namespace pybind11::literals;

float float_from(std::uint32_t u) {
  float f;
  std::memcpy(&f, &u, sizeof f);
  return f;
}
std::uint32_t bits_from(float f) {
  std::uint32_t u;
  std::memcpy(&u, &f, sizeof u);
  return u;
}

// The nearest code by the rule itself (docs/algorithms.md): the entries
// around y, and the upper one only when strictly nearer in float32.
int nearest_code(const float (&value)[256], float y) {
  if (!(y >= value[0])) return 0;
  int lo = 0, hi = 255;  // value[lo] <= y
  while (lo < hi) {
    const int mid = (lo + hi + 1) / 2;
    if (value[mid] <= y) lo = mid;
    else hi = mid - 1;
  }
  if (lo == 255) return 255;
  const float below = y - value[lo], above = value[lo + 1] - y;
  return above < below ? lo + 1 : lo;
}

// Floats in ascending order as unsigned integers, for bisection.
std::uint32_t ordered(float f) {
  const std::uint32_t u = bits_from(f);
  return u >> 31 ? ~u : u | 0x80000000u;
}
float from_ordered(std::uint32_t k) { return float_from(k >> 31 ? k & 0x7FFFFFFFu : ~k); }

// The largest y between value[c] and value[c + 1] that still rounds to c.
float threshold_between(const float (&value)[256], int c) {
  std::uint32_t lo = ordered(value[c]), hi = ordered(value[c + 1]);  // rounds to c at lo, to c + 1 at hi
  while (hi - lo > 1) {
    const std::uint32_t mid = lo + (hi - lo) / 2;
    (nearest_code(value, from_ordered(mid)) <= c ? lo : hi) = mid;
  }
  return from_ordered(lo);
}

// The lowest and highest y of a cell (core/batch.hpp): the floats whose
// upper 16 bits are `cell`, in ascending order of value.
void cell_bounds(std::uint32_t cell, float& low, float& high) {
  const float first = float_from(cell << kCellShift), last = float_from(cell << kCellShift | 0xFFFFu);
  low = cell >> 15 ? last : first;  // negative cells: larger bits, smaller values
  high = cell >> 15 ? first : last;
}

// The entry of one cell: the code of its lowest value and the lower 16 bits
// of the threshold inside it, or a bound no value passes. NaN cells: the
// zero entry (the quantization rule counts NaN as 0).
std::uint32_t cell_entry(const QuantMap& map, const float (&threshold)[255], std::uint32_t cell) {
  constexpr std::uint32_t kNever = 0xFFFFu << 16;
  float low, high;
  cell_bounds(cell, low, high);
  if (low != low || high != high) return map.zero_code | kNever;
  const int code = nearest_code(map.value, low), top = nearest_code(map.value, high);
  if (top == code) return static_cast<std::uint32_t>(code) | kNever;
  if (top != code + 1) throw std::logic_error("fastopt: a quantization cell spans two thresholds");
  const std::uint32_t t = bits_from(threshold[code]);
  if (t >> kCellShift != cell) throw std::logic_error("fastopt: a quantization threshold outside its cell");
  const std::uint32_t bound = cell >> 15 ? (t & 0xFFFFu) ^ 0xFFFFu : t & 0xFFFFu;
  return static_cast<std::uint32_t>(code) | bound << 16;
}

std::unique_ptr<QuantMap> build_map(const float (&source)[256]) {
  auto map = std::make_unique<QuantMap>();
  std::memcpy(map->value, source, sizeof map->value);
  map->zero_code = static_cast<std::uint8_t>(nearest_code(map->value, 0.0f));
  float threshold[255];
  for (int c = 0; c < 255; ++c) threshold[c] = threshold_between(map->value, c);
  for (std::uint32_t cell = 0; cell < static_cast<std::uint32_t>(kCells); ++cell)
    map->cell[cell] = cell_entry(*map, threshold, cell);
  return map;
}

py::array_t<float> checked_floats(py::handle x, const char* name) {
  if (!py::isinstance<py::array>(x)) throw py::type_error(std::string(name) + " must be a numpy.ndarray, got " + type_name(x));
  py::array a = py::reinterpret_borrow<py::array>(x);
  if (!a.dtype().is(py::dtype::of<float>()))
    throw py::type_error(std::string(name) + " has dtype " + std::string(py::str(a.dtype())) + "; expected float32");
  if (!(a.flags() & py::array::c_style)) throw py::value_error(std::string(name) + " is not C-contiguous");
  return py::reinterpret_borrow<py::array_t<float>>(a);
}

std::int64_t blocks_of(std::int64_t n) { return (n + kQuantBlock - 1) / kQuantBlock; }

}  // namespace

const QuantMap& quant_map(StateMap kind) {
  static const std::unique_ptr<QuantMap> signed_map = build_map(kSignedDynamicMap);
  static const std::unique_ptr<QuantMap> unsigned_map = build_map(kUnsignedDynamicMap);
  return kind == kSignedMap ? *signed_map : *unsigned_map;
}

void bind_quantize(py::module_& m) {
  m.attr("QUANT_BLOCK") = kQuantBlock;
  m.def("dynamic_map", [](bool is_signed) {
    const QuantMap& map = quant_map(is_signed ? kSignedMap : kUnsignedMap);
    py::array_t<float> out(256);
    std::memcpy(out.mutable_data(), map.value, sizeof map.value);
    return out;
  }, "signed"_a, "bitsandbytes' dynamic map (create_dynamic_map(signed)): the 256 values of the 8-bit codes.");

  m.def("quantize_blockwise", [](py::handle x, bool is_signed) {
    const py::array_t<float> a = checked_floats(x, "x");
    const std::int64_t n = a.size();
    py::array_t<std::uint8_t> codes(std::vector<py::ssize_t>(a.shape(), a.shape() + a.ndim()));
    py::array_t<float> absmax(blocks_of(n));
    const QuantMap& map = quant_map(is_signed ? kSignedMap : kUnsignedMap);
    const float* in = a.data();
    std::uint8_t* q = codes.mutable_data();
    float* scale = absmax.mutable_data();
    {
      py::gil_scoped_release release;
      active_utilities().quantize(map, in, q, scale, n);
    }
    return py::make_tuple(codes, absmax);
  }, "x"_a, "signed"_a,
     "(codes, absmax): x in blocks of 256 elements, each element the nearest entry (ties: the lower) of the "
     "dynamic map to x / absmax of its block.");

  m.def("dequantize_blockwise", [](py::handle codes, py::handle absmax, bool is_signed) {
    if (!py::isinstance<py::array>(codes) || !py::reinterpret_borrow<py::array>(codes).dtype().is(py::dtype::of<std::uint8_t>()))
      throw py::type_error("codes must be a uint8 numpy.ndarray");
    const py::array q = py::reinterpret_borrow<py::array>(codes);
    if (!(q.flags() & py::array::c_style)) throw py::value_error("codes is not C-contiguous");
    const py::array_t<float> scale = checked_floats(absmax, "absmax");
    const std::int64_t n = q.size();
    if (scale.ndim() != 1 || scale.size() != blocks_of(n))
      throw py::value_error("absmax has " + std::to_string(scale.size()) + " elements but " + std::to_string(n) +
                            " codes make " + std::to_string(blocks_of(n)) + " blocks of 256");
    py::array_t<float> out(std::vector<py::ssize_t>(q.shape(), q.shape() + q.ndim()));
    const QuantMap& map = quant_map(is_signed ? kSignedMap : kUnsignedMap);
    const auto* in = static_cast<const std::uint8_t*>(q.data());
    const float* s = scale.data();
    float* x = out.mutable_data();
    {
      py::gil_scoped_release release;
      active_utilities().dequantize(map, in, s, x, n);
    }
    return out;
  }, "codes"_a, "absmax"_a, "signed"_a, "x: map[codes] * absmax of each block of 256.");
}

}  // namespace fastopt
