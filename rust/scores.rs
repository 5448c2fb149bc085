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
//! The finite check is folded into the same pass: a value is NaN or +-inf exactly when
//! the bit pattern of |x| is >= that of +inf, so an integer max of |x| bit patterns
//! (associative, hence vectorised) over the block decides it.
//!
//! # Softmax of the survivors
//!
//! Anchors that pass the quick reject get the exact float64 softmax, eight at a time
//! (one per SIMD lane: AVX-512 or AVX2 when the CPU has it, the same bits on every
//! path; survivors wait across chunks until a group is full): a strided
//! gather of the 81 logits, m = max, e_c = [`exp::exp_lanes`]
//! (x_c - m), S summed in class order; a division e_c / S only for pairs that can
//! pass (e_c > S * t * (1 - 1e-9), see [`ScoreConfig::prefilter`]).

use crate::exp;
use crate::layout::{Level, LEVELS, NUM_CLASSES, NUM_LEVELS};
use rayon::prelude::*;

/// Foreground classes (1..=80).
pub const NUM_FOREGROUND: usize = NUM_CLASSES - 1;

/// Anchors processed together in the quick-reject pass (stack buffer of running maxima).
const CHUNK: usize = 1024;
/// Anchors per task when the score pass of one image runs on the rayon pool.
const PAR_TASK_ANCHORS: usize = 2560;

