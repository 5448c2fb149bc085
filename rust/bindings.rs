//! PyO3 bindings: the `ssd_resnet34._native` extension module (feature `python`).
//!
//! Inputs are checked here (types, dtypes, shapes, layout) and handed to the pure-Rust
//! core as slices; C-contiguous arrays are borrowed without a copy, others copied to C
//! order. Every refusal is an [`Error`], and `impl From<Error> for PyErr` below is the one
//! place where errors become Python exceptions (the variant decides which, see
//! [`Error::kind`]). Native work runs with the GIL released inside `catch_unwind`
//! ([`run_detached`]), so no Rust panic reaches Python: it becomes [`Error::Panic`], a
//! `RuntimeError`.

use crate::anchors::default_boxes;
use crate::error::{check_output_shape, Error, ErrorKind, Subject};
use crate::layout::{Head, OutputId, OutputKind, NUM_CLASSES, NUM_LEVELS};
use crate::nms::nms as nms_core;
use crate::postprocess::{Detections, Params, Postprocessor as CorePostprocessor};
use crate::preprocess::{normalize_bgr_to_rgb_chw, NormalizeLut, IMAGENET_MEAN, IMAGENET_STD};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyOverflowError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::convert::Infallible;
use std::panic::{catch_unwind, AssertUnwindSafe};

impl From<Error> for PyErr {
    fn from(e: Error) -> PyErr {
        let message = e.to_string();
        match e.kind() {
            ErrorKind::Type => PyTypeError::new_err(message),
            ErrorKind::Value => PyValueError::new_err(message),
            ErrorKind::Runtime => PyRuntimeError::new_err(message),
        }
    }
}

/// Runs native work without the GIL; a panic becomes [`Error::Panic`].
fn run_detached<T: Send>(py: Python<'_>, operation: &'static str, f: impl FnOnce() -> Result<T, Error> + Send) -> Result<T, Error> {
    py.detach(|| catch_unwind(AssertUnwindSafe(f)).unwrap_or_else(|panic| Err(Error::from_panic(operation, &*panic))))
}

/// The data of an array: borrowed when C-contiguous, else copied to C order.
enum Data<'py, T: Element> {
    Borrowed(PyReadonlyArrayDyn<'py, T>),
    Owned(Vec<T>),
}

impl<'py, T: Element + Copy> Data<'py, T> {
    fn new(array: &Bound<'py, PyArrayDyn<T>>, subject: Subject) -> Result<Self, Error> {
        let ro = array.try_readonly().map_err(|e| Error::Borrow { subject, write: false, reason: e.to_string() })?;
        if array.is_c_contiguous() {
            Ok(Data::Borrowed(ro))
        } else {
            Ok(Data::Owned(ro.as_array().iter().copied().collect()))
        }
    }

    fn as_slice(&self) -> &[T] {
        match self {
            // A C-contiguous array always gives a slice; the empty fallback is unreachable.
            Data::Borrowed(ro) => ro.as_slice().unwrap_or(&[]),
            Data::Owned(v) => v,
        }
    }
}

fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type().name().map(|n| n.to_string()).unwrap_or_else(|_| "object".into())
}

/// `obj` as a numpy array of `T` (`dtype` names it), else [`Error::NotAnArray`] /
/// [`Error::Dtype`].
fn typed_array<'py, T: Element>(obj: &Bound<'py, PyAny>, subject: Subject, dtype: &'static str) -> Result<Bound<'py, PyArrayDyn<T>>, Error> {
    let untyped = obj
        .cast::<PyUntypedArray>()
        .map_err(|_| Error::NotAnArray { subject, type_name: type_name(obj), dtype })?;
    match untyped.cast::<PyArrayDyn<T>>() {
        Ok(a) => Ok(a.clone()),
        Err(_) => Err(Error::Dtype { subject, dtype: untyped.dtype().to_string(), expected: dtype }),
    }
}

/// The 6 tensors of one kind as a list/tuple, checked for count.
fn output_list<'py>(obj: &Bound<'py, PyAny>, kind: OutputKind, argument: &'static str) -> Result<Vec<Bound<'py, PyAny>>, Error> {
    let items: Vec<Bound<'py, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(Error::NotASequence { argument, type_name: type_name(obj) });
    };
    if items.len() != NUM_LEVELS {
        return Err(Error::OutputCount { kind, got: items.len() });
    }
    Ok(items)
}

/// The data of one output tensor, float32 or float16.
enum HeadData<'py> {
    F32(Data<'py, f32>),
    F16(Data<'py, half::f16>),
}

impl HeadData<'_> {
    fn as_head(&self) -> Head<'_> {
        match self {
            HeadData::F32(d) => Head::F32(d.as_slice()),
            HeadData::F16(d) => Head::F16(d.as_slice()),
        }
    }
}

