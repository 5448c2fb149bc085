//! The differential kernel case: one execution runs either the score pass of one level over
//! a short range of anchors or the NMS on a small set of boxes, through the main crate's
//! `fuzzing` wrappers (its `fuzzing` feature), on every instruction set this CPU supports,
//! and compares each result with a plain oracle written here from docs/postprocess.md.
//! An execution costs microseconds (a few hundred to a few thousand logits), not the
//! 4.9 MB of a full decode (`Harness`).
//!
//! # Score case
//!
//! A level (3, 4 or 5 mostly; 294, 36 and 36 anchors; sometimes 2, or 0/1 with a range
//! longer than the kernel's 1,024-anchor chunk, or a piece of a level of 1..=512 anchors as
//! the float16 path makes), a range of anchors in it (often 1..=32 anchors, sometimes all,
//! sometimes empty), per-class float32 thresholds (0, 0.05, 0.5, 1, 1e-45, 1/81 and its
//! neighbour, 1 - 2^-24, raw bits in [0, 1], per-class overrides, and the `classes` option
//! as `inf` for the unwanted classes), the range filled by one of several patterns
//! (uniform ties, background-dominant, random, one class per anchor within a few float32
//! ulps of its threshold's quick-reject bound, bytes as values) and patches of values
//! anywhere in the level (NaN, +-inf, +-1e38, +-3e38, +-f32::MAX, subnormals, -0.0, raw
//! bits, values straddling the threshold; NaN outside the range must not matter).
//!
//! Checked, on each `Isa` of `Isa::supported()`, with the production configuration (quick
//! reject and prefilter) and without either:
//! - a non-finite logit among the range's anchors (any of the 81 rows) gives `false`, else
//!   `true`;
//! - the candidates, as (class, float32 score bits, global anchor), equal those of the
//!   brute-force softmax of every anchor of the range, no reject, no prefilter: in float64,
//!   m = max_c x_c in class order, e_c = exp(x_c - m) with the crate's `exp`
//!   (`fuzzing::exp_lanes`, as the docs define it and the `brute_force` test uses it), S
//!   summed in class order 0..80, score = f32(e_c / S), a candidate when score >
//!   threshold[c] (c = 1..80);
//! - and that oracle's scores are within 1 float32 ulp of the same softmax with the C
//!   library's `exp` (every pair of the range), which checks the crate's `exp` itself.
//!
//! # NMS case
//!
//! 0..=48 boxes (sometimes up to 200), each from a lattice of eighths (exact IoUs such as
//! 1/2 and 1/3, touching edges, zero-area and inverted boxes), a copy of an earlier box or
//! a copy moved by a few ulps, extreme coordinates (+-1e38, +-3e38, +-f32::MAX, whose
//! widths and areas overflow to inf and whose IoUs go through inf * 0), subnormals, -0.0 or
//! raw finite bits; scores with many ties (all equal, +-0.0, a few values, raw bits);
//! IoU thresholds (0.5 and its neighbours, 1, 1/3, 1e-6, 1e-45, raw bits in (0, 1]), a
//! limit (the class-agnostic stop), sometimes a NaN/inf box or score or a bad threshold.
//!
//! Checked against a plain O(n^2) greedy NMS (IoU in the documented operation order, a box
//! kept when its IoU with every kept box is < the threshold, the order (score desc, index
//! asc, -0.0 == 0.0)):
//! - the greedy kernel on each `Isa`, on the boxes in that order, with its buffers reused
//!   from earlier executions and appending to a non-empty vector: the oracle's kept
//!   positions, the first `limit` of them;
//! - `fuzzing::nms` (the bindings' single-class NMS: checks, sort, greedy): the oracle's kept
//!   indices; `Err` exactly when lengths differ, a box or score is NaN/inf or the threshold
//!   is outside (0, 1].

use crate::{finite_value, iou, value, Bytes};
use ssd_resnet34::fuzzing::{self, Nms, ScoreKernel, EXP_LANES, NUM_CLASSES};
use ssd_resnet34::{Candidate, Isa, Level, LEVELS, NUM_LEVELS};

/// The largest piece of a level that the float16 path scores as a level of its own.
const PIECE_MAX: usize = 512;
/// The kernel's chunk of anchors (`scores::CHUNK`): long ranges cross it.
const CHUNK: usize = 1024;

