//! The 15,130 default boxes (anchors) of SSD-ResNet34 at 1200x1200, as MLCommons'
//! `dboxes_R34_coco((1200, 1200), ...)` / `DefaultBoxes` in
//! `vision/classification_and_detection/python/models/ssd_r34.py` build them
//! (docs/postprocess.md, "Default boxes").

use crate::layout::{LEVELS, NUM_ANCHORS, NUM_LEVELS};
use std::sync::OnceLock;

/// Input side in pixels.
const FIGURE_SIZE: f64 = 1200.0;
/// Anchor scales S in pixels, one more than there are levels.
const SCALES: [f64; NUM_LEVELS + 1] = [84.0, 180.0, 396.0, 612.0, 828.0, 1044.0, 1260.0];
/// Aspect ratios alpha per level (each adds a wide and a tall size).
const ASPECT_RATIOS: [&[f64]; NUM_LEVELS] = [&[2.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0, 3.0], &[2.0], &[2.0]];

/// The box sizes (w, h) of one level in float64, in the reference's order:
/// (sk1, sk1), (sk3, sk3), then (sk1*sqrt(a), sk1/sqrt(a)), (sk1/sqrt(a), sk1*sqrt(a)) per alpha.
fn level_sizes(level: usize) -> Vec<(f64, f64)> {
    let sk1 = SCALES[level] / FIGURE_SIZE;
    let sk2 = SCALES[level + 1] / FIGURE_SIZE;
    let sk3 = (sk1 * sk2).sqrt();
    let mut sizes = vec![(sk1, sk1), (sk3, sk3)];
    for &alpha in ASPECT_RATIOS[level] {
        let (w, h) = (sk1 * alpha.sqrt(), sk1 / alpha.sqrt());
        sizes.push((w, h));
        sizes.push((h, w));
    }
    sizes
}

/// Computes the default boxes, (cx, cy, w, h) normalized to the image, float32, in
/// global anchor order. Each value is computed in float64, rounded to float32, then
/// clamped to [0, 1].
pub(crate) fn compute_default_boxes() -> Vec<[f32; 4]> {
    let mut boxes = Vec::with_capacity(NUM_ANCHORS);
    for lv in &LEVELS {
        let sizes = level_sizes(lv.index);
        debug_assert_eq!(sizes.len(), lv.boxes_per_cell);
        // fk = 1200 // int(1200 / F): equal to F for all six levels.
        let fk = (FIGURE_SIZE as usize / (FIGURE_SIZE as usize / lv.feature_size)) as f64;
        for &(w, h) in &sizes {
            for i in 0..lv.feature_size {
                for j in 0..lv.feature_size {
                    let xywh = [(j as f64 + 0.5) / fk, (i as f64 + 0.5) / fk, w, h];
                    boxes.push(xywh.map(|v| (v as f32).clamp(0.0, 1.0)));
                }
            }
        }
    }
    debug_assert_eq!(boxes.len(), NUM_ANCHORS);
    boxes
}

/// The default boxes (computed once, shared): `NUM_ANCHORS` rows of (cx, cy, w, h), float32.
pub(crate) fn default_boxes() -> &'static [[f32; 4]] {
    static BOXES: OnceLock<Vec<[f32; 4]>> = OnceLock::new();
    BOXES.get_or_init(compute_default_boxes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn count_and_ranges() {
        let b = default_boxes();
        assert_eq!(b.len(), 15_130);
        assert!(b.iter().flatten().all(|v| (0.0..=1.0).contains(v)));
    }

    #[test]
    fn level0_first_box() {
        let b = default_boxes();
        assert_eq!(b[0], [0.01, 0.01, 0.07, 0.07]);
        // Second column of the first row, same size.
        assert_eq!(b[1], [(1.5f64 / 50.0) as f32, 0.01, 0.07, 0.07]);
        // Second size of level 0: sk3 = sqrt(0.07 * 0.15).
        assert_eq!(b[2500][2], (0.07f64 * 0.15).sqrt() as f32);
        // Wide box of alpha 2 in level 0, last cell.
        assert_eq!(b[3 * 2500 - 1], [0.99, 0.99, (0.07 * 2f64.sqrt()) as f32, (0.07 / 2f64.sqrt()) as f32]);
    }

    #[test]
    fn level5_boxes_are_clamped() {
        let b = default_boxes();
        let first = LEVELS[5].first_anchor;
        // Size 0: sk1 = 1044/1200 = 0.87; size 2 (alpha 2): w = 0.87*sqrt(2) > 1 -> 1.
        assert_eq!(b[first], [(0.5f64 / 3.0) as f32, (0.5f64 / 3.0) as f32, 0.87, 0.87]);
        let sk3 = ((1044.0f64 / 1200.0) * (1260.0 / 1200.0)).sqrt() as f32;
        assert_eq!(b[first + 9][2], sk3);
        let wide = b[first + 18];
        assert_eq!(wide, [(0.5f64 / 3.0) as f32, (0.5f64 / 3.0) as f32, 1.0, (0.87 / 2f64.sqrt()) as f32]);
        let tall = b[first + 27 + 8];
        assert_eq!(tall, [(2.5f64 / 3.0) as f32, (2.5f64 / 3.0) as f32, (0.87 / 2f64.sqrt()) as f32, 1.0]);
    }

    #[test]
    fn level2_uses_integer_fk() {
        // fk = 1200 // 92 = 13 for the 13x13 map.
        let b = default_boxes();
        assert_eq!(b[LEVELS[2].first_anchor][0], (0.5f64 / 13.0) as f32);
    }
}