/// Checks one output tensor (type, dtype: float32 or float16, shape, batch) and returns
/// its data.
fn output_data<'py>(obj: &Bound<'py, PyAny>, output: OutputId, batch: &mut Option<usize>) -> Result<HeadData<'py>, Error> {
    const DTYPES: &str = "float32 or float16";
    let subject = Subject::Output(output);
    if let Ok(a) = obj.cast::<PyArrayDyn<half::f16>>() {
        *batch = Some(check_output_shape(output, a.shape(), *batch)?);
        return Ok(HeadData::F16(Data::new(a, subject)?));
    }
    let array = typed_array::<f32>(obj, subject, DTYPES)?;
    *batch = Some(check_output_shape(output, array.shape(), *batch)?);
    Ok(HeadData::F32(Data::new(&array, subject)?))
}

fn detections_to_py<'py>(py: Python<'py>, d: Detections) -> PyResult<Bound<'py, PyTuple>> {
    let k = d.len();
    let boxes = PyArray1::from_vec(py, d.boxes.into_flattened()).reshape([k, 4])?;
    let labels = PyArray1::from_vec(py, d.labels);
    let scores = PyArray1::from_vec(py, d.scores);
    PyTuple::new(py, [boxes.into_any(), labels.into_any(), scores.into_any()])
}

/// A count parameter as Python gave it. Extraction never fails, so that the constructor
/// reports a bad value as an [`Error`] naming the parameter.
enum Count {
    /// A Python int >= 1 (anything with `__index__`), clamped to `usize::MAX`: a value
    /// above the number of candidates means no limit.
    Value(usize),
    /// An int < 1, as Python prints it.
    TooSmall(String),
    /// Not an int: the type's name.
    NotAnInt(String),
}

impl<'a, 'py> FromPyObject<'a, 'py> for Count {
    type Error = Infallible;

    fn extract(obj: Borrowed<'a, 'py, PyAny>) -> Result<Self, Infallible> {
        Ok(match obj.extract::<i64>() {
            Ok(v) if v >= 1 => Count::Value(usize::try_from(v).unwrap_or(usize::MAX)),
            Ok(v) => Count::TooSmall(v.to_string()),
            // An int outside i64: in u64, or beyond (huge means no limit; hugely negative
            // is too small).
            Err(e) if e.is_instance_of::<PyOverflowError>(obj.py()) => match obj.extract::<u64>() {
                Ok(v) => Count::Value(usize::try_from(v).unwrap_or(usize::MAX)),
                Err(_) if obj.gt(0).unwrap_or(false) => Count::Value(usize::MAX),
                Err(_) => Count::TooSmall(obj.str().map(|s| s.to_string()).unwrap_or_else(|_| "?".into())),
            },
            Err(_) => Count::NotAnInt(type_name(&obj)),
        })
    }
}

impl Count {
    fn value(self, name: &'static str) -> Result<usize, Error> {
        const EXPECTED: &str = "an integer >= 1";
        match self {
            Count::Value(v) => Ok(v),
            Count::TooSmall(value) => Err(Error::InvalidParameter { name, value, expected: EXPECTED }),
            Count::NotAnInt(type_name) => Err(Error::ParameterType { name, type_name, expected: EXPECTED }),
        }
    }
}

/// The SSD-ResNet34 postprocessor (docs/postprocess.md): softmax, threshold, per-class
/// top-k, box decoding, greedy NMS and merge, after MLCommons' `Encoder.decode_batch`
/// (vision/classification_and_detection/python/models/ssd_r34.py).
#[pyclass(frozen, module = "ssd_resnet34._native", name = "Postprocessor")]
struct Postprocessor {
    inner: CorePostprocessor,
}

