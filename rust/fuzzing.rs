//! Thin wrappers over the crate-private kernels, for the differential fuzz target of the
//! fuzz crate (`fuzz/src/kernels.rs`, fuzz/README.md). Compiled only with the `fuzzing`
//! cargo feature, which the fuzz crate enables; not part of the API (hidden from the docs,
//! absent from the default build and the wheel). Each wrapper calls the kernel as the
//! pipeline does and adds nothing to what it computes.
//!
//! - [`ScoreKernel`]: the score pass of one level over a range of anchors
//!   (`scores::score_level_range`: finite check, quick reject, SIMD float64 softmax, per-class
//!   thresholds), with the configuration the postprocessor builds (`ScoreConfig` of the
//!   class thresholds) on a chosen [`Isa`], or the same without the quick reject and the
//!   prefilter;
//! - [`exp_lanes`]: the crate's float64 `exp` (portable version, lane by lane), which the
//!   docs define the softmax with, for an oracle's brute-force softmax;
//! - [`reject_bound`]: the quick-reject bound of a threshold (for reporting only);
//! - [`Nms`]: the greedy NMS kernel (`nms::greedy_nms_into`) on a chosen [`Isa`], with its
//!   buffers kept from one call to the next as the pipeline keeps them;
//! - [`nms`]: the single-class NMS of the bindings (`_native.nms`: checks, sort by (score
//!   desc, index asc), greedy NMS).

use crate::error::Error;
use crate::layout::{Level, NUM_ANCHORS};
use crate::nms::{greedy_nms_into, NmsScratch};
use crate::scores::{score_level_range, Candidate, ScoreConfig};
use crate::simd::{Isa, LANES};

/// Classes per anchor, background (0) included.
pub const NUM_CLASSES: usize = crate::layout::NUM_CLASSES;
/// Default boxes over all levels (the anchors of a level lie below it).
pub const NUM_ANCHORS_TOTAL: usize = NUM_ANCHORS;
/// Lanes of [`exp_lanes`].
pub const EXP_LANES: usize = LANES;

/// The score pass configuration of a set of class thresholds, on one instruction set.
#[derive(Clone, Copy, Debug)]
pub struct ScoreKernel {
    cfg: ScoreConfig,
}

impl ScoreKernel {
    /// The configuration the postprocessor builds from its per-class float32 thresholds
    /// (`ScoreConfig::with_thresholds`: a candidate of class c needs score > `thresholds[c]`,
    /// `f32::INFINITY` for an unwanted class; `thresholds[0]` is ignored; quick reject and
    /// prefilter from the lowest), on `isa`. `None` unless some class 1..=80 has a finite
    /// threshold (the postprocessor's parameter checks guarantee one).
    pub fn new(thresholds: [f32; NUM_CLASSES], isa: Isa) -> Option<Self> {
        if !thresholds[1..].iter().any(|t| t.is_finite()) {
            return None;
        }
        let cfg = ScoreConfig { isa, ..ScoreConfig::with_thresholds(thresholds) };
        Some(ScoreKernel { cfg })
    }

    /// The same thresholds without the shortcuts: no quick reject (every anchor gets the
    /// full softmax) and no prefilter (every pair is divided out).
    pub fn without_shortcuts(self) -> Self {
        ScoreKernel { cfg: ScoreConfig { reject_bound: f32::INFINITY, prefilter: 0.0, ..self.cfg } }
    }

    /// The quick-reject bound in use (`f32::INFINITY`: no reject).
    pub fn reject_bound(&self) -> f32 {
        self.cfg.reject_bound
    }

    /// The thresholds in use (the background's is `f32::INFINITY`).
    pub fn thresholds(&self) -> [f32; NUM_CLASSES] {
        self.cfg.thresholds
    }

    /// `score_level_range`: appends every candidate (class >= 1, float32 score > its
    /// class's threshold) of the anchors `range` (local) of `level` to `out`, as
    /// (class, score, global anchor) keys; false when a logit of these anchors is not
    /// finite. `logits` is one image's slice of the level (`level.logits_len()` values).
    ///
    /// `level` may be a real level (`LEVELS`) or a piece of one as the float16 path makes
    /// (any `num_anchors`, `first_anchor + num_anchors <= 15,130`).
    ///
    /// # Panics
    /// When `logits` does not have `level.logits_len()` values, `range` leaves the level or
    /// the level's anchors are not below 15,130 (the kernel's own checks, and the key's
    /// anchor field).
    pub fn score_range(&self, level: &Level, logits: &[f32], range: std::ops::Range<usize>, out: &mut Vec<Candidate>) -> bool {
        assert!(level.first_anchor + level.num_anchors <= NUM_ANCHORS, "ScoreKernel::score_range: anchors past 15,130");
        score_level_range(level, logits, range, &self.cfg, out)
    }
}

/// The crate's float64 `exp` of each lane (the portable kernel: the fast path inside
/// [-707, 709], the C library's `exp` outside; the SIMD kernels give the same bits).
///
/// Where the CPU has FMA, the same code is compiled with it (`f64::mul_add` is one rounding
/// either way, so the bits are those of the portable build, which calls a software `fma`),
/// because an oracle calls it for every (anchor, class) pair.
pub fn exp_lanes(x: [f64; EXP_LANES]) -> [f64; EXP_LANES] {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("fma") {
            // SAFETY: the CPU has FMA (just checked).
            return unsafe { exp_lanes_fma(x) };
        }
    }
    crate::simd::exp::exp_lanes(x)
}

/// [`exp_lanes`] compiled with FMA.
///
/// # Safety
/// The CPU must support FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "fma")]
unsafe fn exp_lanes_fma(x: [f64; EXP_LANES]) -> [f64; EXP_LANES] {
    crate::simd::exp::exp_lanes(x)
}

/// The quick-reject bound of one threshold (`scores::reject_bound`).
pub fn reject_bound(score_threshold: f32) -> f32 {
    crate::scores::reject_bound(score_threshold)
}

/// The greedy NMS kernel with its buffers, reused from one call to the next.
#[derive(Default)]
pub struct Nms {
    scratch: NmsScratch,
}

impl Nms {
    /// `greedy_nms_into`: boxes already in processing order (finite), a box kept when its
    /// float32 IoU with every box kept before it is `< iou_threshold`; appends the kept
    /// positions to `kept`, stopping once `limit` are kept.
    pub fn greedy(&mut self, isa: Isa, boxes: &[[f32; 4]], iou_threshold: f32, limit: usize, kept: &mut Vec<usize>) {
        greedy_nms_into(isa, boxes, iou_threshold, limit, &mut self.scratch, kept);
    }
}

/// The single-class NMS of the bindings (`_native.nms`): the checks (lengths, finite boxes
/// and scores, `iou_threshold` in (0, 1]), the sort by (score desc, index asc; -0.0 ==
/// 0.0), then greedy NMS at `iou_threshold as f32` with [`Isa::best`]. The kept indices in
/// processing order.
pub fn nms(boxes: &[[f32; 4]], scores: &[f32], iou_threshold: f64) -> Result<Vec<usize>, Error> {
    crate::nms::nms(boxes, scores, iou_threshold)
}
