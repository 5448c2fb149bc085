//! The exact float64 softmax of up to [`LANES`] anchors at once, one per lane (the
//! survivors of the quick reject; docs/postprocess.md, "Scores"): for each class row
//! c = 0..80 one gather of the lanes' logits, e_c = [`exp`](super::exp::exp_lanes)(x_c - m) with m
//! the anchor's max logit (known from the quick-reject pass), S summed in class order;
//! then the prefilter hits, the (class, lanes) pairs with e_c > S * prefilter, so that
//! only they need the division e_c / S. Portable, AVX2 and AVX-512 versions, the same
//! bits (see [`super`]).

use super::{exp, Isa, Level, LANES};
use crate::layout::NUM_CLASSES;

/// Up to [`LANES`] anchors of one level, one per lane (a lane may repeat an anchor).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Group<'a> {
    /// One image's level slice: 81 rows of `num_anchors` logits.
    pub logits: &'a [f32],
    pub num_anchors: usize,
    /// Local anchor index of each lane.
    pub anchors: [u32; LANES],
    /// m = max_c x_c of each lane's anchor, over all 81 classes.
    pub max: [f32; LANES],
}

/// What the kernels write.
pub(crate) struct GroupOut {
    /// `e[c][g]` = exp(x_c - m) of lane g.
    pub e: [[f64; LANES]; NUM_CLASSES],
    /// `S[g]`, the sum of `e[c][g]` over c = 0..80 in that order.
    pub sums: [f64; LANES],
    /// `hits[..num_hits]`: each foreground class c (ascending) with a lane where
    /// `e[c][g] > S[g] * prefilter`, and the mask of those lanes (bit g).
    pub hits: [(u8, u8); NUM_CLASSES - 1],
    pub num_hits: usize,
}

impl GroupOut {
    pub(crate) fn new() -> Self {
        GroupOut { e: [[0.0; LANES]; NUM_CLASSES], sums: [0.0; LANES], hits: [(0, 0); NUM_CLASSES - 1], num_hits: 0 }
    }

    /// Records the hits from the lane masks of each foreground class (branch-free).
    #[inline(always)]
    fn set_hits(&mut self, mask: impl Fn(&[f64; LANES]) -> u8) {
        let mut n = 0;
        for c in 1..NUM_CLASSES {
            let m = mask(&self.e[c]);
            self.hits[n] = (c as u8, m);
            n += (m != 0) as usize;
        }
        self.num_hits = n;
    }
}

impl Group<'_> {
    /// Checks what the kernels rely on to read without bounds checks: 81 rows, every
    /// anchor in its row.
    ///
    /// # Panics
    /// When a lane's anchor is outside the level or `logits` is shorter than 81 rows.
    #[inline(always)]
    fn check(&self) {
        assert!(
            self.logits.len() >= NUM_CLASSES * self.num_anchors && self.anchors.iter().all(|&a| (a as usize) < self.num_anchors),
            "softmax group out of the level"
        );
    }

    /// Whether the lanes hold consecutive anchors (then each row is one contiguous load,
    /// the same values as the gather).
    #[inline(always)]
    fn consecutive(&self) -> bool {
        (0..LANES).all(|g| self.anchors[g] == self.anchors[0] + g as u32)
    }
}

/// The portable kernel: for c = 0..80, `e[c][g] = exp_lanes(f64(x_c) - f64(m))`,
/// `S[g] += e[c][g]`; then the hits with `floor[g] = S[g] * prefilter`.
fn softmax_portable(group: &Group<'_>, prefilter: f64, out: &mut GroupOut) {
    group.check();
    let m = group.max.map(f64::from);
    let mut sum = [0.0f64; LANES];
    for (c, ec) in out.e.iter_mut().enumerate() {
        let row = &group.logits[c * group.num_anchors..][..group.num_anchors];
        let arg: [f64; LANES] = std::array::from_fn(|g| row[group.anchors[g] as usize] as f64 - m[g]);
        *ec = exp::exp_lanes(arg);
        for g in 0..LANES {
            sum[g] += ec[g];
        }
    }
    out.sums = sum;
    let floor = sum.map(|s| s * prefilter);
    out.set_hits(|e| (0..LANES).fold(0u8, |b, g| b | (((e[g] > floor[g]) as u8) << g)));
}

