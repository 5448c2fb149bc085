//! A float64 `exp` for lanes of 8 values (the softmax of the score pass calls it 81
//! times per group of 8 anchors), within 1 ulp of the C library's `exp` (tested; equal to
//! it for all but ~1% of arguments), as numpy's own SIMD `exp` is: a portable version and
//! AVX2 (4 lanes a register) and AVX-512 (8 lanes) versions with the same operations in
//! the same order, so the same bits on every CPU (see [`super`]).
//!
//! Table-driven, without a division: x = (16 e + j) ln2/16 + r with the integer
//! k = 16 e + j = round(16 x / ln2) and |r| <= ln2/32 (ln2/16 split in a 32-bit high part
//! and a low part, both subtracted with fused multiply-adds); exp(x) = 2^e * 2^(j/16) *
//! exp(r), with 2^(j/16) from a 16-entry table as a float64 `T_HI[j]` plus the float64
//! rounding of the rest, `T_LO[j]`, and exp(r) - 1 = r + r^2 q(r) the Taylor polynomial of
//! degree 7 (truncation error below r^8/8! < 2^-59); the result T_HI + (T_HI p + T_LO)
//! (one fused multiply-add and one add, ~0.53 ulp), then scaled by 2^e by adding e to the
//! exponent field. The multiply-adds are fused (one rounding each: `f64::mul_add`, which
//! is exact on every platform, and the FMA instructions), every other operation is a
//! plain mul, add or sub. Lanes whose result may be subnormal or near overflow
//! (x < -707 or x > 709) and NaN lanes fall back to `f64::exp` in [`exp_lanes`]; the SIMD
//! versions ([`exp_fast_avx2`], [`exp_fast_avx512`]) leave that check to the caller, who
//! hoists it out of its loop.

use super::LANES;

/// 2^(j/16) rounded to float64 (the table of glibc's and ARM's `exp`, 16 entries).
const T_HI: [f64; 16] = [
    f64::from_bits(0x3FF0_0000_0000_0000),
    f64::from_bits(0x3FF0_B558_6CF9_890F),
    f64::from_bits(0x3FF1_72B8_3C7D_517B),
    f64::from_bits(0x3FF2_387A_6E75_6238),
    f64::from_bits(0x3FF3_06FE_0A31_B715),
    f64::from_bits(0x3FF3_DEA6_4C12_3422),
    f64::from_bits(0x3FF4_BFDA_D536_2A27),
    f64::from_bits(0x3FF5_AB07_DD48_5429),
    f64::from_bits(0x3FF6_A09E_667F_3BCD),
    f64::from_bits(0x3FF7_A114_73EB_0187),
    f64::from_bits(0x3FF8_ACE5_422A_A0DB),
    f64::from_bits(0x3FF9_C491_82A3_F090),
    f64::from_bits(0x3FFA_E89F_995A_D3AD),
    f64::from_bits(0x3FFC_199B_DD85_529C),
    f64::from_bits(0x3FFD_5818_DCFB_A487),
    f64::from_bits(0x3FFE_A4AF_A2A4_90DA),
];
/// 2^(j/16) - `T_HI[j]` rounded to float64 (computed with 80 significant digits).
const T_LO: [f64; 16] = [
    f64::from_bits(0x0000_0000_0000_0000),
    f64::from_bits(0x3C98_A62E_4ADC_610B),
    f64::from_bits(0xBC81_9041_B9D7_8A76),
    f64::from_bits(0x3C99_B07E_B6C7_0573),
    f64::from_bits(0x3C86_F46A_D231_82E4),
    f64::from_bits(0x3C8A_DA09_11F0_9EBC),
    f64::from_bits(0x3C7D_4397_AFEC_42E2),
    f64::from_bits(0x3C96_324C_0546_47AD),
    f64::from_bits(0xBC9B_DD34_13B2_6456),
    f64::from_bits(0xBC84_1577_EE04_992F),
    f64::from_bits(0x3C96_E9F1_5686_4B27),
    f64::from_bits(0x3C7C_7C46_B071_F2BE),
    f64::from_bits(0x3C97_A1CD_345D_CC81),
    f64::from_bits(0x3C81_1065_8950_48DD),
    f64::from_bits(0x3C82_ED02_D75B_3707),
    f64::from_bits(0xBC9E_9C23_179C_2893),
];
/// 16/ln2.
const INV_LN2_16: f64 = f64::from_bits(0x4037_1547_652B_82FE);
/// ln2/16 = LN2_16_HI + LN2_16_LO, the high part with 32 significant bits.
const LN2_16_HI: f64 = f64::from_bits(0x3FA6_2E42_FF00_0000);
const LN2_16_LO: f64 = f64::from_bits(0xBD87_1843_2A1B_0E26);
/// 1.5 * 2^52: adding it rounds a value of magnitude < 2^51 to an integer, which then
/// sits in the low bits of the sum.
const ROUND_SHIFT: f64 = 6_755_399_441_055_744.0;
/// The Taylor coefficients 1/k!, k = 2..7, rounded to float64.
const C: [f64; 6] = [0.5, 1.0 / 6.0, 1.0 / 24.0, 1.0 / 120.0, 1.0 / 720.0, 1.0 / 5040.0];
/// Inputs in [FAST_MIN, FAST_MAX] give e in [-1021, 1023]: 2^e and the result are normal.
pub(crate) const FAST_MIN: f64 = -707.0;
pub(crate) const FAST_MAX: f64 = 709.0;
/// The exponent-field bits of a float64.
const EXPONENT_BITS: u64 = 0xFFF0_0000_0000_0000;

