//! The six feature-map levels of the SSD-ResNet34 head and the memory layout of the
//! model card's 12 output tensors (docs/postprocess.md, "Head outputs").
//!
//! Within level `l` the anchor index is `a = d*F*F + i*F + j`; the logit of class `c`
//! for anchor `a` is element `c*A_l + a` of one image's flattened `(81*nd, F, F)`
//! slice, box offset `k` is element `k*A_l + a` of its flattened `(4*nd, F, F)` slice.
//! This is MLCommons' `view(N, 81, -1)` / `view(N, 4, -1)` in
//! `vision/classification_and_detection/python/models/ssd_r34.py`.

use std::fmt;

/// Classes per anchor, background (0) included.
pub(crate) const NUM_CLASSES: usize = 81;
/// Feature-map levels of the head.
pub const NUM_LEVELS: usize = 6;
/// Default boxes (anchors) over all levels.
pub(crate) const NUM_ANCHORS: usize = 15_130;
/// Output tensors of the model: 6 class-logit tensors, then 6 box-offset tensors.
pub const NUM_OUTPUTS: usize = 2 * NUM_LEVELS;

/// One feature-map level.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Level {
    /// Level index 0..6.
    pub index: usize,
    /// Feature map side F (the map is F x F).
    pub feature_size: usize,
    /// Default boxes per cell (nd).
    pub boxes_per_cell: usize,
    /// Anchors of the level, A_l = nd*F*F.
    pub num_anchors: usize,
    /// Global index of the level's first anchor.
    pub first_anchor: usize,
}

impl Level {
    const fn new(index: usize, feature_size: usize, boxes_per_cell: usize, first_anchor: usize) -> Self {
        Level {
            index,
            feature_size,
            boxes_per_cell,
            num_anchors: boxes_per_cell * feature_size * feature_size,
            first_anchor,
        }
    }

    /// Channels of the class-logit tensor, 81*nd.
    pub(crate) const fn logit_channels(&self) -> usize {
        NUM_CLASSES * self.boxes_per_cell
    }

    /// Channels of the box-offset tensor, 4*nd.
    pub(crate) const fn offset_channels(&self) -> usize {
        4 * self.boxes_per_cell
    }

    /// f32 values of one image's class logits, 81*A_l.
    pub const fn logits_len(&self) -> usize {
        NUM_CLASSES * self.num_anchors
    }

    /// f32 values of one image's box offsets, 4*A_l.
    pub const fn offsets_len(&self) -> usize {
        4 * self.num_anchors
    }

    /// Global anchor indices of the level.
    #[cfg(test)]
    pub(crate) const fn anchor_range(&self) -> std::ops::Range<usize> {
        self.first_anchor..self.first_anchor + self.num_anchors
    }
}

const fn build_levels() -> [Level; NUM_LEVELS] {
    const F: [usize; NUM_LEVELS] = [50, 25, 13, 7, 3, 3];
    const ND: [usize; NUM_LEVELS] = [4, 6, 6, 6, 4, 4];
    let mut levels = [Level::new(0, 0, 0, 0); NUM_LEVELS];
    let mut first = 0;
    let mut l = 0;
    while l < NUM_LEVELS {
        levels[l] = Level::new(l, F[l], ND[l], first);
        first += levels[l].num_anchors;
        l += 1;
    }
    levels
}

/// The six levels in head order (the table of docs/postprocess.md).
pub const LEVELS: [Level; NUM_LEVELS] = build_levels();

const _: () = assert!(LEVELS[5].first_anchor + LEVELS[5].num_anchors == NUM_ANCHORS);

/// The level holding a global anchor index and the anchor's index within it.
/// `None` when `anchor >= NUM_ANCHORS`.
#[cfg(test)]
pub(crate) fn locate_anchor(anchor: usize) -> Option<(&'static Level, usize)> {
    LEVELS
        .iter()
        .find(|lv| lv.anchor_range().contains(&anchor))
        .map(|lv| (lv, anchor - lv.first_anchor))
}

/// What an output tensor holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputKind {
    /// `outputs[l]`, (N, 81*nd, F, F).
    ClassLogits,
    /// `outputs[6+l]`, (N, 4*nd, F, F).
    BoxOffsets,
}

impl OutputKind {
    /// Plural name used in messages, e.g. "class logits".
    pub(crate) const fn name(self) -> &'static str {
        match self {
            OutputKind::ClassLogits => "class logits",
            OutputKind::BoxOffsets => "box offsets",
        }
    }
}

