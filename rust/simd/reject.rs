//! The quick-reject kernels (docs/postprocess.md, "Scores"; the bound is in
//! [`crate::scores`]): a running max over the 80 foreground rows of the class logits, read
//! row by row so the reads stream, with the finite check folded in. A value is NaN or +-inf
//! exactly when the bit pattern of |x| is >= that of +inf, so an integer max of |x| bit
//! patterns (associative, hence vectorised) decides it. Portable and AVX2 versions, the
//! same bits (see [`super`]).

use super::{Isa, Level};
use crate::layout::NUM_CLASSES;

/// True when every value is finite (no NaN, no +-inf). Vectorised, no early exit.
pub(crate) fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0u32, |m, &v| m.max(abs_bits(v))) < NON_FINITE_ABS_BITS
}

/// Bits of |x| for a float32; at least `NON_FINITE_ABS_BITS` exactly for NaN and +-inf.
#[inline(always)]
pub(crate) fn abs_bits(x: f32) -> u32 {
    x.to_bits() & 0x7FFF_FFFF
}

/// The smallest |x| bit pattern that is not finite (+inf; NaNs are above it).
pub(crate) const NON_FINITE_ABS_BITS: u32 = 0x7F80_0000;

/// Foreground rows read together by the running max (80 is a multiple).
const ROWS_AT_ONCE: usize = 4;
const _: () = assert!((NUM_CLASSES - 1).is_multiple_of(ROWS_AT_ONCE));
/// How far ahead (in floats) the AVX2 kernel prefetches each row.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 64;

/// `if a > b { a } else { b }`: the float max of the kernels (`_mm256_max_ps(a, b)`).
#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// One step of the running max over four rows: `max2(max2(m, max2(v1, v2)), max2(v3, v4))`.
#[inline(always)]
fn max_step(m: f32, v: [f32; ROWS_AT_ONCE]) -> f32 {
    max2(max2(m, max2(v[0], v[1])), max2(v[2], v[3]))
}

/// Running max of the 80 foreground rows over anchors `start..start + mx.len()` into
/// `mx`, four rows at a time ([`max_step`]), returning the max of the |x| bit patterns
/// of the values read. Portable version.
#[inline(always)]
pub(crate) fn foreground_max_generic(logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32]) -> u32 {
    let len = mx.len();
    let mut abs_max = 0u32;
    for c in (1..NUM_CLASSES).step_by(ROWS_AT_ONCE) {
        let rows: [&[f32]; ROWS_AT_ONCE] = std::array::from_fn(|k| &logits[(c + k) * num_anchors + start..][..len]);
        for (i, m) in mx.iter_mut().enumerate() {
            let v = rows.map(|r| r[i]);
            *m = max_step(*m, v);
            abs_max = v.iter().fold(abs_max, |a, &x| a.max(abs_bits(x)));
        }
    }
    abs_max
}

/// [`foreground_max_generic`] with AVX2 intrinsics, 8 anchors a step, the same max tree
/// (`_mm256_max_ps(a, b)` is [`max2`]`(a, b)`), so the same bits; the next part of each
/// row is prefetched.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn foreground_max_avx2(logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32]) -> u32 {
    use std::arch::x86_64::*;
    let len = mx.len();
    let whole = len - len % 8;
    let abs_mask = _mm256_set1_epi32(0x7FFF_FFFF);
    let abs = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
    let mut acc = _mm256_setzero_si256();
    let mut abs_max = 0u32;
    for c in (1..NUM_CLASSES).step_by(ROWS_AT_ONCE) {
        let rows: [&[f32]; ROWS_AT_ONCE] = std::array::from_fn(|k| &logits[(c + k) * num_anchors + start..][..len]);
        let rp = rows.map(|r| r.as_ptr());
        let mp = mx.as_mut_ptr();
        let mut i = 0;
        while i < whole {
            for p in rp {
                // A hint only: never faults, so the address may pass the end of the slice.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + PREFETCH_AHEAD).cast());
            }
            // SAFETY: i + 8 <= whole <= len = every row's and mx's length.
            let v = rp.map(|p| _mm256_loadu_ps(p.add(i)));
            let m = _mm256_loadu_ps(mp.add(i));
            let m = _mm256_max_ps(_mm256_max_ps(m, _mm256_max_ps(v[0], v[1])), _mm256_max_ps(v[2], v[3]));
            _mm256_storeu_ps(mp.add(i), m);
            let a = _mm256_max_epu32(_mm256_max_epu32(abs(v[0]), abs(v[1])), _mm256_max_epu32(abs(v[2]), abs(v[3])));
            acc = _mm256_max_epu32(acc, a);
            i += 8;
        }
        for j in whole..len {
            let v = rows.map(|r| r[j]);
            mx[j] = max_step(mx[j], v);
            abs_max = v.iter().fold(abs_max, |a, &x| a.max(abs_bits(x)));
        }
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc);
    lanes.iter().fold(abs_max, |a, &b| a.max(b))
}

/// The running foreground max ([`foreground_max_generic`]) with the kernel of `isa` (AVX2
/// for both x86 levels).
#[inline]
pub(crate) fn foreground_max(isa: Isa, logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32]) -> u32 {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of these levels is only made when the CPU has AVX2 (super::Isa).
        Level::Avx2 | Level::Avx512 => unsafe { foreground_max_avx2(logits, num_anchors, start, mx) },
        Level::Portable => foreground_max_generic(logits, num_anchors, start, mx),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    #[test]
    fn foreground_max_variants_agree() {
        let mut rng = Rng::new(99);
        let a_l = 2 * 1024 + 13;
        let mut x: Vec<f32> = (0..NUM_CLASSES * a_l).map(|_| (rng.next_f64() * 16.0 - 8.0) as f32).collect();
        // Ties, signed zeros and extremes.
        x[a_l + 3] = 0.0;
        x[2 * a_l + 3] = -0.0;
        x[5 * a_l + 9] = f32::MAX;
        x[6 * a_l + 10] = -f32::MAX;
        for &(start, len) in &[(0, 1024), (1024, 1024), (2048, 13), (5, 7), (17, 1000)] {
            let mut want = vec![f32::NEG_INFINITY; len];
            let abs_want = foreground_max_generic(&x, a_l, start, &mut want);
            for isa in Isa::supported() {
                let mut got = vec![f32::NEG_INFINITY; len];
                assert_eq!(foreground_max(isa, &x, a_l, start, &mut got), abs_want, "{isa:?}");
                assert_eq!(got.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), want.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            }
        }
    }

    #[test]
    fn all_finite_finds_every_position() {
        assert!(all_finite(&[1.0; 37]));
        for pos in [0, 3, 36] {
            for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
                let mut v = [1.0; 37];
                v[pos] = bad;
                assert!(!all_finite(&v), "{bad} at {pos}");
            }
        }
        assert!(all_finite(&[f32::MAX, -f32::MAX, f32::MIN_POSITIVE, -0.0]));
    }
}
