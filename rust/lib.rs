//! Native postprocessor for MLPerf SSD-ResNet34 (COCO, 1200x1200 input, 15,130 anchors
//! x 81 classes): default boxes, softmax, thresholding, box decoding, per-class NMS and
//! the merge, exactly as docs/postprocess.md defines them after MLCommons' reference
//! (`vision/classification_and_detection/python/models/ssd_r34.py` in mlcommons/inference),
//! plus the input normalization of `pre_process_coco_resnet34`.
//!
//! One stage per module, pure Rust and crate-private; the PyO3 bindings
//! (`ssd_resnet34._native`) live in `bindings` behind the `python` feature:
//!
//! - `layout`: the six levels (F, nd, A_l, first anchor) and the shapes of `outputs[k]`;
//!   the ground floor, using no other module of the crate;
//! - `anchors`: the 15,130 default boxes;
//! - `scores`: finite check + quick reject + exact float64 softmax + threshold, giving
//!   the (class, score, anchor) candidates;
//! - `decode`: box decoding, once per anchor that has a candidate;
//! - `nms`: IoU and greedy NMS, all of it: the plain, AVX2 and AVX-512 kernels the
//!   pipeline runs per class and the single-class NMS of the bindings;
//! - `postprocess`: [`Params`], [`Postprocessor`], the per-image pipeline and the batch
//!   driver (rayon over images; within one image for a batch of one);
//! - `simd`: the kernels of the score pass (quick reject, softmax, `exp`) in
//!   portable, AVX2 and AVX-512 versions that give the same bits, and the CPU detection,
//!   done once;
//! - `preprocess`: the uint8 BGR HWC -> float32 RGB CHW normalization;
//! - `error`: [`Error`], whose messages name the tensor as `outputs[k]`, and the shape
//!   check of an output tensor;
//! - `fuzzing` (only with the `fuzzing` feature, hidden): thin wrappers over the score-pass
//!   and NMS kernels for the fuzz crate's differential target (fuzz/README.md).
//!
//! No module imports one that imports it back (`module_graph`, a test, checks it).
//!
//! The crate root exports the postprocessor, its stages (for the criterion benchmark,
//! `benches/decoder.rs`) and the layout constants they need.
//!
//! [`Postprocessor`] and the functions the bindings call never panic on bad input: every
//! failure is an [`Error`].
//!
//! ```
//! use ssd_resnet34::{Params, Postprocessor, LEVELS};
//! let pp = Postprocessor::new(Params::default()).unwrap();
//! let logits: Vec<Vec<f32>> = LEVELS.iter().map(|l| vec![0.0; l.logits_len()]).collect();
//! let offsets: Vec<Vec<f32>> = LEVELS.iter().map(|l| vec![0.0; l.offsets_len()]).collect();
//! let det = pp
//!     .decode_image(std::array::from_fn(|l| &logits[l][..]), std::array::from_fn(|l| &offsets[l][..]))
//!     .unwrap();
//! assert!(det.is_empty()); // uniform scores 1/81 < 0.05
//! ```

mod anchors;
mod decode;
mod error;
mod layout;
#[cfg(test)]
mod module_graph;
mod nms;
mod postprocess;
#[cfg(any(feature = "python", test))]
mod preprocess;
mod scores;
mod simd;

#[cfg(feature = "python")]
mod bindings;

// Thin wrappers over the kernels for the fuzz crate's differential target (fuzz/README.md);
// only with the `fuzzing` feature, never in the default build or the wheel.
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;

pub use error::{check_output_shape, Error};
pub use layout::{Head, Level, OutputId, OutputKind, LEVELS, NUM_LEVELS, NUM_OUTPUTS};
pub use postprocess::{ClassBoxes, DecodedCandidate, Detections, Parallelism, Params, Postprocessor};
pub use scores::{Candidate, Candidates};
pub use simd::Isa;

#[cfg(test)]
pub(crate) mod test_util {
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
}