/// One of the 12 output tensors, named as in the model card (`outputs[k]`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutputId {
    pub kind: OutputKind,
    pub level: usize,
}

impl OutputId {
    pub const fn logits(level: usize) -> Self {
        OutputId { kind: OutputKind::ClassLogits, level }
    }

    pub const fn offsets(level: usize) -> Self {
        OutputId { kind: OutputKind::BoxOffsets, level }
    }

    /// The model-card index k of `outputs[k]`: l for class logits, 6+l for box offsets.
    pub const fn index(self) -> usize {
        match self.kind {
            OutputKind::ClassLogits => self.level,
            OutputKind::BoxOffsets => NUM_LEVELS + self.level,
        }
    }

    /// Per-image shape (C, F, F) of the tensor; the full shape is (N, C, F, F).
    pub const fn image_shape(self) -> [usize; 3] {
        let lv = &LEVELS[self.level];
        let channels = match self.kind {
            OutputKind::ClassLogits => lv.logit_channels(),
            OutputKind::BoxOffsets => lv.offset_channels(),
        };
        [channels, lv.feature_size, lv.feature_size]
    }

    /// f32 values per image, C*F*F.
    pub const fn image_len(self) -> usize {
        let [c, h, w] = self.image_shape();
        c * h * w
    }
}

impl fmt::Display for OutputId {
    /// e.g. `outputs[8] (box offsets, level 2)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "outputs[{}] ({}, level {})", self.index(), self.kind.name(), self.level)
    }
}

