//! The score pass: finite check of the class logits, quick reject, softmax and
//! threshold, producing the (class, score, anchor) candidates of one image
//! (docs/postprocess.md, "Scores"; MLCommons' `F.softmax(scores_in, dim=-1)` in
//! `scale_back_batch` and `score > 0.05` in `Encoder.decode_single`).
//!
//! # Quick reject
//!
//! For a class c >= 1, p_c = e_c / S <= e_c / (e_0 + e_c) = 1 / (1 + exp(x_0 - x_c)), so
//! with d = x_0 - max_{c>=1} x_c every foreground score of the anchor is at most
//! 1 / (1 + exp(d)). That is <= t exactly when d >= B = ln(1/t - 1). Most anchors of a
//! real image are background-dominant (d well above B), and for them no exponential is
//! needed: one vectorised pass keeps a running max over the 80 foreground rows and
//! compares `x_0 - max` with a bound slightly above B ([`reject_bound`]).
//!
//! Why the margin makes it exact: the computed score is f32(p') with p' the float64
//! softmax, |p'/p - 1| < 1e-13 (81 exps and a sum, each a few float64 ulps), and
//! f32(p') <= t whenever p' <= t. So an anchor may be rejected when
//! 1 / (1 + exp(d_true)) <= t / (1 + 1e-13), i.e. d_true >= B + ln(1 + 1e-13/(1-t)),
//! and since t <= 1 - 2^-24 as float32, that is at most B + 2e-6. The tested value
//! d = f32(x_0 - m) is the exact difference rounded once, |d - d_true| <= 2^-24 |d|, so
//! `d > B + 1e-3 + 1e-6|B|` (evaluated in float64, rounded up to float32) implies
//! d_true >= B + 2e-6 with a wide safety factor. For t <= 0 (every score is > t
//! unless it underflows) or t >= 1 (B = -inf) there is no reject.
//!
//! The finite check is folded into the same pass (kernels in [`crate::simd::reject`]).
//!
//! # Softmax of the survivors
//!
//! Anchors that pass the quick reject get the exact float64 softmax, eight at a time
//! (one per SIMD lane, [`crate::simd::softmax`]; survivors wait across chunks until a
//! group is full): a strided gather of the 81 logits, m = the anchor's max logit (known
//! from the quick reject: max(x_0, foreground max)), e_c = exp(x_c - m), S summed in class
//! order; a division e_c / S only for pairs that can pass (e_c > S * t * (1 - 1e-9), see
//! [`ScoreConfig::prefilter`]). docs/postprocess.md ("How the native implementation
//! computes it") gives the arguments for each of these steps.

use crate::layout::{Head, Level, LEVELS, NUM_CLASSES, NUM_LEVELS};
use crate::simd::reject::{abs_bits, foreground_max, select_survivors, NON_FINITE_ABS_BITS, SELECT_SLACK};
use crate::simd::softmax::{softmax_lanes, Group, GroupOut};
use crate::simd::{Isa, LANES};
use rayon::prelude::*;

/// Anchors processed together in the quick-reject pass (stack buffer of running maxima).
const CHUNK: usize = 1024;
/// Anchors converted together from float16 (81 rows of them, 162 KB of float32: in L2).
const F16_CHUNK: usize = 512;
/// Anchors per task when the score pass of one image runs on the rayon pool.
const PAR_TASK_ANCHORS: usize = 2560;

/// The float32 threshold on d = x_0 - max_{c>=1} x_c above which an anchor has no
/// candidate (see the module docs). `f32::INFINITY` when no anchor may be rejected.
pub(crate) fn reject_bound(score_threshold: f32) -> f32 {
    let t = score_threshold as f64;
    if !(t > 0.0 && t < 1.0) {
        return f32::INFINITY;
    }
    let b = (1.0 / t - 1.0).ln();
    if !b.is_finite() {
        return f32::INFINITY;
    }
    let bound = b + 1e-3 + 1e-6 * b.abs();
    let rounded = bound as f32;
    // Round up: the bound may only grow.
    if (rounded as f64) < bound {
        next_toward_inf(rounded)
    } else {
        rounded
    }
}

