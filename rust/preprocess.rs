//! Image normalization for the model input: uint8 BGR HWC (OpenCV order) -> float32
//! RGB CHW, `((v / 255) - mean[c]) / std[c]` in float32, as MLCommons'
//! `pre_process_coco_resnet34` (`vision/classification_and_detection/python/dataset.py`:
//! `img = img / 255. - mean; img = img / std` on a float32 RGB image), bit for bit.
//!
//! A uint8 channel has 256 values, so the formula is tabulated once per call
//! (3 x 256 float32) and the kernel is a lookup fused with the HWC -> CHW transpose.

use crate::error::Error;
use rayon::prelude::*;

/// ImageNet mean of MLCommons' preprocessing, RGB order.
pub(crate) const IMAGENET_MEAN: [f64; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation of MLCommons' preprocessing, RGB order.
pub(crate) const IMAGENET_STD: [f64; 3] = [0.229, 0.224, 0.225];

/// Rows per rayon task (a 1200-pixel row is ~3.6 kB in, ~14 kB out).
const ROWS_PER_TASK: usize = 16;

/// The normalization formula for one channel value, in float32 and in this order:
/// ((f32(v) / 255) - f32(mean)) / f32(std).
#[inline]
pub(crate) fn normalize_value(v: u8, mean: f32, std: f32) -> f32 {
    ((v as f32) / 255.0f32 - mean) / std
}

/// `table[c][v]` = [`normalize_value`]`(v, mean[c], std[c])`, channels in RGB order.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct NormalizeLut {
    pub table: [[f32; 256]; 3],
}

impl NormalizeLut {
    /// `mean`, `std`: per RGB channel, rounded to float32. Errors (`ValueError`): a non-finite
    /// mean; a std that is not a normal float32 (zero, subnormal, e.g. 1e-40, or non-finite),
    /// or a mean and std whose normalized values overflow float32 (±inf for some pixel).
    pub(crate) fn new(mean: [f64; 3], std: [f64; 3]) -> Result<Self, Error> {
        let mean32 = mean.map(|m| m as f32);
        let std32 = std.map(|s| s as f32);
        if !mean32.iter().all(|m| m.is_finite()) {
            return Err(Error::InvalidArgument(format!("mean = {mean:?} must be 3 finite values")));
        }
        if !std32.iter().all(|s| s.is_normal()) {
            return Err(Error::InvalidArgument(format!(
                "std = {std:?} must be 3 finite non-zero values, each a normal float32 (magnitude at least {:e}; \
                 a smaller one divides pixels to infinity)",
                f32::MIN_POSITIVE
            )));
        }
        let mut table = [[0.0f32; 256]; 3];
        for (c, row) in table.iter_mut().enumerate() {
            for (v, t) in row.iter_mut().enumerate() {
                *t = normalize_value(v as u8, mean32[c], std32[c]);
            }
        }
        if let Some(c) = (0..3).find(|&c| !table[c].iter().all(|t| t.is_finite())) {
            return Err(Error::InvalidArgument(format!(
                "mean = {mean:?} and std = {std:?} overflow float32 for channel {c}: (v / 255 - mean) / std must be finite"
            )));
        }
        Ok(NormalizeLut { table })
    }
}

/// One row: BGR pixels -> the three RGB plane rows.
#[inline]
fn normalize_row(lut: &NormalizeLut, bgr: &[u8], r: &mut [f32], g: &mut [f32], b: &mut [f32]) {
    let [tr, tg, tb] = &lut.table;
    for (((px, r), g), b) in bgr.chunks_exact(3).zip(r.iter_mut()).zip(g.iter_mut()).zip(b.iter_mut()) {
        *r = tr[px[2] as usize];
        *g = tg[px[1] as usize];
        *b = tb[px[0] as usize];
    }
}

