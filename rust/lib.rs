//! Native postprocessor for MLPerf SSD-ResNet34 (COCO, 1200x1200 input, 15,130 anchors
//! x 81 classes): default boxes, softmax, thresholding, box decoding, per-class NMS and
//! the merge, exactly as docs/postprocess.md defines them after MLCommons' reference
//! (`vision/classification_and_detection/python/models/ssd_r34.py` in mlcommons/inference),
//! plus the input normalization of `pre_process_coco_resnet34`.
//!
//! One stage per module, pure Rust; the PyO3 bindings (`ssd_resnet34._native`) live in
//! `bindings` behind the `python` feature.
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
