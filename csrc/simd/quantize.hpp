// Blockwise 8-bit state (docs/algorithms.md, "8-bit optimizer state"):
// dequantize a span of codes into float32, take each block's absmax and
// requantize to the nearest code of the map. Every target computes the same
// bits: the division is IEEE, the tables and the comparisons exact, and the
// vector loops do per lane what quantize_one does.
#pragma once

#include <cstdint>
#include <cstring>

#include "core/batch.hpp"
#include "simd/narrow.hpp"

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

// The nearest code to y = x / absmax (ties: the lower code); NaN stands for 0.
inline std::uint8_t quantize_one(const QuantMap& map, float y) {
  const std::uint32_t u = bits_of(y);
  const std::uint32_t entry = map.cell[u >> kCellShift];
  const std::uint32_t lower = (u & 0xFFFFu) ^ (u >> 31 ? 0xFFFFu : 0u);
  return static_cast<std::uint8_t>((entry & 0xFFu) + (lower > (entry >> 16)));
}

// max |x_i| over n elements, NaN ignored (0 for none); exact, so any order gives it.
inline float absmax_of(const float* __restrict x, std::int64_t n) {
  float m = 0.0f;
  std::int64_t i = 0;
#if defined(__AVX512F__)
  __m512 vm = _mm512_setzero_ps();
  for (; i + 16 <= n; i += 16) vm = _mm512_max_ps(_mm512_abs_ps(_mm512_loadu_ps(x + i)), vm);  // NaN: keeps vm
  m = _mm512_reduce_max_ps(vm);
#elif defined(__AVX2__)
  const __m256 magnitude = _mm256_castsi256_ps(_mm256_set1_epi32(0x7FFFFFFF));
  __m256 vm = _mm256_setzero_ps();
  for (; i + 8 <= n; i += 8) vm = _mm256_max_ps(_mm256_and_ps(_mm256_loadu_ps(x + i), magnitude), vm);
  alignas(32) float lanes[8];
  _mm256_store_ps(lanes, vm);
  for (float v : lanes) m = v > m ? v : m;
#endif
  for (; i < n; ++i) {
    const float a = std::fabs(x[i]);
    m = a > m ? a : m;
  }
  return m;
}

#if defined(__AVX512F__)
inline __m512i codes_of(const QuantMap& map, __m512 y) {
  const __m512i u = _mm512_castps_si512(y);
  const __m512i entry = _mm512_i32gather_epi32(_mm512_srli_epi32(u, kCellShift), reinterpret_cast<const int*>(map.cell), 4);
  // (u ^ (u < 0 ? 0xFFFF : 0)) & 0xFFFF in one ternary-logic instruction: 0x28 is (a ^ b) & c.
  const __m512i lower = _mm512_ternarylogic_epi32(u, _mm512_srai_epi32(u, 31), _mm512_set1_epi32(0xFFFF), 0x28);
  const __mmask16 up = _mm512_cmpgt_epi32_mask(lower, _mm512_srli_epi32(entry, 16));
  const __m512i code = _mm512_and_si512(entry, _mm512_set1_epi32(0xFF));
  return _mm512_mask_add_epi32(code, up, code, _mm512_set1_epi32(1));
}
#elif defined(__AVX2__)
inline __m256i codes_of(const QuantMap& map, __m256 y) {
  const __m256i u = _mm256_castps_si256(y), low_half = _mm256_set1_epi32(0xFFFF);
  const __m256i entry = _mm256_i32gather_epi32(reinterpret_cast<const int*>(map.cell), _mm256_srli_epi32(u, kCellShift), 4);
  const __m256i lower = _mm256_and_si256(_mm256_xor_si256(u, _mm256_srai_epi32(u, 31)), low_half);
  const __m256i up = _mm256_cmpgt_epi32(lower, _mm256_srli_epi32(entry, 16));  // true is -1
  return _mm256_sub_epi32(_mm256_and_si256(entry, _mm256_set1_epi32(0xFF)), up);
}
#endif

// codes[0, n) of one block whose absmax is a. x / a is the IEEE division
// the rule names: multiplying by 1/a instead (and dividing again where the
// product lies within a few bits of a threshold) measured no faster; the
// gather of the table entry, not the divider, bounds this loop.
inline void quantize_block(const QuantMap& map, const float* __restrict x, std::uint8_t* __restrict q,
                           std::int64_t n, float a) {
  if (a == 0.0f) {  // zeros (and NaN): the zero entry, without dividing by zero
    std::memset(q, map.zero_code, static_cast<std::size_t>(n));
    return;
  }
  std::int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 va = _mm512_set1_ps(a);
  for (; i + 16 <= n; i += 16) {
    const __m512i code = codes_of(map, _mm512_div_ps(_mm512_loadu_ps(x + i), va));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + i), _mm512_cvtepi32_epi8(code));
  }
#elif defined(__AVX2__)
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) {
    const __m256i code = codes_of(map, _mm256_div_ps(_mm256_loadu_ps(x + i), va));
    const __m128i words = _mm_packus_epi32(_mm256_castsi256_si128(code), _mm256_extracti128_si256(code, 1));
    _mm_storel_epi64(reinterpret_cast<__m128i*>(q + i), _mm_packus_epi16(words, words));
  }
#endif
  for (; i < n; ++i) q[i] = quantize_one(map, x[i] / a);
}

// x[0, n) of one block: map[q_i] * a.
inline void dequantize_block(const QuantMap& map, const std::uint8_t* __restrict q, float* __restrict x,
                             std::int64_t n, float a) {
  std::int64_t i = 0;
#if defined(__AVX512F__)
  const __m512 va = _mm512_set1_ps(a);
  for (; i + 16 <= n; i += 16) {
    const __m512i code = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i)));
    _mm512_storeu_ps(x + i, _mm512_mul_ps(_mm512_i32gather_ps(code, map.value, 4), va));
  }
#elif defined(__AVX2__)
  const __m256 va = _mm256_set1_ps(a);
  for (; i + 8 <= n; i += 8) {
    const __m256i code = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
    _mm256_storeu_ps(x + i, _mm256_mul_ps(_mm256_i32gather_ps(map.value, code, 4), va));
  }
#endif
  for (; i < n; ++i) x[i] = map.value[q[i]] * a;
}

// Spans of whole blocks (the last one may be short): element 0 starts block 0 of absmax.
inline void dequantize_span(const QuantMap& map, const std::uint8_t* q, const float* absmax, float* x,
                            std::int64_t n) {
  for (std::int64_t lo = 0; lo < n; lo += kQuantBlock)
    dequantize_block(map, q + lo, x + lo, std::min(kQuantBlock, n - lo), absmax[lo / kQuantBlock]);
}

inline void quantize_span(const QuantMap& map, const float* x, std::uint8_t* q, float* absmax, std::int64_t n) {
  for (std::int64_t lo = 0; lo < n; lo += kQuantBlock) {
    const std::int64_t len = std::min(kQuantBlock, n - lo);
    const float a = absmax_of(x + lo, len);
    absmax[lo / kQuantBlock] = a;
    quantize_block(map, x + lo, q + lo, len, a);
  }
}

// A span [b, e) of a tensor of `size` elements, widened to whole blocks: each
// block goes to the span holding its first element, so spans cut anywhere
// still cover every block once.
inline void align_to_blocks(std::int64_t& b, std::int64_t& e, std::int64_t size) {
  auto up = [&](std::int64_t i) { return std::min(size, (i + kQuantBlock - 1) / kQuantBlock * kQuantBlock); };
  b = up(b);
  e = up(e);
}

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
