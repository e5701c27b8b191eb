// The step on parameters or state stored narrower than float32, for every
// optimizer at once: float16/bfloat16 parameters and 8-bit state. The
// optimizer's own float32 rule runs on float32 values widened from the
// 16-bit arrays (or on the float32 master) and dequantized from the 8-bit
// state, tile by tile in L1; the driver writes the parameters back as the
// parameter group asks (core/batch.hpp: WriteBack) and requantizes the state.
// The element math is the float32 kernel's, instruction for instruction, so
// a "split" run is bitwise the float32 run.
#pragma once

#include <vector>

#include "simd/elementwise.hpp"
#include "simd/narrow.hpp"
#include "simd/quantize.hpp"

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

// Elements widened at a time: two float32 tiles of 4 KiB stay in L1 between
// the widening, the rule and the write-back, so memory sees one pass.
constexpr std::int64_t kNarrowTile = 1024;

// One tensor's 16-bit side, as pointers into its arrays.
struct NarrowTensor {
  std::uint16_t* param;  // float32 parameters too, when only the state is narrow
  const void* grad;
  void* master;  // the split's low halves (uint16) or the float32 master; nullptr without one
  const WriteBack* write;
  std::uint64_t stream;
};

inline NarrowTensor narrow_tensor(const Batch<float>& batch, const NarrowCall& call, int t) {
  const WriteBack& w = call.writes[hyper_of(batch, t)];
  return NarrowTensor{reinterpret_cast<std::uint16_t*>(role_ptr(batch, 0, t)), role_ptr(batch, 1, t),
                      role_ptr(batch, call.master_role, t), &w, tensor_stream(w.seed, w.step, call.tensor_ids[t])};
}

// The float32 parameter values of elements [lo, lo + n): the master itself,
// or widened into `tile`.
inline float* param_values(const NarrowCall& call, const NarrowTensor& x, std::int64_t lo, std::int64_t n,
                           float* tile) {
  if (call.param_format == kFormatFloat32) return reinterpret_cast<float*>(x.param) + lo;
  if (x.write->master == kFloat32Master) return static_cast<float*>(x.master) + lo;
  if (x.write->master == kSplitMaster)
    join_tile(x.param + lo, static_cast<const std::uint16_t*>(x.master) + lo, tile, n);
  else
    widen_tile(call.param_format, x.param + lo, tile, n);
  return tile;
}

inline float* grad_values(const NarrowCall& call, const NarrowTensor& x, std::int64_t lo, std::int64_t n,
                          float* tile) {
  if (call.grad_format == kFormatFloat32) return const_cast<float*>(static_cast<const float*>(x.grad)) + lo;
  widen_tile(call.grad_format, static_cast<const std::uint16_t*>(x.grad) + lo, tile, n);
  return tile;
}

// Writes the stepped float32 values of elements [lo, lo + n) back.
inline void write_back(const NarrowCall& call, const NarrowTensor& x, const float* values, std::int64_t lo,
                       std::int64_t n) {
  if (call.param_format == kFormatFloat32) return;  // stepped in place
  if (x.write->master == kSplitMaster)
    split_tile(values, x.param + lo, static_cast<std::uint16_t*>(x.master) + lo, n);
  else if (x.write->rounding == kRoundStochastic)
    stochastic_tile(call.param_format, values, x.param + lo, n, x.stream, lo);
  else
    nearest_tile(call.param_format, values, x.param + lo, n);
}

// bfloat16 in one pass when the gradients are bfloat16 too and there are no
// statistics: the conversions are shifts and an add in registers (NarrowIO),
// with or without a master. Measured on 2 threads at 1e7 elements (AdamW,
// nearest): 0.50 ns per element in one pass, 0.79 tile by tile. float16
// stays tile by tile: its conversions in the fused loop are bit
// manipulation, which measured 1.6x slower in cache than F16C's
// vcvtph2ps/vcvtps2ph over a tile (2.5x on AVX2), and no faster on the
// baseline target.
inline bool fused_in_one_pass(const Batch<float>& batch, const NarrowCall& call) {
  return call.param_format == kFormatBFloat16 && call.grad_format == kFormatBFloat16 && !batch.unit_stats;
}

// Split masters round nothing (the top half is the parameter): they have no stochastic variant.
template <bool kStochastic, class K>
void run_fused(const K& s, float* const* x, std::int64_t n, std::int32_t master) {
  if constexpr (!kStochastic)
    if (master == kSplitMaster) return run_span_io<NarrowIO<kFormatBFloat16, false, kSplitMaster>>(s, x, n);
  if (master == kFloat32Master) run_span_io<NarrowIO<kFormatBFloat16, kStochastic, kFloat32Master>>(s, x, n);
  else run_span_io<NarrowIO<kFormatBFloat16, kStochastic, kNoMaster>>(s, x, n);
}