#[pymethods]
impl Postprocessor {
    #[new]
    #[pyo3(signature = (score_threshold = 0.05, iou_threshold = 0.5, max_candidates_per_class = Count::Value(200), max_detections = Count::Value(200), *, classes = None, class_score_thresholds = None, class_agnostic = false, within_image = false))]
    #[pyo3(text_signature = "(score_threshold=0.05, iou_threshold=0.5, max_candidates_per_class=200, max_detections=200, *, classes=None, class_score_thresholds=None, class_agnostic=False, within_image=False)")]
    #[allow(clippy::too_many_arguments)]
    fn new(
        score_threshold: f64,
        iou_threshold: f64,
        max_candidates_per_class: Count,
        max_detections: Count,
        classes: Option<Vec<i64>>,
        class_score_thresholds: Option<std::collections::BTreeMap<i64, f64>>,
        class_agnostic: bool,
        within_image: bool,
    ) -> PyResult<Self> {
        let label = |name: &'static str, c: i64| -> Result<usize, Error> {
            if (1..NUM_CLASSES as i64).contains(&c) {
                Ok(c as usize)
            } else {
                Err(Error::InvalidParameter { name, value: format!("a set with label {c}"), expected: "labels 1..80 (0 is the background)" })
            }
        };
        let classes = match classes {
            None => None,
            Some(list) => {
                let mut wanted = [false; NUM_CLASSES];
                for c in list {
                    wanted[label("classes", c)?] = true;
                }
                Some(wanted)
            }
        };
        let class_thresholds = match class_score_thresholds {
            None => None,
            Some(map) => {
                let mut t = [None; NUM_CLASSES];
                for (c, v) in map {
                    t[label("score_threshold", c)?] = Some(v);
                }
                Some(t)
            }
        };
        let params = Params {
            score_threshold,
            iou_threshold,
            max_candidates_per_class: max_candidates_per_class.value("max_candidates_per_class")?,
            max_detections: max_detections.value("max_detections")?,
            class_thresholds,
            classes,
            class_agnostic,
            within_image,
        };
        Ok(Postprocessor { inner: CorePostprocessor::new(params)? })
    }

    /// The wanted labels, ascending, or None (all 80).
    #[getter]
    fn classes(&self) -> Option<Vec<usize>> {
        self.inner.params().classes.map(|w| (0..NUM_CLASSES).filter(|&c| w[c]).collect())
    }

    /// The per-label thresholds given, or None.
    #[getter]
    fn class_score_thresholds(&self) -> Option<std::collections::BTreeMap<usize, f64>> {
        self.inner.params().class_thresholds.map(|t| (0..NUM_CLASSES).filter_map(|c| t[c].map(|v| (c, v))).collect())
    }

    #[getter]
    fn class_agnostic(&self) -> bool {
        self.inner.params().class_agnostic
    }

    /// Whether a batch of one is split across the threads (see the .pyi stub).
    #[getter]
    fn within_image(&self) -> bool {
        self.inner.params().within_image
    }

    #[getter]
    fn score_threshold(&self) -> f64 {
        self.inner.params().score_threshold
    }

    #[getter]
    fn iou_threshold(&self) -> f64 {
        self.inner.params().iou_threshold
    }

    #[getter]
    fn max_candidates_per_class(&self) -> usize {
        self.inner.params().max_candidates_per_class
    }

    #[getter]
    fn max_detections(&self) -> usize {
        self.inner.params().max_detections
    }

    fn __repr__(&self) -> String {
        let p = self.inner.params();
        format!(
            "Postprocessor(score_threshold={:?}, iou_threshold={:?}, max_candidates_per_class={}, max_detections={})",
            p.score_threshold, p.iou_threshold, p.max_candidates_per_class, p.max_detections
        )
    }

    /// Decodes a batch of head outputs into per-image detections (see the .pyi stub).
    fn decode<'py>(&self, py: Python<'py>, class_logits: &Bound<'py, PyAny>, box_offsets: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyList>> {
        let logits = output_list(class_logits, OutputKind::ClassLogits, "class_logits")?;
        let offsets = output_list(box_offsets, OutputKind::BoxOffsets, "box_offsets")?;
        let mut batch = None;
        let mut data = Vec::with_capacity(2 * NUM_LEVELS);
        for (l, obj) in logits.iter().enumerate() {
            data.push(output_data(obj, OutputId::logits(l), &mut batch)?);
        }
        for (l, obj) in offsets.iter().enumerate() {
            data.push(output_data(obj, OutputId::offsets(l), &mut batch)?);
        }
        let batch = batch.unwrap_or(0);
        let logit_heads: [Head; NUM_LEVELS] = std::array::from_fn(|l| data[l].as_head());
        let offset_heads: [Head; NUM_LEVELS] = std::array::from_fn(|l| data[NUM_LEVELS + l].as_head());
        let inner = &self.inner;
        let dets = run_detached(py, "decode", || inner.decode_batch_heads(logit_heads, offset_heads, batch))?;
        let items = dets.into_iter().map(|d| detections_to_py(py, d)).collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    }
}

