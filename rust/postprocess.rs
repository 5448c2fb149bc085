//! The per-image pipeline: score pass -> per-class top-k -> lazy box decoding -> NMS ->
//! merge (docs/postprocess.md; MLCommons' `Encoder.decode_batch` / `decode_single` in
//! `vision/classification_and_detection/python/models/ssd_r34.py`), and the batch
//! driver (rayon over images).

use crate::anchors::default_boxes;
use crate::decode::AnchorBoxes;
use crate::error::Error;
use crate::layout::{Head, OutputId, OutputKind, LEVELS, NUM_CLASSES, NUM_LEVELS};
use crate::scores::{score_pass_heads, Candidate, Candidates, ScoreConfig};
use crate::nms::{greedy_nms_into, NmsScratch};
use crate::simd::reject::all_finite;
use crate::simd::Isa;
use rayon::prelude::*;
use std::cmp::Reverse;
use std::collections::BinaryHeap;

/// Postprocess parameters (ranges and options as in docs/postprocess.md, "Parameters"
/// and "Options").
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Params {
    /// A candidate needs score > score_threshold (compared as float32); in [0, 1]. The
    /// threshold of every class without its own in `class_thresholds`.
    pub score_threshold: f64,
    /// NMS keeps a box when its IoU with every kept box is < iou_threshold (float32); in (0, 1].
    pub iou_threshold: f64,
    /// Candidates per class that enter NMS (the highest scores); >= 1.
    pub max_candidates_per_class: usize,
    /// Detections per image after the merge; >= 1.
    pub max_detections: usize,
    /// `Some(t)`: the threshold of class c is `t[c]` when that is `Some`, else
    /// `score_threshold` (`t[0]`, the background's, must be `None`); each in [0, 1].
    pub class_thresholds: Option<[Option<f64>; NUM_CLASSES]>,
    /// `Some(wanted)`: only the classes c with `wanted[c]` have candidates (at least one
    /// of 1..=80; `wanted[0]` false); `None`: all 80.
    pub classes: Option<[bool; NUM_CLASSES]>,
    /// One NMS over the candidates of all classes (by score desc, label asc, anchor asc)
    /// instead of one per class; it stops once `max_detections` boxes are kept.
    pub class_agnostic: bool,
    /// Split the work of a batch of one across the rayon pool (the score pass over anchor
    /// ranges, the classes in two halves). Off by default: measured on the 2-core machine
    /// of the project (README, "Postprocess threads"), one image decodes faster on one
    /// core unless the other is idle and awake, which it is not while the inference
    /// engine runs. A batch of several images always runs one image per thread. The
    /// result is the same either way.
    pub within_image: bool,
}

impl Default for Params {
    /// MLCommons' values: 0.05, 0.5, 200, 200; all 80 classes, one threshold, NMS per class.
    fn default() -> Self {
        Params {
            score_threshold: 0.05,
            iou_threshold: 0.5,
            max_candidates_per_class: 200,
            max_detections: 200,
            class_thresholds: None,
            classes: None,
            class_agnostic: false,
            within_image: false,
        }
    }
}

impl Params {
    /// Checks every range; the error names the first parameter out of range.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |name, value: String, expected| Err(Error::InvalidParameter { name, value, expected });
        if !(0.0..=1.0).contains(&self.score_threshold) {
            return bad("score_threshold", self.score_threshold.to_string(), "a value in [0, 1]");
        }
        crate::nms::check_iou_threshold(self.iou_threshold)?;
        if self.max_candidates_per_class < 1 {
            return bad("max_candidates_per_class", self.max_candidates_per_class.to_string(), "an integer >= 1");
        }
        if self.max_detections < 1 {
            return bad("max_detections", self.max_detections.to_string(), "an integer >= 1");
        }
        if let Some(t) = &self.class_thresholds {
            if t[0].is_some() {
                return bad("score_threshold", "a threshold for label 0".into(), "labels 1..80 (0 is the background)");
            }
            if let Some((c, v)) = t.iter().enumerate().find_map(|(c, v)| v.filter(|v| !(0.0..=1.0).contains(v)).map(|v| (c, v))) {
                return bad("score_threshold", format!("{v} for label {c}"), "a value in [0, 1]");
            }
        }
        if let Some(wanted) = &self.classes {
            if wanted[0] {
                return bad("classes", "a set with label 0".into(), "labels 1..80 (0 is the background)");
            }
            if !wanted.iter().any(|&w| w) {
                return bad("classes", "an empty set".into(), "at least one label of 1..80");
            }
        }
        Ok(())
    }

    /// The float32 threshold of each class for the score pass: `f32::INFINITY` for the
    /// background and the classes not wanted.
    fn class_thresholds_f32(&self) -> [f32; NUM_CLASSES] {
        std::array::from_fn(|c| {
            let wanted = c > 0 && self.classes.is_none_or(|w| w[c]);
            let t = self.class_thresholds.and_then(|t| t[c]).unwrap_or(self.score_threshold);
            if wanted {
                t as f32
            } else {
                f32::INFINITY
            }
        })
    }
}

/// Detections of one image, sorted by (score desc, label asc, anchor asc).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Detections {
    /// (l, t, r, b), normalized to the image, float32.
    pub boxes: Vec<[f32; 4]>,
    /// Class labels 1..=80 (0 is background).
    pub labels: Vec<i64>,
    /// Softmax scores.
    pub scores: Vec<f32>,
}

impl Detections {
    pub fn len(&self) -> usize {
        self.scores.len()
    }

