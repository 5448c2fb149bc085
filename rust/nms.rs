//! IoU and single-class greedy NMS (docs/postprocess.md, "Per-class selection and
//! NMS"; MLCommons' `calc_iou_tensor` and the loop of `Encoder.decode_single` in
//! `vision/classification_and_detection/python/models/ssd_r34.py`, with the overlap
//! clamped at 0, which the reference means to do but does not). The greedy loop itself
//! is a kernel of [`crate::simd::nms`].

// The single-class `nms` (for the bindings) and what it needs.
#[cfg(any(feature = "python", test))]
use {
    crate::error::Error,
    crate::simd::{nms::greedy_nms, reject::all_finite, Isa},
    std::cmp::Ordering,
};

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
#[cfg(any(feature = "python", test))]
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

/// Single-class NMS of scored boxes (`_native.nms`): sorts by (score descending, index
/// ascending), then [`greedy_nms`]. Returns the indices of the kept boxes in processing
/// order; no cut.
///
/// Errors (`ValueError`): lengths differ, a non-finite box or score, `iou_threshold`
/// outside (0, 1].
/// `iou_threshold` is checked as given, then compared as float32.
#[cfg(any(feature = "python", test))]
pub(crate) fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>, Error> {
    if boxes.len() != scores.len() {
        return Err(Error::InvalidArgument(format!(
            "boxes has {} rows but scores has {} values; expected the same number",
            boxes.len(),
            scores.len()
        )));
    }
    if !(iou_threshold > 0.0 && iou_threshold <= 1.0) {
        return Err(Error::InvalidParameter {
            name: "iou_threshold",
            value: iou_threshold.to_string(),
            expected: "a value in (0, 1]",
        });
    }
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

#[cfg(test)]
mod tests {
    use super::*;

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

    fn greedy_nms(boxes: &[[f32; 4]], iou_threshold: f32) -> Vec<usize> {
        super::greedy_nms(Isa::best(), boxes, iou_threshold)
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
        assert_eq!(greedy_nms(&boxes, 0.5), vec![0, 3]);
        // Strictly below: at 0.5000001 the half boxes (0.5) survive; 1 and 2 do not overlap.
        assert_eq!(greedy_nms(&boxes, 0.500_000_1), vec![0, 1, 2, 3]);
        assert_eq!(greedy_nms(&boxes, 1.0), vec![0, 1, 2, 3]);
        // A suppressed box does not suppress others.
        let chain = [[0.0f32, 0.0, 1.0, 1.0], [0.4, 0.0, 1.4, 1.0], [0.8, 0.0, 1.8, 1.0]];
        assert_eq!(greedy_nms(&chain, 0.4), vec![0, 2]);
        assert!(greedy_nms(&[], 0.5).is_empty());
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
}
