//! The exact float64 softmax of up to [`LANES`] anchors at once, one per lane (the
//! survivors of the quick reject; docs/postprocess.md, "Scores"): a strided gather of the
//! 81 logits, m = max, e_c = [`exp`](super::exp) (x_c - m), S summed in class order
//! 0..80, and prefilter masks that spare the division e_c / S for pairs that cannot
//! pass the threshold. Portable, AVX2 and AVX-512 versions, the same bits (see [`super`]).

use super::{exp, Isa, Level, LANES};
use crate::layout::NUM_CLASSES;

/// One group of anchors for the softmax kernels.
#[derive(Clone, Copy)]
pub(crate) struct Group<'a> {
    /// One image's level slice (81 rows of `num_anchors`).
    pub logits: &'a [f32],
    pub num_anchors: usize,
    /// Local anchor indices, one per lane (a lane may repeat an anchor).
    pub anchors: [usize; LANES],
    /// See [`crate::scores::ScoreConfig::prefilter`].
    pub prefilter: f64,
}

/// What the softmax kernels write: exponentials `e[c][g]` and prefilter masks.
pub(crate) struct GroupOut {
    pub e: [[f64; LANES]; NUM_CLASSES],
    pub masks: [u8; NUM_CLASSES],
}

impl GroupOut {
    pub(crate) fn new() -> Self {
        GroupOut { e: [[0.0; LANES]; NUM_CLASSES], masks: [0; NUM_CLASSES] }
    }
}

/// Exponentials e[c][g] = exp(x_c - m) and sums S[g] (class order 0..80) of up to
/// [`LANES`] anchors at once, one per lane, and the prefilter masks: bit g of
/// `masks[c]` is set when e[c][g] > S[g] * `prefilter`.
#[inline(always)]
fn softmax_lanes_body(group: &Group<'_>, out: &mut GroupOut) -> [f64; LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    let mut m = [f64::NEG_INFINITY; LANES];
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        for g in 0..LANES {
            let v = row[anchors[g]] as f64;
            ec[g] = v;
            m[g] = if v > m[g] { v } else { m[g] };
        }
    }
    let mut sum = [0.0f64; LANES];
    for ec in e.iter_mut() {
        let mut arg = [0.0f64; LANES];
        for g in 0..LANES {
            arg[g] = ec[g] - m[g];
        }
        *ec = exp::exp_lanes(arg);
        for g in 0..LANES {
            sum[g] += ec[g];
        }
    }
    let floor = sum.map(|s| s * prefilter);
    for (mask, ec) in masks.iter_mut().zip(e.iter()) {
        *mask = (0..LANES).fold(0u8, |b, g| b | (((ec[g] > floor[g]) as u8) << g));
    }
    sum
}

/// [`softmax_lanes_body`] with AVX2 intrinsics (the 8 float64 lanes as two registers):
/// the same operations in the same order (`_mm256_max_pd(v, m)` is
/// `if v > m { v } else { m }`, [`exp::exp_lanes_avx2`] matches [`exp::exp_lanes`]), so
/// the same bits.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn softmax_lanes_avx2(group: &Group<'_>, out: &mut GroupOut) -> [f64; LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    use std::arch::x86_64::*;
    let mut m = [_mm256_set1_pd(f64::NEG_INFINITY); 2];
    let run = consecutive(&anchors);
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        let x = if run { row[anchors[0]..anchors[0] + LANES].try_into().unwrap_or_default() } else { anchors.map(|a| row[a]) };
        for (h, mh) in m.iter_mut().enumerate() {
            let v = _mm256_cvtps_pd(_mm_loadu_ps(x.as_ptr().add(4 * h)));
            _mm256_storeu_pd(ec.as_mut_ptr().add(4 * h), v);
            *mh = _mm256_max_pd(v, *mh);
        }
    }
    let mut sum = [_mm256_setzero_pd(); 2];
    for ec in e.iter_mut() {
        for h in 0..2 {
            let p = ec.as_mut_ptr().add(4 * h);
            let v = exp::exp_lanes_avx2(_mm256_sub_pd(_mm256_loadu_pd(p), m[h]));
            _mm256_storeu_pd(p, v);
            sum[h] = _mm256_add_pd(sum[h], v);
        }
    }
    let floor = sum.map(|s| _mm256_mul_pd(s, _mm256_set1_pd(prefilter)));
    for (mask, ec) in masks.iter_mut().zip(e.iter()) {
        let lo = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_loadu_pd(ec.as_ptr()), floor[0]));
        let hi = _mm256_movemask_pd(_mm256_cmp_pd::<_CMP_GT_OQ>(_mm256_loadu_pd(ec.as_ptr().add(4)), floor[1]));
        *mask = (lo | hi << 4) as u8;
    }
    let mut out = [0.0f64; LANES];
    _mm256_storeu_pd(out.as_mut_ptr(), sum[0]);
    _mm256_storeu_pd(out.as_mut_ptr().add(4), sum[1]);
    out
}