    pub fn is_empty(&self) -> bool {
        self.scores.is_empty()
    }
}

/// Whether one image's work is split across the rayon pool.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Parallelism {
    Serial,
    /// Score pass over anchor chunks and NMS over classes run on the rayon pool.
    WithinImage,
    /// The score pass on the calling thread; the classes in two halves on the rayon pool
    /// only when the image has at least [`DENSE_CLASSES_MIN_CANDIDATES`] candidates and the
    /// pool more than one thread (there the NMS costs milliseconds, far more than waking a
    /// worker). The default for a batch of one (README, "Postprocess threads").
    DenseClasses,
}

/// Candidates from which [`Parallelism::DenseClasses`] splits the classes: measured, a
/// trained model's density (2,000-3,500) decodes faster on one thread (the split saves at
/// most its 0.1 ms of selection and NMS, less than a worker's wake-up on a busy machine),
/// and random logits (34,000) about twice as fast split; nothing was measured between.
pub const DENSE_CLASSES_MIN_CANDIDATES: usize = 10_000;

/// One candidate that survived top-k and decoding.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct DecodedCandidate {
    pub key: Candidate,
    /// The decoded box (l, t, r, b).
    pub ltrb: [f32; 4],
}

/// Top-k candidates of every class with their decoded boxes, in processing order
/// (score desc, anchor asc): those of class c are `items[starts[c]..starts[c + 1]]`.
#[derive(Clone, Debug, PartialEq)]
pub struct ClassBoxes {
    pub items: Vec<DecodedCandidate>,
    pub starts: [usize; NUM_CLASSES + 1],
}

impl ClassBoxes {
    /// The decoded candidates of one class, in processing order.
    pub(crate) fn class(&self, class: usize) -> &[DecodedCandidate] {
        &self.items[self.starts[class]..self.starts[class + 1]]
    }
}

/// Sorts `keys` ascending so that its first `k` are the `k` smallest in order
/// (the rest unspecified), without sorting all of a long list.
fn sort_first_k(keys: &mut [Candidate], k: usize) {
    if keys.len() > k {
        keys.select_nth_unstable(k - 1);
        keys[..k].sort_unstable();
    } else {
        keys.sort_unstable();
    }
}

/// The selection of one class: its candidates in order (score desc, anchor asc) until `k`
/// have a finite box (candidates whose box overflows are dropped and do not count), as if
/// decoded lazily; the boxes come from `boxes`. Appends them to `out` in that order and
/// reorders `keys`.
fn decode_class(keys: &mut [Candidate], boxes: &AnchorBoxes, k: usize, out: &mut Vec<DecodedCandidate>) {
    let mut sorted_upto = 0;
    let mut taken = 0;
    let mut next = 0;
    while taken < k && next < keys.len() {
        if next == sorted_upto {
            // Sort the next batch of up to k - taken keys (normally all done at once).
            sort_first_k(&mut keys[next..], k - taken);
            sorted_upto = next.saturating_add(k - taken).min(keys.len());
        }
        let key = keys[next];
        next += 1;
        if let Some(ltrb) = boxes.get(key.anchor()) {
            out.push(DecodedCandidate { key, ltrb });
            taken += 1;
        }
    }
}

/// Per-class selection ([`decode_class`]) of every class, with the boxes of all the
/// candidates' anchors decoded first.
pub(crate) fn decode_top_k(candidates: &mut Candidates, offsets: [&[f32]; NUM_LEVELS], k: usize) -> ClassBoxes {
    let boxes = AnchorBoxes::decode(&candidates.keys, &offsets, false);
    let mut out = ClassBoxes { items: Vec::new(), starts: [0; NUM_CLASSES + 1] };
    for c in 0..NUM_CLASSES {
        out.starts[c] = out.items.len();
        decode_class(candidates.class_mut(c), &boxes, k, &mut out.items);
    }
    out.starts[NUM_CLASSES] = out.items.len();
    out
}

/// Buffers of [`Suppressor::class`], reused from one class to the next.
struct Suppressor {
    isa: Isa,
    iou_threshold: f32,
    scratch: NmsScratch,
    ltrb: Vec<[f32; 4]>,
    kept_at: Vec<usize>,
}

impl Suppressor {
    fn new(isa: Isa, iou_threshold: f32) -> Self {
        Suppressor { isa, iou_threshold, scratch: NmsScratch::default(), ltrb: Vec::new(), kept_at: Vec::new() }
    }

    /// Greedy NMS of one class's decoded candidates (in processing order): appends the
    /// kept ones to `kept`.
    fn class(&mut self, items: &[DecodedCandidate], kept: &mut Vec<DecodedCandidate>) {
        self.ltrb.clear();
        self.ltrb.extend(items.iter().map(|d| d.ltrb));
        self.kept_at.clear();
        greedy_nms_into(self.isa, &self.ltrb, self.iou_threshold, usize::MAX, &mut self.scratch, &mut self.kept_at);
        kept.extend(self.kept_at.iter().map(|&i| items[i]));
    }
}