/// The data of one output tensor (one image's slice, or a whole batch's) as received:
/// float32, or float16 converted exactly to float32 as it is read (every float16 value,
/// NaN and +-inf included, is a float32 value; docs/postprocess.md, "Head outputs"). The
/// decode of float16 data is by definition the decode of its float32 conversion.
#[derive(Clone, Copy, Debug)]
pub enum Head<'a> {
    F32(&'a [f32]),
    F16(&'a [half::f16]),
}

impl<'a> Head<'a> {
    /// Values (of either type).
    pub fn len(&self) -> usize {
        match self {
            Head::F32(s) => s.len(),
            Head::F16(s) => s.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The values `range`.
    ///
    /// # Panics
    /// When `range` is out of bounds.
    pub fn slice(&self, range: std::ops::Range<usize>) -> Head<'a> {
        match self {
            Head::F32(s) => Head::F32(&s[range]),
            Head::F16(s) => Head::F16(&s[range]),
        }
    }

    /// The values `src_start..src_start + dst.len()` as float32, into `dst`.
    ///
    /// # Panics
    /// When that range is out of bounds.
    #[inline]
    pub(crate) fn read_into(&self, src_start: usize, dst: &mut [f32]) {
        match self {
            Head::F32(s) => dst.copy_from_slice(&s[src_start..][..dst.len()]),
            Head::F16(s) => convert_f16(&s[src_start..][..dst.len()], dst),
        }
    }

    /// All the values as float32 (a borrow for float32 data, a conversion for float16).
    pub(crate) fn to_f32(&self) -> std::borrow::Cow<'a, [f32]> {
        match *self {
            Head::F32(s) => std::borrow::Cow::Borrowed(s),
            Head::F16(s) => {
                let mut v = vec![0.0; s.len()];
                self.read_into(0, &mut v);
                std::borrow::Cow::Owned(v)
            }
        }
    }
}

/// `dst[i] = f32(src[i])`, exactly (`vcvtph2ps` with F16C, else `half`'s conversion; both
/// exact for every value, subnormals included, NaN staying NaN).
///
/// # Panics
/// When the lengths differ.
fn convert_f16(src: &[half::f16], dst: &mut [f32]) {
    assert_eq!(src.len(), dst.len(), "convert_f16: lengths differ");
    #[cfg(target_arch = "x86_64")]
    if std::is_x86_feature_detected!("f16c") && std::is_x86_feature_detected!("avx") {
        // SAFETY: the CPU has F16C and AVX (checked just above; the check is cached).
        return unsafe { convert_f16c(src, dst) };
    }
    for (d, s) in dst.iter_mut().zip(src) {
        *d = s.to_f32();
    }
}

/// [`convert_f16`] with F16C, 8 values a step.
///
/// # Safety
/// The CPU must support F16C and AVX; `src` and `dst` have the same length.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx,f16c")]
unsafe fn convert_f16c(src: &[half::f16], dst: &mut [f32]) {
    use std::arch::x86_64::*;
    let whole = src.len() - src.len() % 8;
    let mut i = 0;
    while i < whole {
        // SAFETY: i + 8 <= whole <= both lengths; f16 is 2 bytes (repr(transparent) u16).
        let h = _mm_loadu_si128(src.as_ptr().add(i).cast());
        _mm256_storeu_ps(dst.as_mut_ptr().add(i), _mm256_cvtph_ps(h));
        i += 8;
    }
    for j in whole..src.len() {
        dst[j] = src[j].to_f32();
    }
}

impl<'a> From<&'a [f32]> for Head<'a> {
    fn from(s: &'a [f32]) -> Self {
        Head::F32(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_the_table() {
        let want = [
            (50, 4, 10000, 0),
            (25, 6, 3750, 10000),
            (13, 6, 1014, 13750),
            (7, 6, 294, 14764),
            (3, 4, 36, 15058),
            (3, 4, 36, 15094),
        ];
        for (lv, &(f, nd, a, first)) in LEVELS.iter().zip(&want) {
            assert_eq!((lv.feature_size, lv.boxes_per_cell, lv.num_anchors, lv.first_anchor), (f, nd, a, first));
        }
        assert_eq!(LEVELS.iter().map(|l| l.num_anchors).sum::<usize>(), NUM_ANCHORS);
        assert_eq!(LEVELS[1].logit_channels(), 486);
        assert_eq!(LEVELS[4].offset_channels(), 16);
        assert_eq!(LEVELS[0].logits_len(), 810_000);
    }

    #[test]
    fn locate_anchor_maps_global_to_local() {
        assert_eq!(locate_anchor(0).map(|(l, a)| (l.index, a)), Some((0, 0)));
        assert_eq!(locate_anchor(9999).map(|(l, a)| (l.index, a)), Some((0, 9999)));
        assert_eq!(locate_anchor(10000).map(|(l, a)| (l.index, a)), Some((1, 0)));
        assert_eq!(locate_anchor(15129).map(|(l, a)| (l.index, a)), Some((5, 35)));
        assert!(locate_anchor(NUM_ANCHORS).is_none());
    }

    #[test]
    fn output_ids_and_messages() {
        assert_eq!(OutputId::logits(3).index(), 3);
        assert_eq!(OutputId::offsets(2).index(), 8);
        assert_eq!(OutputId::logits(3).image_shape(), [486, 7, 7]);
        assert_eq!(OutputId::offsets(0).image_len(), 16 * 2500);
        assert_eq!(OutputId::offsets(2).to_string(), "outputs[8] (box offsets, level 2)");
    }

    #[test]
    fn float16_heads_read_as_their_exact_float32_values() {
        use half::f16;
        let specials = [f16::MAX, f16::MIN, f16::MIN_POSITIVE_SUBNORMAL, -f16::MIN_POSITIVE_SUBNORMAL, f16::NEG_ZERO, f16::INFINITY, f16::NEG_INFINITY, f16::from_f32(0.1)];
        let h = Head::F16(&specials);
        let mut out = [0.0f32; 8];
        h.read_into(0, &mut out);
        for (x, y) in specials.iter().zip(&out) {
            assert_eq!(x.to_f32().to_bits(), y.to_bits());
        }
        assert_eq!(out[0], 65504.0);
        assert_eq!(out[2], 2f32.powi(-24));
        assert!(out[4] == 0.0 && out[4].is_sign_negative());
        // Every float16 bit pattern, at every offset of the 8-value steps: the exact value
        // (NaN for NaN).
        let all: Vec<f16> = (0..=u16::MAX).map(f16::from_bits).collect();
        for skip in [0, 3] {
            let mut wide = vec![0.0f32; all.len() - skip];
            Head::F16(&all).read_into(skip, &mut wide);
            for (x, y) in all[skip..].iter().zip(&wide) {
                assert!(x.to_f32().to_bits() == y.to_bits() || (x.is_nan() && y.is_nan()), "{:#06x}", x.to_bits());
            }
        }
        let nan = [f16::NAN];
        assert!(Head::F16(&nan).to_f32()[0].is_nan());
        assert_eq!(h.slice(2..4).len(), 2);
        let v = [1.5f32, -0.0];
        assert!(matches!(Head::from(&v[..]).to_f32(), std::borrow::Cow::Borrowed(_)));
    }
}