/// Class rows per step of the AVX2 kernel (two registers each) and of the AVX-512 kernel:
/// their exponentials are computed interleaved (see [`exp::exp_fast_avx512`]), enough
/// independent work to keep the FMA ports busy without spilling registers (measured: 3
/// and 9 rows are the fastest); the sum still adds the rows in class order.
const ROWS_AVX2: usize = 3;
const ROWS_AVX512: usize = 9;
const _: () = assert!(NUM_CLASSES.is_multiple_of(ROWS_AVX2) && NUM_CLASSES.is_multiple_of(ROWS_AVX512));

/// [`softmax_portable`] with AVX2 intrinsics (the 8 lanes as two registers, [`ROWS_AVX2`]
/// rows at a time, each row read by one gather): the same operations in the same order, so
/// the same bits. The arguments
/// x_c - m are <= 0 (m is the max); when one is below the fast range of `exp` (logits
/// more than 707 apart), the group is redone by [`softmax_portable`], which handles it.
///
/// # Safety
/// The CPU must support AVX2 and FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn softmax_avx2(group: &Group<'_>, prefilter: f64, out: &mut GroupOut) {
    use std::arch::x86_64::*;
    group.check();
    let mut min_arg = _mm256_setzero_pd();
    let m = [_mm256_cvtps_pd(_mm_loadu_ps(group.max.as_ptr())), _mm256_cvtps_pd(_mm_loadu_ps(group.max.as_ptr().add(4)))];
    let a = group.anchors.map(|a| a as usize);
    let idx = _mm256_loadu_si256(group.anchors.as_ptr().cast());
    let run = group.consecutive();
    let mut row = group.logits.as_ptr();
    let mut sum = [_mm256_setzero_pd(); 2];
    for rows in out.e.chunks_exact_mut(ROWS_AVX2) {
        let mut args = [_mm256_setzero_pd(); 2 * ROWS_AVX2];
        for r in 0..ROWS_AVX2 {
            // SAFETY (reads): `check` puts every anchor (and a run's last) inside each of
            // the 81 rows.
            let x = if run { _mm256_loadu_ps(row.add(a[0])) } else { _mm256_i32gather_ps::<4>(row, idx) };
            let halves = [_mm256_castps256_ps128(x), _mm256_extractf128_ps::<1>(x)];
            for h in 0..2 {
                args[2 * r + h] = _mm256_sub_pd(_mm256_cvtps_pd(halves[h]), m[h]);
                min_arg = _mm256_min_pd(min_arg, args[2 * r + h]);
            }
            row = row.wrapping_add(group.num_anchors);
        }
        let e = exp::exp_fast_avx2(args);
        for (r, ec) in rows.iter_mut().enumerate() {
            for h in 0..2 {
                _mm256_storeu_pd(ec.as_mut_ptr().add(4 * h), e[2 * r + h]);
                sum[h] = _mm256_add_pd(sum[h], e[2 * r + h]);
            }
        }
    }
    if _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GE_OQ>(min_arg, _mm256_set1_pd(exp::FAST_MIN))) != 0b1111 {
        return softmax_portable(group, prefilter, out);
    }
    _mm256_storeu_pd(out.sums.as_mut_ptr(), sum[0]);
    _mm256_storeu_pd(out.sums.as_mut_ptr().add(4), sum[1]);
    let floor = sum.map(|s| _mm256_mul_pd(s, _mm256_set1_pd(prefilter)));
    out.set_hits(|e| {
        let lo = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_loadu_pd(e.as_ptr()), floor[0]));
        let hi = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_loadu_pd(e.as_ptr().add(4)), floor[1]));
        (lo | hi << 4) as u8
    });
}