/// The class-agnostic NMS (docs/postprocess.md, "Options"): every class's selection
/// (`items`, top-k per class) ordered by [`merge_key`] (score desc, label asc, anchor asc),
/// then one greedy NMS over all of them, stopped once `max_detections` boxes are kept; the
/// kept boxes in that order are the detections. Cost: at most 80 x
/// `max_candidates_per_class` boxes, each compared with at most `max_detections` kept
/// ones.
fn agnostic_nms(isa: Isa, mut items: Vec<DecodedCandidate>, iou_threshold: f32, max_detections: usize) -> Detections {
    items.sort_unstable_by_key(merge_key);
    let ltrb: Vec<[f32; 4]> = items.iter().map(|d| d.ltrb).collect();
    let mut kept_at = Vec::new();
    greedy_nms_into(isa, &ltrb, iou_threshold, max_detections, &mut NmsScratch::default(), &mut kept_at);
    let mut out = Detections::default();
    for &i in &kept_at {
        let d = &items[i];
        out.boxes.push(d.ltrb);
        out.labels.push(d.key.class() as i64);
        out.scores.push(d.key.score());
    }
    out
}

/// Greedy NMS of each class's decoded candidates; returns every kept candidate, class by
/// class.
pub(crate) fn suppress(isa: Isa, boxes: &ClassBoxes, iou_threshold: f32) -> Vec<DecodedCandidate> {
    let mut suppressor = Suppressor::new(isa, iou_threshold);
    let mut kept = Vec::new();
    for c in 1..NUM_CLASSES {
        suppressor.class(boxes.class(c), &mut kept);
    }
    kept
}

/// Below this many candidates the classes of one image are not split across the rayon
/// pool: their selection, decoding and NMS take a few tens of microseconds, not much more
/// than a fork and join on a busy machine.
const PARALLEL_CLASSES_MIN_CANDIDATES: usize = 1500;

/// Sort key of the merge: (score desc, label asc, anchor asc).
#[inline]
fn merge_key(d: &DecodedCandidate) -> u64 {
    ((!d.key.score().to_bits() as u64) << 32) | ((d.key.class() as u64) << 16) | d.key.anchor() as u64
}

/// Merges the kept boxes of all classes: sorted by (score desc, label asc, anchor asc),
/// the first `max_detections`.
///
/// The kept boxes of a class come in processing order (score desc, anchor asc), an
/// ascending run of [`merge_key`]: the runs are merged through a heap of their heads
/// (any order of `kept` works, with more runs), so only the detections are ordered.
pub(crate) fn merge(kept: Vec<DecodedCandidate>, max_detections: usize) -> Detections {
    let keys: Vec<u64> = kept.iter().map(merge_key).collect();
    let mut heads = BinaryHeap::new();
    let mut run = 0;
    for i in 1..=keys.len() {
        if i == keys.len() || keys[i] < keys[i - 1] {
            heads.push(Reverse((keys[run], run, i)));
            run = i;
        }
    }
    let n = max_detections.min(kept.len());
    let mut out = Detections { boxes: Vec::with_capacity(n), labels: Vec::with_capacity(n), scores: Vec::with_capacity(n) };
    while out.len() < n {
        let Some(Reverse((_, at, end))) = heads.pop() else { break };
        let d = &kept[at];
        out.boxes.push(d.ltrb);
        out.labels.push(d.key.class() as i64);
        out.scores.push(d.key.score());
        if at + 1 < end {
            heads.push(Reverse((keys[at + 1], at + 1, end)));
        }
    }
    out
}

/// The native SSD-ResNet34 postprocessor. Immutable and `Sync`: one instance may
/// decode from many threads at once.
#[derive(Clone, Debug)]
pub struct Postprocessor {
    params: Params,
    scores: ScoreConfig,
}

impl Postprocessor {
    /// Errors: [`Error::InvalidParameter`] for a parameter out of range.
    pub fn new(params: Params) -> Result<Self, Error> {
        params.validate()?;
        // Build the default boxes now rather than inside the first decode.
        default_boxes();
        Ok(Postprocessor { params, scores: ScoreConfig::with_thresholds(params.class_thresholds_f32()) })
    }

    pub fn params(&self) -> &Params {
        &self.params
    }

    /// Stage 1, the score pass of one image: finite check of the class logits, quick
    /// reject, softmax of the survivors, threshold. `logits[l]` is the image's slice of
    /// level l. `WithinImage` splits the anchors across the rayon pool.
    ///
    /// Errors: [`Error::NonFinite`] (batch item 0) naming the lowest bad level.
    ///
    /// # Panics
    /// When a slice does not have its level's length (`decode_image` checks them).
    pub fn score_pass(&self, logits: [&[f32]; NUM_LEVELS], parallelism: Parallelism) -> Result<Candidates, Error> {
        self.score_pass_heads(logits.map(Head::F32), parallelism)
    }

