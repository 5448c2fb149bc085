//! Greedy NMS kernels (docs/postprocess.md, "Per-class selection and NMS"): the plain
//! loop and, on x86-64, blocked loops with the kept boxes as columns and 8 (AVX2) or 16
//! (AVX-512) IoUs at a time, which keep the same set (see [`super`]). The pipeline runs them class after
//! class with the same buffers ([`NmsScratch`]).

use super::{Isa, Level};
use crate::nms::{area, iou_with_areas};

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
/// every one).
pub(crate) fn greedy_nms_into(isa: Isa, boxes: &[[f32; 4]], iou_threshold: f32, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
    match isa.0 {
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of these levels is only made when the CPU has AVX2 (super::Isa).
        Level::Avx2 => unsafe { greedy_nms_avx2(boxes, iou_threshold, scratch, kept) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: an Isa of this level is only made when the CPU has AVX-512F (super::Isa).
        Level::Avx512 => unsafe { greedy_nms_avx512(boxes, iou_threshold, scratch, kept) },
        Level::Portable => greedy_nms_plain(boxes, iou_threshold, kept),
    }
}

/// [`greedy_nms_into`] into a new vector.
#[cfg(any(feature = "python", test))]
pub(crate) fn greedy_nms(isa: Isa, boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<usize> {
    let mut kept = Vec::new();
    greedy_nms_into(isa, boxes, iou_threshold, &mut NmsScratch::default(), &mut kept);
    kept
}

/// The plain greedy loop: each candidate against the kept boxes in order, stopping at the
/// first that suppresses it.
fn greedy_nms_plain(boxes: &[[f32; 4]], iou_threshold: f32, kept: &mut Vec<usize>) {
    let first = kept.len();
    for (i, b) in boxes.iter().enumerate() {
        let a = area(b);
        if kept[first..].iter().all(|&k| iou_with_areas(&boxes[k], area(&boxes[k]), b, a) < iou_threshold) {
            kept.push(i);
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
unsafe fn greedy_nms_avx2(boxes: &[[f32; 4]], iou_threshold: f32, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
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
unsafe fn greedy_nms_avx512(boxes: &[[f32; 4]], iou_threshold: f32, scratch: &mut NmsScratch, kept: &mut Vec<usize>) {
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
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nms::iou;
    use crate::test_util::Rng;

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
                    greedy_nms_into(isa, &boxes, t, &mut scratch, &mut kept);
                    assert_eq!((&kept[..2], &kept[2..]), (&[7, 9][..], &plain[..]), "{isa:?}, n = {n}, t = {t}");
                }
                if n >= 64 && t <= 0.5 {
                    assert!(plain.len() > 8 && plain.len() < n, "n = {n}, t = {t}: {} kept", plain.len());
                }
            }
        }
    }
}
