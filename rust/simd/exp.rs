//! A float64 `exp` for lanes of 8 values (the softmax of the score pass calls it 81
//! times per group of 8 anchors), within 1 ulp of the C library's `exp` (tested), as
//! numpy's own SIMD `exp` is: a portable version and AVX2 (4 lanes a register) and
//! AVX-512 (8 lanes) versions with the same operations in the same order, so the same
//! bits on every CPU (see [`super`]).
//!
//! The classic argument reduction and Remez rational form (as in fdlibm's `e_exp.c`):
//! x = k*ln2 + r with |r| <= ln2/2 (ln2 split in a 32-bit high part, so k*ln2_hi is
//! exact, and a low part), exp(r) = 1 + 2r/(2 - c(r)) with c(r) = r - r^2*P(r^2)
//! (P of degree 4), then scaling by 2^k built from its bits. The multiply-adds of the
//! reduction and of P are fused (one rounding each: `f64::mul_add`, which is exact on
//! every platform, and the FMA instructions), every other operation is a plain mul,
//! add, sub or div, so every CPU gives the same bits. Lanes whose result may be
//! subnormal or near overflow (x < -708 or x > 709) and NaN lanes fall back to
//! `f64::exp` in [`exp_lanes`]; the SIMD versions ([`exp_fast_avx2`],
//! [`exp_fast_avx512`]) leave that check to the caller, who hoists it out of its loop.

use super::LANES;

// The constants are written with all the digits of their published values; they round
// to the bit patterns checked in the tests.
#[allow(clippy::excessive_precision)]
const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-01; // 0x3FE62E42_FEE00000
#[allow(clippy::excessive_precision)]
const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10; // 0x3DEA39EF_35793C76
const INV_LN2: f64 = std::f64::consts::LOG2_E;
/// 1.5 * 2^52: adding it rounds a value of magnitude < 2^51 to an integer, which then
/// sits in the low bits of the sum.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;
#[allow(clippy::excessive_precision)]
const P1: f64 = 1.666_666_666_666_660_190_37e-01;
#[allow(clippy::excessive_precision)]
const P2: f64 = -2.777_777_777_701_559_338_42e-03;
#[allow(clippy::excessive_precision)]
const P3: f64 = 6.613_756_321_437_934_361_17e-05;
#[allow(clippy::excessive_precision)]
const P4: f64 = -1.653_390_220_546_525_153_90e-06;
#[allow(clippy::excessive_precision)]
const P5: f64 = 4.138_136_797_057_238_460_39e-08;
/// Inputs in [FAST_MIN, FAST_MAX] give k in [-1021, 1023]: 2^k and the result are normal.
pub(crate) const FAST_MIN: f64 = -708.0;
pub(crate) const FAST_MAX: f64 = 709.0;

/// The fast path of one lane, valid for x in [FAST_MIN, FAST_MAX]: the reference for the
/// operations (and their order) of the SIMD versions.
#[inline(always)]
fn exp_fast(x: f64) -> f64 {
    let shifted = x.mul_add(INV_LN2, ROUND_SHIFT);
    let k = shifted - ROUND_SHIFT;
    let hi = (-k).mul_add(LN2_HI, x); // exact: k*LN2_HI has at most 43 significant bits
    let lo = k * LN2_LO;
    let r = hi - lo;
    let t = r * r;
    let poly = t.mul_add(t.mul_add(t.mul_add(t.mul_add(P5, P4), P3), P2), P1);
    let c = (-t).mul_add(poly, r);
    let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
    // 2^k: the integer k is in the low bits of `shifted`.
    let k_bits = shifted.to_bits().wrapping_sub(ROUND_SHIFT.to_bits());
    let scale = f64::from_bits(k_bits.wrapping_add(1023) << 52);
    y * scale
}

/// exp of each lane (see the module docs).
#[inline(always)]
pub(crate) fn exp_lanes(x: [f64; LANES]) -> [f64; LANES] {
    let mut out = x.map(exp_fast);
    let in_range = x.iter().all(|&v| (FAST_MIN..=FAST_MAX).contains(&v));
    if !in_range {
        for i in 0..LANES {
            if !(FAST_MIN..=FAST_MAX).contains(&x[i]) {
                out[i] = x[i].exp();
            }
        }
    }
    out
}