    /// [`Self::score_pass`] on float32 or float16 logits.
    fn score_pass_heads(&self, logits: [Head<'_>; NUM_LEVELS], parallelism: Parallelism) -> Result<Candidates, Error> {
        score_pass_heads(logits, &self.scores, parallelism == Parallelism::WithinImage)
            .map_err(|l| Error::NonFinite { output: OutputId::logits(l), item: 0 })
    }

    /// Stage 2: the per-class top-k (`max_candidates_per_class`) with lazy box decoding
    /// (candidates whose box overflows are dropped and do not count). Reorders each
    /// class's candidates in place.
    ///
    /// # Panics
    /// When an offsets slice is shorter than its level's.
    pub fn select_and_decode(&self, candidates: &mut Candidates, offsets: [&[f32]; NUM_LEVELS]) -> ClassBoxes {
        decode_top_k(candidates, offsets, self.params.max_candidates_per_class)
    }

    /// Stage 3: greedy NMS of each class; returns every kept candidate.
    pub fn suppress(&self, boxes: &ClassBoxes) -> Vec<DecodedCandidate> {
        suppress(self.scores.isa, boxes, self.params.iou_threshold as f32)
    }

    /// Stages 2 and 3 of classes `classes` fused, class after class (the candidates of a
    /// class are selected, decoded and suppressed while in cache); `keys` holds the
    /// candidates of these classes, `starts` the class boundaries as in [`Candidates`]
    /// (offset by `keys`' position there).
    fn select_decode_suppress(
        &self,
        keys: &mut [Candidate],
        starts: &[usize; NUM_CLASSES + 1],
        classes: std::ops::Range<usize>,
        boxes: &AnchorBoxes,
    ) -> Vec<DecodedCandidate> {
        let base = starts[classes.start];
        let mut suppressor = Suppressor::new(self.scores.isa, self.params.iou_threshold as f32);
        let (mut items, mut kept) = (Vec::new(), Vec::new());
        for c in classes {
            items.clear();
            decode_class(&mut keys[starts[c] - base..starts[c + 1] - base], boxes, self.params.max_candidates_per_class, &mut items);
            suppressor.class(&items, &mut kept);
        }
        kept
    }

    /// Stage 4: the merge, sorted by (score desc, label asc, anchor asc), the first
    /// `max_detections`.
    pub fn merge(&self, kept: Vec<DecodedCandidate>) -> Detections {
        merge(kept, self.params.max_detections)
    }

    /// Decodes one image; `logits[l]` and `offsets[l]` are the image's slices of level l
    /// (`(81*nd, F, F)` and `(4*nd, F, F)` in C order). Splits the work across the rayon
    /// pool when [`Params::within_image`].
    ///
    /// Errors: [`Error::Length`] for a slice of the wrong length, [`Error::NonFinite`]
    /// (batch item 0) for NaN/inf in any tensor; nothing is decoded then.
    pub fn decode_image(&self, logits: [&[f32]; NUM_LEVELS], offsets: [&[f32]; NUM_LEVELS]) -> Result<Detections, Error> {
        self.decode_image_with(logits, offsets, self.single_image_parallelism())
    }

    /// The parallelism of a batch of one ([`Params::within_image`]).
    fn single_image_parallelism(&self) -> Parallelism {
        if self.params.within_image {
            Parallelism::WithinImage
        } else {
            Parallelism::DenseClasses
        }
    }

    /// [`Self::decode_image`] with a chosen parallelism.
    pub fn decode_image_with(&self, logits: [&[f32]; NUM_LEVELS], offsets: [&[f32]; NUM_LEVELS], parallelism: Parallelism) -> Result<Detections, Error> {
        let (logits, offsets) = (logits.map(Head::F32), offsets.map(Head::F32));
        check_lengths(logits, offsets, 1)?;
        self.decode_checked(logits, offsets, parallelism)
    }

    fn decode_checked(&self, logits: [Head<'_>; NUM_LEVELS], offsets: [Head<'_>; NUM_LEVELS], parallelism: Parallelism) -> Result<Detections, Error> {
        let mut candidates = self.score_pass_heads(logits, parallelism)?;
        // float16 offsets (4 x 15,130 values) are converted whole, after the score pass
        // (when it refuses the logits, nothing more is read).
        let converted = offsets.map(|o| o.to_f32());
        let offsets: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| &*converted[l]);
        let check_offsets = || match (0..NUM_LEVELS).find(|&l| !all_finite(offsets[l])) {
            Some(l) => Err(Error::NonFinite { output: OutputId::offsets(l), item: 0 }),
            None => Ok(()),
        };
        let Candidates { keys, starts } = &mut candidates;
        if self.params.class_agnostic {
            check_offsets()?;
            let boxes = AnchorBoxes::decode(keys, &offsets, false);
            let mut items = Vec::new();
            for c in 1..NUM_CLASSES {
                decode_class(&mut keys[starts[c]..starts[c + 1]], &boxes, self.params.max_candidates_per_class, &mut items);
            }
            return Ok(agnostic_nms(self.scores.isa, items, self.params.iou_threshold as f32, self.params.max_detections));
        }
        let split_classes = match parallelism {
            Parallelism::Serial => false,
            Parallelism::WithinImage => keys.len() >= PARALLEL_CLASSES_MIN_CANDIDATES,
            Parallelism::DenseClasses => keys.len() >= DENSE_CLASSES_MIN_CANDIDATES && rayon::current_num_threads() > 1,
        };
        let kept = if split_classes {
            // The offsets check beside the decoding of the boxes (two halves of the
            // anchors), then two halves of the classes by candidate count; a bad offset
            // discards the boxes (NaN offsets only make boxes that are dropped).
            let (checked, boxes) = rayon::join(check_offsets, || AnchorBoxes::decode(keys, &offsets, true));
            checked?;
            let mid = (1..NUM_CLASSES).find(|&c| starts[c] >= keys.len() / 2).unwrap_or(NUM_CLASSES - 1).max(2);
            let (low, high) = keys.split_at_mut(starts[mid]);
            let (mut kept, kept_high) = rayon::join(
                || self.select_decode_suppress(low, starts, 1..mid, &boxes),
                || self.select_decode_suppress(high, starts, mid..NUM_CLASSES, &boxes),
            );
            kept.extend(kept_high);
            kept
        } else {
            check_offsets()?;
            let boxes = AnchorBoxes::decode(keys, &offsets, false);
            self.select_decode_suppress(keys, starts, 0..NUM_CLASSES, &boxes)
        };
        Ok(self.merge(kept))
    }

