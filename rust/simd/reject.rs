//! The quick-reject kernels (docs/postprocess.md, "Scores"; the bound is in
//! [`crate::scores`]): a running max over the 80 foreground rows of the class logits, read
//! row by row so the reads stream, with the finite check folded in. A value is NaN or +-inf
//! exactly when the bit pattern of |x| is >= that of +inf, so an integer max of |x| bit
//! patterns (associative, hence vectorised) decides it. Portable and AVX2 versions, the
//! same bits (see [`super`]); then the selection of the survivors ([`select_survivors`]),
//! portable and AVX-512 (a register compress), the same survivors in the same order.

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

/// Room a survivor buffer needs past the survivors it may hold, for the full-register
/// stores of [`select_survivors`].
pub(crate) const SELECT_SLACK: usize = 16;

/// The selection after the running max: for each anchor `start + i` of a chunk (`row0[i]`
/// its background logit x_0, `mx[i]` its foreground max m), in order, writes the anchor to
/// `anchors` and `if x0 > m { x0 } else { m }` (its max over all 81 logits) to `max`, from
/// the front, when `x0 - m <= bound` (float32). Returns how many. Logits are finite
/// (checked before), so no difference is NaN.
///
/// # Panics
/// When `mx` is not as long as `row0` or a buffer has less than `row0.len() +`
/// [`SELECT_SLACK`] values.
#[inline]
pub(crate) fn select_survivors(isa: Isa, row0: &[f32], mx: &[f32], start: usize, bound: f32, anchors: &mut [u32], max: &mut [f32]) -> usize {
    let len = row0.len();
    assert!(mx.len() == len && anchors.len() >= len + SELECT_SLACK && max.len() >= len + SELECT_SLACK, "select_survivors: buffers too short");
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F (super::Isa);
        // the lengths are checked above.
        Level::Avx512 => unsafe { select_survivors_avx512(row0, mx, start, bound, anchors, max) },
        _ => select_survivors_generic(row0, mx, start, bound, anchors, max),
    }
}

/// [`select_survivors`], portable: branch-free, every anchor is written at the next free
/// slot, which only advances for a survivor (a fifth of the anchors at realistic
/// densities: a branch would be mispredicted often).
fn select_survivors_generic(row0: &[f32], mx: &[f32], start: usize, bound: f32, anchors: &mut [u32], max: &mut [f32]) -> usize {
    let mut n = 0;
    for (i, (&x0, &m)) in row0.iter().zip(mx).enumerate() {
        anchors[n] = (start + i) as u32;
        max[n] = max2(x0, m);
        n += (x0 - m <= bound) as usize;
    }
    n
}

/// [`select_survivors`] with AVX-512F, 16 anchors a step: the same float32 difference and
/// comparison (`_CMP_LE_OQ` is `<=`; no NaN here) and `_mm512_max_ps(x0, m)`, which is
/// [`max2`]`(x0, m)`; the survivors of a step are packed by a register compress and stored
/// as a whole register (the lanes past them are overwritten later or ignored, hence
/// [`SELECT_SLACK`]). The last step masks off the lanes past the chunk.
///
/// # Safety
/// The CPU must support AVX-512F; `mx.len() == row0.len()` and both buffers hold at least
/// `row0.len() + SELECT_SLACK` values.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn select_survivors_avx512(row0: &[f32], mx: &[f32], start: usize, bound: f32, anchors: &mut [u32], max: &mut [f32]) -> usize {
    use std::arch::x86_64::*;
    let len = row0.len();
    let b = _mm512_set1_ps(bound);
    let lanes = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
    let (mut i, mut n) = (0, 0);
    while i < len {
        let k: __mmask16 = if len - i >= 16 { 0xFFFF } else { (1u16 << (len - i)) - 1 };
        // SAFETY: the lanes of k are below len; n <= i, so the stores end before
        // len + SELECT_SLACK.
        let x0 = _mm512_maskz_loadu_ps(k, row0.as_ptr().add(i));
        let m = _mm512_maskz_loadu_ps(k, mx.as_ptr().add(i));
        // Compared on all lanes, then masked: the masked compare intrinsic
        // (`_mm512_mask_cmp_ps_mask`) makes LLVM fail here in some builds (the doctest's:
        // "Cannot emit physreg copy instruction").
        let keep = _mm512_cmp_ps_mask::<_CMP_LE_OQ>(_mm512_sub_ps(x0, m), b) & k;
        let index = _mm512_add_epi32(lanes, _mm512_set1_epi32((start + i) as i32));
        _mm512_storeu_si512(anchors.as_mut_ptr().add(n).cast(), _mm512_maskz_compress_epi32(keep, index));
        _mm512_storeu_ps(max.as_mut_ptr().add(n), _mm512_maskz_compress_ps(keep, _mm512_max_ps(x0, m)));
        n += u32::from(keep).count_ones() as usize;
        i += 16;
    }
    n
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
    fn select_survivors_variants_agree() {
        let mut rng = Rng::new(7);
        for &len in &[0usize, 1, 7, 15, 16, 17, 31, 33, 1000, 1024] {
            for &bound in &[-0.5f32, 0.0, 1.25] {
                // Small integer-valued logits give many ties (d == bound, x0 == m) and
                // signed zeros; every fourth anchor is a random float.
                let pick = |rng: &mut Rng, i: usize| -> f32 {
                    match i % 4 {
                        0 => (rng.next_f64() * 16.0 - 8.0) as f32,
                        1 => [0.0, -0.0][(rng.next_f64() * 2.0) as usize],
                        _ => ((rng.next_f64() * 6.0).floor() - 3.0) as f32 * 0.25,
                    }
                };
                let row0: Vec<f32> = (0..len).map(|i| pick(&mut rng, i)).collect();
                let mx: Vec<f32> = (0..len).map(|i| pick(&mut rng, i + 1)).collect();
                let start = 3 * len + 5;
                let mut want_a = vec![u32::MAX; len + SELECT_SLACK];
                let mut want_m = vec![f32::NAN; len + SELECT_SLACK];
                let n = select_survivors_generic(&row0, &mx, start, bound, &mut want_a, &mut want_m);
                let expect: Vec<(u32, u32)> = (0..len)
                    .filter(|&i| row0[i] - mx[i] <= bound)
                    .map(|i| ((start + i) as u32, max2(row0[i], mx[i]).to_bits()))
                    .collect();
                assert_eq!(n, expect.len());
                for isa in Isa::supported() {
                    // Exactly the room the contract asks for, so a store past it panics
                    // (generic) or is caught by the slice lengths below.
                    let mut a = vec![u32::MAX; len + SELECT_SLACK];
                    let mut m = vec![f32::NAN; len + SELECT_SLACK];
                    let got = select_survivors(isa, &row0, &mx, start, bound, &mut a, &mut m);
                    assert_eq!(got, n, "{isa:?} len {len} bound {bound}");
                    let pairs: Vec<(u32, u32)> = a[..got].iter().zip(&m[..got]).map(|(&a, &m)| (a, m.to_bits())).collect();
                    assert_eq!(pairs, expect, "{isa:?} len {len} bound {bound}");
                }
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