/// The next float32 above a finite `x` (`f32::next_up`, which needs Rust 1.86).
pub(crate) fn next_toward_inf(x: f32) -> f32 {
    debug_assert!(x.is_finite());
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

/// One candidate as a sortable key: class (bits 46..53), !score bits (14..46) and
/// global anchor (0..14). Ascending keys are (class asc, score desc, anchor asc) since
/// candidate scores are > 0, whose float32 bit patterns order like the values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Candidate(pub(crate) u64);

const ANCHOR_BITS: u32 = 14;
const SCORE_SHIFT: u32 = ANCHOR_BITS;
const CLASS_SHIFT: u32 = ANCHOR_BITS + 32;
const _: () = assert!(crate::layout::NUM_ANCHORS < 1 << ANCHOR_BITS);

impl Candidate {
    /// `score` must be > 0 (all candidates are: score > threshold >= 0).
    #[inline]
    pub(crate) fn new(class: usize, score: f32, anchor: usize) -> Self {
        debug_assert!(score > 0.0 && class < NUM_CLASSES && anchor < 1 << ANCHOR_BITS);
        Candidate(((class as u64) << CLASS_SHIFT) | ((!score.to_bits() as u64) << SCORE_SHIFT) | anchor as u64)
    }

    #[inline]
    pub fn class(self) -> usize {
        (self.0 >> CLASS_SHIFT) as usize
    }

    #[inline]
    pub fn score(self) -> f32 {
        f32::from_bits(!((self.0 >> SCORE_SHIFT) as u32))
    }

    #[inline]
    pub fn anchor(self) -> usize {
        (self.0 & ((1 << ANCHOR_BITS) - 1)) as usize
    }
}

/// Thresholds of the score pass.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct ScoreConfig {
    /// The float32 score threshold of each class: a candidate of class c needs score >
    /// `thresholds[c]`; `f32::INFINITY` for a class that is not wanted (the background,
    /// classes outside the `classes` option), which never has a candidate.
    pub thresholds: [f32; NUM_CLASSES],
    /// Quick-reject bound on x_0 - max_{c>=1} x_c for the lowest threshold (an anchor
    /// rejected for it has no score above any class's threshold); `f32::INFINITY`
    /// disables the reject.
    pub reject_bound: f32,
    /// t*(1 - 1e-9) in float64 for the lowest threshold t: f32(fl(e/S)) > t needs
    /// fl(e/S) > t, so e/S > t(1 - 2^-53), which implies e > fl(S * prefilter); pairs
    /// failing this cheap test are skipped.
    pub prefilter: f64,
    /// The kernels' instruction set ([`Isa::best`]).
    pub isa: Isa,
}

impl ScoreConfig {
    /// One threshold for every foreground class, with the quick reject on.
    #[cfg(test)]
    pub(crate) fn new(score_threshold: f32) -> Self {
        let mut thresholds = [score_threshold; NUM_CLASSES];
        thresholds[0] = f32::INFINITY;
        Self::with_thresholds(thresholds)
    }

    /// A threshold per class (`thresholds[0]`, the background's, is ignored), with the
    /// quick reject and the prefilter of the lowest one. At least one foreground class
    /// must have a finite threshold.
    pub(crate) fn with_thresholds(mut thresholds: [f32; NUM_CLASSES]) -> Self {
        thresholds[0] = f32::INFINITY;
        let lowest = thresholds[1..].iter().copied().fold(f32::INFINITY, f32::min);
        debug_assert!(lowest.is_finite());
        ScoreConfig {
            thresholds,
            reject_bound: reject_bound(lowest),
            prefilter: lowest as f64 * (1.0 - 1e-9),
            isa: Isa::best(),
        }
    }

    /// The same threshold without quick reject (every anchor gets a full softmax).
    #[cfg(test)]
    pub(crate) fn without_quick_reject(self) -> Self {
        ScoreConfig { reject_bound: f32::INFINITY, ..self }
    }
}

/// Candidates of one image grouped by class: those of class c are
/// `keys[starts[c]..starts[c + 1]]` (unordered within the class; class 0 is empty).
#[derive(Clone, Debug, PartialEq)]
pub struct Candidates {
    pub keys: Vec<Candidate>,
    pub starts: [usize; NUM_CLASSES + 1],
}

impl Candidates {
    /// Groups candidates by class (counting sort).
    pub(crate) fn group(unordered: Vec<Candidate>) -> Self {
        let mut counts = [0usize; NUM_CLASSES + 1];
        for k in &unordered {
            counts[k.class() + 1] += 1;
        }
        for c in 0..NUM_CLASSES {
            counts[c + 1] += counts[c];
        }
        let starts = counts;
        let mut next = starts;
        let mut keys = vec![Candidate(0); unordered.len()];
        for k in unordered {
            let slot = &mut next[k.class()];
            keys[*slot] = k;
            *slot += 1;
        }
        Candidates { keys, starts }
    }

