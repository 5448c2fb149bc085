//! Native postprocessor for MLPerf SSD-ResNet34 (COCO, 1200x1200 input, 15,130 anchors
//! x 81 classes): default boxes, softmax, thresholding, box decoding, per-class NMS and
//! the merge, exactly as docs/postprocess.md defines them after MLCommons' reference
//! (`vision/classification_and_detection/python/models/ssd_r34.py` in mlcommons/inference),
//! plus the input normalization of `pre_process_coco_resnet34`.
//!
//! One stage per module, pure Rust; the PyO3 bindings (`ssd_resnet34._native`) live in
//! `bindings` behind the `python` feature:
//!
//! - [`layout`]: the six levels (F, nd, A_l, first anchor) and the shapes of `outputs[k]`;
//! - [`anchors`]: the 15,130 default boxes;
//! - [`scores`]: finite check + quick reject + exact float64 softmax + threshold, giving
//!   the (class, score, anchor) candidates (AVX2/AVX-512 kernels, portable fallback, the
//!   same bits on every CPU);
//! - [`exp`]: the vectorised float64 `exp` of that softmax (within 1 ulp of libm);
//! - [`decode`]: box decoding of the candidates that survive the per-class top-k;
//! - [`nms`]: IoU and greedy NMS;
//! - [`postprocess`]: [`Params`], [`Postprocessor`], the per-image pipeline and the batch
//!   driver (rayon over images; within one image for a batch of one);
//! - [`preprocess`]: the uint8 BGR HWC -> float32 RGB CHW normalization;
//! - [`error`]: [`Error`], whose messages name the tensor as `outputs[k]`.
//!
//! [`Postprocessor`] and the functions the bindings call never panic on bad input: every
//! failure is an [`Error`]. The lower-level stage functions (for benchmarks) state their
//! preconditions and assert them.
//!
//! ```
//! use ssd_resnet34::{layout::LEVELS, Params, Postprocessor};
//! let pp = Postprocessor::new(Params::default()).unwrap();
//! let logits: Vec<Vec<f32>> = LEVELS.iter().map(|l| vec![0.0; l.logits_len()]).collect();
//! let offsets: Vec<Vec<f32>> = LEVELS.iter().map(|l| vec![0.0; l.offsets_len()]).collect();
//! let det = pp
//!     .decode_image(std::array::from_fn(|l| &logits[l][..]), std::array::from_fn(|l| &offsets[l][..]))
//!     .unwrap();
//! assert!(det.is_empty()); // uniform scores 1/81 < 0.05
//! ```

pub mod anchors;
pub mod decode;
pub mod error;
pub mod exp;
pub mod layout;
pub mod nms;
pub mod postprocess;
pub mod preprocess;
pub mod scores;

#[cfg(feature = "python")]
mod bindings;

pub use error::Error;
pub use postprocess::{Detections, Parallelism, Params, Postprocessor};