/// The float32 threshold on d = x_0 - max_{c>=1} x_c above which an anchor has no
/// candidate (see the module docs). `f32::INFINITY` when no anchor may be rejected.
pub fn reject_bound(score_threshold: f32) -> f32 {
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
pub struct Candidate(pub u64);

const ANCHOR_BITS: u32 = 14;
const SCORE_SHIFT: u32 = ANCHOR_BITS;
const CLASS_SHIFT: u32 = ANCHOR_BITS + 32;
const _: () = assert!(crate::layout::NUM_ANCHORS < 1 << ANCHOR_BITS);
const _: () = assert!(NUM_FOREGROUND.is_multiple_of(ROWS_AT_ONCE));

impl Candidate {
    /// `score` must be > 0 (all candidates are: score > threshold >= 0).
    #[inline]
    pub fn new(class: usize, score: f32, anchor: usize) -> Self {
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
pub struct ScoreConfig {
    /// The float32 score threshold t: a candidate needs score > t.
    pub threshold: f32,
    /// Quick-reject bound on x_0 - max_{c>=1} x_c; `f32::INFINITY` disables the reject.
    pub reject_bound: f32,
    /// t*(1 - 1e-9) in float64: f32(fl(e/S)) > t needs fl(e/S) > t, so e/S > t(1 - 2^-53),
    /// which implies e > fl(S * prefilter); pairs failing this cheap test are skipped.
    pub prefilter: f64,
}

impl ScoreConfig {
    /// The configuration for a threshold, with the quick reject on.
    pub fn new(score_threshold: f32) -> Self {
        ScoreConfig {
            threshold: score_threshold,
            reject_bound: reject_bound(score_threshold),
            prefilter: score_threshold as f64 * (1.0 - 1e-9),
        }
    }

    /// The same threshold without quick reject (every anchor gets a full softmax).
    pub fn without_quick_reject(self) -> Self {
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
    pub fn group(unordered: Vec<Candidate>) -> Self {
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
    pub fn class(&self, class: usize) -> &[Candidate] {
        &self.keys[self.starts[class]..self.starts[class + 1]]
    }

    /// The candidates of one class, mutable (for in-place selection).
    pub fn class_mut(&mut self, class: usize) -> &mut [Candidate] {
        &mut self.keys[self.starts[class]..self.starts[class + 1]]
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }
}

/// True when every value is finite (no NaN, no +-inf). Vectorised, no early exit.
pub fn all_finite(values: &[f32]) -> bool {
    values.iter().fold(0u32, |m, &v| m.max(abs_bits(v))) < NON_FINITE_ABS_BITS
}

/// One group of anchors for the softmax kernels.
#[derive(Clone, Copy)]
struct Group<'a> {
    /// One image's level slice (81 rows of `num_anchors`).
    logits: &'a [f32],
    num_anchors: usize,
    /// Local anchor indices, one per lane (a lane may repeat an anchor).
    anchors: [usize; exp::LANES],
    /// See [`ScoreConfig::prefilter`].
    prefilter: f64,
}

/// What the softmax kernels write: exponentials `e[c][g]` and prefilter masks.
struct GroupOut {
    e: [[f64; exp::LANES]; NUM_CLASSES],
    masks: [u8; NUM_CLASSES],
}

impl GroupOut {
    fn new() -> Self {
        GroupOut { e: [[0.0; exp::LANES]; NUM_CLASSES], masks: [0; NUM_CLASSES] }
    }
}

/// Exponentials e[c][g] = exp(x_c - m) and sums S[g] (class order 0..80) of up to
/// [`exp::LANES`] anchors at once, one per lane, and the prefilter masks: bit g of
/// `masks[c]` is set when e[c][g] > S[g] * `prefilter`.
#[inline(always)]
fn softmax_lanes_body(group: &Group<'_>, out: &mut GroupOut) -> [f64; exp::LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    let mut m = [f64::NEG_INFINITY; exp::LANES];
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        for g in 0..exp::LANES {
            let v = row[anchors[g]] as f64;
            ec[g] = v;
            m[g] = if v > m[g] { v } else { m[g] };
        }
    }
    let mut sum = [0.0f64; exp::LANES];
    for ec in e.iter_mut() {
        let mut arg = [0.0f64; exp::LANES];
        for g in 0..exp::LANES {
            arg[g] = ec[g] - m[g];
        }
        *ec = exp::exp_lanes(arg);
        for g in 0..exp::LANES {
            sum[g] += ec[g];
        }
    }
    let floor = sum.map(|s| s * prefilter);
    for (mask, ec) in masks.iter_mut().zip(e.iter()) {
        *mask = (0..exp::LANES).fold(0u8, |b, g| b | (((ec[g] > floor[g]) as u8) << g));
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
unsafe fn softmax_lanes_avx2(group: &Group<'_>, out: &mut GroupOut) -> [f64; exp::LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    use std::arch::x86_64::*;
    let mut m = [_mm256_set1_pd(f64::NEG_INFINITY); 2];
    let run = consecutive(&anchors);
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        let x = if run { row[anchors[0]..anchors[0] + exp::LANES].try_into().unwrap_or_default() } else { anchors.map(|a| row[a]) };
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
    let mut out = [0.0f64; exp::LANES];
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
unsafe fn softmax_lanes_avx512(group: &Group<'_>, out: &mut GroupOut) -> [f64; exp::LANES] {
    let Group { logits, num_anchors, anchors, prefilter } = *group;
    let GroupOut { e, masks } = out;
    use std::arch::x86_64::*;
    let mut m = _mm512_set1_pd(f64::NEG_INFINITY);
    let run = consecutive(&anchors);
    for (c, ec) in e.iter_mut().enumerate() {
        let row = &logits[c * num_anchors..(c + 1) * num_anchors];
        let v = if run {
            _mm512_cvtps_pd(_mm256_loadu_ps(row[anchors[0]..anchors[0] + exp::LANES].as_ptr()))
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
    let mut out = [0.0f64; exp::LANES];
    _mm512_storeu_pd(out.as_mut_ptr(), sum);
    out
}

/// Whether the lanes hold consecutive anchors (then each row is one contiguous load,
/// the same values as the gather).
#[cfg(target_arch = "x86_64")]
#[inline(always)]
fn consecutive(anchors: &[usize; exp::LANES]) -> bool {
    (0..exp::LANES).all(|g| anchors[g] == anchors[0] + g)
}

/// The SIMD instruction set the kernels use on this CPU (detected once, then cached).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Simd {
    Portable,
    #[cfg(target_arch = "x86_64")]
    Avx2,
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

#[inline]
fn simd() -> Simd {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx512f") {
            return Simd::Avx512;
        }
        if std::arch::is_x86_feature_detected!("avx2") {
            return Simd::Avx2;
        }
    }
    Simd::Portable
}

#[inline]
fn softmax_lanes(group: &Group<'_>, out: &mut GroupOut) -> [f64; exp::LANES] {
    match simd() {
        // SAFETY: the CPU has the instruction set of the function (see `simd`).
        #[cfg(target_arch = "x86_64")]
        Simd::Avx512 => unsafe { softmax_lanes_avx512(group, out) },
        #[cfg(target_arch = "x86_64")]
        Simd::Avx2 => unsafe { softmax_lanes_avx2(group, out) },
        Simd::Portable => softmax_lanes_body(group, out),
    }
}

/// The softmax of one anchor: `out[c]` = f32(e_c / S) with, in float64,
/// m = max_c x_c, e_c = exp(x_c - m) ([`exp::exp`]), S summed in class order 0..80.
/// `logits` is one image's level slice (81 rows of `num_anchors`), `anchor` local.
pub fn softmax_anchor(logits: &[f32], num_anchors: usize, anchor: usize, out: &mut [f32; NUM_CLASSES]) {
    let mut g = GroupOut::new();
    let sum = softmax_lanes(&Group { logits, num_anchors, anchors: [anchor; exp::LANES], prefilter: 0.0 }, &mut g);
    for (o, ec) in out.iter_mut().zip(&g.e) {
        *o = (ec[0] / sum[0]) as f32;
    }
}

/// Bits of |x| for a float32; at least `NON_FINITE_ABS_BITS` exactly for NaN and +-inf.
#[inline(always)]
fn abs_bits(x: f32) -> u32 {
    x.to_bits() & 0x7FFF_FFFF
}

/// The smallest |x| bit pattern that is not finite (+inf; NaNs are above it).
const NON_FINITE_ABS_BITS: u32 = 0x7F80_0000;

/// Foreground rows read together by the running max (80 is a multiple).
const ROWS_AT_ONCE: usize = 4;
/// How far ahead (in floats) the AVX2 kernel prefetches each row.
#[cfg(target_arch = "x86_64")]
const PREFETCH_AHEAD: usize = 64;

/// `if a > b { a } else { b }`: the float max of the kernels (`_mm256_max_ps(a, b)`).
#[inline(always)]
fn max2(a: f32, b: f32) -> f32 {
    if a > b {
        a
    } else {
        b
    }
}

/// One step of the running max over four rows: `max2(max2(m, max2(v1, v2)), max2(v3, v4))`.
#[inline(always)]
fn max_step(m: f32, v: [f32; ROWS_AT_ONCE]) -> f32 {
    max2(max2(m, max2(v[0], v[1])), max2(v[2], v[3]))
}

/// Running max of the 80 foreground rows over anchors `start..start + mx.len()` into
/// `mx`, four rows at a time ([`max_step`]), returning the max of the |x| bit patterns
/// of the values read. Portable version.
#[inline(always)]
fn foreground_max_generic(logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32]) -> u32 {
    let len = mx.len();
    let mut abs_max = 0u32;
    for c in (1..NUM_CLASSES).step_by(ROWS_AT_ONCE) {
        let rows: [&[f32]; ROWS_AT_ONCE] = std::array::from_fn(|k| &logits[(c + k) * num_anchors + start..][..len]);
        for (i, m) in mx.iter_mut().enumerate() {
            let v = rows.map(|r| r[i]);
            *m = max_step(*m, v);
            abs_max = v.iter().fold(abs_max, |a, &x| a.max(abs_bits(x)));
        }
    }
    abs_max
}

/// [`foreground_max_generic`] with AVX2 intrinsics, 8 anchors a step, the same max tree
/// (`_mm256_max_ps(a, b)` is [`max2`]`(a, b)`), so the same bits; the next part of each
/// row is prefetched.
///
/// # Safety
/// The CPU must support AVX2.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn foreground_max_avx2(logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32]) -> u32 {
    use std::arch::x86_64::*;
    let len = mx.len();
    let whole = len - len % 8;
    let abs_mask = _mm256_set1_epi32(0x7FFF_FFFF);
    let abs = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), abs_mask);
    let mut acc = _mm256_setzero_si256();
    let mut abs_max = 0u32;
    for c in (1..NUM_CLASSES).step_by(ROWS_AT_ONCE) {
        let rows: [&[f32]; ROWS_AT_ONCE] = std::array::from_fn(|k| &logits[(c + k) * num_anchors + start..][..len]);
        let rp = rows.map(|r| r.as_ptr());
        let mp = mx.as_mut_ptr();
        let mut i = 0;
        while i < whole {
            for p in rp {
                // A hint only: never faults, so the address may pass the end of the slice.
                _mm_prefetch::<_MM_HINT_T0>(p.wrapping_add(i + PREFETCH_AHEAD).cast());
            }
            // SAFETY: i + 8 <= whole <= len = every row's and mx's length.
            let v = rp.map(|p| _mm256_loadu_ps(p.add(i)));
            let m = _mm256_loadu_ps(mp.add(i));
            let m = _mm256_max_ps(_mm256_max_ps(m, _mm256_max_ps(v[0], v[1])), _mm256_max_ps(v[2], v[3]));
            _mm256_storeu_ps(mp.add(i), m);
            let a = _mm256_max_epu32(_mm256_max_epu32(abs(v[0]), abs(v[1])), _mm256_max_epu32(abs(v[2]), abs(v[3])));
            acc = _mm256_max_epu32(acc, a);
            i += 8;
        }
        for j in whole..len {
            let v = rows.map(|r| r[j]);
            mx[j] = max_step(mx[j], v);
            abs_max = v.iter().fold(abs_max, |a, &x| a.max(abs_bits(x)));
        }
    }
    let mut lanes = [0u32; 8];
    _mm256_storeu_si256(lanes.as_mut_ptr().cast(), acc);
    lanes.iter().fold(abs_max, |a, &b| a.max(b))
}

/// The running foreground max, with AVX2 when `simd` and the CPU has it.
#[inline]
fn foreground_max(logits: &[f32], num_anchors: usize, start: usize, mx: &mut [f32], simd_ok: bool) -> u32 {
    #[cfg(target_arch = "x86_64")]
    if simd_ok && simd() != Simd::Portable {
        // SAFETY: the CPU has AVX2 (AVX-512F CPUs have it too).
        return unsafe { foreground_max_avx2(logits, num_anchors, start, mx) };
    }
    let _ = simd_ok;
    foreground_max_generic(logits, num_anchors, start, mx)
}

/// The quick-reject kernel over `len <= CHUNK` anchors starting at local anchor `start`:
/// pushes the local indices of anchors that may have a candidate onto `survivors`.
/// Returns false when a logit of these anchors is not finite.
///
/// Row by row (each a contiguous run of `len` floats, so the reads stream), a running
/// max over the 80 foreground rows, then `d = x_0 - max` against the bound. The finite
/// check is an integer max of |x| bit patterns folded into the same reads.
fn reject_chunk(logits: &[f32], num_anchors: usize, start: usize, len: usize, bound: f32, survivors: &mut Vec<u32>, simd_ok: bool) -> bool {
    debug_assert!(len <= CHUNK && start + len <= num_anchors);
    let mut mx = [f32::NEG_INFINITY; CHUNK];
    let mx = &mut mx[..len];
    let mut abs_max = foreground_max(logits, num_anchors, start, mx, simd_ok);
    let row0 = &logits[start..][..len];
    abs_max = row0.iter().fold(abs_max, |a, &x0| a.max(abs_bits(x0)));
    if abs_max >= NON_FINITE_ABS_BITS {
        return false;
    }
    for (i, (&x0, &m)) in row0.iter().zip(mx.iter()).enumerate() {
        // Finite logits give a finite m, so d is never NaN here.
        let d = x0 - m;
        if d <= bound {
            survivors.push((start + i) as u32);
        }
    }
    true
}

/// Scores the anchors `range` (local indices) of one level: pushes every candidate
/// (class >= 1, f32 score > threshold) onto `out`. `logits` is the level's slice for
/// one image (`level.logits_len()` values). Returns false when a logit of these
/// anchors is not finite (then `out` is unspecified).
///
/// # Panics
/// When `logits` does not have `level.logits_len()` values or `range` leaves the level.
pub fn score_level_range(level: &Level, logits: &[f32], range: std::ops::Range<usize>, cfg: &ScoreConfig, out: &mut Vec<Candidate>) -> bool {
    assert_eq!(logits.len(), level.logits_len(), "score_level_range: wrong slice length");
    assert!(range.end <= level.num_anchors, "score_level_range: range out of the level");
    let a_l = level.num_anchors;
    // Survivors wait here until a full group of exp::LANES has gathered (the rest of a
    // chunk joins the next one's), so lanes are rarely wasted.
    let mut pending: Vec<u32> = Vec::with_capacity(CHUNK + exp::LANES);
    let mut g = GroupOut::new();
    let mut score_group = |group: &[u32], out: &mut Vec<Candidate>| {
        let anchors: [usize; exp::LANES] = std::array::from_fn(|g| group[g.min(group.len() - 1)] as usize);
        // masks[c] bit g: e > S*t_lo, necessary for f32(e/S) > t (ScoreConfig::prefilter),
        // so most (anchor, class) pairs need no division.
        let sums = softmax_lanes(&Group { logits, num_anchors: a_l, anchors, prefilter: cfg.prefilter }, &mut g);
        let valid = u8::MAX >> (exp::LANES - group.len());
        for (c, (&mask, ec)) in g.masks.iter().zip(g.e.iter()).enumerate().skip(1) {
            let mut bits = mask & valid;
            while bits != 0 {
                let g = bits.trailing_zeros() as usize;
                bits &= bits - 1;
                let p = (ec[g] / sums[g]) as f32;
                if p > cfg.threshold {
                    out.push(Candidate::new(c, p, level.first_anchor + anchors[g]));
                }
            }
        }
    };
    let mut start = range.start;
    while start < range.end {
        let len = CHUNK.min(range.end - start);
        if !reject_chunk(logits, a_l, start, len, cfg.reject_bound, &mut pending, true) {
            return false;
        }
        let full = pending.len() - pending.len() % exp::LANES;
        for group in pending[..full].chunks_exact(exp::LANES) {
            score_group(group, out);
        }
        pending.drain(..full);
        start += len;
    }
    if !pending.is_empty() {
        score_group(&pending, out);
    }
    true
}

/// Runs the score pass over the six levels of one image, `logits[l]` being level l's
/// slice (`LEVELS[l].logits_len()` values, checked by the caller).
///
/// `parallel`: split the anchors into tasks on the rayon pool (for a batch of one).
/// Err(l): the class logits of level l (the lowest such level) are not all finite.
pub fn score_pass(logits: [&[f32]; NUM_LEVELS], cfg: &ScoreConfig, parallel: bool) -> Result<Candidates, usize> {
    if !parallel {
        let mut out = Vec::new();
        for (lv, x) in LEVELS.iter().zip(logits) {
            if !score_level_range(lv, x, 0..lv.num_anchors, cfg, &mut out) {
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
            if score_level_range(&LEVELS[l], logits[l], range, cfg, &mut out) {
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
pub(crate) mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift64*), uniform in [0, 1).
    pub(crate) struct Rng(u64);
    impl Rng {
        pub(crate) fn new(seed: u64) -> Self {
            Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
        }
        pub(crate) fn next_f64(&mut self) -> f64 {
            self.0 ^= self.0 >> 12;
            self.0 ^= self.0 << 25;
            self.0 ^= self.0 >> 27;
            (self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) >> 11) as f64 / (1u64 << 53) as f64
        }
    }

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
        let e: Vec<f64> = (0..NUM_CLASSES).map(|c| exp::exp((c as f32 * 0.1 - 3.0) as f64 - m)).collect();
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
        assert!(all_finite(&[1.0; 37]));
        assert!(!all_finite(&{
            let mut v = [1.0; 37];
            v[36] = f32::NAN;
            v
        }));
        assert!(!all_finite(&{
            let mut v = [1.0; 37];
            v[3] = f32::NEG_INFINITY;
            v
        }));
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
    fn simd_and_portable_kernels_agree() {
        let mut rng = Rng::new(99);
        let a_l = 2 * CHUNK + 13;
        let mut x: Vec<f32> = (0..NUM_CLASSES * a_l).map(|_| (rng.next_f64() * 16.0 - 8.0) as f32).collect();
        for v in &mut x[..a_l] {
            *v += 12.0; // background row: some anchors rejected, some not
        }
        // Ties, signed zeros and extremes.
        x[a_l + 3] = 0.0;
        x[2 * a_l + 3] = -0.0;
        x[5 * a_l + 9] = f32::MAX;
        x[6 * a_l + 10] = -f32::MAX;
        for &(start, len) in &[(0, CHUNK), (CHUNK, CHUNK), (2 * CHUNK, 13), (5, 7), (17, 1000)] {
            let (mut m1, mut m2) = (vec![f32::NEG_INFINITY; len], vec![f32::NEG_INFINITY; len]);
            let a1 = foreground_max(&x, a_l, start, &mut m1, true);
            let a2 = foreground_max_generic(&x, a_l, start, &mut m2);
            assert_eq!(a1, a2);
            assert_eq!(m1.iter().map(|v| v.to_bits()).collect::<Vec<_>>(), m2.iter().map(|v| v.to_bits()).collect::<Vec<_>>());
            let (mut s1, mut s2) = (Vec::new(), Vec::new());
            assert!(reject_chunk(&x, a_l, start, len, 1.5, &mut s1, true));
            assert!(reject_chunk(&x, a_l, start, len, 1.5, &mut s2, false));
            assert_eq!(s1, s2);
            assert!(!s1.is_empty() && s1.len() < len);
        }
        for bad in [f32::NAN, f32::INFINITY, f32::NEG_INFINITY] {
            let mut y = x.clone();
            y[40 * a_l + CHUNK + 8] = bad;
            for simd in [true, false] {
                assert!(!reject_chunk(&y, a_l, CHUNK, CHUNK, 1.5, &mut Vec::new(), simd));
                assert!(reject_chunk(&y, a_l, 0, CHUNK, 1.5, &mut Vec::new(), simd));
            }
        }
    }

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
        let run = |f: &dyn Fn(&Group<'_>, &mut GroupOut) -> [f64; exp::LANES], anchors| {
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
            assert_eq!(run(&|g, o| softmax_lanes(g, o), anchors), want);
            #[cfg(target_arch = "x86_64")]
            {
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: AVX2 detected.
                    assert_eq!(run(&|g, o| unsafe { softmax_lanes_avx2(g, o) }, anchors), want);
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: AVX-512F detected.
                    assert_eq!(run(&|g, o| unsafe { softmax_lanes_avx512(g, o) }, anchors), want);
                }
            }
        }
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