    /// The candidates of one class.
    #[cfg(test)]
    pub(crate) fn class(&self, class: usize) -> &[Candidate] {
        &self.keys[self.starts[class]..self.starts[class + 1]]
    }

    /// The candidates of one class, mutable (for in-place selection).
    pub(crate) fn class_mut(&mut self, class: usize) -> &mut [Candidate] {
        &mut self.keys[self.starts[class]..self.starts[class + 1]]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// The softmax of one anchor: `out[c]` = f32(e_c / S) with, in float64,
/// m = max_c x_c, e_c = exp(x_c - m), S summed in class order 0..80.
/// `logits` is one image's level slice (81 rows of `num_anchors`), `anchor` local.
#[cfg(test)]
pub(crate) fn softmax_anchor(logits: &[f32], num_anchors: usize, anchor: usize, out: &mut [f32; NUM_CLASSES]) {
    let max = (0..NUM_CLASSES).map(|c| logits[c * num_anchors + anchor]).fold(f32::NEG_INFINITY, f32::max);
    let group = Group { logits, num_anchors, anchors: [anchor as u32; LANES], max: [max; LANES] };
    let mut g = GroupOut::new();
    softmax_lanes(Isa::best(), &group, 0.0, &mut g);
    for (o, ec) in out.iter_mut().zip(&g.e) {
        *o = (ec[0] / g.sums[0]) as f32;
    }
}

/// Room of [`Survivors`]: a chunk's survivors, the fewer than [`LANES`] left from the
/// chunks before, and the slack of the selection kernel's whole-register stores.
const SURVIVORS_CAP: usize = CHUNK + LANES + SELECT_SLACK;

/// Anchors that passed the quick reject, waiting for the softmax: local index and max
/// logit (over all 81 classes) of each, `len` of them.
struct Survivors {
    anchors: [u32; SURVIVORS_CAP],
    max: [f32; SURVIVORS_CAP],
    len: usize,
}

impl Survivors {
    fn new() -> Self {
        Survivors { anchors: [0; SURVIVORS_CAP], max: [0.0; SURVIVORS_CAP], len: 0 }
    }

    /// Keeps the survivors from `from` on, moved to the front.
    fn keep_from(&mut self, from: usize) {
        self.anchors.copy_within(from..self.len, 0);
        self.max.copy_within(from..self.len, 0);
        self.len -= from;
    }
}

/// The quick-reject kernel over `len <= CHUNK` anchors starting at local anchor `start`:
/// appends the anchors that may have a candidate to `survivors` (which holds fewer than
/// [`LANES`]), with their max logit. Returns false when a logit of these anchors is not
/// finite.
///
/// Row by row (each a contiguous run of `len` floats, so the reads stream), a running
/// max over the 80 foreground rows, then `d = x_0 - max` against the bound. The finite
/// check is an integer max of |x| bit patterns folded into the same reads.
fn reject_chunk(isa: Isa, logits: &[f32], num_anchors: usize, start: usize, len: usize, bound: f32, survivors: &mut Survivors) -> bool {
    debug_assert!(len <= CHUNK && start + len <= num_anchors && survivors.len < LANES);
    let mut mx = [f32::NEG_INFINITY; CHUNK];
    let mx = &mut mx[..len];
    let mut abs_max = foreground_max(isa, logits, num_anchors, start, mx);
    let row0 = &logits[start..][..len];
    abs_max = row0.iter().fold(abs_max, |a, &x0| a.max(abs_bits(x0)));
    if abs_max >= NON_FINITE_ABS_BITS {
        return false;
    }
    // The max of all 81 logits: its sign of zero may differ from the class-order max,
    // which changes no x_c - m (x - 0 = x - (-0) = x; +-0 - +-0 = +-0, exp(+-0) = 1).
    let n = survivors.len;
    survivors.len += select_survivors(isa, row0, mx, start, bound, &mut survivors.anchors[n..], &mut survivors.max[n..]);
    true
}

/// Scores the anchors `range` (local indices) of one level: pushes every candidate
/// (class >= 1, f32 score > its class's threshold) onto `out`. `logits` is the level's slice for
/// one image (`level.logits_len()` values). Returns false when a logit of these
/// anchors is not finite (then `out` is unspecified).
///
/// # Panics
/// When `logits` does not have `level.logits_len()` values or `range` leaves the level.
pub(crate) fn score_level_range(level: &Level, logits: &[f32], range: std::ops::Range<usize>, cfg: &ScoreConfig, out: &mut Vec<Candidate>) -> bool {
    assert_eq!(logits.len(), level.logits_len(), "score_level_range: wrong slice length");
    assert!(range.end <= level.num_anchors, "score_level_range: range out of the level");
    let a_l = level.num_anchors;
    // Survivors wait here until a full group of LANES has gathered (the rest of a
    // chunk joins the next one's), so lanes are rarely wasted.
    let mut pending = Survivors::new();
    let mut g = GroupOut::new();
    let mut score_group = |anchors: &[u32], max: &[f32], out: &mut Vec<Candidate>| {
        let last = anchors.len() - 1;
        let group = Group {
            logits,
            num_anchors: a_l,
            anchors: std::array::from_fn(|i| anchors[i.min(last)]),
            max: std::array::from_fn(|i| max[i.min(last)]),
        };
        // The hits are the pairs with e > S*t_lo, necessary for f32(e/S) > t
        // (ScoreConfig::prefilter), so most (anchor, class) pairs need no division.
        softmax_lanes(cfg.isa, &group, cfg.prefilter, &mut g);
        let valid = u8::MAX >> (LANES - anchors.len());
        for &(c, mask) in &g.hits[..g.num_hits] {
            let mut bits = mask & valid;
            while bits != 0 {
                let lane = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let p = (g.e[c as usize][lane] / g.sums[lane]) as f32;
                if p > cfg.thresholds[c as usize] {
                    out.push(Candidate::new(c as usize, p, level.first_anchor + group.anchors[lane] as usize));
                }
            }
        }
    };
    let mut start = range.start;
    while start < range.end {
        let len = CHUNK.min(range.end - start);
        if !reject_chunk(cfg.isa, logits, a_l, start, len, cfg.reject_bound, &mut pending) {
            return false;
        }
        let full = pending.len - pending.len % LANES;
        for (anchors, max) in pending.anchors[..full].chunks_exact(LANES).zip(pending.max[..full].chunks_exact(LANES)) {
            score_group(anchors, max, out);
        }
        pending.keep_from(full);
        start += len;
    }
    if pending.len > 0 {
        score_group(&pending.anchors[..pending.len], &pending.max[..pending.len], out);
    }
    true
}

/// [`score_level_range`] on a level's data of either type. float16 logits are converted
/// to float32 chunk by chunk ([`F16_CHUNK`] anchors x 81 classes into `scratch`, which
/// stays in cache) and each chunk is scored as a level of its own, so that the float16
/// data is read once from memory; the candidates are those of the float32 conversion (the
/// score of an anchor depends on its 81 logits only).
fn score_level_head(level: &Level, logits: Head<'_>, range: std::ops::Range<usize>, cfg: &ScoreConfig, out: &mut Vec<Candidate>, scratch: &mut Vec<f32>) -> bool {
    let x = match logits {
        Head::F32(x) => return score_level_range(level, x, range, cfg, out),
        Head::F16(_) => logits,
    };
    assert_eq!(x.len(), level.logits_len(), "score_level_head: wrong slice length");
    assert!(range.end <= level.num_anchors, "score_level_head: range out of the level");
    let a_l = level.num_anchors;
    let mut start = range.start;
    while start < range.end {
        let len = F16_CHUNK.min(range.end - start);
        if scratch.len() < NUM_CLASSES * F16_CHUNK {
            scratch.resize(NUM_CLASSES * F16_CHUNK, 0.0);
        }
        let chunk_logits = &mut scratch[..NUM_CLASSES * len];
        for c in 0..NUM_CLASSES {
            x.read_into(c * a_l + start, &mut chunk_logits[c * len..][..len]);
        }
        let chunk = Level { num_anchors: len, first_anchor: level.first_anchor + start, ..*level };
        if !score_level_range(&chunk, chunk_logits, 0..len, cfg, out) {
            return false;
        }
        start += len;
    }
    true
}

/// Runs the score pass over the six levels of one image, `logits[l]` being level l's
/// slice (`LEVELS[l].logits_len()` values, checked by the caller).
///
/// `parallel`: split the anchors into tasks on the rayon pool (for a batch of one).
/// Err(l): the class logits of level l (the lowest such level) are not all finite.
#[cfg(test)]
pub fn score_pass(logits: [&[f32]; NUM_LEVELS], cfg: &ScoreConfig, parallel: bool) -> Result<Candidates, usize> {
    score_pass_heads(logits.map(Head::F32), cfg, parallel)
}

/// [`score_pass`] on float32 or float16 logits (each level either).
pub(crate) fn score_pass_heads(logits: [Head<'_>; NUM_LEVELS], cfg: &ScoreConfig, parallel: bool) -> Result<Candidates, usize> {
    if !parallel {
        let mut out = Vec::new();
        let mut scratch = Vec::new();
        for (lv, x) in LEVELS.iter().zip(logits) {
            if !score_level_head(lv, x, 0..lv.num_anchors, cfg, &mut out, &mut scratch) {
                return Err(lv.index);
            }
        }
        return Ok(Candidates::group(out));
    }
    let mut tasks = Vec::new();
    for lv in &LEVELS {
        let pieces = lv.num_anchors.div_ceil(PAR_TASK_ANCHORS);
        let step = lv.num_anchors.div_ceil(pieces);
        let mut s = 0;
        while s < lv.num_anchors {
            let e = (s + step).min(lv.num_anchors);
            tasks.push((lv.index, s..e));
            s = e;
        }
    }
    let results: Vec<Result<Vec<Candidate>, usize>> = tasks
        .into_par_iter()
        .map(|(l, range)| {
            let mut out = Vec::new();
            if score_level_head(&LEVELS[l], logits[l], range, cfg, &mut out, &mut Vec::new()) {
                Ok(out)
            } else {
                Err(l)
            }
        })
        .collect();
    let mut all = Vec::new();
    for r in results {
        // Tasks are in level order, so the first error is the lowest level.
        all.extend(r?);
    }
    Ok(Candidates::group(all))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_util::Rng;

    /// Plain reference: softmax of every anchor, no reject.
    fn brute_force(logits: [&[f32]; 6], t: f32) -> Vec<Candidate> {
        let mut out = Vec::new();
        let mut p = [0.0; NUM_CLASSES];
        for lv in &LEVELS {
            for a in 0..lv.num_anchors {
                softmax_anchor(logits[lv.index], lv.num_anchors, a, &mut p);
                for (c, &pc) in p.iter().enumerate().skip(1) {
                    if pc > t {
                        out.push(Candidate::new(c, pc, lv.first_anchor + a));
                    }
                }
            }
        }
        out.sort();
        out
    }

    fn sorted(c: &Candidates) -> Vec<Candidate> {
        let mut v = c.keys.clone();
        v.sort();
        v
    }

    /// Logits where, for every anchor, one foreground class sits right at the
    /// quick-reject boundary: its score is within a few ulps of the threshold.
    fn adversarial_logits(t: f32, seed: u64) -> Vec<Vec<f32>> {
        let mut rng = Rng::new(seed);
        let b = (1.0 / t as f64 - 1.0).ln();
        LEVELS
            .iter()
            .map(|lv| {
                let a_l = lv.num_anchors;
                let mut x = vec![0.0f32; lv.logits_len()];
                for a in 0..a_l {
                    let x0 = (rng.next_f64() * 20.0 - 5.0) as f32;
                    x[a] = x0;
                    // All other foreground classes far below (they barely change S).
                    for c in 1..NUM_CLASSES {
                        x[c * a_l + a] = x0 - 40.0 - (rng.next_f64() * 5.0) as f32;
                    }
                    // The contender: x_0 - x_c = B + delta with delta within +-3e-3
                    // (about +-1 ulp of the difference, or a few), so that its score
                    // lands just above or just below t.
                    let c = 1 + (rng.next_f64() * 80.0) as usize;
                    let delta = (rng.next_f64() - 0.5) * 6e-3 * (1.0 + b.abs());
                    let mut xc = (x0 as f64 - b - delta) as f32;
                    // Walk a few float32 ulps either way.
                    let steps = (rng.next_f64() * 7.0) as i32 - 3;
                    for _ in 0..steps.abs() {
                        xc = if steps > 0 { next_toward_inf(xc) } else { -next_toward_inf(-xc) };
                    }
                    x[c * a_l + a] = xc;
                }
                x
            })
            .collect()
    }

    fn as_arrays(v: &[Vec<f32>]) -> [&[f32]; 6] {
        std::array::from_fn(|l| v[l].as_slice())
    }

    #[test]
    fn reject_bound_values() {
        assert_eq!(reject_bound(0.0), f32::INFINITY);
        assert_eq!(reject_bound(1.0), f32::INFINITY);
        let b = reject_bound(0.05);
        assert!((b as f64) > 19f64.ln() + 1e-3 && (b as f64) < 19f64.ln() + 1.1e-3, "{b}");
        assert!(reject_bound(0.9).is_finite() && reject_bound(0.9) < 0.0);
        assert!(reject_bound(1e-40).is_finite());
        assert!(reject_bound(-next_toward_inf(-1.0)).is_finite());
        assert_eq!(next_toward_inf(1.0), 1.0 + f32::EPSILON);
        assert_eq!(next_toward_inf(-0.0), f32::from_bits(1));
        assert_eq!(-next_toward_inf(-1.0), 1.0 - f32::EPSILON / 2.0);
    }

    #[test]
    fn candidate_key_roundtrip_and_order() {
        let k = Candidate::new(80, 0.75, 15129);
        assert_eq!((k.class(), k.score(), k.anchor()), (80, 0.75, 15129));
        assert!(Candidate::new(1, 0.9, 5) < Candidate::new(1, 0.8, 0));
        assert!(Candidate::new(1, 0.8, 4) < Candidate::new(1, 0.8, 5));
        assert!(Candidate::new(1, 0.1, 5) < Candidate::new(2, 0.9, 0));
        assert_eq!(Candidate::new(3, f32::from_bits(1), 0).score().to_bits(), 1);
    }

    #[test]
    fn quick_reject_is_exact_on_adversarial_logits() {
        for (seed, t) in [(1u64, 0.05f32), (2, 0.5), (3, 0.3), (4, 0.95), (5, 1e-4), (6, 0.999_999)] {
            let v = adversarial_logits(t, seed);
            let x = as_arrays(&v);
            let cfg = ScoreConfig::new(t);
            assert!(cfg.reject_bound.is_finite());
            let fast = score_pass(x, &cfg, false).unwrap();
            let slow = score_pass(x, &cfg.without_quick_reject(), false).unwrap();
            let n = fast.len();
            assert!(sorted(&fast) == sorted(&slow), "t = {t}: {n} candidates with quick reject, {} without", slow.len());
            // The inputs straddle the threshold: some but not all anchors have a candidate.
            assert!(n > 500 && n < 15_000, "t = {t}: {n} candidates");
            assert!(sorted(&fast) == brute_force(x, t), "t = {t}");
            let par = score_pass(x, &cfg, true).unwrap();
            assert!(sorted(&par) == sorted(&fast), "t = {t}");
        }
    }

    /// Anchors whose true d = x_0 - x_1 is just below B = ln(1/t - 1), so that their
    /// class-1 score is above t, but whose float32 d rounds up past B: a bound at B rounded
    /// down (or to nearest) to float32 would reject them. The production bound must keep
    /// every one (this fails if the bound is lowered to B or below).
    #[test]
    fn quick_reject_margin_keeps_near_boundary_candidates() {
        let lv = &LEVELS[5];
        let a_l = lv.num_anchors;
        let mut checked = 0;
        for i in 1..2000 {
            let t = (i as f32 * 0.0004999).min(0.99);
            let b = (1.0 / t as f64 - 1.0).ln();
            // The largest float32 <= B.
            let naive = {
                let r = b as f32;
                if (r as f64) > b { -next_toward_inf(-r) } else { r }
            };
            // x_0 at and a few float32 steps below B, x_1 a tiny negative: d_true = x_0 - x_1.
            let mut x0 = naive;
            let mut anchors = Vec::new();
            for _ in 0..4 {
                for frac in [0.55f64, 0.7, 0.85, 0.95] {
                    let ulp = (next_toward_inf(x0.abs()) - x0.abs()) as f64;
                    let x1 = -(frac * ulp) as f32;
                    let d_true = x0 as f64 - x1 as f64;
                    let d = x0 - x1;
                    if d_true < b && d > naive {
                        anchors.push((x0, x1));
                    }
                }
                x0 = -next_toward_inf(-x0);
            }
            if anchors.is_empty() {
                continue;
            }
            // Every other class far below; one anchor per pair, the rest background.
            let mut x = vec![-100.0f32; lv.logits_len()];
            for (a, &(x0, x1)) in anchors.iter().enumerate().take(a_l) {
                x[a] = x0;
                x[a_l + a] = x1;
            }
            let cfg = ScoreConfig::new(t);
            let mut fast = Vec::new();
            assert!(score_level_range(lv, &x, 0..a_l, &cfg, &mut fast));
            let mut slow = Vec::new();
            assert!(score_level_range(lv, &x, 0..a_l, &cfg.without_quick_reject(), &mut slow));
            fast.sort();
            slow.sort();
            assert_eq!(fast, slow, "t = {t}");
            checked += slow.len();
        }
        // Enough of those anchors are real candidates (score > t after rounding).
        assert!(checked > 50, "{checked} near-boundary candidates");
    }

    #[test]
    fn quick_reject_is_exact_on_random_logits() {
        let mut rng = Rng::new(7);
        let v: Vec<Vec<f32>> = LEVELS
            .iter()
            .map(|lv| {
                (0..lv.logits_len())
                    .map(|i| (rng.next_f64() * 4.0 - 2.0) as f32 + if i < lv.num_anchors { 4.0 } else { 0.0 })
                    .collect()
            })
            .collect();
        let x = as_arrays(&v);
        for t in [0.0f32, 0.01, 0.05, 0.2] {
            let cfg = ScoreConfig::new(t);
            let fast = score_pass(x, &cfg, false).unwrap();
            assert!(sorted(&fast) == sorted(&score_pass(x, &cfg.without_quick_reject(), false).unwrap()), "t = {t}");
            assert!(sorted(&fast) == brute_force(x, t), "t = {t}");
        }
    }

    #[test]
    fn softmax_matches_definition() {
        let a_l = 3;
        let mut x = vec![0.0f32; NUM_CLASSES * a_l];
        for c in 0..NUM_CLASSES {
            x[c * a_l + 1] = c as f32 * 0.1 - 3.0;
        }
        let mut p = [0.0; NUM_CLASSES];
        softmax_anchor(&x, a_l, 1, &mut p);
        let m = 8.0 - 3.0;
        let e: Vec<f64> = (0..NUM_CLASSES).map(|c| crate::simd::exp::exp((c as f32 * 0.1 - 3.0) as f64 - m)).collect();
        let s: f64 = e.iter().fold(0.0, |s, v| s + v);
        for c in 0..NUM_CLASSES {
            assert_eq!(p[c], (e[c] / s) as f32);
        }
        softmax_anchor(&x, a_l, 0, &mut p);
        assert!(p.iter().all(|&v| v == (1.0f64 / 81.0) as f32));
    }

    #[test]
    fn finite_check_finds_every_position() {
        let lv = &LEVELS[3];
        let cfg = ScoreConfig::new(0.05);
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            // Row 0, a foreground row, the last value, a remainder position.
            for pos in [0, 5 * lv.num_anchors + 7, lv.logits_len() - 1, 80 * lv.num_anchors + 290] {
                let mut x = vec![1.0f32; lv.logits_len()];
                x[pos] = bad;
                let mut out = Vec::new();
                assert!(!score_level_range(lv, &x, 0..lv.num_anchors, &cfg, &mut out), "{bad} at {pos}");
                assert!(!score_level_range(lv, &x, 0..lv.num_anchors, &cfg.without_quick_reject(), &mut out));
            }
        }
        let x = vec![f32::MAX; lv.logits_len()];
        assert!(score_level_range(lv, &x, 0..lv.num_anchors, &cfg, &mut Vec::new()));
    }

    #[test]
    fn score_pass_reports_the_lowest_bad_level() {
        let mut v: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.0; lv.logits_len()]).collect();
        v[4][10] = f32::NAN;
        v[2][100] = f32::INFINITY;
        let cfg = ScoreConfig::new(0.05);
        assert_eq!(score_pass(as_arrays(&v), &cfg, false).unwrap_err(), 2);
        assert_eq!(score_pass(as_arrays(&v), &cfg, true).unwrap_err(), 2);
    }

