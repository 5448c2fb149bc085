//! A float64 `exp` for lanes of 8 values (the softmax of the score pass calls it 81
//! times per group of 8 anchors), within 1 ulp of the C library's `exp` (tested), as
//! numpy's own SIMD `exp` is: a portable version and AVX2 (4 lanes a register) and
//! AVX-512 (8 lanes) versions with the same operations in the same order, so the same
//! bits on every CPU (see [`super`]).
//!
//! The classic argument reduction and Remez rational form (as in fdlibm's `e_exp.c`):
//! x = k*ln2 + r with |r| <= ln2/2 (ln2 split in a 32-bit high part, so k*ln2_hi is
//! exact, and a low part), exp(r) = 1 + 2r/(2 - c(r)) with c(r) = r - r^2*P(r^2)
//! (P of degree 4), then scaling by 2^k built from its bits. Only mul, add, sub and div
//! are used, never a fused multiply-add, so every CPU gives the same bits. Lanes whose
//! result may be subnormal or near overflow (x < -708 or x > 709) and NaN lanes fall
//! back to `f64::exp`.

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
const FAST_MIN: f64 = -708.0;
const FAST_MAX: f64 = 709.0;

/// exp of each lane (see the module docs).
#[inline(always)]
pub(crate) fn exp_lanes(x: [f64; LANES]) -> [f64; LANES] {
    let mut out = [0.0f64; LANES];
    for i in 0..LANES {
        let xi = x[i];
        let shifted = xi * INV_LN2 + ROUND_SHIFT;
        let k = shifted - ROUND_SHIFT;
        let hi = xi - k * LN2_HI;
        let lo = k * LN2_LO;
        let r = hi - lo;
        let t = r * r;
        let c = r - t * (P1 + t * (P2 + t * (P3 + t * (P4 + t * P5))));
        let y = 1.0 - ((lo - (r * c) / (2.0 - c)) - hi);
        // 2^k: the integer k is in the low bits of `shifted`.
        let k_bits = shifted.to_bits().wrapping_sub(ROUND_SHIFT.to_bits());
        let scale = f64::from_bits(k_bits.wrapping_add(1023) << 52);
        out[i] = y * scale;
    }
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

/// [`exp_lanes`] on 4 lanes with AVX2 intrinsics: the same operations in the same order
/// (no FMA), so the same bits.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
pub(crate) unsafe fn exp_lanes_avx2(x: std::arch::x86_64::__m256d) -> std::arch::x86_64::__m256d {
    use std::arch::x86_64::*;
    let shifted = _mm256_add_pd(_mm256_mul_pd(x, _mm256_set1_pd(INV_LN2)), _mm256_set1_pd(ROUND_SHIFT));
    let k = _mm256_sub_pd(shifted, _mm256_set1_pd(ROUND_SHIFT));
    let hi = _mm256_sub_pd(x, _mm256_mul_pd(k, _mm256_set1_pd(LN2_HI)));
    let lo = _mm256_mul_pd(k, _mm256_set1_pd(LN2_LO));
    let r = _mm256_sub_pd(hi, lo);
    let t = _mm256_mul_pd(r, r);
    let mut poly = _mm256_add_pd(_mm256_set1_pd(P4), _mm256_mul_pd(t, _mm256_set1_pd(P5)));
    poly = _mm256_add_pd(_mm256_set1_pd(P3), _mm256_mul_pd(t, poly));
    poly = _mm256_add_pd(_mm256_set1_pd(P2), _mm256_mul_pd(t, poly));
    poly = _mm256_add_pd(_mm256_set1_pd(P1), _mm256_mul_pd(t, poly));
    let c = _mm256_sub_pd(r, _mm256_mul_pd(t, poly));
    let frac = _mm256_div_pd(_mm256_mul_pd(r, c), _mm256_sub_pd(_mm256_set1_pd(2.0), c));
    let y = _mm256_sub_pd(_mm256_set1_pd(1.0), _mm256_sub_pd(_mm256_sub_pd(lo, frac), hi));
    let k_bits = _mm256_sub_epi64(_mm256_castpd_si256(shifted), _mm256_set1_epi64x(ROUND_SHIFT.to_bits() as i64));
    let scale = _mm256_castsi256_pd(_mm256_slli_epi64::<52>(_mm256_add_epi64(k_bits, _mm256_set1_epi64x(1023))));
    let out = _mm256_mul_pd(y, scale);
    let in_range = _mm256_and_pd(
        _mm256_cmp_pd::<_CMP_GE_OQ>(x, _mm256_set1_pd(FAST_MIN)),
        _mm256_cmp_pd::<_CMP_LE_OQ>(x, _mm256_set1_pd(FAST_MAX)),
    );
    if _mm256_movemask_pd(in_range) == 0b1111 {
        return out;
    }
    let mut xs = [0.0f64; 4];
    let mut os = [0.0f64; 4];
    _mm256_storeu_pd(xs.as_mut_ptr(), x);
    _mm256_storeu_pd(os.as_mut_ptr(), out);
    for i in 0..4 {
        if !(FAST_MIN..=FAST_MAX).contains(&xs[i]) {
            os[i] = xs[i].exp();
        }
    }
    _mm256_loadu_pd(os.as_ptr())
}

/// [`exp_lanes`] on 8 lanes with AVX-512F intrinsics: the same operations in the same order
/// (no FMA), so the same bits.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
pub(crate) unsafe fn exp_lanes_avx512(x: std::arch::x86_64::__m512d) -> std::arch::x86_64::__m512d {
    use std::arch::x86_64::*;
    let shifted = _mm512_add_pd(_mm512_mul_pd(x, _mm512_set1_pd(INV_LN2)), _mm512_set1_pd(ROUND_SHIFT));
    let k = _mm512_sub_pd(shifted, _mm512_set1_pd(ROUND_SHIFT));
    let hi = _mm512_sub_pd(x, _mm512_mul_pd(k, _mm512_set1_pd(LN2_HI)));
    let lo = _mm512_mul_pd(k, _mm512_set1_pd(LN2_LO));
    let r = _mm512_sub_pd(hi, lo);
    let t = _mm512_mul_pd(r, r);
    let mut poly = _mm512_add_pd(_mm512_set1_pd(P4), _mm512_mul_pd(t, _mm512_set1_pd(P5)));
    poly = _mm512_add_pd(_mm512_set1_pd(P3), _mm512_mul_pd(t, poly));
    poly = _mm512_add_pd(_mm512_set1_pd(P2), _mm512_mul_pd(t, poly));
    poly = _mm512_add_pd(_mm512_set1_pd(P1), _mm512_mul_pd(t, poly));
    let c = _mm512_sub_pd(r, _mm512_mul_pd(t, poly));
    let frac = _mm512_div_pd(_mm512_mul_pd(r, c), _mm512_sub_pd(_mm512_set1_pd(2.0), c));
    let y = _mm512_sub_pd(_mm512_set1_pd(1.0), _mm512_sub_pd(_mm512_sub_pd(lo, frac), hi));
    let k_bits = _mm512_sub_epi64(_mm512_castpd_si512(shifted), _mm512_set1_epi64(ROUND_SHIFT.to_bits() as i64));
    let scale = _mm512_castsi512_pd(_mm512_slli_epi64::<52>(_mm512_add_epi64(k_bits, _mm512_set1_epi64(1023))));
    let out = _mm512_mul_pd(y, scale);
    let in_range = _mm512_cmp_pd_mask::<_CMP_GE_OQ>(x, _mm512_set1_pd(FAST_MIN))
        & _mm512_cmp_pd_mask::<_CMP_LE_OQ>(x, _mm512_set1_pd(FAST_MAX));
    if in_range == 0xFF {
        return out;
    }
    let mut xs = [0.0f64; 8];
    let mut os = [0.0f64; 8];
    _mm512_storeu_pd(xs.as_mut_ptr(), x);
    _mm512_storeu_pd(os.as_mut_ptr(), out);
    for i in 0..8 {
        if !(FAST_MIN..=FAST_MAX).contains(&xs[i]) {
            os[i] = xs[i].exp();
        }
    }
    _mm512_loadu_pd(os.as_ptr())
}

/// [`exp_lanes`] with the kernel of `isa`.
#[cfg(test)]
pub(crate) fn exp_lanes_with(isa: super::Isa, x: [f64; LANES]) -> [f64; LANES] {
    use super::Level;
    let mut out = [0.0f64; LANES];
    match isa.0 {
        Level::Portable => out = exp_lanes(x),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX2 (super::Isa).
        Level::Avx2 => unsafe {
            use std::arch::x86_64::*;
            _mm256_storeu_pd(out.as_mut_ptr(), exp_lanes_avx2(_mm256_loadu_pd(x.as_ptr())));
            _mm256_storeu_pd(out.as_mut_ptr().add(4), exp_lanes_avx2(_mm256_loadu_pd(x.as_ptr().add(4))));
        },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F.
        Level::Avx512 => unsafe {
            use std::arch::x86_64::*;
            _mm512_storeu_pd(out.as_mut_ptr(), exp_lanes_avx512(_mm512_loadu_pd(x.as_ptr())));
        },
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