/// Writes `out[c, y, x] = lut.table[c][image[y, x, 2 - c]]`: `image` is (H, W, 3) uint8
/// BGR in C order, `out` (3, H, W) float32 in C order. Rows run on the rayon pool.
///
/// Errors (`ValueError`): slice lengths that do not match `height` x `width`.
pub(crate) fn normalize_bgr_to_rgb_chw(lut: &NormalizeLut, image: &[u8], height: usize, width: usize, out: &mut [f32]) -> Result<(), Error> {
    let pixels = height * width;
    if image.len() != pixels * 3 || out.len() != pixels * 3 {
        return Err(Error::InvalidArgument(format!(
            "image has {} values and out {}; expected {} each for a {height}x{width} image",
            image.len(),
            out.len(),
            pixels * 3
        )));
    }
    if pixels == 0 {
        return Ok(());
    }
    let (r, rest) = out.split_at_mut(pixels);
    let (g, b) = rest.split_at_mut(pixels);
    r.par_chunks_mut(width)
        .zip(g.par_chunks_mut(width))
        .zip(b.par_chunks_mut(width))
        .zip(image.par_chunks(width * 3))
        .with_min_len(ROWS_PER_TASK)
        .for_each(|(((r, g), b), bgr)| normalize_row(lut, bgr, r, g, b));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lut_equals_direct_formula() {
        let lut = NormalizeLut::new(IMAGENET_MEAN, IMAGENET_STD).unwrap();
        for c in 0..3 {
            let (m, s) = (IMAGENET_MEAN[c] as f32, IMAGENET_STD[c] as f32);
            for v in 0..=255u8 {
                let direct = (v as f32 / 255.0f32 - m) / s;
                assert_eq!(lut.table[c][v as usize].to_bits(), direct.to_bits(), "c={c} v={v}");
            }
        }
        assert_eq!(lut.table[0][0], (0.0 - 0.485f32) / 0.229f32);
    }

    #[test]
    fn kernel_is_bit_exact_and_swaps_channels() {
        let (h, w) = (37, 53);
        let image: Vec<u8> = (0..h * w * 3).map(|i| ((i * 7919) % 256) as u8).collect();
        let lut = NormalizeLut::new(IMAGENET_MEAN, IMAGENET_STD).unwrap();
        let mut out = vec![f32::NAN; 3 * h * w];
        normalize_bgr_to_rgb_chw(&lut, &image, h, w, &mut out).unwrap();
        for y in 0..h {
            for x in 0..w {
                for c in 0..3 {
                    let v = image[(y * w + x) * 3 + (2 - c)];
                    let want = (v as f32 / 255.0f32 - IMAGENET_MEAN[c] as f32) / IMAGENET_STD[c] as f32;
                    assert_eq!(out[(c * h + y) * w + x].to_bits(), want.to_bits());
                }
            }
        }
    }

    #[test]
    fn bad_arguments() {
        assert!(NormalizeLut::new(IMAGENET_MEAN, [0.2, 0.0, 0.2]).is_err());
        assert!(NormalizeLut::new([f64::NAN, 0.0, 0.0], IMAGENET_STD).is_err());
        assert!(NormalizeLut::new(IMAGENET_MEAN, [1e300, 1.0, 1.0]).is_err());
        // Issue 15: a subnormal float32 std (1e-40) or one that rounds to 0 divided pixels to ±inf.
        assert!(NormalizeLut::new(IMAGENET_MEAN, [1e-40, 1.0, 1.0]).is_err());
        assert!(NormalizeLut::new(IMAGENET_MEAN, [1.0, 1e-50, 1.0]).is_err());
        assert!(NormalizeLut::new(IMAGENET_MEAN, [1.0, 1.0, -1e-39]).is_err());
        // Normal values whose quotient overflows float32.
        assert!(NormalizeLut::new([3e38, 0.0, 0.0], [1e-3, 1.0, 1.0]).is_err());
        assert!(NormalizeLut::new([0.485, -1e36, 0.406], [0.229, 1e-3, 0.225]).is_err());
        let lut = NormalizeLut::new(IMAGENET_MEAN, IMAGENET_STD).unwrap();
        let mut out = vec![0.0; 12];
        assert!(normalize_bgr_to_rgb_chw(&lut, &[0; 12], 2, 2, &mut out).is_ok());
        assert!(normalize_bgr_to_rgb_chw(&lut, &[0; 11], 2, 2, &mut out).is_err());
        assert!(normalize_bgr_to_rgb_chw(&lut, &[], 0, 5, &mut []).is_ok());
    }
}