/// Defines the fast path of [`exp_lanes`] over `N` registers of one SIMD width, valid for
/// inputs in [FAST_MIN, FAST_MAX] (the caller checks; other lanes get meaningless
/// values). The statements of the `N` computations are interleaved so that the CPU
/// overlaps their dependency chains (one `exp` is a chain of ~25 operations with a
/// division in it). Per lane, the operations of [`exp_fast`] in the same order, so the
/// same bits.
macro_rules! exp_n {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $v:ty, $set1:ident, $add:ident, $sub:ident, $mul:ident,
     $div:ident, $fmadd:ident, $fnmadd:ident, $cast_int:ident, $cast_pd:ident, $sub_epi:ident, $add_epi:ident,
     $set1_epi:ident, $slli:ident) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name<const N: usize>(x: [$v; N]) -> [$v; N] {
            use std::arch::x86_64::*;
            let mut shifted = x;
            let mut k = x;
            let mut hi = x;
            let mut lo = x;
            let mut r = x;
            let mut t = x;
            let mut poly = x;
            let mut out = x;
            for i in 0..N {
                shifted[i] = $fmadd(x[i], $set1(INV_LN2), $set1(ROUND_SHIFT));
            }
            for i in 0..N {
                k[i] = $sub(shifted[i], $set1(ROUND_SHIFT));
            }
            for i in 0..N {
                hi[i] = $fnmadd(k[i], $set1(LN2_HI), x[i]);
                lo[i] = $mul(k[i], $set1(LN2_LO));
            }
            for i in 0..N {
                r[i] = $sub(hi[i], lo[i]);
            }
            for i in 0..N {
                t[i] = $mul(r[i], r[i]);
            }
            for i in 0..N {
                poly[i] = $fmadd(t[i], $set1(P5), $set1(P4));
            }
            for i in 0..N {
                poly[i] = $fmadd(t[i], poly[i], $set1(P3));
            }
            for i in 0..N {
                poly[i] = $fmadd(t[i], poly[i], $set1(P2));
            }
            for i in 0..N {
                poly[i] = $fmadd(t[i], poly[i], $set1(P1));
            }
            for i in 0..N {
                // c = r - t*poly; frac = (r*c)/(2 - c); y = 1 - ((lo - frac) - hi).
                let c = $fnmadd(t[i], poly[i], r[i]);
                let frac = $div($mul(r[i], c), $sub($set1(2.0), c));
                out[i] = $sub($set1(1.0), $sub($sub(lo[i], frac), hi[i]));
            }
            for i in 0..N {
                // 2^k: the integer k is in the low bits of `shifted`.
                let k_bits = $sub_epi($cast_int(shifted[i]), $set1_epi(ROUND_SHIFT.to_bits() as i64));
                let scale = $cast_pd($slli::<52>($add_epi(k_bits, $set1_epi(1023))));
                out[i] = $mul(out[i], scale);
            }
            out
        }
    };
}

exp_n!(
    /// The fast path of [`exp_lanes`] on `N` AVX2 registers of 4 lanes (see [`exp_n`]).
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    exp_fast_avx2, "avx2,fma", std::arch::x86_64::__m256d, _mm256_set1_pd, _mm256_add_pd, _mm256_sub_pd,
    _mm256_mul_pd, _mm256_div_pd, _mm256_fmadd_pd, _mm256_fnmadd_pd, _mm256_castpd_si256, _mm256_castsi256_pd,
    _mm256_sub_epi64, _mm256_add_epi64, _mm256_set1_epi64x, _mm256_slli_epi64
);

exp_n!(
    /// The fast path of [`exp_lanes`] on `N` AVX-512 registers of 8 lanes (see [`exp_n`]).
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    exp_fast_avx512, "avx512f", std::arch::x86_64::__m512d, _mm512_set1_pd, _mm512_add_pd, _mm512_sub_pd,
    _mm512_mul_pd, _mm512_div_pd, _mm512_fmadd_pd, _mm512_fnmadd_pd, _mm512_castpd_si512, _mm512_castsi512_pd,
    _mm512_sub_epi64, _mm512_add_epi64, _mm512_set1_epi64, _mm512_slli_epi64
);