template <class K>
void step_fused(const Batch<float>& batch, const K& s, const NarrowTensor& tensor, int kRoles, int t,
                std::int64_t b, std::int64_t e) {
  float* x[kMaxRoles] = {};
  x[0] = reinterpret_cast<float*>(tensor.param + b);
  x[1] = reinterpret_cast<float*>(const_cast<std::uint16_t*>(static_cast<const std::uint16_t*>(tensor.grad)) + b);
  for (int r = 2; r < kRoles; ++r) {
    float* base = role_ptr(batch, r, t);
    x[r] = base ? base + b : nullptr;
  }
  const std::int32_t master = tensor.write->master;
  if (master == kSplitMaster) x[kMasterSlot] = reinterpret_cast<float*>(static_cast<std::uint16_t*>(tensor.master) + b);
  if (master == kFloat32Master) x[kMasterSlot] = static_cast<float*>(tensor.master) + b;
  const DrawPosition at{tensor.stream, b};
  x[kDrawSlot] = reinterpret_cast<float*>(const_cast<DrawPosition*>(&at));
  if (tensor.write->rounding == kRoundStochastic && master != kSplitMaster) run_fused<true>(s, x, e - b, master);
  else run_fused<false>(s, x, e - b, master);
}

// The 8-bit state arrays of one tensor, by role (nullptr: float32 state).
struct QuantizedState {
  std::uint8_t* codes[kMaxRoles] = {};
  float* absmax[kMaxRoles] = {};
  const QuantMap* map[kMaxRoles] = {};
  bool any = false;
};

template <class Opt>
QuantizedState quantized_state(const Batch<float>& batch, const NarrowCall& call, int t) {
  QuantizedState q;
  for (int r = 2; r < 2 + static_cast<int>(std::size(Opt::kState)); ++r) {
    const StateMap map = Opt::kState[r - 2].map;
    float* absmax = map == kNoMap ? nullptr : role_ptr(batch, call.absmax_role + r - 2, t);
    if (!absmax) continue;
    q.codes[r] = reinterpret_cast<std::uint8_t*>(role_ptr(batch, r, t));
    q.absmax[r] = absmax;
    q.map[r] = map == kSignedMap ? call.signed_map : call.unsigned_map;
    q.any = true;
  }
  return q;
}

// Tile by tile through float32 scratch in L1: widen the 16-bit parameters
// and gradients, dequantize the 8-bit state, run the rule, requantize, write
// the parameters back. With 8-bit state, [b, e) is whole blocks.
template <class K, int kRoles>
void step_tiles(const Batch<float>& batch, const NarrowCall& call, const K& s, const NarrowTensor& tensor,
                const QuantizedState& q, int t, std::int64_t b, std::int64_t e, double (&sums)[kStatFields]) {
  alignas(64) float tiles[kRoles][kNarrowTile];
  for (std::int64_t lo = b; lo < e; lo += kNarrowTile) {
    const std::int64_t n = std::min(kNarrowTile, e - lo);
    float* x[kRoles];
    x[0] = param_values(call, tensor, lo, n, tiles[0]);
    x[1] = grad_values(call, tensor, lo, n, tiles[1]);
    for (int r = 2; r < kRoles; ++r) {
      if (q.codes[r]) {
        dequantize_span(*q.map[r], q.codes[r] + lo, q.absmax[r] + lo / kQuantBlock, tiles[r], n);
        x[r] = tiles[r];
        continue;
      }
      float* base = role_ptr(batch, r, t);
      x[r] = base ? base + lo : nullptr;
    }
    run_span(batch, s, x, n, sums);
    for (int r = 2; r < kRoles; ++r)
      if (q.codes[r]) quantize_span(*q.map[r], tiles[r], q.codes[r] + lo, q.absmax[r] + lo / kQuantBlock, n);
    write_back(call, tensor, x[0], lo, n);
  }
}

// Elementwise optimizers: float32 parameters with float32 state step in
// place; bfloat16 parameters and gradients without statistics or 8-bit state
// in one pass (above); everything else tile by tile.
template <class Opt>
void step_narrow_elementwise(const Batch<float>& batch, const NarrowCall& call, const double* hypers,
                             std::size_t n_sets) {
  using K = Kernel<Opt, float>;
  constexpr int kRoles = 2 + static_cast<int>(std::size(Opt::kState));
  static_assert(kRoles <= kMasterSlot);
  const std::vector<K>& scalars = scalars_of_sets<Opt, float>(hypers, n_sets);
  for_each_span(batch, [&](int t, std::int64_t b, std::int64_t e, int unit) {
    const NarrowTensor tensor = narrow_tensor(batch, call, t);
    const QuantizedState q = quantized_state<Opt>(batch, call, t);
    const K& s = scalars[hyper_of(batch, t)];
    double sums[kStatFields] = {};
    if (q.any) {
      align_to_blocks(b, e, batch.sizes[t]);
      step_tiles<K, kRoles>(batch, call, s, tensor, q, t, b, e, sums);
    } else if (call.param_format == kFormatFloat32) {
      float* x[kRoles];
      for (int r = 0; r < kRoles; ++r) {
        float* base = role_ptr(batch, r, t);
        x[r] = base ? base + b : nullptr;
      }
      run_span(batch, s, x, e - b, sums);
    } else if (fused_in_one_pass(batch, call)) {
      return step_fused(batch, s, tensor, kRoles, t, b, e);
    } else {
      step_tiles<K, kRoles>(batch, call, s, tensor, q, t, b, e, sums);
    }
    if (batch.unit_stats) add_unit_stats(batch, unit, sums);
  });
}

