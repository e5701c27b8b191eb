// Element math written once for a scalar and for a group of eight float64
// lanes (F64x8), so that a kernel body can run as a plain (auto-vectorized)
// loop and, where it pays, as an explicitly vectorized one.
//
// Why it pays: Adam, Adagrad and RMSprop do one square root and one division
// per element, and on x86 both run on the same divide/sqrt unit. In float64
// that unit takes about 2.3 cycles per element for each (measured on this
// project's AVX-512 machine), so a step costs ~4.6 cycles per element however
// fast memory is. divide() below computes the correctly rounded quotient with
// FMAs instead, which run on other ports, in parallel with the square root:
// the same bits as the hardware division. Measured: Adagrad at N = 1e4 (in
// cache, one thread) 12.5 instead of 18 us per call; at N = 1e6 on two
// threads, where memory also limits, about 1.1x.
// Where it does not pay, measured, the hardware division stays: float32 (the
// unit takes only ~0.7 cycles per element there) and AVX2 (without rcp14 the
// sequence needs a float reciprocal and two Newton steps, and on 4 lanes it
// ran Adagrad at 2.4 ns per element against the hardware's 1.7).
//
// Included by simd/elementwise.hpp; compiled once per SIMD target (core/batch.hpp).
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>
#include <type_traits>

// GCC only: the kernel bodies use GCC's vector extensions, selects (?:) on
// vectors included; other compilers (untested here) keep the plain loop.
#if defined(__AVX512F__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
#define FASTOPT_WIDE_F64 1
#endif

