"""Adam, Adagrad and RMSprop divide with FMAs in their float64 AVX-512 loops
(csrc/kernels/wide_f64.hpp), to leave the divide/sqrt unit to the square
root. That division must return the hardware's bits on every input. Random
data almost never reaches the cases where the FMA sequence's first answer is
off by one ulp (quotients very near a midpoint between two floats), nor the
inputs it hands back to the hardware, so both are built here on purpose.

Adagrad with p = 0, lr = 1, eps = 0 and sum = b*b (b with 26 significant bits,
so b*b and its square root are exact) writes p = -(g / b): the division alone.
"""

import functools
import math
import random
from fractions import Fraction

import numpy as np
import pytest

import fastopt.functional as F
import fastopt.reference as R


@functools.cache
def near_midpoint_division_cases(n, seed):
    """(a, b) with a/b within |c| * 2^-26 ulp (|c| < 2000) of a midpoint
    between two floats (the FMA sequence's first quotient is only known to
    within a fraction of an ulp), b with 26 significant bits, and a*a far below
    b*b's last bit (so sum = b*b + a*a stays b*b).

    Integers: B odd (26 bits) and M odd (54 bits, so M / 2^54 is a midpoint
    between 53-bit floats) with B*M = -c (mod 2^27), chosen through B's inverse
    mod 2^27; then A = (B*M + c) / 2^27 is an integer of 53 bits and
    A/B = M/2^27 + c/(B*2^27), next to the midpoint."""
    rng = random.Random(seed)
    a, b = np.empty(n), np.empty(n)
    for i in range(n):
        while True:
            big_b = rng.randrange(2**25, 2**26) | 1
            c = rng.randrange(-2000, 2000) | 1
            low = -c * pow(big_b, -1, 2**27) % 2**27  # odd, since c and the inverse are
            big_m = rng.randrange(2**53, 2**54) >> 27 << 27 | low
            big_a = (big_b * big_m + c) >> 27
            if 2**52 <= big_a < 2**53:
                break
        exponent = rng.randrange(-120, 70)  # b inside the FMA path's range, 2^-100 .. 2^100
        a[i] = math.ldexp(big_a if rng.random() < 0.5 else -big_a, exponent - 80)
        b[i] = math.ldexp(big_b, exponent)
    return a, b


def divide_with_adagrad(a, b):
    p = np.zeros_like(a)
    sums = b * b
    F.adagrad_(p, a.copy(), sums, step=1, lr=1.0, eps=0.0)
    np.testing.assert_array_equal(sums, b * b)  # the setup held: sqrt(sum) is b
    return -p


def test_cases_are_near_midpoints():
    """The construction does what it says (exact rational arithmetic on a sample)."""
    a, b = near_midpoint_division_cases(300, seed=0)
    for x, y in zip(a, b):
        exact = Fraction(float(x)) / Fraction(float(y))
        q = float(exact)  # correctly rounded
        ulp = Fraction(float(np.spacing(abs(q))))
        distance = abs(abs(exact) - Fraction(abs(q))) / ulp
        assert abs(distance - Fraction(1, 2)) < Fraction(1, 2**15), (x, y)


@pytest.mark.parametrize("seed", range(4))
def test_near_midpoint_quotients_match_hardware_division(target, seed):
    a, b = near_midpoint_division_cases(100_003, seed)
    np.testing.assert_array_equal(divide_with_adagrad(a, b), a / b)


def test_fallback_inputs_match_hardware_division(target):
    """Zero, negative zero, Inf, NaN, subnormals, magnitudes at and beyond the
    FMA path's range (|a| in 2^+-900, b in 2^+-100), mixed so that most groups
    of eight lanes hold one such value among ordinary ones."""
    numerators = [0.0, -0.0, np.inf, -np.inf, np.nan, 5e-324, -2.0**-1060, 2.0**-1000, 2.0**-900,
                  np.nextafter(2.0**-900, 0), 2.0**900, -np.nextafter(2.0**900, np.inf), 2.0**1000, 1.7e308,
                  1.0, -3.0, 0.1]
    denominators = [0.0, 2.0**-600, 2.0**-101, 2.0**-100, 2.0**100, 2.0**101, 2.0**600, np.inf, 1.0, 3.0,
                    0.7]
    a, b = (np.array(v) for v in zip(*[(x, y) for x in numerators for y in denominators]))
    rng = np.random.default_rng(1)
    ordinary = rng.standard_normal((2, 7 * a.size))
    a = np.concatenate([a, ordinary[0]])
    b = np.concatenate([b, np.abs(ordinary[1]) + 0.5])
    order = rng.permutation(a.size)
    a, b = a[order], b[order]
    with np.errstate(all="ignore"):
        sums = b * b  # exact for these b, or inf/0 where it over/underflows
        p, p_ref = np.zeros_like(a), np.zeros_like(a)
        s, s_ref = sums.copy(), sums.copy()
        F.adagrad_(p, a.copy(), s, step=1, lr=1.0, eps=0.0)
        R.adagrad_(p_ref, a.copy(), s_ref, step=1, lr=1.0, eps=0.0)
    np.testing.assert_array_equal(p, p_ref)
    np.testing.assert_array_equal(s, s_ref)


# Found by a random search: the FMA sequence without its range check gets
# these wrong (tiny or subnormal numerators, whose remainders underflow), so
# the check must send them to the hardware division. b has 26 bits (exact b*b).
FMA_WRONG_OUTSIDE_ITS_RANGE = [
    ("0x0.3421544d83ce7p-1022", "0x1.6496cbp-146"),
    ("-0x0.637962a741b55p-1022", "0x1.7cb452p-494"),
    ("-0x0.41778d6b7535p-1022", "0x1.ac8396p-97"),
    ("0x0.3228fe3f581e7p-1022", "0x1.1d8d7c8p-42"),
    ("-0x1.21ff72274322ep-1020", "0x1.4c93be8p-357"),
    ("0x0.01a12351cee6ap-1022", "0x1.8bbbbc8p-500"),
]


def test_inputs_the_fma_division_gets_wrong_go_to_the_hardware(target):
    """Each in a group of eight with seven ordinary lanes."""
    ordinary_a, ordinary_b = 2.0**-30 / 3, 1.5
    a, b = [], []
    for x, y in FMA_WRONG_OUTSIDE_ITS_RANGE:
        a += [float.fromhex(x)] + [ordinary_a] * 7
        b += [float.fromhex(y)] + [ordinary_b] * 7
    a, b = np.array(a), np.array(b)
    np.testing.assert_array_equal(divide_with_adagrad(a, b), a / b)


def test_adam_and_rmsprop_divide_like_the_hardware_near_midpoints(target):
    """The same division inside Adam's and RMSprop's loops. Adam with betas 0
    (m = g, bias corrections 1) and amsgrad's max holding b*b; RMSprop with
    alpha 1/2 and square_avg 2*b*b: both then step p by -(g / b)."""
    a, b = near_midpoint_division_cases(100_003, seed=0)
    p = np.zeros_like(a)
    F.adam_(p, a.copy(), np.zeros_like(a), np.zeros_like(a), b * b, step=1, lr=1.0, betas=(0.0, 0.0), eps=0.0,
            amsgrad=True)
    np.testing.assert_array_equal(-p, a / b)
    p = np.zeros_like(a)
    F.rmsprop_(p, a.copy(), 2 * b * b, lr=1.0, alpha=0.5, eps=0.0)
    np.testing.assert_array_equal(-p, a / b)