// Optimizers that reduce over whole arrays (LAMB's trust ratio, Adafactor's
// factored moments) make several passes: their 16-bit parameters and
// gradients are widened and their 8-bit state dequantized whole into float32
// buffers first (4 extra bytes per element and array, for the call), then
// their float32 step runs and the results are written back and requantized.
template <class Opt>
void step_narrow_whole(const Batch<float>& batch, const NarrowCall& call, const double* hypers,
                       std::size_t n_sets) {
  const int n = batch.n_tensors;
  constexpr int kRoles = 2 + static_cast<int>(std::size(Opt::kState));
  std::vector<std::int64_t> offset(static_cast<std::size_t>(n) + 1, 0);
  for (int t = 0; t < n; ++t) offset[t + 1] = offset[t] + batch.sizes[t];
  const auto buffer_size = [&](bool needed) { return needed ? static_cast<std::size_t>(batch.total) : 0; };
  std::vector<float> params(buffer_size(call.param_format != kFormatFloat32));
  std::vector<float> grads(buffer_size(call.grad_format != kFormatFloat32));
  std::vector<QuantizedState> quantized(static_cast<std::size_t>(n));
  std::vector<float> states[kRoles];
  const int roles = call.master_role;
  std::vector<float*> ptrs(batch.ptrs, batch.ptrs + static_cast<std::size_t>(roles) * n);
  for (int t = 0; t < n; ++t) {
    const NarrowTensor x = narrow_tensor(batch, call, t);
    if (!params.empty())
      ptrs[t] = x.write->master == kFloat32Master ? static_cast<float*>(x.master) : params.data() + offset[t];
    if (!grads.empty()) ptrs[n + t] = grads.data() + offset[t];
    const QuantizedState& q = quantized[t] = quantized_state<Opt>(batch, call, t);
    for (int r = 2; r < kRoles; ++r) {
      if (!q.codes[r]) continue;
      if (states[r].empty()) states[r].resize(static_cast<std::size_t>(batch.total));
      ptrs[static_cast<std::size_t>(r) * n + t] = states[r].data() + offset[t];
    }
  }
  // Each element once, split over threads as a step is; whole blocks of 8-bit state.
  auto each_span = [&](auto&& body) {
    Batch<float> quiet = batch;
    quiet.unit_stats = nullptr;
    int threads_used = 1;
    quiet.threads_used = &threads_used;
    for_each_span(quiet, [&](int t, std::int64_t b, std::int64_t e, int) {
      if (quantized[t].any) align_to_blocks(b, e, batch.sizes[t]);
      if (b < e) body(narrow_tensor(batch, call, t), quantized[t], t, b, e - b);
    });
  };
  auto state_of = [&](int r, int t) { return ptrs[static_cast<std::size_t>(r) * n + t]; };
  each_span([&](const NarrowTensor& x, const QuantizedState& q, int t, std::int64_t b, std::int64_t len) {
    if (!params.empty() && x.write->master != kFloat32Master) param_values(call, x, b, len, state_of(0, t) + b);
    if (!grads.empty()) grad_values(call, x, b, len, state_of(1, t) + b);
    for (int r = 2; r < kRoles; ++r)
      if (q.codes[r]) dequantize_span(*q.map[r], q.codes[r] + b, q.absmax[r] + b / kQuantBlock, state_of(r, t) + b, len);
  });
  Batch<float> wide = batch;
  wide.ptrs = ptrs.data();
  Kernel<Opt, float>::step(wide, hypers, n_sets);
  each_span([&](const NarrowTensor& x, const QuantizedState& q, int t, std::int64_t b, std::int64_t len) {
    write_back(call, x, state_of(0, t) + b, b, len);
    for (int r = 2; r < kRoles; ++r)
      if (q.codes[r]) quantize_span(*q.map[r], state_of(r, t) + b, q.codes[r] + b, q.absmax[r] + b / kQuantBlock, len);
  });
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