    /// Decodes a batch; `logits[l]` / `offsets[l]` hold all `batch` images of level l
    /// (the full `(N, C, F, F)` tensor in C order). One image: parallel within it when
    /// [`Params::within_image`]; several: rayon over images.
    ///
    /// Errors: [`Error::Length`]; [`Error::NonFinite`] for the lowest `outputs[k]` with a
    /// bad value, naming the lowest batch item with one there.
    pub fn decode_batch(&self, logits: [&[f32]; NUM_LEVELS], offsets: [&[f32]; NUM_LEVELS], batch: usize) -> Result<Vec<Detections>, Error> {
        self.decode_batch_heads(logits.map(Head::F32), offsets.map(Head::F32), batch)
    }

    /// [`Self::decode_batch`] on float32 or float16 tensors, each of the 12 either: the
    /// result is that of each tensor converted exactly to float32 first
    /// (docs/postprocess.md, "Head outputs"); float16 logits are converted chunk by chunk
    /// as the score pass reads them.
    pub fn decode_batch_heads(&self, logits: [Head<'_>; NUM_LEVELS], offsets: [Head<'_>; NUM_LEVELS], batch: usize) -> Result<Vec<Detections>, Error> {
        check_lengths(logits, offsets, batch)?;
        let image = |n: usize| {
            let li: [Head; NUM_LEVELS] = std::array::from_fn(|l| {
                let len = LEVELS[l].logits_len();
                logits[l].slice(n * len..(n + 1) * len)
            });
            let oi: [Head; NUM_LEVELS] = std::array::from_fn(|l| {
                let len = LEVELS[l].offsets_len();
                offsets[l].slice(n * len..(n + 1) * len)
            });
            (li, oi)
        };
        if batch == 1 {
            let (li, oi) = image(0);
            return Ok(vec![self.decode_checked(li, oi, self.single_image_parallelism())?]);
        }
        let results: Vec<Result<Detections, Error>> = (0..batch)
            .into_par_iter()
            .map(|n| {
                let (li, oi) = image(n);
                self.decode_checked(li, oi, Parallelism::Serial).map_err(|e| e.with_item(n))
            })
            .collect();
        // Report the lowest outputs[k] that has a bad value, then the lowest item.
        let first_error = results
            .iter()
            .filter_map(|r| match r {
                Err(Error::NonFinite { output, item }) => Some((output.index(), *item)),
                _ => None,
            })
            .min();
        if let Some((k, item)) = first_error {
            // Each image reports its lowest bad k, so this is the lowest bad k of the
            // batch and the lowest item with a bad value there.
            let output = if k < NUM_LEVELS { OutputId::logits(k) } else { OutputId::offsets(k - NUM_LEVELS) };
            return Err(Error::NonFinite { output, item });
        }
        results.into_iter().collect()
    }
}