/// The fast path of one lane, valid for x in [FAST_MIN, FAST_MAX]: the reference for the
/// operations (and their order) of the SIMD versions.
#[inline(always)]
fn exp_fast(x: f64) -> f64 {
    let kd = x.mul_add(INV_LN2_16, ROUND_SHIFT);
    let k = kd - ROUND_SHIFT;
    let r = (-k).mul_add(LN2_16_HI, x);
    let r = (-k).mul_add(LN2_16_LO, r);
    // The integer k sits in the low bits of kd: kd = ROUND_SHIFT + k exactly, within the
    // binade of ROUND_SHIFT, so its bits are those of ROUND_SHIFT plus k (two's
    // complement). Only their low 16 bits are used, and ROUND_SHIFT's are 0, so they are
    // k's: j = k mod 16, and (k >> 4) << 52 (the arithmetic shift's sign bits leave
    // through the top) is e in the exponent field.
    let k_bits = kd.to_bits();
    let j = (k_bits & 15) as usize;
    let e_bits = (k_bits << 48) & EXPONENT_BITS;
    let q = r.mul_add(r.mul_add(r.mul_add(r.mul_add(r.mul_add(C[5], C[4]), C[3]), C[2]), C[1]), C[0]);
    let p = (r * r).mul_add(q, r);
    let y = T_HI[j] + T_HI[j].mul_add(p, T_LO[j]);
    f64::from_bits(y.to_bits().wrapping_add(e_bits))
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
/// overlaps their dependency chains. Per lane, the operations of [`exp_fast`] in the same
/// order, so the same bits; `$lookup(table, k_bits)` reads `table[k mod 16]`.
macro_rules! exp_n {
    ($(#[$doc:meta])* $name:ident, $feature:literal, $v:ty, $set1:ident, $add:ident, $sub:ident, $mul:ident,
     $fmadd:ident, $fnmadd:ident, $cast_int:ident, $cast_pd:ident, $add_epi:ident, $and:ident,
     $slli:ident, $set1_epi:ident, $lookup:expr) => {
        $(#[$doc])*
        #[cfg(target_arch = "x86_64")]
        #[target_feature(enable = $feature)]
        pub(crate) unsafe fn $name<const N: usize>(x: [$v; N]) -> [$v; N] {
            use std::arch::x86_64::*;
            let mut kd = x;
            let mut r = x;
            let mut q = x;
            let mut out = x;
            for i in 0..N {
                kd[i] = $fmadd(x[i], $set1(INV_LN2_16), $set1(ROUND_SHIFT));
            }
            for i in 0..N {
                let k = $sub(kd[i], $set1(ROUND_SHIFT));
                r[i] = $fnmadd(k, $set1(LN2_16_LO), $fnmadd(k, $set1(LN2_16_HI), x[i]));
            }
            for i in 0..N {
                q[i] = $fmadd(r[i], $set1(C[5]), $set1(C[4]));
            }
            for c in [C[3], C[2], C[1], C[0]] {
                for i in 0..N {
                    q[i] = $fmadd(r[i], q[i], $set1(c));
                }
            }
            for i in 0..N {
                // The low 16 bits of kd's are k's (see exp_fast).
                let k_bits = $cast_int(kd[i]);
                let e_bits = $and($slli::<48>(k_bits), $set1_epi(EXPONENT_BITS as i64));
                let p = $fmadd($mul(r[i], r[i]), q[i], r[i]);
                let (hi, lo) = ($lookup(&T_HI, k_bits), $lookup(&T_LO, k_bits));
                let y = $add(hi, $fmadd(hi, p, lo));
                out[i] = $cast_pd($add_epi($cast_int(y), e_bits));
            }
            out
        }
    };
}

exp_n!(
    /// The fast path of [`exp_lanes`] on `N` AVX2 registers of 4 lanes (see [`exp_n`]); the
    /// table is read by gathers.
    ///
    /// # Safety
    /// The CPU must support AVX2 and FMA.
    exp_fast_avx2, "avx2,fma", std::arch::x86_64::__m256d, _mm256_set1_pd, _mm256_add_pd, _mm256_sub_pd,
    _mm256_mul_pd, _mm256_fmadd_pd, _mm256_fnmadd_pd, _mm256_castpd_si256, _mm256_castsi256_pd,
    _mm256_add_epi64, _mm256_and_si256, _mm256_slli_epi64, _mm256_set1_epi64x,
    // SAFETY (reads): the indices are k mod 16, inside the table.
    |table: &[f64; 16], k_bits| _mm256_i64gather_pd::<8>(table.as_ptr(), _mm256_and_si256(k_bits, _mm256_set1_epi64x(15)))
);

exp_n!(
    /// The fast path of [`exp_lanes`] on `N` AVX-512 registers of 8 lanes (see [`exp_n`]);
    /// the table is held in two registers and read by a two-register permutation.
    ///
    /// # Safety
    /// The CPU must support AVX-512F.
    exp_fast_avx512, "avx512f", std::arch::x86_64::__m512d, _mm512_set1_pd, _mm512_add_pd, _mm512_sub_pd,
    _mm512_mul_pd, _mm512_fmadd_pd, _mm512_fnmadd_pd, _mm512_castpd_si512, _mm512_castsi512_pd,
    _mm512_add_epi64, _mm512_and_si512, _mm512_slli_epi64, _mm512_set1_epi64,
    // The permutation uses the low 4 bits of each index: k mod 16.
    |table: &[f64; 16], k_bits| _mm512_permutex2var_pd(_mm512_loadu_pd(table.as_ptr()), k_bits, _mm512_loadu_pd(table.as_ptr().add(8)))
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
        // Both are within 1 ulp of the exact value (this one ~0.53 ulp); they differ in the
        // last bit for about 1 input in 150 (numpy's own SIMD exp differs from libm for
        // about 1 in 20).
        assert!(differ < n / 50, "{differ} of {n} differ");
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

    /// Double-double product (exact product of the high parts via FMA).
    fn dd_mul(a: (f64, f64), b: (f64, f64)) -> (f64, f64) {
        let p = a.0 * b.0;
        let e = a.0.mul_add(b.0, -p) + (a.0 * b.1 + a.1 * b.0);
        let s = p + e;
        (s, e - (s - p))
    }

    #[test]
    fn constants_are_right() {
        // (T_HI[j] + T_LO[j])^16 = 2^j to double-double precision.
        for j in 0..16 {
            assert!(T_LO[j].abs() <= T_HI[j] * f64::EPSILON / 2.0, "T_LO[{j}] too large");
            let mut v = (T_HI[j], T_LO[j]);
            for _ in 0..4 {
                v = dd_mul(v, v);
            }
            let want = (1u64 << j) as f64;
            assert!(((v.0 - want) + v.1).abs() < want * 1e-29, "j = {j}: {v:?}");
        }
        assert_eq!(T_HI[8], std::f64::consts::SQRT_2);
        // ln2/16 = HI + LO to ~2^-105; HI has 32 significant bits (k*HI exact for |k| < 2^21).
        let ln2_16 = (LN2_16_HI, LN2_16_LO);
        let ln2 = dd_mul(ln2_16, (16.0, 0.0));
        assert_eq!(ln2.0, std::f64::consts::LN_2);
        assert_eq!(LN2_16_HI.to_bits() & 0x1F_FFFF, 0);
        assert!((INV_LN2_16.mul_add(LN2_16_HI, INV_LN2_16 * LN2_16_LO) - 1.0).abs() < 4e-16);
        assert_eq!(ROUND_SHIFT, 1.5 * (1u64 << 52) as f64);
        for (k, c) in C.iter().enumerate() {
            let factorial: u32 = (1..=k as u32 + 2).product();
            assert_eq!(*c, 1.0 / factorial as f64);
        }
    }

    #[test]
    fn kd_bits_carry_k_in_their_low_16_bits() {
        // exp_fast uses kd's bits for k's: kd = ROUND_SHIFT + k stays in ROUND_SHIFT's
        // binade and ROUND_SHIFT's low 16 bits are 0, for every k of the fast range.
        assert_eq!(ROUND_SHIFT.to_bits() & 0xFFFF, 0);
        let k_of = |x: f64| x.mul_add(INV_LN2_16, ROUND_SHIFT) - ROUND_SHIFT;
        let (k_min, k_max) = (k_of(FAST_MIN) as i64, k_of(FAST_MAX) as i64);
        assert!(k_min > -20_000 && k_max < 20_000, "{k_min} {k_max}");
        for k in k_min..=k_max {
            let kd = ROUND_SHIFT + k as f64;
            assert_eq!(kd - ROUND_SHIFT, k as f64);
            assert_eq!(kd.to_bits() >> 52, ROUND_SHIFT.to_bits() >> 52, "k = {k} leaves the binade");
            let old = kd.to_bits().wrapping_sub(ROUND_SHIFT.to_bits());
            assert_eq!(old, k as u64);
            assert_eq!(kd.to_bits() & 15, old & 15);
            assert_eq!((kd.to_bits() << 48) & EXPONENT_BITS, (old << 48) & EXPONENT_BITS);
        }
    }

    #[test]
    fn special_values_and_boundaries() {
        assert_eq!(exp(0.0), 1.0);
        assert_eq!(exp(-0.0), 1.0);
        assert_eq!(exp(-800.0), 0.0);
        assert_eq!(exp(-745.2), 0.0);
        assert_eq!(exp(-740.0), (-740.0f64).exp()); // subnormal, via libm
        assert_eq!(exp(-707.9), (-707.9f64).exp()); // e would be -1022: via libm
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

