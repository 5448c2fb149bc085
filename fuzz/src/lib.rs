//! Two fuzz cases built from bytes: the kernels' differential case ([`KernelHarness`],
//! `kernels.rs`: the score pass of one level over a range of anchors and the NMS, on every
//! instruction set, against plain oracles, microseconds an execution), and, below,
//! [`Harness`], the native decode entry, `Postprocessor::decode_batch_heads` (the call the
//! Python bindings make after their type, dtype and shape checks).
//!
//! The decode case is full size (the core is hard-wired to SSD-ResNet34's 15,130 anchors x 81
//! classes): a base image whose anchors are all background-dominant (rejected cheaply), plus
//! patches the bytes choose (a level, a window of anchors, a set of classes, values among
//! NaN, +-inf, +-1e38, +-3e38, +-65504, subnormals, -0.0, ties and raw float32 bits; the
//! same for the box offsets), a batch of 1 or 2, each of the 12 tensors float32 or float16,
//! sometimes a tensor one value short, and generated parameters and options.
//!
//! What is checked (metamorphic: the score pass and the NMS are compared with plain oracles
//! by the kernel case, [`KernelHarness`] in `kernels.rs`; the numpy reference is compared in
//! `tests/postprocess/test_postprocess_properties.py`):
//! - no panic (a panic is a crash to libFuzzer and a failure to the stable driver);
//! - errors: a short tensor gives `Error::Length`; a NaN/inf gives `Error::NonFinite` naming
//!   the lowest `outputs[k]` holding one and the lowest item there; nothing else fails;
//! - the float16 tensors give exactly what their float32 conversion gives;
//! - `within_image` (split across threads) gives exactly what the serial decode gives;
//! - a batch of 2 gives exactly the two single-image decodes;
//! - the detections: at most `max_detections`, sorted by (score desc, label asc), scores in
//!   (threshold of the label, 1], labels among the wanted classes, finite boxes, and every
//!   two kept boxes of one class (of all, class-agnostic) with float32 IoU < iou_threshold.

use half::f16;

mod kernels;
pub use kernels::{KernelHarness, KernelStats};

use ssd_resnet34::{Detections, Error, Head, OutputId, Params, Postprocessor, LEVELS, NUM_LEVELS};

const NUM_CLASSES: usize = 81;

/// The random byte string of one case of a stable driver (`random_decode`, `random_kernels`),
/// from its seed: splitmix64 of the seed (nonzero, for xorshift; neighbouring seeds give
/// unrelated bytes), then xorshift64*. One case in `long_one_in` is long (200..2200 bytes),
/// the others `short_min..short_min + short_span` bytes.
pub fn case_bytes(case_seed: u64, long_one_in: u64, short_min: u64, short_span: u64, bytes: &mut Vec<u8>) {
    let mut state = {
        let mut z = case_seed.wrapping_add(0x9E37_79B9_7F4A_7C15);
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        (z ^ (z >> 31)) | 1
    };
    let mut next = || {
        state ^= state >> 12;
        state ^= state << 25;
        state ^= state >> 27;
        state.wrapping_mul(0x2545_F491_4F6C_DD1D)
    };
    let len = match next() % long_one_in {
        0 => 200 + next() % 2000,
        _ => short_min + next() % short_span,
    } as usize;
    bytes.clear();
    bytes.extend((0..len).map(|_| (next() >> 32) as u8));
}

/// Reads the case's bytes; past the end every read gives 0.
pub struct Bytes<'a> {
    data: &'a [u8],
    at: usize,
}

impl<'a> Bytes<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Bytes { data, at: 0 }
    }

    fn u8(&mut self) -> u8 {
        let b = self.data.get(self.at).copied().unwrap_or(0);
        self.at += 1;
        b
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes([self.u8(), self.u8()])
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes([self.u8(), self.u8(), self.u8(), self.u8()])
    }

    fn done(&self) -> bool {
        self.at >= self.data.len()
    }
}

const SPECIAL: [f32; 24] = [
    0.0, -0.0, 1.0, -1.0, 2.944, 2.945, 1e38, -1e38, 3e38, -3e38, f32::MAX, f32::MIN, 65504.0, -65504.0,
    1e-45, -1e-45, f32::MIN_POSITIVE, 6e-8, 3e4, -3e4, 700.0, -700.0, 88.7, 10.0,
];