/// Checks that every slice holds `batch` images of its tensor.
fn check_lengths(logits: [Head<'_>; NUM_LEVELS], offsets: [Head<'_>; NUM_LEVELS], batch: usize) -> Result<(), Error> {
    for (kind, slices) in [(OutputKind::ClassLogits, logits), (OutputKind::BoxOffsets, offsets)] {
        for (l, s) in slices.iter().enumerate() {
            let output = OutputId { kind, level: l };
            let expected = output.image_len() * batch;
            if s.len() != expected {
                return Err(Error::Length { output, len: s.len() / batch.max(1), expected: output.image_len() });
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::decode_box;
    use crate::test_util::Rng;

    /// One image's tensors: background-dominant logits with a few objects, small offsets.
    pub(crate) fn synthetic_image(seed: u64) -> (Vec<Vec<f32>>, Vec<Vec<f32>>) {
        let mut rng = Rng::new(seed);
        let mut logits = Vec::new();
        let mut offsets = Vec::new();
        for lv in &LEVELS {
            let a_l = lv.num_anchors;
            let mut x: Vec<f32> = (0..lv.logits_len()).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect();
            for a in 0..a_l {
                x[a] += 4.0 + (rng.next_f64() * 3.0) as f32;
                if rng.next_f64() < 0.02 {
                    // An object anchor: one class well above background.
                    let c = 1 + (rng.next_f64() * 10.0) as usize;
                    x[c * a_l + a] = x[a] + (rng.next_f64() * 4.0 - 1.0) as f32;
                }
            }
            logits.push(x);
            offsets.push((0..lv.offsets_len()).map(|_| (rng.next_f64() * 2.0 - 1.0) as f32).collect());
        }
        (logits, offsets)
    }

    fn arrays(v: &[Vec<f32>]) -> [&[f32]; 6] {
        std::array::from_fn(|l| v[l].as_slice())
    }

    #[test]
    fn params_validation() {
        let ok = Params::default();
        assert!(Postprocessor::new(ok).is_ok());
        for p in [
            Params { score_threshold: -0.01, ..ok },
            Params { score_threshold: 1.01, ..ok },
            Params { score_threshold: f64::NAN, ..ok },
            Params { iou_threshold: 0.0, ..ok },
            Params { iou_threshold: 1.5, ..ok },
            Params { iou_threshold: f64::NAN, ..ok },
            // Positive, but 0 as float32 (IoUs are compared as float32).
            Params { iou_threshold: 1e-50, ..ok },
            Params { max_candidates_per_class: 0, ..ok },
            Params { max_detections: 0, ..ok },
            Params { classes: Some([false; NUM_CLASSES]), ..ok },
            Params { classes: Some(std::array::from_fn(|c| c == 0)), ..ok },
            Params { class_thresholds: Some(std::array::from_fn(|c| (c == 3).then_some(1.5))), ..ok },
            Params { class_thresholds: Some(std::array::from_fn(|c| (c == 0).then_some(0.5))), ..ok },
        ] {
            let e = Postprocessor::new(p).unwrap_err();
            assert!(matches!(e, Error::InvalidParameter { .. }), "{p:?}: {e}");
        }
        for p in [Params { score_threshold: 0.0, ..ok }, Params { score_threshold: 1.0, iou_threshold: 1.0, ..ok }] {
            assert!(Postprocessor::new(p).is_ok());
        }
        let e = Postprocessor::new(Params { iou_threshold: 0.0, ..ok }).unwrap_err();
        assert_eq!(e.to_string(), "iou_threshold = 0 is out of range; expected a value in (0, 1]");
    }

    #[test]
    fn classes_split_across_threads_equal_serial() {
        // Background-dominant random logits, dense enough (thousands of candidates) for the
        // two halves of the classes to run at once within the image.
        let mut rng = Rng::new(77);
        let lg: Vec<Vec<f32>> = LEVELS
            .iter()
            .map(|lv| (0..lv.logits_len()).map(|i| (rng.next_f64() * 4.0) as f32 + if i < lv.num_anchors { 2.5 } else { 0.0 }).collect())
            .collect();
        let mut of: Vec<Vec<f32>> = LEVELS.iter().map(|lv| (0..lv.offsets_len()).map(|_| (rng.next_f64() - 0.5) as f32).collect()).collect();
        let pp = Postprocessor::new(Params { max_detections: 5000, ..Params::default() }).unwrap();
        let n = pp.score_pass(arrays(&lg), Parallelism::Serial).unwrap().len();
        assert!(n >= 2 * PARALLEL_CLASSES_MIN_CANDIDATES, "{n} candidates");
        let par = pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::WithinImage).unwrap();
        assert!(par.len() > 1000, "{}", par.len());
        assert_eq!(par, pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::Serial).unwrap());
        assert_eq!(pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::DenseClasses).unwrap(), par);
        // Random logits with no background bump: tens of thousands of candidates, so that
        // DenseClasses splits the classes too.
        let flat: Vec<Vec<f32>> = LEVELS.iter().map(|lv| (0..lv.logits_len()).map(|_| (rng.next_f64() * 4.0) as f32).collect()).collect();
        assert!(pp.score_pass(arrays(&flat), Parallelism::Serial).unwrap().len() >= DENSE_CLASSES_MIN_CANDIDATES);
        let want = pp.decode_image_with(arrays(&flat), arrays(&of), Parallelism::Serial).unwrap();
        assert_eq!(pp.decode_image_with(arrays(&flat), arrays(&of), Parallelism::DenseClasses).unwrap(), want);
        // The offsets check runs beside the classes and still refuses the image.
        of[2][17] = f32::NAN;
        for parallelism in [Parallelism::WithinImage, Parallelism::Serial, Parallelism::DenseClasses] {
            let e = pp.decode_image_with(arrays(&lg), arrays(&of), parallelism).unwrap_err();
            assert_eq!(e, Error::NonFinite { output: OutputId::offsets(2), item: 0 });
        }
    }

    #[test]
    fn huge_limits_mean_no_limit() {
        let (lg, of) = synthetic_image(5);
        let with = |k, n| Postprocessor::new(Params { max_candidates_per_class: k, max_detections: n, ..Params::default() }).unwrap();
        let unlimited = with(usize::MAX, usize::MAX).decode_image(arrays(&lg), arrays(&of)).unwrap();
        let enough = with(crate::layout::NUM_ANCHORS, usize::MAX / 2).decode_image(arrays(&lg), arrays(&of)).unwrap();
        assert!(unlimited.len() > 200, "{}", unlimited.len());
        assert_eq!(unlimited, enough);
        // A cut that binds, and the lazy decoding of more than one batch of keys.
        let mut c = Candidates::group((0..300).map(|a| Candidate::new(4, 0.5, a)).collect());
        let mut offsets: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.0; lv.offsets_len()]).collect();
        for a in 0..10 {
            offsets[0][2 * LEVELS[0].num_anchors + a] = 1000.0; // overflowing boxes: dropped
        }
        assert_eq!(decode_top_k(&mut c, arrays(&offsets), usize::MAX).items.len(), 290);
        assert_eq!(decode_top_k(&mut c, arrays(&offsets), 100).items.len(), 100);
    }

    #[test]
    fn top_k_cut_is_exact_with_equal_scores() {
        // 250 candidates of class 7, all with the same score: the 200 lowest anchors win.
        let keys: Vec<Candidate> = (0..250).rev().map(|a| Candidate::new(7, 0.5, a * 3)).collect();
        let mut c = Candidates::group(keys);
        let offsets: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.0; lv.offsets_len()]).collect();
        let b = decode_top_k(&mut c, arrays(&offsets), 200);
        let anchors: Vec<usize> = b.class(7).iter().map(|d| d.key.anchor()).collect();
        assert_eq!(anchors, (0..200).map(|a| a * 3).collect::<Vec<_>>());
        // Higher scores first, whatever the anchor.
        let mut keys: Vec<Candidate> = (0..300).map(|a| Candidate::new(2, 0.3, a)).collect();
        keys.push(Candidate::new(2, 0.31, 299));
        let mut c = Candidates::group(keys);
        let b = decode_top_k(&mut c, arrays(&offsets), 200);
        assert_eq!(b.class(2).len(), 200);
        assert_eq!(b.class(2)[0].key.anchor(), 299);
        assert_eq!(b.class(2)[199].key.anchor(), 198);
    }

    #[test]
    fn overflowing_boxes_do_not_take_top_k_slots() {
        let keys: Vec<Candidate> = (0..10).map(|a| Candidate::new(1, 0.9 - a as f32 * 0.01, a)).collect();
        let mut c = Candidates::group(keys);
        let mut offsets: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.0; lv.offsets_len()]).collect();
        let a_0 = LEVELS[0].num_anchors;
        for a in [0, 2, 3] {
            offsets[0][2 * a_0 + a] = 1000.0; // dw: exp(200) overflows float32
        }
        let b = decode_top_k(&mut c, arrays(&offsets), 4);
        let anchors: Vec<usize> = b.class(1).iter().map(|d| d.key.anchor()).collect();
        assert_eq!(anchors, vec![1, 4, 5, 6]);
    }

    #[test]
    fn merge_tie_break() {
        // Each box's left edge is its anchor index, to follow the anchors through the merge.
        let d = |class, score, anchor: usize| DecodedCandidate {
            key: Candidate::new(class, score, anchor),
            ltrb: [anchor as f32, 0.0, 1000.0, 1.0],
        };
        let anchors = |m: &Detections| m.boxes.iter().map(|b| b[0] as usize).collect::<Vec<_>>();
        let kept = vec![d(5, 0.5, 3), d(2, 0.5, 9), d(2, 0.5, 4), d(9, 0.7, 100), d(1, 0.2, 0)];
        let m = merge(kept.clone(), 200);
        assert_eq!(m.labels, vec![9, 2, 2, 5, 1]);
        assert_eq!(anchors(&m), vec![100, 4, 9, 3, 0]);
        assert_eq!(m.scores, vec![0.7, 0.5, 0.5, 0.5, 0.2]);
        let m = merge(kept.clone(), 3);
        assert_eq!(anchors(&m), vec![100, 4, 9]);
        // Any order of the kept boxes gives the same merge (here one run per box).
        let mut reversed = kept.clone();
        reversed.reverse();
        assert_eq!(merge(reversed, 200), merge(kept.clone(), 200));
        assert!(merge(Vec::new(), 200).is_empty());
        assert_eq!(merge(kept, 1).labels, vec![9]);
    }

    #[test]
    fn pipeline_matches_a_plain_implementation() {
        let (lg, of) = synthetic_image(11);
        let pp = Postprocessor::new(Params::default()).unwrap();
        let det = pp.decode_image(arrays(&lg), arrays(&of)).unwrap();
        assert!(det.len() > 20, "{}", det.len());
        // Plain: full softmax of every anchor, decode all, sort per class, NMS, merge.
        let dboxes = default_boxes();
        let mut p = [0.0f32; NUM_CLASSES];
        let mut per_class: Vec<Vec<(f32, usize, [f32; 4])>> = vec![Vec::new(); NUM_CLASSES];
        for lv in &LEVELS {
            for a in 0..lv.num_anchors {
                crate::scores::softmax_anchor(&lg[lv.index], lv.num_anchors, a, &mut p);
                let g = lv.first_anchor + a;
                let off: [f32; 4] = std::array::from_fn(|k| of[lv.index][k * lv.num_anchors + a]);
                for c in 1..NUM_CLASSES {
                    if p[c] > 0.05f32 {
                        per_class[c].push((p[c], g, decode_box(dboxes[g], off).unwrap()));
                    }
                }
            }
        }
        let mut all = Vec::new();
        for (c, v) in per_class.iter_mut().enumerate() {
            v.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)));
            v.truncate(200);
            let mut kept: Vec<(f32, usize, [f32; 4])> = Vec::new();
            for cand in v.iter() {
                if kept.iter().all(|k| crate::nms::iou(&k.2, &cand.2) < 0.5f32) {
                    kept.push(*cand);
                }
            }
            all.extend(kept.into_iter().map(|(s, a, b)| (s, c as i64, a, b)));
        }
        all.sort_by(|x, y| y.0.total_cmp(&x.0).then(x.1.cmp(&y.1)).then(x.2.cmp(&y.2)));
        all.truncate(200);
        assert_eq!(det.scores, all.iter().map(|x| x.0).collect::<Vec<_>>());
        assert_eq!(det.labels, all.iter().map(|x| x.1).collect::<Vec<_>>());
        assert_eq!(det.boxes, all.iter().map(|x| x.3).collect::<Vec<_>>());
        let serial = pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::Serial).unwrap();
        assert_eq!(serial, det);
        let within = pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::WithinImage).unwrap();
        assert_eq!(within, det);
        let split = Postprocessor::new(Params { within_image: true, ..Params::default() }).unwrap();
        assert_eq!(split.decode_batch(arrays(&lg), arrays(&of), 1).unwrap(), vec![det.clone()]);
        let dense = pp.decode_image_with(arrays(&lg), arrays(&of), Parallelism::DenseClasses).unwrap();
        assert_eq!(dense, det);
    }

    fn concat(images: &[&[Vec<f32>]]) -> Vec<Vec<f32>> {
        (0..NUM_LEVELS).map(|l| images.iter().flat_map(|im| im[l].iter().copied()).collect()).collect()
    }

    #[test]
    fn batch_equals_single() {
        let pp = Postprocessor::new(Params::default()).unwrap();
        let imgs: Vec<_> = (0..3).map(|s| synthetic_image(100 + s)).collect();
        let lg = concat(&imgs.iter().map(|i| i.0.as_slice()).collect::<Vec<_>>());
        let of = concat(&imgs.iter().map(|i| i.1.as_slice()).collect::<Vec<_>>());
        let batch = pp.decode_batch(arrays(&lg), arrays(&of), 3).unwrap();
        for (n, img) in imgs.iter().enumerate() {
            assert_eq!(batch[n], pp.decode_image(arrays(&img.0), arrays(&img.1)).unwrap());
        }
        assert_ne!(batch[0], batch[1]);
        let empty: Vec<Vec<f32>> = vec![Vec::new(); 6];
        assert!(pp.decode_batch(arrays(&empty), arrays(&empty), 0).unwrap().is_empty());
    }

    #[test]
    fn batch_errors_name_lowest_output_then_item() {
        let pp = Postprocessor::new(Params::default()).unwrap();
        let imgs: Vec<_> = (0..3).map(|s| synthetic_image(200 + s)).collect();
        let mut lg = concat(&imgs.iter().map(|i| i.0.as_slice()).collect::<Vec<_>>());
        let mut of = concat(&imgs.iter().map(|i| i.1.as_slice()).collect::<Vec<_>>());
        // Item 2: offsets level 1 (outputs[7]); item 1: offsets level 4 (outputs[10]).
        of[1][2 * LEVELS[1].offsets_len() + 5] = f32::NAN;
        of[4][LEVELS[4].offsets_len() + 1] = f32::INFINITY;
        let e = pp.decode_batch(arrays(&lg), arrays(&of), 3).unwrap_err();
        assert_eq!(e.to_string(), "outputs[7] (box offsets, level 1) contains NaN or infinite values (batch item 2)");
        // Logits of level 5 in item 1 come first.
        lg[5][LEVELS[5].logits_len() + 3] = f32::NEG_INFINITY;
        let e = pp.decode_batch(arrays(&lg), arrays(&of), 3).unwrap_err();
        assert_eq!(e, Error::NonFinite { output: OutputId::logits(5), item: 1 });
        // A single image reports item 0.
        let e = pp.decode_batch(
            std::array::from_fn(|l| &lg[l][..LEVELS[l].logits_len()]),
            std::array::from_fn(|l| &of[l][..LEVELS[l].offsets_len()]),
            1,
        );
        assert!(e.is_ok());
    }

    #[test]
    fn float16_batch_equals_its_float32_conversion() {
        use half::f16;
        let pp = Postprocessor::new(Params::default()).unwrap();
        let imgs: Vec<_> = (0..2).map(|s| synthetic_image(300 + s)).collect();
        let lg = concat(&imgs.iter().map(|i| i.0.as_slice()).collect::<Vec<_>>());
        let of = concat(&imgs.iter().map(|i| i.1.as_slice()).collect::<Vec<_>>());
        let half = |v: &Vec<Vec<f32>>| -> Vec<Vec<f16>> { v.iter().map(|l| l.iter().map(|&x| f16::from_f32(x)).collect()).collect() };
        let (lg16, of16) = (half(&lg), half(&of));
        let back = |v: &Vec<Vec<f16>>| -> Vec<Vec<f32>> { v.iter().map(|l| l.iter().map(|x| x.to_f32()).collect()).collect() };
        let (lg32, of32) = (back(&lg16), back(&of16));
        for batch in [1, 2] {
            let cut = |_l: usize, n: usize| n * batch;
            let want = pp
                .decode_batch(std::array::from_fn(|l| &lg32[l][..cut(l, LEVELS[l].logits_len())]), std::array::from_fn(|l| &of32[l][..cut(l, LEVELS[l].offsets_len())]), batch)
                .unwrap();
            assert!(want[0].len() > 10);
            // All float16, and mixed: float16 logits with float32 offsets and the reverse.
            for (lf16, of_16) in [(true, true), (true, false), (false, true)] {
                let l: [Head; 6] = std::array::from_fn(|l| {
                    let n = cut(l, LEVELS[l].logits_len());
                    if lf16 { Head::F16(&lg16[l][..n]) } else { Head::F32(&lg32[l][..n]) }
                });
                let o: [Head; 6] = std::array::from_fn(|l| {
                    let n = cut(l, LEVELS[l].offsets_len());
                    if of_16 { Head::F16(&of16[l][..n]) } else { Head::F32(&of32[l][..n]) }
                });
                assert_eq!(pp.decode_batch_heads(l, o, batch).unwrap(), want, "batch {batch}, {lf16} {of_16}");
            }
        }
        let mut bad = of16.clone();
        bad[5][3] = f16::NEG_INFINITY;
        let e = pp.decode_batch_heads(std::array::from_fn(|l| Head::F16(&lg16[l][..])), std::array::from_fn(|l| Head::F16(&bad[l][..])), 2);
        assert_eq!(e.unwrap_err(), Error::NonFinite { output: OutputId::offsets(5), item: 0 });
        let e = pp.decode_batch_heads(std::array::from_fn(|l| Head::F16(&lg16[l][..])), std::array::from_fn(|l| Head::F16(&of16[l][..])), 3);
        assert!(matches!(e.unwrap_err(), Error::Length { .. }));
    }

    #[test]
    fn wrong_lengths_are_errors() {
        let pp = Postprocessor::new(Params::default()).unwrap();
        let (lg, mut of) = synthetic_image(3);
        of[3].pop();
        let e = pp.decode_image(arrays(&lg), arrays(&of)).unwrap_err();
        assert!(matches!(e, Error::Length { output, .. } if output == OutputId::offsets(3)), "{e}");
    }
}
