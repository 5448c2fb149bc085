//! IoU and greedy NMS (docs/postprocess.md, "Per-class selection and NMS"; MLCommons'
//! `calc_iou_tensor` and the loop of `Encoder.decode_single` in
//! `vision/classification_and_detection/python/models/ssd_r34.py`, with the overlap
//! clamped at 0, which the reference means to do but does not), in one module: the IoU,
//! the greedy loop in a plain version and, on x86-64, blocked versions with the kept boxes
//! as columns and 8 (AVX2) or 16 (AVX-512) IoUs at a time, which keep the same set (see
//! [`crate::simd`]), and the single-class `nms` of the bindings. The pipeline runs the
//! greedy loop class after class with the same buffers ([`NmsScratch`]).

use crate::error::Error;
use crate::simd::{Isa, Level};
// The single-class `nms` (for the bindings and `crate::fuzzing`) and what it needs.
#[cfg(any(feature = "python", feature = "fuzzing", test))]
use {crate::simd::reject::all_finite, std::cmp::Ordering};

/// Area of an ltrb box, float32: max(r - l, 0) * max(b - t, 0).
#[inline]
pub(crate) fn area(b: &[f32; 4]) -> f32 {
    (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0)
}

/// IoU from two boxes and their [`area`]s, float32, in the defined operation order.
#[inline]
pub(crate) fn iou_with_areas(b1: &[f32; 4], area1: f32, b2: &[f32; 4], area2: f32) -> f32 {
    let iw = (b1[2].min(b2[2]) - b1[0].max(b2[0])).max(0.0);
    let ih = (b1[3].min(b2[3]) - b1[1].max(b2[1])).max(0.0);
    let inter = iw * ih;
    let union = (area1 + area2) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

/// IoU of two ltrb boxes in float32, exactly as defined:
/// iw = max(min(r1, r2) - max(l1, l2), 0), ih likewise, inter = iw*ih,
/// union = (area1 + area2) - inter, iou = inter/union if union > 0 else 0.
/// Zero-area and inverted boxes have IoU 0 with everything.
#[cfg(test)]
pub(crate) fn iou(b1: &[f32; 4], b2: &[f32; 4]) -> f32 {
    iou_with_areas(b1, area(b1), b2, area(b2))
}

/// The processing order of scored boxes: score descending, index ascending
/// (-0.0 and 0.0 count as equal scores).
#[cfg(any(feature = "python", feature = "fuzzing", test))]
fn score_order(scores: &[f32]) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_unstable_by(|&i, &j| {
        let (si, sj) = (scores[i] + 0.0, scores[j] + 0.0);
        match sj.total_cmp(&si) {
            Ordering::Equal => i.cmp(&j),
            o => o,
        }
    });
    order
}

/// Checks an NMS IoU threshold: in (0, 1], and positive as float32, the type IoUs are
/// compared in (a value below 2^-150, such as 1e-50, is 0 as float32: every IoU, 0
/// included, would then be >= it, which the blocked kernels, skipping blocks without
/// overlap as "IoU 0 < threshold", do not honour; found by the kernel fuzz case).
pub(crate) fn check_iou_threshold(iou_threshold: f64) -> Result<(), Error> {
    if !(iou_threshold > 0.0 && iou_threshold <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "iou_threshold",
            value: iou_threshold.to_string(),
            expected: "a value in (0, 1]",
        });
    }
    if (iou_threshold as f32) <= 0.0 {
        return Err(Error::InvalidParameter {
            name: "iou_threshold",
            value: iou_threshold.to_string(),
            expected: "a value in (0, 1] that is positive as float32 (at least 1.4e-45; IoUs are compared as float32)",
        });
    }
    Ok(())
}

/// Single-class NMS of scored boxes (`_native.nms`): sorts by (score descending, index
/// ascending), then [`greedy_nms`]. Returns the indices of the kept boxes in processing
/// order; no cut.
///
/// Errors (`ValueError`): lengths differ, a non-finite box or score, `iou_threshold`
/// outside (0, 1].
/// `iou_threshold` is checked as given, then compared as float32.
#[cfg(any(feature = "python", feature = "fuzzing", test))]
pub(crate) fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>, Error> {
    if boxes.len() != scores.len() {
        return Err(Error::InvalidArgument(format!(
            "boxes has {} rows but scores has {} values; expected the same number",
            boxes.len(),
            scores.len()
        )));
    }
    check_iou_threshold(iou_threshold)?;
    if !all_finite(boxes.as_flattened()) {
        return Err(Error::InvalidArgument("boxes contains NaN or infinite values".into()));
    }
    if !all_finite(scores) {
        return Err(Error::InvalidArgument("scores contains NaN or infinite values".into()));
    }
    let order = score_order(scores);
    let ordered: Vec<[f32; 4]> = order.iter().map(|&i| boxes[i]).collect();
    Ok(greedy_nms(Isa::best(), &ordered, iou_threshold as f32).into_iter().map(|p| order[p]).collect())
}