fn value(b: &mut Bytes) -> f32 {
    match b.u8() {
        0 => f32::NAN,
        1 => f32::INFINITY,
        2 => f32::NEG_INFINITY,
        3..=63 => SPECIAL[b.u8() as usize % SPECIAL.len()],
        64..=79 => f32::from_bits(b.u32()),
        _ => (b.u8() as i8) as f32 / 8.0, // -16..16: scores straddling the threshold
    }
}

/// A value for the elements of a patch drawn one by one: finite (and within float16).
fn finite_value(b: &mut Bytes) -> f32 {
    match b.u8() {
        0..=31 => SPECIAL[b.u8() as usize % 16 + 2].clamp(-65504.0, 65504.0),
        _ => (b.u8() as i8) as f32 / 8.0,
    }
}

fn params(b: &mut Bytes) -> Params {
    let sel = b.u8();
    let unit = |x: u8| x as f64 / 255.0;
    let mut p = Params::default();
    if sel & 1 != 0 {
        p.score_threshold = [0.0, 0.05, 0.5, 1.0, 0.3, 1e-6, 0.999_999, unit(b.u8())][b.u8() as usize % 8];
    }
    if sel & 2 != 0 {
        p.iou_threshold = [0.5f64, 1.0, 1e-6, 0.1, 0.9][b.u8() as usize % 5];
    }
    if sel & 4 != 0 {
        p.max_candidates_per_class = [1, 2, 7, 200, usize::MAX][b.u8() as usize % 5];
    }
    if sel & 8 != 0 {
        p.max_detections = [1, 3, 200, usize::MAX][b.u8() as usize % 4];
    }
    if sel & 16 != 0 {
        let mut wanted = [false; NUM_CLASSES];
        for _ in 0..1 + b.u8() % 4 {
            wanted[1 + b.u8() as usize % 80] = true;
        }
        p.classes = Some(wanted);
    }
    if sel & 32 != 0 {
        let mut t = [None; NUM_CLASSES];
        for _ in 0..1 + b.u8() % 3 {
            t[1 + b.u8() as usize % 80] = Some(unit(b.u8()));
        }
        p.class_thresholds = Some(t);
    }
    p.class_agnostic = sel & 64 != 0;
    p
}

/// Preallocated float32 and float16 images (batch 2) of the base pattern, reused by every
/// case (patches are undone after it).
pub struct Harness {
    logits: Vec<Vec<f32>>,
    offsets: Vec<Vec<f32>>,
    logits16: Vec<Vec<f16>>,
    offsets16: Vec<Vec<f16>>,
    /// (tensor k, index, old f32, old f16) of every value a case changed.
    undo: Vec<(usize, usize, f32, f16)>,
    pub cases: u64,
    pub errors: u64,
    pub detections: u64,
}

/// The base pattern: x_0 = 110, every foreground logit 0 (all rejected; every foreground
/// score exp(-110) underflows to 0 in float32, so none is a candidate even at threshold 0),
/// offsets 0.125 (all exact in float16).
const BASE_BACKGROUND: f32 = 110.0;

impl Default for Harness {
    fn default() -> Self {
        let logits: Vec<Vec<f32>> = LEVELS
            .iter()
            .map(|lv| {
                let mut v = vec![0.0f32; 2 * lv.logits_len()];
                for n in 0..2 {
                    v[n * lv.logits_len()..][..lv.num_anchors].fill(BASE_BACKGROUND);
                }
                v
            })
            .collect();
        let offsets: Vec<Vec<f32>> = LEVELS.iter().map(|lv| vec![0.125f32; 2 * lv.offsets_len()]).collect();
        let to16 = |v: &Vec<Vec<f32>>| v.iter().map(|l| l.iter().map(|&x| f16::from_f32(x)).collect()).collect();
        Harness { logits16: to16(&logits), offsets16: to16(&offsets), logits, offsets, undo: Vec::new(), cases: 0, errors: 0, detections: 0 }
    }
}

fn output(k: usize) -> OutputId {
    if k < NUM_LEVELS {
        OutputId::logits(k)
    } else {
        OutputId::offsets(k - NUM_LEVELS)
    }
}