/// [`softmax_lanes_body`] with AVX-512F intrinsics (the 8 float64 lanes in one
/// register): the same operations in the same order, so the same bits.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn softmax_lanes_avx512(group: &Group<'_>, out: &mut GroupOut) -> [f64; LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    use std::arch::x86_64::*;
    let mut m = _mm512_set1_pd(f64::NEG_INFINITY);
    let run = consecutive(&anchors);
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        let v = if run {
            _mm512_cvtps_pd(_mm256_loadu_ps(row[anchors[0]..anchors[0] + LANES].as_ptr()))
        } else {
            _mm512_cvtps_pd(_mm256_loadu_ps(anchors.map(|a| row[a]).as_ptr()))
        };
        _mm512_storeu_pd(ec.as_mut_ptr(), v);
        m = _mm512_max_pd(v, m);
    }
    let mut sum = _mm512_setzero_pd();
    for ec in e.iter_mut() {
        let v = exp::exp_lanes_avx512(_mm512_sub_pd(_mm512_loadu_pd(ec.as_ptr()), m));
        _mm512_storeu_pd(ec.as_mut_ptr(), v);
        sum = _mm512_add_pd(sum, v);
    }
    let floor = _mm512_mul_pd(sum, _mm512_set1_pd(prefilter));
    for (mask, ec) in masks.iter_mut().zip(e.iter()) {
        *mask = _mm512_cmp_pd_mask::<_CMP_GT_OQ>(_mm512_loadu_pd(ec.as_ptr()), floor);
    }
    let mut out = [0.0f64; LANES];
    _mm512_storeu_pd(out.as_mut_ptr(), sum);
    out
}

/// Whether the lanes hold consecutive anchors (then each row is one contiguous load,
/// the same values as the gather).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn consecutive(anchors: &[usize; LANES]) -> bool {
    (0..LANES).all(|g| anchors[g] == anchors[0] + g)
}

/// [`softmax_lanes_body`] with the kernel of `isa`: `out.e[c][g]` = exp(x_c - m) and
/// `out.masks`, returning the sums S.
#[inline]
pub(crate) fn softmax_lanes(isa: Isa, group: &Group<'_>, out: &mut GroupOut) -> [f64; LANES] {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F (super::Isa).
        Level::Avx512 => unsafe { softmax_lanes_avx512(group, out) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX2.
        Level::Avx2 => unsafe { softmax_lanes_avx2(group, out) },
        Level::Portable => softmax_lanes_body(group, out),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    #[test]
    fn softmax_lanes_simd_and_portable_agree() {
        let mut rng = Rng::new(31);
        let a_l = 50;
        let x: Vec<f32> = (0..NUM_CLASSES * a_l)
            .map(|i| match i % 7 {
                0 => (rng.next_f64() * 2000.0 - 1000.0) as f32, // lanes beyond the fast exp range
                _ => (rng.next_f64() * 30.0 - 15.0) as f32,
            })
            .collect();
        let run = |f: &dyn Fn(&Group<'_>, &mut GroupOut) -> [f64; LANES], anchors| {
            let mut out = GroupOut::new();
            let s = f(&Group { logits: &x, num_anchors: a_l, anchors, prefilter: 0.01 }, &mut out);
            (s.map(f64::to_bits), out.e.map(|r| r.map(f64::to_bits)), out.masks)
        };
        for (first, contiguous) in (0..a_l - 7).flat_map(|f| [(f, false), (f, true)]) {
            let anchors = if contiguous {
                std::array::from_fn(|g| first + g) // consecutive: contiguous loads
            } else {
                [first, first + 1, first + 3, first, first + 7, first + 2, first + 5, first + 6]
            };
            let want = run(&|g, o| softmax_lanes_body(g, o), anchors);
            assert!(want.2.iter().any(|&b| b != 0) && want.2.iter().any(|&b| b != 0xFF));
            for isa in Isa::supported() {
                assert_eq!(run(&|g, o| softmax_lanes(isa, g, o), anchors), want, "{isa:?}");
            }
        }
    }
}
