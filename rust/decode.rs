//! Box decoding: default box (cx, cy, w, h) + offsets (dx, dy, dw, dh) -> ltrb
//! (docs/postprocess.md, "Box decoding"; MLCommons' `scale_back_batch` with
//! scale_xy = 0.1, scale_wh = 0.2 in `vision/classification_and_detection/python/models/ssd_r34.py`).

use crate::anchors::default_boxes;
use crate::layout::{LEVELS, NUM_ANCHORS, NUM_LEVELS};
use crate::scores::Candidate;

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
#[cfg(test)]
pub(crate) fn anchor_offsets(offsets: &[&[f32]; NUM_LEVELS], anchor: usize) -> [f32; 4] {
    let (lv, a) = crate::layout::locate_anchor(anchor).expect("anchor index out of range");
    let o = offsets[lv.index];
    std::array::from_fn(|k| o[k * lv.num_anchors + a])
}

/// The decoded boxes of the anchors that have a candidate, found by anchor. Each such
/// anchor is decoded once (an anchor often has candidates of several classes), in anchor
/// order, so the offsets and default boxes are read front to back.
pub(crate) struct AnchorBoxes {
    /// `slot[a]`: where anchor a's box is in `boxes[(a >= split) as usize]`, or `NONE`
    /// when it is not finite (the candidate is dropped); meaningful for the decoded
    /// anchors only.
    slot: Vec<u16>,
    boxes: [Vec<[f32; 4]>; 2],
    split: usize,
}

const NONE: u16 = u16::MAX;
const _: () = assert!(NUM_ANCHORS < NONE as usize);
const WORDS: usize = NUM_ANCHORS.div_ceil(64);

impl AnchorBoxes {
    /// Decodes the boxes of the anchors of `keys` (candidates). `parallel`: the lower and
    /// the upper half of those anchors on the rayon pool at once.
    ///
    /// # Panics
    /// When an offsets slice is shorter than its level's.
    pub(crate) fn decode(keys: &[Candidate], offsets: &[&[f32]; NUM_LEVELS], parallel: bool) -> Self {
        let mut marked = [0u64; WORDS];
        for key in keys {
            let a = key.anchor();
            marked[a / 64] |= 1 << (a % 64);
        }
        let mut slot = vec![NONE; NUM_ANCHORS];
        if !parallel {
            let boxes = decode_marked(&marked, 0, &mut slot, offsets);
            return AnchorBoxes { slot, boxes: [boxes, Vec::new()], split: NUM_ANCHORS };
        }
        // The word where half of the marked anchors are below.
        let half = marked.iter().map(|w| w.count_ones() as usize).sum::<usize>() / 2;
        let mut below = 0;
        let mid = marked.iter().position(|w| {
            below += w.count_ones() as usize;
            below > half
        });
        let mid = mid.unwrap_or(WORDS);
        let (slot_low, slot_high) = slot.split_at_mut((mid * 64).min(NUM_ANCHORS));
        let (low, high) = rayon::join(
            || decode_marked(&marked[..mid], 0, slot_low, offsets),
            || decode_marked(&marked[mid..], mid * 64, slot_high, offsets),
        );
        AnchorBoxes { slot, boxes: [low, high], split: mid * 64 }
    }

    /// The box of a decoded anchor, `None` when it is not finite.
    #[inline]
    pub(crate) fn get(&self, anchor: usize) -> Option<[f32; 4]> {
        let s = self.slot[anchor];
        (s != NONE).then(|| self.boxes[(anchor >= self.split) as usize][s as usize])
    }
}

/// Decodes the anchors marked in `marked` (bit i of word w: anchor `first + 64 w + i`),
/// in order; `slot` covers the anchors from `first` on.
fn decode_marked(marked: &[u64], first: usize, slot: &mut [u16], offsets: &[&[f32]; NUM_LEVELS]) -> Vec<[f32; 4]> {
    let dboxes = default_boxes();
    let mut boxes = Vec::new();
    let mut level = 0;
    for (w, &word) in marked.iter().enumerate() {
        let mut bits = word;
        while bits != 0 {
            let a = first + 64 * w + bits.trailing_zeros() as usize;
            bits &= bits - 1;
            while a >= LEVELS[level].first_anchor + LEVELS[level].num_anchors {
                level += 1;
            }
            let lv = &LEVELS[level];
            let (o, i) = (offsets[level], a - lv.first_anchor);
            let d = [o[i], o[lv.num_anchors + i], o[2 * lv.num_anchors + i], o[3 * lv.num_anchors + i]];
            slot[a - first] = match decode_box(dboxes[a], d) {
                Some(ltrb) => {
                    boxes.push(ltrb);
                    (boxes.len() - 1) as u16
                }
                None => NONE,
            };
        }
    }
    boxes
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
    fn anchor_boxes_decode_each_candidate_anchor() {
        let data: Vec<Vec<f32>> = LEVELS.iter().map(|lv| (0..lv.offsets_len()).map(|i| ((i % 13) as f32 - 6.0) * 0.1).collect()).collect();
        let mut o: Vec<Vec<f32>> = data.clone();
        o[1][2 * LEVELS[1].num_anchors + 5] = 1000.0; // anchor 10005: dw overflows
        let o: [&[f32]; 6] = std::array::from_fn(|l| o[l].as_slice());
        let anchors = [0usize, 3, 63, 64, 9999, 10000, 10005, 12000, 13749, 15129];
        let keys: Vec<Candidate> = anchors.iter().flat_map(|&a| [Candidate::new(1, 0.5, a), Candidate::new(7, 0.25, a)]).collect();
        for parallel in [false, true] {
            let boxes = AnchorBoxes::decode(&keys, &o, parallel);
            for &a in &anchors {
                assert_eq!(boxes.get(a), decode_box(default_boxes()[a], anchor_offsets(&o, a)), "anchor {a}");
            }
            assert_eq!(boxes.get(10005), None);
        }
        assert!(AnchorBoxes::decode(&[], &o, true).boxes.iter().all(|b| b.is_empty()));
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