impl Harness {
    /// Sets value i of outputs[k] to x; for a float16 tensor (`half`) to f16(x), and the
    /// float32 copy to its exact conversion, so that the float32 copies are always the
    /// tensors as the decode reads them.
    fn set(&mut self, k: usize, i: usize, x: f32, half: bool) {
        let (v32, v16) = if k < NUM_LEVELS { (&mut self.logits[k], &mut self.logits16[k]) } else { (&mut self.offsets[k - NUM_LEVELS], &mut self.offsets16[k - NUM_LEVELS]) };
        self.undo.push((k, i, v32[i], v16[i]));
        v16[i] = f16::from_f32(x);
        v32[i] = if half { v16[i].to_f32() } else { x };
    }

    fn restore(&mut self) {
        while let Some((k, i, x, h)) = self.undo.pop() {
            if k < NUM_LEVELS {
                self.logits[k][i] = x;
                self.logits16[k][i] = h;
            } else {
                self.offsets[k - NUM_LEVELS][i] = x;
                self.offsets16[k - NUM_LEVELS][i] = h;
            }
        }
    }

    /// outputs[k], float16 or float32, its first `len` values.
    fn tensor(&self, k: usize, half: bool, len: usize) -> Head<'_> {
        let (v32, v16) = if k < NUM_LEVELS { (&self.logits[k], &self.logits16[k]) } else { (&self.offsets[k - NUM_LEVELS], &self.offsets16[k - NUM_LEVELS]) };
        if half {
            Head::F16(&v16[..len])
        } else {
            Head::F32(&v32[..len])
        }
    }

    /// Runs one case; `Err` describes a finding (a mismatch or a broken invariant).
    pub fn run(&mut self, data: &[u8]) -> Result<(), String> {
        self.cases += 1;
        let r = self.run_inner(data);
        self.restore();
        r
    }

    fn run_inner(&mut self, data: &[u8]) -> Result<(), String> {
        let mut b = Bytes::new(data);
        let p = params(&mut b);
        let batch = 1 + (b.u8() % 2) as usize;
        // bit k: outputs[k] is float16 (in half of the cases, none is).
        let half_mask = if b.u8() % 2 == 0 { 0 } else { b.u16() & 0xFFF };
        let short = match b.u8() {
            0..=5 => Some(b.u8() as usize % 12), // rarely, one tensor one value short
            _ => None,
        };
        // Patches.
        while !b.done() && self.undo.len() < 4096 {
            let k = b.u8() as usize % 12;
            let item = b.u8() as usize % batch;
            let lv = &LEVELS[k % NUM_LEVELS];
            let rows = if k < NUM_LEVELS { NUM_CLASSES } else { 4 };
            let first = b.u16() as usize % lv.num_anchors;
            let count = 1 + b.u8() as usize % 48;
            let nrows = 1 + b.u8() as usize % 4;
            let x = value(&mut b);
            let per_element = b.u8() % 4 == 0;
            let image_len = rows * lv.num_anchors;
            for r in 0..nrows {
                let row = b.u8() as usize % rows;
                for a in first..(first + count).min(lv.num_anchors) {
                    let v = if per_element { finite_value(&mut b) } else { x };
                    self.set(k, item * image_len + row * lv.num_anchors + a, v, half_mask >> k & 1 == 1);
                }
                let _ = r;
            }
        }
        // The float16 values overflow to inf beyond 65504: the values as each tensor holds them.
        let is_half = |k: usize| half_mask >> k & 1 == 1;
        let lens: [usize; 12] = std::array::from_fn(|k| {
            let full = batch * if k < NUM_LEVELS { LEVELS[k].logits_len() } else { LEVELS[k - NUM_LEVELS].offsets_len() };
            if short == Some(k) {
                full - 1
            } else {
                full
            }
        });
        let pp = Postprocessor::new(p).map_err(|e| format!("valid parameters refused: {e} ({p:?})"))?;
        let logits: [Head; NUM_LEVELS] = std::array::from_fn(|l| self.tensor(l, is_half(l), lens[l]));
        let offsets: [Head; NUM_LEVELS] = std::array::from_fn(|l| self.tensor(NUM_LEVELS + l, is_half(NUM_LEVELS + l), lens[NUM_LEVELS + l]));
        let got = pp.decode_batch_heads(logits, offsets, batch);

        // The expected error: a short tensor, else the lowest k with a non-finite value, and its lowest item.
        if let Some(k) = short {
            self.errors += 1;
            return match got {
                Err(Error::Length { output: o, .. }) if o == output(k) || lens.iter().enumerate().any(|(j, _)| j < k && o == output(j)) => Ok(()),
                other => Err(format!("tensor {k} short: expected Error::Length, got {other:?}")),
            };
        }
        // The float32 copies are the tensors as read (see `set`); only patched values can be
        // non-finite.
        let widened: Vec<&[f32]> = (0..12).map(|k| match self.tensor(k, false, lens[k]) {
            Head::F32(s) => s,
            Head::F16(_) => unreachable!(),
        }).collect();
        let bad = self
            .undo
            .iter()
            .filter(|&&(k, i, _, _)| !widened[k][i].is_finite())
            .map(|&(k, i, _, _)| (k, i / (widened[k].len() / batch)))
            .min();
        if let Some((k, item)) = bad {
            self.errors += 1;
            return match got {
                Err(Error::NonFinite { output: o, item: i }) if o == output(k) && i == item => Ok(()),
                other => Err(format!("NaN/inf in outputs[{k}] item {item}: got {other:?}")),
            };
        }
        let got = got.map_err(|e| format!("finite full-size input refused: {e}"))?;
        if got.len() != batch {
            return Err(format!("{} results for batch {batch}", got.len()));
        }
        // float16 == its float32 conversion.
        let wl: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| widened[l]);
        let wo: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| widened[NUM_LEVELS + l]);
        if half_mask != 0 {
            let want = pp.decode_batch(wl, wo, batch).map_err(|e| format!("float32 conversion refused: {e}"))?;
            if want != got {
                return Err("float16 heads differ from their float32 conversion".into());
            }
        }
        // Split across threads == serial; batch of 2 == single images.
        let split = Postprocessor::new(Params { within_image: true, ..p }).map_err(|e| e.to_string())?;
        for n in 0..batch {
            let li: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| &wl[l][n * LEVELS[l].logits_len()..][..LEVELS[l].logits_len()]);
            let oi: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| &wo[l][n * LEVELS[l].offsets_len()..][..LEVELS[l].offsets_len()]);
            let one = split.decode_batch(li, oi, 1).map_err(|e| e.to_string())?;
            if one[0] != got[n] {
                return Err(format!("item {n}: the within-image split or the single decode differs from the batch"));
            }
        }
        for d in &got {
            self.detections += d.len() as u64;
            check_detections(d, &p)?;
        }
        Ok(())
    }
}