/// Buffers of the NMS kernels, reused from one class to the next.
#[derive(Default)]
pub(crate) struct NmsScratch {
    /// Columns l, t, r, b, area of the kept boxes, zero past the kept ones.
    cols: [Vec<f32>; 5],
}

/// Greedy NMS over boxes already in processing order: box i is kept when its IoU with
/// every box kept before it is `< iou_threshold` (IoU as [`iou_with_areas`]). Appends the
/// kept positions to `kept`, in order. Boxes must be finite (the pipeline drops others;
/// the single-class `nms` refuses them). `isa` picks the kernel (the same kept set with
/// every one). Stops once `limit` boxes are kept (the rest cannot change those).
pub(crate) fn greedy_nms_into(isa: Isa, boxes: &[[f32; 4]], iou_threshold: f32, limit: usize, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
    let boxes = if limit == 0 { &boxes[..0] } else { boxes };
    match isa.level() {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of these levels is only made when the CPU has AVX2 (crate::simd::Isa).
        Level::Avx2 => unsafe { greedy_nms_avx2(boxes, iou_threshold, limit, scratch, kept) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F (crate::simd::Isa).
        Level::Avx512 => unsafe { greedy_nms_avx512(boxes, iou_threshold, limit, scratch, kept) },
        Level::Portable => greedy_nms_plain(boxes, iou_threshold, limit, kept),
    }
}

/// [`greedy_nms_into`] into a new vector.
#[cfg(any(feature = "python", feature = "fuzzing", test))]
pub(crate) fn greedy_nms(isa: Isa, boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<usize> {
    let mut kept = Vec::new();
    greedy_nms_into(isa, boxes, iou_threshold, usize::MAX, &mut NmsScratch::default(), &mut kept);
    kept
}

/// The plain greedy loop: each candidate against the kept boxes in order, stopping at the
/// first that suppresses it.
fn greedy_nms_plain(boxes: &[[f32; 4]], iou_threshold: f32, limit: usize, kept: &mut Vec<usize>) {
    let first = kept.len();
    for (i, b) in boxes.iter().enumerate() {
        let a = area(b);
        if kept[first..].iter().all(|&k| iou_with_areas(&boxes[k], area(&boxes[k]), b, a) < iou_threshold) {
            kept.push(i);
            if kept.len() - first == limit {
                break;
            }
        }
    }
}

/// Kept boxes compared at once (one AVX2 register of float32).
#[cfg(target_arch = "x86_64")]
const BLOCK: usize = 8;

/// Greedy NMS with the kept boxes as columns (l, t, r, b, area) and 8 IoUs at a time in
/// AVX2 registers, stopping after the first block with IoU >= threshold. The columns are
/// zero past the kept boxes: a zero box has IoU 0 with every box (no overlap; union =
/// area of the other box, or 0 and then IoU 0), below any threshold, so whole blocks are
/// compared. The operations are those of [`iou_with_areas`] (`_mm256_min_ps(a, b)` is
/// `if a < b { a } else { b }`, max likewise; they differ from `f32::min`/`max` only in
/// the sign of a zero overlap, which clamping at 0 makes irrelevant; `union > 0 ?
/// inter/union : 0` as a blend), so the kept set is that of [`greedy_nms_plain`].
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn greedy_nms_avx2(boxes: &[[f32; 4]], iou_threshold: f32, limit: usize, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
    use std::arch::x86_64::*;
    let padded = boxes.len().div_ceil(BLOCK) * BLOCK;
    for col in scratch.cols.iter_mut() {
        col.clear();
        col.resize(padded, 0.0);
    }
    let cols = scratch.cols.each_mut().map(|c| c.as_mut_ptr());
    let zero = _mm256_setzero_ps();
    let thr = _mm256_set1_ps(iou_threshold);
    let mut k = 0;
    for (i, b) in boxes.iter().enumerate() {
        let a = area(b);
        let (bl, bt, br, bb, ba) = (_mm256_set1_ps(b[0]), _mm256_set1_ps(b[1]), _mm256_set1_ps(b[2]), _mm256_set1_ps(b[3]), _mm256_set1_ps(a));
        let mut suppressed = false;
        let mut j = 0;
        while j < k {
            // SAFETY: j < k <= i < boxes.len(), j a multiple of 8, so j + 8 <= padded,
            // every column's length.
            let [kl, kt, kr, kb, ka] = cols.map(|c| _mm256_loadu_ps(c.add(j)));
            let iw = _mm256_max_ps(_mm256_sub_ps(_mm256_min_ps(kr, br), _mm256_max_ps(kl, bl)), zero);
            let ih = _mm256_max_ps(_mm256_sub_ps(_mm256_min_ps(kb, bb), _mm256_max_ps(kt, bt)), zero);
            let inter = _mm256_mul_ps(iw, ih);
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GT_OQ>(inter, zero)) == 0 {
                // No overlap in the block (inter is 0, or NaN from an infinite width times
                // 0): every IoU is 0 (NaN gives a NaN union, hence 0 too), below the
                // threshold; most blocks at realistic densities, which skip the division.
                j += BLOCK;
                continue;
            }
            let union = _mm256_sub_ps(_mm256_add_ps(ka, ba), inter);
            let iou = _mm256_blendv_ps(zero, _mm256_div_ps(inter, union), _mm256_cmp_ps::<_CMP_GT_OQ>(union, zero));
            if _mm256_movemask_ps(_mm256_cmp_ps::<_CMP_GE_OQ>(iou, thr)) != 0 {
                suppressed = true;
                break;
            }
            j += BLOCK;
        }
        if !suppressed {
            kept.push(i);
            // SAFETY: k <= i < padded.
            for (c, v) in cols.iter().zip([b[0], b[1], b[2], b[3], a]) {
                *c.add(k) = v;
            }
            k += 1;
            if k == limit {
                break;
            }
        }
    }
}

/// Kept boxes compared at once by the AVX-512 kernel (one register of float32).
#[cfg(target_arch = "x86_64")]
const BLOCK_AVX512: usize = 16;

/// [`greedy_nms_avx2`] with 16 IoUs at a time in AVX-512 registers: the same operations
/// per lane (`_mm512_min_ps`/`_mm512_max_ps` are `_mm256_min_ps`/`_mm256_max_ps` lane by
/// lane; the blend `union > 0 ? inter/union : 0` is a zero-masked division), the same
/// zero padding of the columns, so the same kept set.
///
/// # Safety
/// The CPU must support AVX-512F.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
unsafe fn greedy_nms_avx512(boxes: &[[f32; 4]], iou_threshold: f32, limit: usize, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
    use std::arch::x86_64::*;
    let padded = boxes.len().div_ceil(BLOCK_AVX512) * BLOCK_AVX512;
    for col in scratch.cols.iter_mut() {
        col.clear();
        col.resize(padded, 0.0);
    }
    let cols = scratch.cols.each_mut().map(|c| c.as_mut_ptr());
    let zero = _mm512_setzero_ps();
    let thr = _mm512_set1_ps(iou_threshold);
    let mut k = 0;
    for (i, b) in boxes.iter().enumerate() {
        let a = area(b);
        let (bl, bt, br, bb, ba) = (_mm512_set1_ps(b[0]), _mm512_set1_ps(b[1]), _mm512_set1_ps(b[2]), _mm512_set1_ps(b[3]), _mm512_set1_ps(a));
        let mut suppressed = false;
        let mut j = 0;
        while j < k {
            // SAFETY: j < k <= i < boxes.len(), j a multiple of 16, so j + 16 <= padded,
            // every column's length.
            let [kl, kt, kr, kb, ka] = cols.map(|c| _mm512_loadu_ps(c.add(j)));
            let iw = _mm512_max_ps(_mm512_sub_ps(_mm512_min_ps(kr, br), _mm512_max_ps(kl, bl)), zero);
            let ih = _mm512_max_ps(_mm512_sub_ps(_mm512_min_ps(kb, bb), _mm512_max_ps(kt, bt)), zero);
            let inter = _mm512_mul_ps(iw, ih);
            if _mm512_cmp_ps_mask::<_CMP_GT_OQ>(inter, zero) == 0 {
                // No overlap in the block: every IoU is 0 (see greedy_nms_avx2).
                j += BLOCK_AVX512;
                continue;
            }
            let union = _mm512_sub_ps(_mm512_add_ps(ka, ba), inter);
            let iou = _mm512_maskz_div_ps(_mm512_cmp_ps_mask::<_CMP_GT_OQ>(union, zero), inter, union);
            if _mm512_cmp_ps_mask::<_CMP_GE_OQ>(iou, thr) != 0 {
                suppressed = true;
                break;
            }
            j += BLOCK_AVX512;
        }
        if !suppressed {
            kept.push(i);
            // SAFETY: k <= i < padded.
            for (c, v) in cols.iter().zip([b[0], b[1], b[2], b[3], a]) {
                *c.add(k) = v;
            }
            k += 1;
            if k == limit {
                break;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    #[test]
    fn iou_edge_cases() {
        let a = [0.0f32, 0.0, 1.0, 1.0];
        // Identical.
        assert_eq!(iou(&a, &a), 1.0);
        // Disjoint, both overlaps negative: 0 (the reference would give a positive value).
        assert_eq!(iou(&a, &[2.0, 2.0, 3.0, 3.0]), 0.0);
        // Disjoint in x only.
        assert_eq!(iou(&a, &[1.5, 0.0, 2.5, 1.0]), 0.0);
        // Touching edges.
        assert_eq!(iou(&a, &[1.0, 0.0, 2.0, 1.0]), 0.0);
        // Contained: inter = 0.25, union = 1.
        assert_eq!(iou(&a, &[0.25, 0.25, 0.75, 0.75]), 0.25);
        // Half overlap: inter 0.5, union 1.5.
        assert_eq!(iou(&a, &[0.5, 0.0, 1.5, 1.0]), 0.5f32 / 1.5f32);
        // Zero-area boxes.
        let p = [0.5f32, 0.5, 0.5, 0.5];
        assert_eq!(iou(&p, &p), 0.0);
        assert_eq!(iou(&a, &p), 0.0);
        // Inverted box (r < l): area 0, IoU 0, even with itself.
        let inv = [1.0f32, 0.0, 0.0, 1.0];
        assert_eq!(iou(&inv, &inv), 0.0);
        assert_eq!(iou(&a, &inv), 0.0);
    }

    #[test]
    fn iou_operation_order() {
        let b1 = [0.1f32, 0.2, 0.7, 0.9];
        let b2 = [0.3f32, 0.1, 0.8, 0.6];
        let iw = (0.7f32.min(0.8) - 0.1f32.max(0.3)).max(0.0);
        let ih = (0.9f32.min(0.6) - 0.2f32.max(0.1)).max(0.0);
        let inter = iw * ih;
        let a1 = (0.7f32 - 0.1) * (0.9f32 - 0.2);
        let a2 = (0.8f32 - 0.3) * (0.6f32 - 0.1);
        assert_eq!(iou(&b1, &b2), inter / ((a1 + a2) - inter));
        assert_eq!(iou(&b1, &b2), iou(&b2, &b1));
    }

    fn greedy_best(boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<usize> {
        greedy_nms(Isa::best(), boxes, iou_threshold)
    }

    #[test]
    fn greedy_order_and_threshold() {
        let boxes = [
            [0.0f32, 0.0, 1.0, 1.0],
            [0.0, 0.0, 1.0, 0.5],  // IoU 0.5 with box 0: suppressed at threshold 0.5
            [0.0, 0.5, 1.0, 1.0],  // IoU 0.5 with box 0
            [2.0, 2.0, 3.0, 3.0],  // disjoint
            [2.0, 2.0, 3.0, 3.0],  // identical to 3
        ];
        assert_eq!(greedy_best(&boxes, 0.5), vec![0, 3]);
        // Strictly below: at 0.5000001 the half boxes (0.5) survive; 1 and 2 do not overlap.
        assert_eq!(greedy_best(&boxes, 0.500_000_1), vec![0, 1, 2, 3]);
        assert_eq!(greedy_best(&boxes, 1.0), vec![0, 1, 2, 3]);
        // A suppressed box does not suppress others.
        let chain = [[0.0f32, 0.0, 1.0, 1.0], [0.4, 0.0, 1.4, 1.0], [0.8, 0.0, 1.8, 1.0]];
        assert_eq!(greedy_best(&chain, 0.4), vec![0, 2]);
        assert!(greedy_best(&[], 0.5).is_empty());
    }

    #[test]
    fn nms_sorts_by_score_then_index() {
        let b = [0.0f32, 0.0, 1.0, 1.0];
        let far = [5.0f32, 5.0, 6.0, 6.0];
        // Equal scores: the lower index wins.
        assert_eq!(nms(&[b, b, far], &[0.5, 0.5, 0.1], 0.5).unwrap(), vec![0, 2]);
        assert_eq!(nms(&[far, b, b], &[0.1, 0.5, 0.9], 0.5).unwrap(), vec![2, 0]);
        // -0.0 == 0.0: index order.
        assert_eq!(nms(&[far, b], &[0.0, -0.0], 0.5).unwrap(), vec![0, 1]);
        assert_eq!(nms(&[b, far], &[-1.0, -2.0], 0.5).unwrap(), vec![0, 1]);
        assert!(nms(&[], &[], 0.5).unwrap().is_empty());
    }

    #[test]
    fn nms_rejects_bad_input() {
        let b = [0.0f32, 0.0, 1.0, 1.0];
        assert!(nms(&[b], &[0.5, 0.4], 0.5).is_err());
        assert!(nms(&[b], &[f32::NAN], 0.5).is_err());
        assert!(nms(&[[0.0, f32::INFINITY, 1.0, 1.0]], &[0.5], 0.5).is_err());
        for t in [0.0f64, -0.1, 1.000_000_01, f64::NAN] {
            assert!(nms(&[b], &[0.5], t).is_err(), "{t}");
        }
    }


    /// Found by the kernel fuzz case (fuzz/README.md, `random_kernels`): an `iou_threshold`
    /// in (0, 1] as given but 0 as float32 (below 2^-150, e.g. 1e-50) passed the check;
    /// compared as float32, IoU 0 >= 0 would suppress every box after the first, as the
    /// plain loop and the numpy reference do, but the blocked kernels (AVX2, AVX-512) skip
    /// a block without overlap as "IoU 0, below every threshold" and kept disjoint boxes.
    /// Such a threshold is now refused ([`check_iou_threshold`]), by `nms` and by
    /// `Params::validate`.
    #[test]
    fn threshold_that_rounds_to_zero() {
        let boxes = [[0.0f32, 0.0, 1.0, 1.0], [2.0, 2.0, 3.0, 3.0]];
        let e = nms(&boxes, &[0.9, 0.8], 1e-50).unwrap_err();
        assert!(e.to_string().contains("positive as float32"), "{e}");
        // The smallest positive float32 is accepted: disjoint boxes (IoU 0 < it) are both kept.
        assert_eq!(nms(&boxes, &[0.9, 0.8], f32::from_bits(1) as f64).unwrap(), vec![0, 1]);
    }

    #[test]
    fn blocked_nms_equals_the_plain_loop() {
        let mut rng = Rng::new(4);
        let mut scratch = NmsScratch::default();
        for n in [0usize, 1, 7, 8, 9, 17, 64, 200, 333] {
            // Clustered boxes (many suppressions) with some degenerate ones.
            let boxes: Vec<[f32; 4]> = (0..n)
                .map(|i| {
                    let (x, y) = ((rng.next_f64() * 3.0) as f32, (rng.next_f64() * 3.0) as f32);
                    let (w, h) = ((rng.next_f64() * 1.5) as f32, (rng.next_f64() * 1.5) as f32);
                    match i % 17 {
                        0 => [x, y, x, y + h],         // zero width
                        1 => [x + w, y, x, y + h],     // inverted
                        _ => [x, y, x + w, y + h],
                    }
                })
                .collect();
            for t in [0.1f32, 0.5, 0.9, 1.0] {
                let mut plain: Vec<usize> = Vec::new();
                for (i, b) in boxes.iter().enumerate() {
                    if plain.iter().all(|&k| iou(&boxes[k], b) < t) {
                        plain.push(i);
                    }
                }
                for isa in Isa::supported() {
                    assert_eq!(greedy_nms(isa, &boxes, t), plain, "{isa:?}, n = {n}, t = {t}");
                    // Into a vector that already holds other kept indices, reusing buffers.
                    let mut kept = vec![7, 9];
                    greedy_nms_into(isa, &boxes, t, usize::MAX, &mut scratch, &mut kept);
                    // A limit keeps the first kept boxes (the class-agnostic stop).
                    for limit in [0usize, 1, 5, 17] {
                        let mut some = Vec::new();
                        greedy_nms_into(isa, &boxes, t, limit, &mut scratch, &mut some);
                        assert_eq!(some, plain[..limit.min(plain.len())], "{isa:?}, n = {n}, t = {t}, limit {limit}");
                    }
                    assert_eq!((&kept[..2], &kept[2..]), (&[7, 9][..], &plain[..]), "{isa:?}, n = {n}, t = {t}");
                }
                if n >= 64 && t <= 0.5 {
                    assert!(plain.len() > 8 && plain.len() < n, "n = {n}, t = {t}: {} kept", plain.len());
                }
            }
        }
    }
}