/// Counts of what the executions checked.
#[derive(Clone, Debug, Default)]
pub struct KernelStats {
    pub executions: u64,
    pub score_cases: u64,
    /// Score cases with a NaN/inf among the range's logits (every kernel must say so).
    pub non_finite: u64,
    /// Kernel calls compared with the oracle.
    pub kernel_runs: u64,
    /// Anchors scored by the oracle.
    pub anchors: u64,
    /// Candidates of the oracle (each compared with every kernel run).
    pub candidates: u64,
    /// (anchor, class) scores compared with the C library's `exp` softmax, and how many
    /// differ by 1 ulp.
    pub libm_pairs: u64,
    pub libm_one_ulp: u64,
    pub nms_cases: u64,
    /// NMS cases where `nms` must refuse the input.
    pub nms_errors: u64,
    /// Boxes kept by the oracle (each compared with every kernel run).
    pub kept: u64,
}

/// Reusable buffers of the kernel case. The logits of levels 0..6 and of a level piece,
/// all 0 between executions (what a case writes is zeroed after it).
pub struct KernelHarness {
    isas: Vec<Isa>,
    /// `bufs[l]`: one image's logits of level l; `bufs[NUM_LEVELS]`: a piece's.
    bufs: Vec<Vec<f32>>,
    /// (buffer, start, len) of every run of values a case wrote.
    touched: Vec<(usize, usize, usize)>,
    out: Vec<Candidate>,
    nms: Vec<Nms>,
    kept: Vec<usize>,
    pub stats: KernelStats,
}

impl Default for KernelHarness {
    fn default() -> Self {
        let mut bufs: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.0; lv.logits_len()]).collect();
        bufs.push(vec![0.0; NUM_CLASSES * PIECE_MAX]);
        let isas = Isa::supported();
        let nms = isas.iter().map(|_| Nms::default()).collect();
        KernelHarness { isas, bufs, touched: Vec::new(), out: Vec::new(), nms, kept: Vec::new(), stats: KernelStats::default() }
    }
}

