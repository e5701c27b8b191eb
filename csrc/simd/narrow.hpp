// 16-bit parameters (docs/algorithms.md, "16-bit parameters"): exact
// widening of float16/bfloat16 to float32, the three ways of writing a
// float32 result back (round to nearest even, stochastic rounding, the split
// float32 master), and the counter-based generator stochastic rounding draws
// from.
//
// Every function is written once as scalar code that GCC vectorizes (integer
// and select operations only); on targets with F16C the float16 loops use the
// hardware conversions for whole vectors, which give the same bits (the
// scalar code rounds and quiets NaNs exactly as vcvtps2ph/vcvtph2ps do:
// tests/test_narrow.py compares the targets). Compiled once per SIMD target.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#if defined(__F16C__)
#include <immintrin.h>
#endif

#include "core/batch.hpp"

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

inline std::uint32_t bits_of(float x) {
  std::uint32_t u;
  std::memcpy(&u, &x, sizeof u);
  return u;
}
inline float float_of(std::uint32_t u) {
  float x;
  std::memcpy(&x, &u, sizeof x);
  return x;
}

// ------------------------------------------------------------- generator
// SplitMix64's output function (Steele, Lea & Flood 2014): a bijection of
// 64-bit words whose outputs for consecutive inputs pass BigCrush.
inline std::uint64_t mix64(std::uint64_t z) {
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
constexpr std::uint64_t kGolden = 0x9E3779B97F4A7C15ull;

// The stream of one tensor in one step, from the group's seed, the step
// number and the tensor's index in the optimizer.
inline std::uint64_t tensor_stream(std::uint64_t seed, std::uint64_t step, std::int64_t tensor_id) {
  return mix64(mix64(mix64(seed) ^ step) ^ static_cast<std::uint64_t>(tensor_id));
}
// The 32-bit draw for element i of the tensor: SplitMix64's (i+1)-th output.
inline std::uint32_t draw(std::uint64_t stream, std::int64_t i) {
  return static_cast<std::uint32_t>(mix64(stream + static_cast<std::uint64_t>(i + 1) * kGolden) >> 32);
}

// --------------------------------------------------------------- bfloat16
inline float widen_bf16(std::uint16_t h) { return float_of(static_cast<std::uint32_t>(h) << 16); }

inline bool is_nan_bits(std::uint32_t u) { return (u & 0x7FFFFFFFu) > 0x7F800000u; }

// Round to nearest even; a NaN keeps its sign and top payload bits and is
// made quiet (a truncated payload could otherwise read as infinity).
inline std::uint16_t nearest_bf16(float x) {
  const std::uint32_t u = bits_of(x);
  const std::uint32_t rounded = (u + 0x7FFFu + ((u >> 16) & 1u)) >> 16;
  return static_cast<std::uint16_t>(is_nan_bits(u) ? (u >> 16) | 0x40u : rounded);
}

// Add the low 16 bits of the draw to the float32 bits and truncate: rounds
// the magnitude up with probability (dropped bits)/2^16 exactly. Finite
// values carry into the exponent as they should (and overflow to infinity),
// infinities stay; a NaN stays a (quiet) NaN.
inline std::uint16_t stochastic_bf16(float x, std::uint32_t r) {
  const std::uint32_t u = bits_of(x);
  const std::uint32_t rounded = (u + (r & 0xFFFFu)) >> 16;
  return static_cast<std::uint16_t>(is_nan_bits(u) ? (u >> 16) | 0x40u : rounded);
}

// ---------------------------------------------------------------- float16
// Exact: normal and subnormal values by moving the exponent (a subnormal
// through a float32 subtraction that is exact and meets no subnormal
// operand); infinities stay, NaNs become quiet with their payload (as
// vcvtph2ps).
inline float widen_f16(std::uint16_t h) {
  const std::uint32_t sign = static_cast<std::uint32_t>(h & 0x8000u) << 16;
  const std::uint32_t shifted = static_cast<std::uint32_t>(h & 0x7FFFu) << 13;  // exponent and mantissa
  const std::uint32_t exponent = shifted & 0x0F800000u;
  const std::uint32_t normal = shifted + ((127u - 15u) << 23);
  const std::uint32_t inf_nan = (shifted + ((255u - 31u) << 23)) | (shifted & 0x007FE000u ? 0x00400000u : 0u);
  const std::uint32_t subnormal = bits_of(float_of(shifted + (113u << 23)) - float_of(113u << 23));
  const std::uint32_t magnitude = exponent == 0x0F800000u ? inf_nan : exponent == 0 ? subnormal : normal;
  return float_of(sign | magnitude);
}

// Round to nearest even (Giesen's float_to_half_fast3_rtne): overflow gives
// infinity, subnormal results round through one float32 addition; a NaN
// keeps its sign and top payload bits and is made quiet (as vcvtps2ph).
inline std::uint16_t nearest_f16(float x) {
  const std::uint32_t all = bits_of(x);
  const std::uint32_t sign = (all >> 16) & 0x8000u;
  const std::uint32_t u = all & 0x7FFFFFFFu;
  const std::uint32_t denorm_magic = ((127u - 15u) + (23u - 10u) + 1u) << 23;
  const std::uint32_t nan = 0x7E00u | ((u >> 13) & 0x3FFu);
  const std::uint32_t inf_or_nan = u > 0x7F800000u ? nan : 0x7C00u;
  const std::uint32_t subnormal = bits_of(float_of(u) + float_of(denorm_magic)) - denorm_magic;
  const std::uint32_t normal = (u + ((15u - 127u) << 23) + 0xFFFu + ((u >> 13) & 1u)) >> 13;
  const std::uint32_t magnitude = u >= ((127u + 16u) << 23) ? inf_or_nan : u < (113u << 23) ? subnormal : normal;
  return static_cast<std::uint16_t>(sign | magnitude);
}

// Stochastic rounding to float16, on the exact value: with q the float16
// spacing at |x| (2^(e-10) for exponent e, at least the subnormal spacing
// 2^-24), |x| = (n + f) q with n an integer and f in [0, 1); the magnitude
// becomes (n + 1) q when the draw's top 24 bits are below f 2^24, else n q
// (f is a multiple of 2^-24 for every |x| >= 2^-25, so the probability is f
// exactly there). Every step is exact in float32; the final conversion only
// meets representable values or overflow (infinity). NaN stays NaN.
inline std::uint16_t stochastic_f16(float x, std::uint32_t r) {
  const float a = std::fabs(x);
  const std::int32_t biased = static_cast<std::int32_t>(bits_of(a) >> 23);  // 255 for inf/NaN
  const std::int32_t e = biased - 127 < -14 ? -14 : biased - 127;
  const std::int32_t scale_exponent = e - 10 > 127 ? 127 : e - 10;          // q, a power of two
  const float q = float_of(static_cast<std::uint32_t>(scale_exponent + 127) << 23);
  const float inverse_q = float_of(static_cast<std::uint32_t>(127 - scale_exponent) << 23);
  const float m = a * inverse_q;
  const float n = std::trunc(m);
  const float f = m - n;
  const float threshold = f * 16777216.0f;
  const float up = static_cast<float>(static_cast<std::int32_t>(r >> 8)) < threshold ? 1.0f : 0.0f;
  return nearest_f16(std::copysign((n + up) * q, x));
}

// One element in a format known at compile time (the fused loops).
template <std::int32_t kFormat>
inline float widen_as(std::uint16_t h) {
  if constexpr (kFormat == kFormatBFloat16) return widen_bf16(h);
  else return widen_f16(h);
}
template <std::int32_t kFormat, bool kStochastic>
inline std::uint16_t narrow_as(float x, std::uint64_t stream, std::int64_t i) {
  if constexpr (kStochastic && kFormat == kFormatBFloat16) return stochastic_bf16(x, draw(stream, i));
  else if constexpr (kStochastic) return stochastic_f16(x, draw(stream, i));
  else if constexpr (kFormat == kFormatBFloat16) return nearest_bf16(x);
  else return nearest_f16(x);
}

// -------------------------------------------------------- tiles of a span
// out[0..n) = convert(in[0..n)) by the format's scalar conversion
// (bf16_one or f16_one); on F16C targets, float16 goes eight at a time
// through f16c_eight, the hardware conversion with the same results.
template <class In, class Out, class Bf16One, class F16One, class F16cEight>
inline void convert_tile(std::int32_t format, const In* __restrict in, Out* __restrict out, std::int64_t n,
                         Bf16One bf16_one, F16One f16_one, [[maybe_unused]] F16cEight f16c_eight) {
  if (format == kFormatBFloat16) {
#pragma omp simd
    for (std::int64_t i = 0; i < n; ++i) out[i] = bf16_one(in[i]);
    return;
  }
  std::int64_t i = 0;
#if defined(__F16C__)
  for (; i + 8 <= n; i += 8) f16c_eight(in + i, out + i);
#endif
#pragma omp simd
  for (std::int64_t k = i; k < n; ++k) out[k] = f16_one(in[k]);
}

// p16[0..n) widened into out; format kFormatFloat16 or kFormatBFloat16.
inline void widen_tile(std::int32_t format, const std::uint16_t* __restrict p16, float* __restrict out,
                       std::int64_t n) {
  convert_tile(
      format, p16, out, n, [](std::uint16_t h) { return widen_bf16(h); }, [](std::uint16_t h) { return widen_f16(h); },
      []([[maybe_unused]] const std::uint16_t* from, [[maybe_unused]] float* to) {
#if defined(__F16C__)
        _mm256_storeu_ps(to, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(from))));
#endif
      });
}