/// [`exp_lanes`] with the kernel of `isa` (its fast path, then the C library's `exp` for
/// the lanes outside it, as [`exp_lanes`]).
#[cfg(test)]
pub(crate) fn exp_lanes_with(isa: super::Isa, x: [f64; LANES]) -> [f64; LANES] {
    use super::Level;
    let mut out = [0.0f64; LANES];
    match isa.0 {
        Level::Portable => return exp_lanes(x),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX2 (super::Isa).
        Level::Avx2 => unsafe {
            use std::arch::x86_64::*;
            let [lo, hi] = exp_fast_avx2([_mm256_loadu_pd(x.as_ptr()), _mm256_loadu_pd(x.as_ptr().add(4))]);
            _mm256_storeu_pd(out.as_mut_ptr(), lo);
            _mm256_storeu_pd(out.as_mut_ptr().add(4), hi);
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F.
        Level::Avx512 => unsafe {
            use std::arch::x86_64::*;
            let [v] = exp_fast_avx512([_mm512_loadu_pd(x.as_ptr())]);
            _mm512_storeu_pd(out.as_mut_ptr(), v);
        },
    }
    for (o, v) in out.iter_mut().zip(x) {
        if !(FAST_MIN..=FAST_MAX).contains(&v) {
            *o = v.exp();
        }
    }
    out
}

/// exp of one value (the first lane of [`exp_lanes`]).
#[cfg(test)]
pub(crate) fn exp(x: f64) -> f64 {
    exp_lanes([x; LANES])[0]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::simd::Isa;
    use crate::test_util::Rng;

    fn ulps(a: f64, b: f64) -> u64 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs()
    }

    #[test]
    fn within_one_ulp_of_libm() {
        let mut rng = Rng::new(5);
        let mut worst = 0;
        let mut differ = 0;
        let n = 2_000_000;
        for i in 0..n {
            // Mostly the softmax range [-60, 0], also the whole fast range.
            let x = if i % 4 == 0 { FAST_MIN + rng.next_f64() * (FAST_MAX - FAST_MIN) } else { -60.0 * rng.next_f64() };
            let u = ulps(exp(x), x.exp());
            worst = worst.max(u);
            differ += (u > 0) as usize;
        }
        assert!(worst <= 1, "max difference {worst} ulp");
        // Both are within 1 ulp of the exact value; they differ in the last bit for about
        // 1 in 10 inputs (numpy's own SIMD exp differs from libm for about 1 in 20).
        assert!(differ < n / 5, "{differ} of {n} differ");
    }

    #[test]
    fn simd_lanes_give_the_same_bits() {
        let mut rng = Rng::new(8);
        for i in 0..200_000 {
            let x: [f64; LANES] = std::array::from_fn(|g| match (i + g) % 5 {
                0 => -800.0 + 1600.0 * rng.next_f64(),
                _ => -40.0 * rng.next_f64(),
            });
            let want = exp_lanes(x).map(f64::to_bits);
            for isa in Isa::supported() {
                assert_eq!(exp_lanes_with(isa, x).map(f64::to_bits), want, "{isa:?} {x:?}");
            }
        }
    }

    #[test]
    fn constants_have_the_published_bits() {
        assert_eq!(LN2_HI.to_bits(), 0x3FE6_2E42_FEE0_0000);
        assert_eq!(LN2_LO.to_bits(), 0x3DEA_39EF_3579_3C76);
        assert_eq!(P1.to_bits(), 0x3FC5_5555_5555_553E);
        assert_eq!(P2.to_bits(), 0xBF66_C16C_16BE_BD93);
        assert_eq!(P3.to_bits(), 0x3F11_566A_AF25_DE2C);
        assert_eq!(P4.to_bits(), 0xBEBB_BD41_C5D2_6BF1);
        assert_eq!(P5.to_bits(), 0x3E66_3769_72BE_A4D0);
        assert_eq!(ROUND_SHIFT, 1.5 * (1u64 << 52) as f64);
    }

    #[test]
    fn special_values_and_boundaries() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(-745.2), 0.0);
        assert_eq!(exp(-740.0), (-740.0f64).exp()); // subnormal, via libm
        assert_eq!(exp(710.0), f64::INFINITY);
        assert_eq!(exp(f64::NEG_INFINITY), 0.0);
        assert!(exp(f64::NAN).is_nan());
        for x in [FAST_MIN, FAST_MIN - 1e-9, FAST_MAX, -1e-300, 1e-300, 0.5 * std::f64::consts::LN_2, -0.5 * std::f64::consts::LN_2] {
            assert!(ulps(exp(x), x.exp()) <= 1, "{x}");
        }
        let lanes = exp_lanes([-1.0, -900.0, 0.0, -2.0, -1.0, -1.0, -1.0, -1.0]);
        assert_eq!(lanes[1], 0.0);
        assert!(ulps(lanes[0], (-1.0f64).exp()) <= 1 && lanes[2] == 1.0 && ulps(lanes[3], (-2.0f64).exp()) <= 1);
    }
}