namespace fastopt {
namespace FASTOPT_TARGET_NAME {

// Scalar forms: what the auto-vectorized loops use.
template <class T>
inline T load_as(const T* p, T) { return *p; }
template <class T>
inline void store_to(T* p, T value) { *p = value; }
template <class T>
inline T square_root(T x) { return std::sqrt(x); }
template <class T>
inline T divide(T a, T b) { return a / b; }
template <class T>
inline T magnitude(T x) { return std::fabs(x); }
template <class T>
inline T with_sign_of(T mag, T sign_source) { return std::copysign(mag, sign_source); }

#ifdef FASTOPT_WIDE_F64
// True where the wide loop exists: float64 on AVX-512 targets.
template <class T>
constexpr bool kWideLoop = std::is_same_v<T, double>;

using F64x8 = double __attribute__((vector_size(64)));
constexpr std::int64_t kWideLanes = 8;

inline F64x8 load_as(const double* p, F64x8) { return _mm512_loadu_pd(p); }
inline void store_to(double* p, F64x8 value) { _mm512_storeu_pd(p, value); }
inline F64x8 square_root(F64x8 x) { return _mm512_sqrt_pd(x); }
inline F64x8 magnitude(F64x8 x) { return _mm512_abs_pd(x); }
inline F64x8 with_sign_of(F64x8 mag, F64x8 sign_source) {
  const __m512i sign_bit = _mm512_set1_epi64(INT64_MIN);
  // Bitwise (sign_bit ? sign_source : mag); 0xD8 is that select's truth table.
  return _mm512_castsi512_pd(_mm512_ternarylogic_epi64(_mm512_castpd_si512(mag), _mm512_castpd_si512(sign_source),
                                                       sign_bit, 0xD8));
}
inline double sum_lanes(F64x8 v) { return _mm512_reduce_add_pd(v); }

// a / b correctly rounded (round to nearest even), bit for bit what the
// hardware division returns, computed with FMAs:
//   y ~ 1/b           rcp14 (relative error < 2^-14), one Newton step (~2^-28)
//   q = a*y, r = a - b*q, q = q + r*y      faithful: within one ulp of a/b
//   r = a - b*q exactly (the remainder of a faithful quotient is a float,
//   and FMA computes it with one rounding: none), then q's neighbour towards
//   a/b, q', with its exact remainder r'; the answer is the one of q, q' with
//   the smaller |remainder|. There is never a tie: a quotient of two floats is
//   never halfway between two floats.
// The argument needs no overflow or underflow anywhere, so it runs on |a| with
// 2^-900 <= |a| <= 2^900 (or a == 0) and 2^-100 <= b <= 2^100, b positive,
// which covers every denominator sqrt(v) + eps of these optimizers in
// practice; a group with any lane outside (zero or negative b, NaN, Inf,
// extreme magnitudes) takes the hardware division instead.
// References: P. Markstein, IA-64 and Elementary Functions (2000), ch. 8;
// S. Boldo & M. Daumas, "Representable correcting terms for possibly
// underflowing floating point operations" (ARITH 16, 2003).
inline F64x8 divide(F64x8 a, F64x8 b) {
  const __m512i abs_mask = _mm512_set1_epi64(INT64_MAX);
  const __m512i b_low = _mm512_set1_epi64(0x39b0000000000000LL);   // 2^-100
  const __m512i b_span = _mm512_set1_epi64(0x4630000000000000LL - 0x39b0000000000000LL);  // up to 2^100
  const __m512i a_low = _mm512_set1_epi64(0x07b0000000000000LL);   // 2^-900
  const __m512i a_span = _mm512_set1_epi64(0x7830000000000000LL - 0x07b0000000000000LL);  // up to 2^900
  const __m512i a_bits = _mm512_castpd_si512(a), b_bits = _mm512_castpd_si512(b);
  const __m512i abs_a_bits = _mm512_and_si512(a_bits, abs_mask);
  // Unsigned (bits - low) <= span is low <= x <= high; a negative b wraps high.
  const __mmask8 b_ok = _mm512_cmple_epu64_mask(_mm512_sub_epi64(b_bits, b_low), b_span);
  const __mmask8 a_ok = _mm512_mask_cmple_epu64_mask(b_ok, _mm512_sub_epi64(abs_a_bits, a_low), a_span) |
                        _mm512_mask_cmpeq_epi64_mask(b_ok, abs_a_bits, _mm512_setzero_si512());
  if (__builtin_expect(a_ok != 0xFF, 0)) return _mm512_div_pd(a, b);

  const __m512d abs_a = _mm512_castsi512_pd(abs_a_bits), one = _mm512_set1_pd(1.0);
  __m512d y = _mm512_rcp14_pd(b);
  y = _mm512_fmadd_pd(y, _mm512_fnmadd_pd(b, y, one), y);
  __m512d q = _mm512_mul_pd(abs_a, y);
  q = _mm512_fmadd_pd(_mm512_fnmadd_pd(b, q, abs_a), y, q);
  const __m512d r = _mm512_fnmadd_pd(b, q, abs_a);
  // The neighbour towards a/b: one unit up in the bits if r > 0, else down.
  const __mmask8 above = _mm512_cmp_pd_mask(r, _mm512_setzero_pd(), _CMP_GT_OQ);
  const __m512i q_bits = _mm512_castpd_si512(q), one_bit = _mm512_set1_epi64(1);
  const __m512d neighbour = _mm512_castsi512_pd(
      _mm512_mask_add_epi64(_mm512_sub_epi64(q_bits, one_bit), above, q_bits, one_bit));
  const __m512d r_neighbour = _mm512_fnmadd_pd(b, neighbour, abs_a);
  const __mmask8 closer = _mm512_cmp_pd_mask(_mm512_abs_pd(r_neighbour), _mm512_abs_pd(r), _CMP_LT_OQ);
  q = _mm512_mask_mov_pd(q, closer, neighbour);
  // q | (a & sign bit): the quotient's sign is a's (b > 0); 0xF8 is A | (B & C).
  return _mm512_castsi512_pd(
      _mm512_ternarylogic_epi64(_mm512_castpd_si512(q), a_bits, _mm512_set1_epi64(INT64_MIN), 0xF8));
}

// Step statistics of eight elements, in eight partial sums per field.
inline void accumulate_stats(F64x8 g, F64x8 param_before, F64x8 param_after, F64x8& grad_sq, F64x8& param_sq,
                             F64x8& update_sq, F64x8& nonfinite) {
  const F64x8 du = param_after - param_before;
  grad_sq += g * g;
  param_sq += param_before * param_before;
  update_sq += du * du;
  nonfinite += (g - g == 0.0) ? 0.0 : 1.0;
}
#else
template <class T>
constexpr bool kWideLoop = false;
#endif

}  // namespace FASTOPT_TARGET_NAME
}  // namespace fastopt