// x[0..n) rounded to nearest even into p16.
inline void nearest_tile(std::int32_t format, const float* __restrict x, std::uint16_t* __restrict p16,
                         std::int64_t n) {
  convert_tile(
      format, x, p16, n, [](float f) { return nearest_bf16(f); }, [](float f) { return nearest_f16(f); },
      []([[maybe_unused]] const float* from, [[maybe_unused]] std::uint16_t* to) {
#if defined(__F16C__)
        _mm_storeu_si128(reinterpret_cast<__m128i*>(to),
                         _mm256_cvtps_ph(_mm256_loadu_ps(from), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
#endif
      });
}

// x[0..n) rounded stochastically into p16; element k is the tensor's
// element first + k, so the draws do not depend on how the tensor is split.
inline void stochastic_tile(std::int32_t format, const float* __restrict x, std::uint16_t* __restrict p16,
                            std::int64_t n, std::uint64_t stream, std::int64_t first) {
  if (format == kFormatBFloat16) {
#pragma omp simd
    for (std::int64_t k = 0; k < n; ++k) p16[k] = stochastic_bf16(x[k], draw(stream, first + k));
    return;
  }
#pragma omp simd
  for (std::int64_t k = 0; k < n; ++k) p16[k] = stochastic_f16(x[k], draw(stream, first + k));
}

// The split master M = bits(p) << 16 | lo, and its two halves written back
// (p: M truncated toward zero to bfloat16).
inline void join_tile(const std::uint16_t* __restrict hi, const std::uint16_t* __restrict lo, float* __restrict out,
                      std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) out[i] = float_of(static_cast<std::uint32_t>(hi[i]) << 16 | lo[i]);
}
inline void split_tile(const float* __restrict m, std::uint16_t* __restrict hi, std::uint16_t* __restrict lo,
                       std::int64_t n) {
#pragma omp simd
  for (std::int64_t i = 0; i < n; ++i) {
    const std::uint32_t u = bits_of(m[i]);
    hi[i] = static_cast<std::uint16_t>(u >> 16);
    lo[i] = static_cast<std::uint16_t>(u & 0xFFFFu);
  }
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