    #[test]
    fn reject_and_score_pass_agree_on_every_isa() {
        let mut rng = Rng::new(99);
        let a_l = 2 * CHUNK + 13;
        let mut x: Vec<f32> = (0..NUM_CLASSES * a_l).map(|_| (rng.next_f64() * 16.0 - 8.0) as f32).collect();
        for v in &mut x[..a_l] {
            *v += 12.0; // background row: some anchors rejected, some not
        }
        for &(start, len) in &[(0, CHUNK), (CHUNK, CHUNK), (2 * CHUNK, 13), (5, 7), (17, 1000)] {
            let mut want = Survivors::new();
            assert!(reject_chunk(Isa::PORTABLE, &x, a_l, start, len, 1.5, &mut want));
            let n = want.len;
            assert!(n > 0 && n < len);
            for (&a, &m) in want.anchors[..n].iter().zip(&want.max[..n]) {
                let column = (0..NUM_CLASSES).map(|c| x[c * a_l + a as usize]);
                assert_eq!(m, column.fold(f32::NEG_INFINITY, f32::max));
                assert!(x[a as usize] - m <= 1.5);
            }
            let brute = (start..start + len).filter(|&a| x[a] - (1..NUM_CLASSES).map(|c| x[c * a_l + a]).fold(f32::NEG_INFINITY, f32::max) <= 1.5);
            assert_eq!(brute.count(), n);
            for isa in Isa::supported() {
                let mut got = Survivors::new();
                assert!(reject_chunk(isa, &x, a_l, start, len, 1.5, &mut got));
                assert_eq!((&got.anchors[..got.len], &got.max[..got.len]), (&want.anchors[..n], &want.max[..n]), "{isa:?}");
            }
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut y = x.clone();
            y[40 * a_l + CHUNK + 8] = bad;
            for isa in Isa::supported() {
                assert!(!reject_chunk(isa, &y, a_l, CHUNK, CHUNK, 1.5, &mut Survivors::new()));
                assert!(reject_chunk(isa, &y, a_l, 0, CHUNK, 1.5, &mut Survivors::new()));
            }
        }
        // The whole pass: the same candidates (scores to the bit) with every kernel.
        let v = adversarial_logits(0.05, 12);
        let portable = ScoreConfig { isa: Isa::PORTABLE, ..ScoreConfig::new(0.05) };
        let want = sorted(&score_pass(as_arrays(&v), &portable, false).unwrap());
        for isa in Isa::supported() {
            let cfg = ScoreConfig { isa, ..portable };
            assert!(sorted(&score_pass(as_arrays(&v), &cfg, false).unwrap()) == want, "{isa:?}");
        }
    }