/// A small PRNG (xorshift64*) for the fill patterns, seeded from the case's bytes.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Self {
        Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        (self.next() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// The next float32 toward +inf (finite x) and toward -inf.
fn up(x: f32) -> f32 {
    if x == 0.0 {
        f32::from_bits(1)
    } else if x > 0.0 {
        f32::from_bits(x.to_bits() + 1)
    } else {
        f32::from_bits(x.to_bits() - 1)
    }
}

fn down(x: f32) -> f32 {
    -up(-x)
}

/// A float32 threshold in [0, 1] (what `Params` allows, as float32).
fn threshold(b: &mut Bytes) -> f32 {
    let third = (1.0f64 / 81.0) as f32;
    match b.u8() % 16 {
        0..=3 => 0.05,
        4 => 0.0,
        5 => 0.5,
        6 => 1.0,
        7 => f32::from_bits(1),
        8 => third,
        9 => down(third),
        10 => down(1.0),
        11 => 0.3,
        12 => 1e-6,
        13 => b.u8() as f32 / 255.0,
        14 => f32::from_bits(b.u32() % (1.0f32.to_bits() + 1)),
        _ => (b.u8() as f64 / 255.0) as f32,
    }
}

/// The per-class thresholds (background `inf`): one threshold, some per-class overrides,
/// and the `classes` option (unwanted classes `inf`). At least one class is finite.
fn thresholds(b: &mut Bytes) -> [f32; NUM_CLASSES] {
    let sel = b.u8();
    let mut t = [threshold(b); NUM_CLASSES];
    if sel & 1 != 0 {
        for _ in 0..1 + b.u8() % 3 {
            t[1 + b.u8() as usize % 80] = threshold(b);
        }
    }
    if sel & 2 != 0 {
        let mut wanted = [false; NUM_CLASSES];
        for _ in 0..1 + b.u8() % 4 {
            wanted[1 + b.u8() as usize % 80] = true;
        }
        for c in 1..NUM_CLASSES {
            if !wanted[c] {
                t[c] = f32::INFINITY;
            }
        }
    }
    t[0] = f32::INFINITY;
    t
}

impl KernelHarness {
    /// Runs one case; `Err` describes a finding (a mismatch).
    pub fn run(&mut self, data: &[u8]) -> Result<(), String> {
        self.stats.executions += 1;
        let mut b = Bytes::new(data);
        let r = if b.u8() % 2 == 0 { self.score_case(&mut b) } else { self.nms_case(&mut b) };
        for (buf, start, len) in self.touched.drain(..) {
            self.bufs[buf][start..start + len].fill(0.0);
        }
        r
    }

    /// Writes `v` at `i` of buffer `buf`.
    fn set(&mut self, buf: usize, i: usize, v: f32) {
        self.bufs[buf][i] = v;
        self.touched.push((buf, i, 1));
    }

    fn score_case(&mut self, b: &mut Bytes) -> Result<(), String> {
        self.stats.score_cases += 1;
        // The level (buffer) and the range.
        let pick = b.u8() % 16;
        let (buf, level) = match pick {
            0..=5 => (3, LEVELS[3]),
            6..=8 => (4, LEVELS[4]),
            9..=11 => (5, LEVELS[5]),
            12 => (2, LEVELS[2]),
            13 => {
                let l = (b.u8() % 2) as usize;
                (l, LEVELS[l])
            }
            _ => {
                // A piece of a level, as the float16 path scores it: its own row stride.
                let from = LEVELS[b.u8() as usize % NUM_LEVELS];
                let n = 1 + b.u16() as usize % PIECE_MAX.min(from.num_anchors);
                let at = b.u16() as usize % (from.num_anchors - n + 1);
                (NUM_LEVELS, Level { num_anchors: n, first_anchor: from.first_anchor + at, ..from })
            }
        };
        let a_l = level.num_anchors;
        // (Past the end of the bytes every read is 0: 0 picks the common choice.)
        let (start, len) = match b.u8() % 32 {
            31 if a_l <= LEVELS[3].num_anchors => (0, a_l), // the whole level (or piece)
            30 => (b.u16() as usize % (a_l + 1), 0),         // empty
            29 if a_l >= CHUNK + 64 => {
                // Across the kernel's chunk boundary: survivors wait across chunks.
                let len = CHUNK + 1 + b.u8() as usize % 64;
                let start = b.u16() as usize % (a_l - len + 1);
                (start, len)
            }
            _ => {
                let len = (1 + b.u8() as usize % 16).min(a_l);
                (b.u16() as usize % (a_l - len + 1), len)
            }
        };
        let range = start..start + len;
        let t = thresholds(b);
        self.fill(b, buf, a_l, range.clone(), &t);
        // Patches anywhere in the level: a window of anchors, some rows, one value or one
        // value per element.
        let patches = b.u8() % 8;
        for _ in 0..patches {
            let near = b.u8() % 4 != 0; // most patches overlap the range
            let first = if near && len > 0 { start + b.u8() as usize % len } else { b.u16() as usize % a_l };
            let count = (1 + b.u8() as usize % 16).min(a_l - first);
            let x = value(b);
            let per_element = b.u8() % 4 == 0;
            for _ in 0..1 + b.u8() % 4 {
                let row = match b.u8() % 4 {
                    0 => 0, // the background row
                    _ => b.u8() as usize % NUM_CLASSES,
                };
                for a in first..first + count {
                    let v = if per_element { finite_value(b) } else { x };
                    self.set(buf, row * a_l + a, v);
                }
            }
        }
        let logits = &self.bufs[buf][..level.logits_len()];

        // The oracle.
        let want = oracle(&level, logits, range.clone(), &t, &mut self.stats)?;
        match &want {
            None => self.stats.non_finite += 1,
            Some(w) => {
                self.stats.candidates += w.len() as u64;
                self.stats.anchors += len as u64;
            }
        }
        // Every kernel with the production configuration; one of them (the bytes pick which)
        // also without the shortcuts.
        let plain_on = b.u8() as usize % self.isas.len();
        for (i, &isa) in self.isas.iter().enumerate() {
            let prod = ScoreKernel::new(t, isa).ok_or("no finite threshold")?;
            let runs = [("with quick reject", prod), ("without quick reject and prefilter", prod.without_shortcuts())];
            for &(what, k) in &runs[..if i == plain_on { 2 } else { 1 }] {
                self.out.clear();
                let finite = k.score_range(&level, logits, range.clone(), &mut self.out);
                self.stats.kernel_runs += 1;
                let ctx = || {
                    format!(
                        "level {} (anchors {}, first {}), range {range:?}, {} {what}, reject bound {}, thresholds {}",
                        level.index,
                        level.num_anchors,
                        level.first_anchor,
                        isa.name(),
                        k.reject_bound(),
                        describe_thresholds(&t)
                    )
                };
                match &want {
                    None if finite => return Err(format!("a non-finite logit in the range, but the kernel returned true: {}", ctx())),
                    None => {}
                    Some(_) if !finite => return Err(format!("finite logits refused: {}", ctx())),
                    Some(w) => {
                        // Keys ascending: (class asc, score desc, anchor asc), the oracle's order.
                        self.out.sort_unstable();
                        let same = self.out.len() == w.len() && self.out.iter().zip(w).all(|(c, &(wc, ws, wa))| c.class() == wc && c.score().to_bits() == ws && c.anchor() == wa);
                        if !same {
                            let got: Vec<(usize, u32, usize)> = self.out.iter().map(|c| (c.class(), c.score().to_bits(), c.anchor())).collect();
                            return Err(format!("candidates differ from the brute-force softmax: {}; {}", ctx(), diff(w, &got, &level, logits)));
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// Fills the logits of the range's anchors with one of the patterns.
    fn fill(&mut self, b: &mut Bytes, buf: usize, a_l: usize, range: std::ops::Range<usize>, t: &[f32; NUM_CLASSES]) {
        if range.is_empty() {
            return;
        }
        let mode = (b.u8() % 8 + 2) % 8; // 0 (past the end): random logits
        let mut rng = Rng::new(b.u32() as u64 | (b.u32() as u64) << 32);
        let (start, len) = (range.start, range.len());
        for c in 0..NUM_CLASSES {
            self.touched.push((buf, c * a_l + start, len));
        }
        let x = &mut self.bufs[buf];
        match mode {
            // Uniform: every score 1/81 (ties across classes and anchors), or one level.
            0 => {
                let v = [0.0, -0.0, 5.0, -88.0, 1e38, f32::MIN_POSITIVE][b.u8() as usize % 6];
                for c in 0..NUM_CLASSES {
                    x[c * a_l + start..][..len].fill(v);
                }
            }
            // Background-dominant, as in real images: x_0 high, the rest low (rejected).
            1 => {
                let x0 = [20.0f32, 110.0, 3.0, 2.944, 2.945][b.u8() as usize % 5];
                for a in range.clone() {
                    x[a] = x0 + (rng.unit() * 2.0) as f32;
                    for c in 1..NUM_CLASSES {
                        x[c * a_l + a] = (rng.unit() * 2.0 - 1.0) as f32;
                    }
                }
            }
            // Random logits of a chosen spread around a background offset.
            2 | 3 => {
                let spread = [1.0, 4.0, 16.0, 100.0, 1000.0][b.u8() as usize % 5];
                let offset = [0.0, 3.0, 6.0, -3.0][b.u8() as usize % 4];
                for c in 0..NUM_CLASSES {
                    for a in range.clone() {
                        x[c * a_l + a] = ((rng.unit() * 2.0 - 1.0) * spread + if c == 0 { offset } else { 0.0 }) as f32;
                    }
                }
            }
            // One class per anchor at a score within a few float32 ulps of its threshold
            // (x_0 - x_c around ln(1/t_c - 1), the quick-reject bound), the rest far below.
            4 | 5 => {
                for a in range.clone() {
                    let x0 = (rng.unit() * 20.0 - 5.0) as f32;
                    x[a] = x0;
                    for c in 1..NUM_CLASSES {
                        x[c * a_l + a] = x0 - 40.0 - (rng.unit() * 5.0) as f32;
                    }
                    let c = 1 + (rng.next() % 80) as usize;
                    let tc = if t[c] > 0.0 && t[c] < 1.0 { t[c] } else { 0.05 };
                    let bound = (1.0 / tc as f64 - 1.0).ln();
                    let delta = (rng.unit() - 0.5) * 6e-3 * (1.0 + bound.abs());
                    let mut xc = (x0 as f64 - bound - delta) as f32;
                    let steps = (rng.next() % 7) as i32 - 3;
                    for _ in 0..steps.abs() {
                        xc = if steps > 0 { up(xc) } else { down(xc) };
                    }
                    x[c * a_l + a] = xc;
                    // Sometimes a tie: a second class at the same logit.
                    if rng.next() % 4 == 0 {
                        x[(1 + (rng.next() % 80) as usize) * a_l + a] = xc;
                    }
                }
            }
            // Values from the bytes (eighths in -16..16 and the special values), the rest 0.
            _ => {
                for c in 0..NUM_CLASSES {
                    for a in range.clone() {
                        if b.done() {
                            return;
                        }
                        x[c * a_l + a] = finite_value(b);
                    }
                }
            }
        }
    }

    fn nms_case(&mut self, b: &mut Bytes) -> Result<(), String> {
        self.stats.nms_cases += 1;
        let n = match b.u8() % 16 {
            0 => b.u8() as usize % 201,
            _ => b.u8() as usize % 49,
        };
        let mut boxes: Vec<[f32; 4]> = Vec::with_capacity(n);
        for i in 0..n {
            let bx = match b.u8() % 16 {
                0..=7 => {
                    // A lattice of eighths: exact IoUs, ties, touching edges, zero area.
                    let l = (b.u8() % 24) as f32 / 8.0 - 0.5;
                    let t = (b.u8() % 24) as f32 / 8.0 - 0.5;
                    let w = (b.u8() % 12) as f32 / 8.0;
                    let h = (b.u8() % 12) as f32 / 8.0;
                    [l, t, l + w, t + h]
                }
                8 | 9 if i > 0 => boxes[b.u8() as usize % i],
                10 if i > 0 => {
                    // An earlier box moved by a few ulps (IoUs next to the threshold).
                    let mut v = boxes[b.u8() as usize % i];
                    let k = b.u8() as usize % 4;
                    for _ in 0..1 + b.u8() % 3 {
                        v[k] = if b.u8() % 2 == 0 { up(v[k]) } else { down(v[k]) };
                    }
                    if v.iter().all(|x| x.is_finite()) {
                        v
                    } else {
                        boxes[i - 1]
                    }
                }
                11 => {
                    // Inverted (r < l or b < t).
                    let (l, t) = ((b.u8() % 16) as f32 / 8.0, (b.u8() % 16) as f32 / 8.0);
                    let (w, h) = ((b.u8() % 8) as f32 / 8.0, (b.u8() % 8) as f32 / 8.0);
                    if b.u8() % 2 == 0 {
                        [l + w, t, l, t + h]
                    } else {
                        [l, t + h, l + w, t]
                    }
                }
                12 | 13 => {
                    // Extreme and tiny coordinates (finite).
                    std::array::from_fn(|_| COORDS[b.u8() as usize % COORDS.len()])
                }
                14 => std::array::from_fn(|_| {
                    let v = f32::from_bits(b.u32());
                    if v.is_finite() {
                        v
                    } else {
                        0.0
                    }
                }),
                _ => {
                    let cx = b.u8() as f32 / 64.0;
                    let cy = b.u8() as f32 / 64.0;
                    let s = (1 + b.u8() as u32) as f32 / 128.0;
                    [cx - s, cy - s, cx + s, cy + s]
                }
            };
            boxes.push(bx);
        }
        let score_mode = b.u8() % 4;
        let mut scores: Vec<f32> = (0..n)
            .map(|_| match score_mode {
                0 => 0.5, // all tied: index order
                1 => [0.0, -0.0, 0.5, 0.25, 1e-45, -1.0, f32::MAX, 0.75][b.u8() as usize % 8],
                2 => b.u8() as f32 / 255.0,
                _ => {
                    let v = f32::from_bits(b.u32());
                    if v.is_finite() {
                        v
                    } else {
                        0.125
                    }
                }
            })
            .collect();
        let iou_threshold = match b.u8() % 16 {
            0..=4 => 0.5f32,
            5 => up(0.5),
            6 => down(0.5),
            7 => 1.0,
            8 => down(1.0),
            9 => (1.0f64 / 3.0) as f32,
            10 => 1e-6,
            11 => f32::from_bits(1),
            12 => 0.1,
            13 => 0.9,
            14 => (1 + b.u8() as u32) as f32 / 256.0,
            _ => f32::from_bits(1 + b.u32() % 1.0f32.to_bits()),
        };
        let limit = match b.u8() % 8 {
            7 => 0,
            6 => 1,
            5 => 1 + b.u8() as usize % 8,
            _ => usize::MAX,
        };
        // Sometimes bad input for `nms`: a NaN/inf, lengths that differ, a bad threshold.
        let mut threshold64 = iou_threshold as f64;
        let mut bad = false;
        match b.u8() % 32 {
            31 if n > 0 => {
                let i = b.u8() as usize % n;
                boxes[i][b.u8() as usize % 4] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][b.u8() as usize % 3];
                bad = true;
            }
            30 if n > 0 => {
                let i = b.u8() as usize % n;
                scores[i] = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY][b.u8() as usize % 3];
                bad = true;
            }
            29 => {
                scores.push(0.5);
                bad = true;
            }
            28 => {
                // 1e-50 and 7e-46 are in (0, 1] but 0 as float32: refused (check_iou_threshold).
                threshold64 = [0.0, -0.0, -0.5, 1.000_000_01, f64::NAN, f64::INFINITY, 2.0, 1e-50, 7e-46][b.u8() as usize % 9];
                bad = true;
            }
            // In range as float64, 1, 0.5 or the smallest positive float32 as float32
            // (compared as float32, as documented).
            27 => threshold64 = [1.0 - 1e-12, 0.5 + 1e-12, f32::from_bits(1) as f64][b.u8() as usize % 3],
            _ => {}
        }
        if bad {
            self.stats.nms_errors += 1;
            return match fuzzing::nms(&boxes, &scores, threshold64) {
                Err(_) => Ok(()),
                Ok(kept) => Err(format!("nms accepted bad input (threshold {threshold64}, {} boxes, {} scores): kept {kept:?}", boxes.len(), scores.len())),
            };
        }

        // The oracle: processing order, then the plain greedy loop.
        let mut order: Vec<usize> = (0..n).collect();
        order.sort_by(|&i, &j| (scores[j] + 0.0).partial_cmp(&(scores[i] + 0.0)).unwrap().then(i.cmp(&j)));
        let ordered: Vec<[f32; 4]> = order.iter().map(|&i| boxes[i]).collect();
        let thr32 = threshold64 as f32;
        let plain = plain_nms(&ordered, thr32, usize::MAX);
        self.stats.kept += plain.len() as u64;
        let ctx = || format!("{n} boxes {boxes:?}, scores {scores:?}, iou_threshold {thr32:e}");
        let want_idx: Vec<usize> = plain.iter().map(|&p| order[p]).collect();
        match fuzzing::nms(&boxes, &scores, threshold64) {
            Ok(got) if got == want_idx => {}
            other => return Err(format!("nms: {other:?}, expected {want_idx:?}: {}", ctx())),
        }
        let want_limited = &plain[..limit.min(plain.len())];
        for (isa, nms) in self.isas.iter().zip(&mut self.nms) {
            // Appending to a vector that already holds something.
            self.kept.clear();
            self.kept.extend([7, 9]);
            nms.greedy(*isa, &ordered, thr32, limit, &mut self.kept);
            if self.kept[..2] != [7, 9] || self.kept[2..] != *want_limited {
                return Err(format!("greedy NMS {}: kept {:?}, expected [7, 9] then {want_limited:?} (limit {limit}): {}", isa.name(), self.kept, ctx()));
            }
        }
        Ok(())
    }
}

/// Finite box coordinates at the edges of float32.
const COORDS: [f32; 16] = [0.0, -0.0, 1.0, 0.5, 1e-45, -1e-45, f32::MIN_POSITIVE, 1e38, -1e38, 3e38, -3e38, f32::MAX, f32::MIN, 2.0, -1.0, 0.25];

/// The plain greedy NMS of docs/postprocess.md over boxes in processing order: box i kept
/// when `iou(kept, i) < iou_threshold` for every kept box; stops once `limit` are kept.
fn plain_nms(boxes: &[[f32; 4]], iou_threshold: f32, limit: usize) -> Vec<usize> {
    let mut kept: Vec<usize> = Vec::new();
    if limit == 0 {
        return kept;
    }
    for i in 0..boxes.len() {
        if kept.iter().all(|&k| iou(&boxes[k], &boxes[i]) < iou_threshold) {
            kept.push(i);
            if kept.len() == limit {
                break;
            }
        }
    }
    kept
}

/// The brute-force score pass of the range: `None` when a logit of its anchors is NaN/inf,
/// else its candidates (class, score bits, global anchor), sorted by (class asc, score desc,
/// anchor asc), the order of the kernel's keys. Also compares every
/// score with the softmax computed with the C library's `exp` (within 1 ulp).
fn oracle(level: &Level, x: &[f32], range: std::ops::Range<usize>, t: &[f32; NUM_CLASSES], stats: &mut KernelStats) -> Result<Option<Vec<(usize, u32, usize)>>, String> {
    let a_l = level.num_anchors;
    if range.clone().any(|a| (0..NUM_CLASSES).any(|c| !x[c * a_l + a].is_finite())) {
        return Ok(None);
    }
    let mut out = Vec::new();
    let mut e = [0.0f64; 88];
    for a in range {
        let col: [f32; NUM_CLASSES] = std::array::from_fn(|c| x[c * a_l + a]);
        let m = col.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
        for (k, chunk) in e.chunks_exact_mut(EXP_LANES).enumerate() {
            let args: [f64; EXP_LANES] = std::array::from_fn(|g| col.get(k * EXP_LANES + g).map_or(0.0, |&v| v as f64 - m));
            chunk.copy_from_slice(&fuzzing::exp_lanes(args));
        }
        let s = e[..NUM_CLASSES].iter().fold(0.0f64, |s, &v| s + v);
        let e_libm: [f64; NUM_CLASSES] = std::array::from_fn(|c| (col[c] as f64 - m).exp());
        let s_libm = e_libm.iter().fold(0.0f64, |s, &v| s + v);
        for c in 1..NUM_CLASSES {
            let p = (e[c] / s) as f32;
            let p_libm = (e_libm[c] / s_libm) as f32;
            let ulps = (p.to_bits() as i64 - p_libm.to_bits() as i64).unsigned_abs();
            stats.libm_pairs += 1;
            stats.libm_one_ulp += (ulps == 1) as u64;
            if ulps > 1 {
                return Err(format!(
                    "the crate's exp softmax and the C library's differ by {ulps} ulp: anchor {a} class {c}: {p:e} vs {p_libm:e} (logits {col:?})"
                ));
            }
            if p > t[c] {
                out.push((c, p.to_bits(), level.first_anchor + a));
            }
        }
    }
    out.sort_unstable_by_key(|&(c, s, a)| (c, std::cmp::Reverse(s), a));
    Ok(Some(out))
}

/// The thresholds in a few words: the distinct finite ones and how many classes are `inf`.
fn describe_thresholds(t: &[f32; NUM_CLASSES]) -> String {
    let mut finite: Vec<(usize, f32)> = t.iter().copied().enumerate().skip(1).filter(|(_, v)| v.is_finite()).collect();
    let unwanted = 80 - finite.len();
    let common = finite.first().map(|f| f.1);
    if finite.iter().all(|f| Some(f.1) == common) {
        finite.truncate(1);
    }
    format!("{:?} ({unwanted} classes unwanted)", finite.iter().map(|(c, v)| format!("{c}:{v:e}")).collect::<Vec<_>>())
}

/// The first difference of two sorted candidate lists, with the anchor's logits.
fn diff(want: &[(usize, u32, usize)], got: &[(usize, u32, usize)], level: &Level, x: &[f32]) -> String {
    let missing: Vec<_> = want.iter().filter(|w| !got.contains(w)).take(3).collect();
    let extra: Vec<_> = got.iter().filter(|g| !want.contains(g)).take(3).collect();
    let show = |v: &[&(usize, u32, usize)]| v.iter().map(|&&(c, s, a)| format!("(class {c}, score {:e}, anchor {a})", f32::from_bits(s))).collect::<Vec<_>>().join(", ");
    let first = missing.first().or(extra.first()).map(|&&(_, _, a)| a - level.first_anchor);
    let logits = first.map(|a| (0..NUM_CLASSES).map(|c| x[c * level.num_anchors + a]).collect::<Vec<_>>());
    format!("{} expected, {} got; missing [{}], extra [{}]; logits of the first: {logits:?}", want.len(), got.len(), show(&missing), show(&extra))
}