/// IoU as docs/postprocess.md defines it, float32 in that operation order.
fn iou(b1: &[f32; 4], b2: &[f32; 4]) -> f32 {
    let area = |b: &[f32; 4]| (b[2] - b[0]).max(0.0) * (b[3] - b[1]).max(0.0);
    let iw = (b1[2].min(b2[2]) - b1[0].max(b2[0])).max(0.0);
    let ih = (b1[3].min(b2[3]) - b1[1].max(b2[1])).max(0.0);
    let inter = iw * ih;
    let union = (area(b1) + area(b2)) - inter;
    if union > 0.0 {
        inter / union
    } else {
        0.0
    }
}

fn check_detections(d: &Detections, p: &Params) -> Result<(), String> {
    if d.len() > p.max_detections || d.boxes.len() != d.len() || d.labels.len() != d.len() {
        return Err(format!("{} detections for max_detections {}", d.len(), p.max_detections));
    }
    for i in 0..d.len() {
        let (c, s) = (d.labels[i] as usize, d.scores[i]);
        if !(1..NUM_CLASSES).contains(&c) || p.classes.is_some_and(|w| !w[c]) {
            return Err(format!("label {c} not wanted"));
        }
        let t = p.class_thresholds.and_then(|t| t[c]).unwrap_or(p.score_threshold) as f32;
        if !(s > t && s <= 1.0) {
            return Err(format!("score {s} of label {c} not in ({t}, 1]"));
        }
        if !d.boxes[i].iter().all(|v| v.is_finite()) {
            return Err(format!("box {:?} not finite", d.boxes[i]));
        }
        if i > 0 && (d.scores[i - 1] < s || (d.scores[i - 1] == s && d.labels[i - 1] > d.labels[i])) {
            return Err(format!("detections {} and {i} out of order", i - 1));
        }
        for j in 0..i {
            if (p.class_agnostic || d.labels[j] == d.labels[i]) && iou(&d.boxes[j], &d.boxes[i]) >= p.iou_threshold as f32 {
                return Err(format!("kept boxes {j} and {i} overlap: IoU {} >= {}", iou(&d.boxes[j], &d.boxes[i]), p.iou_threshold));
            }
        }
    }
    Ok(())
}
