//! Box decoding: default box (cx, cy, w, h) + offsets (dx, dy, dw, dh) -> ltrb
//! (docs/postprocess.md, "Box decoding"; MLCommons' `scale_back_batch` with
//! scale_xy = 0.1, scale_wh = 0.2 in `vision/classification_and_detection/python/models/ssd_r34.py`).

use crate::layout::{locate_anchor, NUM_LEVELS};

/// Decodes one box, in float64 as written, each coordinate rounded to float32:
/// cx = (0.1*dx)*aw + acx, cy = (0.1*dy)*ah + acy, w = exp(0.2*dw)*aw, h = exp(0.2*dh)*ah,
/// (l, t, r, b) = (cx - 0.5*w, cy - 0.5*h, cx + 0.5*w, cy + 0.5*h), normalized, not clipped.
///
/// `None` when a coordinate is not finite as float32 (the candidate is dropped).
#[inline]
pub(crate) fn decode_box(anchor_xywh: [f32; 4], offsets: [f32; 4]) -> Option<[f32; 4]> {
    let [acx, acy, aw, ah] = anchor_xywh.map(f64::from);
    let [dx, dy, dw, dh] = offsets.map(f64::from);
    let cx = (0.1 * dx) * aw + acx;
    let cy = (0.1 * dy) * ah + acy;
    let w = (0.2 * dw).exp() * aw;
    let h = (0.2 * dh).exp() * ah;
    let ltrb = [cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h].map(|v| v as f32);
    ltrb.iter().all(|v| v.is_finite()).then_some(ltrb)
}

/// The four offsets (dx, dy, dw, dh) of a global anchor, `offsets[l]` being one image's
/// slice of level l (`LEVELS[l].offsets_len()` values): element `k*A_l + a`.
///
/// # Panics
/// When `anchor >= NUM_ANCHORS` or a slice is shorter than its level's.
#[inline]
pub(crate) fn anchor_offsets(offsets: &[&[f32]; NUM_LEVELS], anchor: usize) -> [f32; 4] {
    let (lv, a) = locate_anchor(anchor).expect("anchor index out of range");
    let o = offsets[lv.index];
    std::array::from_fn(|k| o[k * lv.num_anchors + a])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::anchors::default_boxes;
    use crate::layout::LEVELS;

    #[test]
    fn zero_offsets_give_the_default_box() {
        let a = [0.5f32, 0.25, 0.2, 0.1];
        let b = decode_box(a, [0.0; 4]).unwrap();
        assert_eq!(b, [(0.5f64 - 0.1) as f32, (0.25f64 - 0.05) as f32, (0.5f64 + 0.1) as f32, (0.25f64 + 0.05) as f32]);
    }

    #[test]
    fn formula_in_float64() {
        let a = default_boxes()[12345];
        let d = [0.7f32, -1.3, 0.45, -2.0];
        let (acx, acy, aw, ah) = (a[0] as f64, a[1] as f64, a[2] as f64, a[3] as f64);
        let cx = (0.1 * d[0] as f64) * aw + acx;
        let cy = (0.1 * d[1] as f64) * ah + acy;
        let w = (0.2 * d[2] as f64).exp() * aw;
        let h = (0.2 * d[3] as f64).exp() * ah;
        let want = [(cx - 0.5 * w) as f32, (cy - 0.5 * h) as f32, (cx + 0.5 * w) as f32, (cy + 0.5 * h) as f32];
        assert_eq!(decode_box(a, d).unwrap(), want);
    }

    #[test]
    fn overflow_is_dropped() {
        let a = [0.5f32, 0.5, 0.1, 0.1];
        // exp(0.2*500) * 0.1 ~ 2.7e42: finite in float64, infinite in float32.
        assert!(decode_box(a, [0.0, 0.0, 500.0, 0.0]).is_none());
        assert!(decode_box(a, [0.0, 0.0, 0.0, 4000.0]).is_none());
        assert!(decode_box(a, [f32::MAX, 0.0, 0.0, 0.0]).is_some_and(|b| b[0] > 1e36));
        assert!(decode_box(a, [0.0, 0.0, 400.0, 0.0]).is_some());
        // Huge negative dw: w underflows to 0, a point box.
        assert_eq!(decode_box(a, [0.0, 0.0, -1e4, 0.0]).unwrap()[0], 0.5);
    }

    #[test]
    fn offsets_are_gathered_per_level() {
        let data: Vec<Vec<f32>> = LEVELS
            .iter()
            .map(|lv| (0..lv.offsets_len()).map(|i| (lv.index * 100_000 + i) as f32).collect())
            .collect();
        let o: [&[f32]; 6] = std::array::from_fn(|l| data[l].as_slice());
        let a_1 = LEVELS[1].num_anchors;
        assert_eq!(anchor_offsets(&o, 10_007), [100_007.0, (100_007 + a_1) as f32, (100_007 + 2 * a_1) as f32, (100_007 + 3 * a_1) as f32]);
        assert_eq!(anchor_offsets(&o, 15_129)[3], (500_000 + 3 * 36 + 35) as f32);
    }
}