/// [`softmax_portable`] with AVX-512F intrinsics (the 8 lanes in one register,
/// [`ROWS_AVX512`] rows at a time, the rows read by an AVX2 gather): the same operations in the same
/// order, so the same bits; the fast range of `exp` is checked as in [`softmax_avx2`].
///
/// # Safety
/// The CPU must support AVX-512F and AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx2")]
unsafe fn softmax_avx512(group: &Group<'_>, prefilter: f64, out: &mut GroupOut) {
    use std::arch::x86_64::*;
    group.check();
    let m = _mm512_cvtps_pd(_mm256_loadu_ps(group.max.as_ptr()));
    let idx = _mm256_loadu_si256(group.anchors.as_ptr().cast());
    let first = group.anchors[0] as usize;
    let run = group.consecutive();
    let mut row = group.logits.as_ptr();
    let mut sum = _mm512_setzero_pd();
    let mut min_arg = _mm512_setzero_pd();
    for rows in out.e.chunks_exact_mut(ROWS_AVX512) {
        let mut args = [_mm512_setzero_pd(); ROWS_AVX512];
        for arg in args.iter_mut() {
            // SAFETY (reads): `check` puts every anchor (and a run's last) inside each of
            // the 81 rows; anchors < num_anchors <= i32::MAX.
            let x = if run { _mm256_loadu_ps(row.add(first)) } else { _mm256_i32gather_ps::<4>(row, idx) };
            *arg = _mm512_sub_pd(_mm512_cvtps_pd(x), m);
            min_arg = _mm512_min_pd(min_arg, *arg);
            row = row.wrapping_add(group.num_anchors);
        }
        let e = exp::exp_fast_avx512(args);
        for (ec, e) in rows.iter_mut().zip(e) {
            _mm512_storeu_pd(ec.as_mut_ptr(), e);
            sum = _mm512_add_pd(sum, e);
        }
    }
    if _mm512_cmp_pd_mask::<_CMP_GE_OQ>(min_arg, _mm512_set1_pd(exp::FAST_MIN)) != 0xFF {
        return softmax_portable(group, prefilter, out);
    }
    _mm512_storeu_pd(out.sums.as_mut_ptr(), sum);
    let floor = _mm512_mul_pd(sum, _mm512_set1_pd(prefilter));
    out.set_hits(|e| _mm512_cmp_pd_mask::<_CMP_GT_OQ>(_mm512_loadu_pd(e.as_ptr()), floor));
}

/// The softmax of a group with the kernel of `isa`: fills `out` (exponentials, sums and
/// the hits for `prefilter`).
///
/// # Panics
/// When a lane's anchor is outside the level or `logits` is shorter than 81 rows.
#[inline]
pub(crate) fn softmax_lanes(isa: Isa, group: &Group<'_>, prefilter: f64, out: &mut GroupOut) {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F and AVX2
        // (super::Isa).
        Level::Avx512 => unsafe { softmax_avx512(group, prefilter, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX2 and FMA.
        Level::Avx2 => unsafe { softmax_avx2(group, prefilter, out) },
        Level::Portable => softmax_portable(group, prefilter, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    fn run(isa: Isa, group: &Group<'_>) -> (Vec<u64>, Vec<u64>, Vec<(u8, u8)>) {
        let mut out = GroupOut::new();
        softmax_lanes(isa, group, 0.01, &mut out);
        let e = out.e.iter().flatten().map(|v| v.to_bits()).collect();
        (out.sums.map(f64::to_bits).to_vec(), e, out.hits[..out.num_hits].to_vec())
    }

    #[test]
    fn every_isa_gives_the_same_bits() {
        let mut rng = Rng::new(31);
        let a_l = 50;
        let x: Vec<f32> = (0..NUM_CLASSES * a_l)
            .map(|i| match i % 7 {
                0 => (rng.next_f64() * 2000.0 - 1000.0) as f32, // lanes beyond the fast exp range
                _ => (rng.next_f64() * 30.0 - 15.0) as f32,
            })
            .collect();
        let max = |a: u32| (0..NUM_CLASSES).map(|c| x[c * a_l + a as usize]).fold(f32::NEG_INFINITY, f32::max);
        for (first, contiguous) in (0..a_l as u32 - 7).flat_map(|f| [(f, false), (f, true)]) {
            let anchors = if contiguous {
                std::array::from_fn(|g| first + g as u32) // consecutive: contiguous loads
            } else {
                [first, first + 1, first + 3, first, first + 7, first + 2, first + 5, first + 6]
            };
            let group = Group { logits: &x, num_anchors: a_l, anchors, max: anchors.map(max) };
            let want = run(Isa::PORTABLE, &group);
            assert!(!want.2.is_empty() && want.2.len() < NUM_CLASSES - 1 && want.2.iter().all(|h| h.1 != 0));
            for isa in Isa::supported() {
                assert_eq!(run(isa, &group), want, "{isa:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "softmax group out of the level")]
    fn anchors_outside_the_level_panic() {
        let x = vec![0.0f32; NUM_CLASSES * 10];
        let group = Group { logits: &x, num_anchors: 10, anchors: [3, 4, 5, 6, 7, 8, 9, 10], max: [0.0; LANES] };
        softmax_lanes(Isa::best(), &group, 0.01, &mut GroupOut::new());
    }
}