/// The 15,130 default boxes (anchors), (15130, 4) float32 (cx, cy, w, h), normalized.
#[pyfunction(name = "default_boxes")]
fn default_boxes_py(py: Python<'_>) -> PyResult<Bound<'_, PyArray2<f32>>> {
    let b = default_boxes();
    PyArray1::from_slice(py, b.as_flattened()).reshape([b.len(), 4])
}

/// Single-class greedy NMS; returns int64 indices of the kept boxes in processing order.
#[pyfunction]
fn nms<'py>(py: Python<'py>, boxes: &Bound<'py, PyAny>, scores: &Bound<'py, PyAny>, iou_threshold: f64) -> PyResult<Bound<'py, PyArray1<i64>>> {
    let b = typed_array::<f32>(boxes, Subject::Argument("boxes"), "float32")?;
    let s = typed_array::<f32>(scores, Subject::Argument("scores"), "float32")?;
    if b.ndim() != 2 || b.shape()[1] != 4 {
        return Err(Error::ArgumentShape { argument: "boxes", shape: b.shape().to_vec(), expected: "(K, 4)".into() }.into());
    }
    if s.ndim() != 1 {
        return Err(Error::ArgumentShape { argument: "scores", shape: s.shape().to_vec(), expected: "(K,)".into() }.into());
    }
    let bd = Data::new(&b, Subject::Argument("boxes"))?;
    let sd = Data::new(&s, Subject::Argument("scores"))?;
    let (bs, ss) = (bd.as_slice(), sd.as_slice());
    let kept = run_detached(py, "nms", || {
        let rows: Vec<[f32; 4]> = bs.chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect();
        nms_core(&rows, ss, iou_threshold)
    })?;
    Ok(PyArray1::from_vec(py, kept.into_iter().map(|i| i as i64).collect()))
}

/// `values` as one value per RGB channel.
fn rgb(argument: &'static str, values: &[f64]) -> Result<[f64; 3], Error> {
    <[f64; 3]>::try_from(values).map_err(|_| Error::ArgumentLength { argument, len: values.len(), expected: "3 (R, G, B)" })
}

/// Normalizes a uint8 BGR (H, W, 3) image into a float32 RGB (3, H, W) array in place.
#[pyfunction]
#[pyo3(signature = (image, out, mean = IMAGENET_MEAN.to_vec(), std = IMAGENET_STD.to_vec()))]
#[pyo3(text_signature = "(image, out, mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))")]
fn normalize_image<'py>(py: Python<'py>, image: &Bound<'py, PyAny>, out: &Bound<'py, PyAny>, mean: Vec<f64>, std: Vec<f64>) -> PyResult<()> {
    let img = typed_array::<u8>(image, Subject::Argument("image"), "uint8")?;
    let dst = typed_array::<f32>(out, Subject::Argument("out"), "float32")?;
    let shape = img.shape().to_vec();
    if shape.len() != 3 || shape[2] != 3 {
        return Err(Error::ArgumentShape { argument: "image", shape, expected: "(H, W, 3)".into() }.into());
    }
    let (h, w) = (shape[0], shape[1]);
    if dst.shape() != [3, h, w] {
        let expected = format!("(3, {h}, {w}) for an image of shape ({h}, {w}, 3)");
        return Err(Error::ArgumentShape { argument: "out", shape: dst.shape().to_vec(), expected }.into());
    }
    if !img.is_c_contiguous() {
        return Err(Error::NotContiguous { argument: "image", hint: "use numpy.ascontiguousarray" }.into());
    }
    if !dst.is_c_contiguous() {
        return Err(Error::NotContiguous { argument: "out", hint: "it is written in place" }.into());
    }
    let lut = NormalizeLut::new(rgb("mean", &mean)?, rgb("std", &std)?)?;
    let src = img
        .try_readonly()
        .map_err(|e| Error::Borrow { subject: Subject::Argument("image"), write: false, reason: e.to_string() })?;
    let mut dst_rw = dst
        .try_readwrite()
        .map_err(|e| Error::Borrow { subject: Subject::Argument("out"), write: true, reason: e.to_string() })?;
    // Both arrays are C-contiguous (checked above), so both give slices.
    let (src_slice, dst_slice) = match (src.as_slice(), dst_rw.as_slice_mut()) {
        (Ok(s), Ok(d)) => (s, d),
        _ => return Err(Error::NotContiguous { argument: "image", hint: "use numpy.ascontiguousarray" }.into()),
    };
    Ok(run_detached(py, "normalize_image", || normalize_bgr_to_rgb_chw(&lut, src_slice, h, w, dst_slice))?)
}

/// Native (Rust) parts of ssd_resnet34: the SSD-ResNet34 postprocessor (softmax,
/// threshold, box decoding, NMS; docs/postprocess.md), the default boxes, single-class
/// NMS and the input normalization, after MLCommons' reference
/// (vision/classification_and_detection/python/models/ssd_r34.py and dataset.py in
/// mlcommons/inference). Native work releases the GIL.
#[pymodule(gil_used = false)]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<Postprocessor>()?;
    m.add_function(wrap_pyfunction!(default_boxes_py, m)?)?;
    m.add_function(wrap_pyfunction!(nms, m)?)?;
    m.add_function(wrap_pyfunction!(normalize_image, m)?)?;
    Ok(())
}