    #[test]
    fn float16_logits_score_as_their_float32_conversion() {
        use half::f16;
        // Dense enough to straddle chunks; special values in some anchors.
        let mut rng = Rng::new(5);
        let v16: Vec<Vec<f16>> = LEVELS
            .iter()
            .map(|lv| {
                (0..lv.logits_len())
                    .map(|i| {
                        let r = rng.next_f64();
                        let x = (rng.next_f64() * 8.0 - 4.0) as f32 + if i < lv.num_anchors { 3.0 } else { 0.0 };
                        f16::from_f32(if r < 0.001 { 65504.0 } else if r < 0.002 { -65504.0 } else if r < 0.003 { -0.0 } else if r < 0.004 { 6e-8 } else { x })
                    })
                    .collect()
            })
            .collect();
        let v32: Vec<Vec<f32>> = v16.iter().map(|l| l.iter().map(|x| x.to_f32()).collect()).collect();
        let cfg = ScoreConfig::new(0.05);
        let heads: [Head; 6] = std::array::from_fn(|l| Head::F16(&v16[l]));
        let want = sorted(&score_pass(as_arrays(&v32), &cfg, false).unwrap());
        assert!(want.len() > 1000, "{}", want.len());
        for parallel in [false, true] {
            assert!(sorted(&score_pass_heads(heads, &cfg, parallel).unwrap()) == want, "parallel {parallel}");
        }
        let mut bad = v16.clone();
        bad[3][7 * LEVELS[3].num_anchors + 100] = f16::NAN;
        bad[4][3] = f16::INFINITY;
        let heads: [Head; 6] = std::array::from_fn(|l| Head::F16(&bad[l]));
        assert_eq!(score_pass_heads(heads, &cfg, false).unwrap_err(), 3);
        assert_eq!(score_pass_heads(heads, &cfg, true).unwrap_err(), 3);
    }

    #[test]
    fn group_by_class() {
        let keys = vec![Candidate::new(5, 0.5, 1), Candidate::new(2, 0.5, 1), Candidate::new(5, 0.6, 2)];
        let g = Candidates::group(keys);
        assert_eq!(g.class(5).len(), 2);
        assert_eq!(g.class(2), &[Candidate::new(2, 0.5, 1)]);
        assert!(g.class(1).is_empty() && g.class(80).is_empty());
    }
}
