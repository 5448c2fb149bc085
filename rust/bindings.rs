//! PyO3 bindings: the `ssd_resnet34._native` extension module (feature `python`).
//!
//! Inputs are checked here (types, dtypes, shapes, layout) and handed to the pure-Rust
//! core as slices; C-contiguous arrays are borrowed without a copy, others copied to C
//! order. Native work runs with the GIL released and inside `catch_unwind`, so no
//! Rust panic reaches Python (it becomes a `RuntimeError`).

use crate::anchors::default_boxes;
use crate::error::{shape_string, Error};
use crate::layout::{check_output_shape, OutputId, OutputKind, NUM_LEVELS};
use crate::nms::nms as nms_core;
use crate::postprocess::{Detections, Params, Postprocessor as CorePostprocessor};
use crate::preprocess::{normalize_bgr_to_rgb_chw, NormalizeLut, IMAGENET_MEAN, IMAGENET_STD};
use numpy::{
    Element, PyArray1, PyArray2, PyArrayDyn, PyArrayMethods, PyReadonlyArrayDyn, PyUntypedArray,
    PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};
use std::panic::{catch_unwind, AssertUnwindSafe};

fn to_py_err(e: Error) -> PyErr {
    if e.is_type_error() {
        PyTypeError::new_err(e.to_string())
    } else {
        PyValueError::new_err(e.to_string())
    }
}

/// Runs native work without the GIL; a panic becomes a `RuntimeError`.
fn run_detached<T: Send>(py: Python<'_>, what: &str, f: impl FnOnce() -> Result<T, Error> + Send) -> PyResult<T> {
    match py.detach(|| catch_unwind(AssertUnwindSafe(f))) {
        Ok(result) => result.map_err(to_py_err),
        Err(panic) => {
            let msg = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(PyRuntimeError::new_err(format!("internal error in native {what}: {msg}")))
        }
    }
}

/// f32 data of an array: borrowed when C-contiguous, else copied to C order.
enum Data<'py, T: Element> {
    Borrowed(PyReadonlyArrayDyn<'py, T>),
    Owned(Vec<T>),
}

impl<'py, T: Element + Copy> Data<'py, T> {
    fn new(array: &Bound<'py, PyArrayDyn<T>>, name: &str) -> PyResult<Self> {
        let ro = array
            .try_readonly()
            .map_err(|e| PyValueError::new_err(format!("{name} cannot be read: {e}")))?;
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

/// `obj` as a numpy array of `T`, else `TypeError` (`what` names it, `expected` the dtype).
fn typed_array<'py, T: Element>(obj: &Bound<'py, PyAny>, what: &dyn Fn() -> String, expected: &str) -> PyResult<Bound<'py, PyArrayDyn<T>>> {
    let untyped = obj
        .cast::<PyUntypedArray>()
        .map_err(|_| PyTypeError::new_err(format!("{} is a {}; expected a numpy.ndarray of {expected}", what(), type_name(obj))))?;
    match untyped.cast::<PyArrayDyn<T>>() {
        Ok(a) => Ok(a.clone()),
        Err(_) => Err(PyTypeError::new_err(format!("{} has dtype {}; expected {expected}", what(), untyped.dtype()))),
    }
}

/// The 6 tensors of one kind as a list/tuple, checked for count.
fn output_list<'py>(obj: &Bound<'py, PyAny>, kind: OutputKind, arg: &str) -> PyResult<Vec<Bound<'py, PyAny>>> {
    let items: Vec<Bound<'py, PyAny>> = if let Ok(l) = obj.cast::<PyList>() {
        l.iter().collect()
    } else if let Ok(t) = obj.cast::<PyTuple>() {
        t.iter().collect()
    } else {
        return Err(PyTypeError::new_err(format!(
            "{arg} is a {}; expected a list or tuple of {NUM_LEVELS} numpy float32 arrays",
            type_name(obj)
        )));
    };
    if items.len() != NUM_LEVELS {
        return Err(to_py_err(Error::OutputCount { kind, got: items.len() }));
    }
    Ok(items)
}

/// Checks one output tensor (type, dtype, shape, batch) and returns its data.
fn output_data<'py>(obj: &Bound<'py, PyAny>, output: OutputId, batch: &mut Option<usize>) -> PyResult<Data<'py, f32>> {
    let untyped = obj.cast::<PyUntypedArray>().map_err(|_| {
        to_py_err(Error::NotAnArray { output, type_name: type_name(obj) })
    })?;
    let array = untyped
        .cast::<PyArrayDyn<f32>>()
        .map_err(|_| to_py_err(Error::Dtype { output, dtype: untyped.dtype().to_string() }))?;
    let n = check_output_shape(output, array.shape(), *batch).map_err(to_py_err)?;
    *batch = Some(n);
    Data::new(array, &output.to_string())
}

fn detections_to_py<'py>(py: Python<'py>, d: Detections) -> PyResult<Bound<'py, PyTuple>> {
    let k = d.len();
    let boxes = PyArray1::from_vec(py, d.boxes.into_flattened()).reshape([k, 4])?;
    let labels = PyArray1::from_vec(py, d.labels);
    let scores = PyArray1::from_vec(py, d.scores);
    PyTuple::new(py, [boxes.into_any(), labels.into_any(), scores.into_any()])
}

/// The SSD-ResNet34 postprocessor (docs/postprocess.md): softmax, threshold, per-class
/// top-k, box decoding, greedy NMS and merge, after MLCommons' `Encoder.decode_batch`
/// (vision/classification_and_detection/python/models/ssd_r34.py).
#[pyclass(frozen, module = "ssd_resnet34._native", name = "Postprocessor")]
struct Postprocessor {
    inner: CorePostprocessor,
}

fn count_param(name: &'static str, value: i64) -> PyResult<usize> {
    if value < 1 {
        return Err(to_py_err(Error::InvalidParameter { name, value: value.to_string(), expected: "an integer >= 1" }));
    }
    Ok(usize::try_from(value).unwrap_or(usize::MAX))
}

#[pymethods]
impl Postprocessor {
    #[new]
    #[pyo3(signature = (score_threshold = 0.05, iou_threshold = 0.5, max_candidates_per_class = 200, max_detections = 200))]
    fn new(score_threshold: f64, iou_threshold: f64, max_candidates_per_class: i64, max_detections: i64) -> PyResult<Self> {
        let params = Params {
            score_threshold,
            iou_threshold,
            max_candidates_per_class: count_param("max_candidates_per_class", max_candidates_per_class)?,
            max_detections: count_param("max_detections", max_detections)?,
        };
        Ok(Postprocessor { inner: CorePostprocessor::new(params).map_err(to_py_err)? })
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
        let logit_slices: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| data[l].as_slice());
        let offset_slices: [&[f32]; NUM_LEVELS] = std::array::from_fn(|l| data[NUM_LEVELS + l].as_slice());
        let inner = &self.inner;
        let dets = run_detached(py, "decode", || inner.decode_batch(logit_slices, offset_slices, batch))?;
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
    let b = typed_array::<f32>(boxes, &|| "boxes".into(), "float32")?;
    let s = typed_array::<f32>(scores, &|| "scores".into(), "float32")?;
    if b.ndim() != 2 || b.shape()[1] != 4 {
        return Err(PyValueError::new_err(format!("boxes has shape {}; expected (K, 4)", shape_string(b.shape()))));
    }
    if s.ndim() != 1 {
        return Err(PyValueError::new_err(format!("scores has shape {}; expected (K,)", shape_string(s.shape()))));
    }
    let bd = Data::new(&b, "boxes")?;
    let sd = Data::new(&s, "scores")?;
    let (bs, ss) = (bd.as_slice(), sd.as_slice());
    let kept = run_detached(py, "nms", || {
        let rows: Vec<[f32; 4]> = bs.chunks_exact(4).map(|r| [r[0], r[1], r[2], r[3]]).collect();
        nms_core(&rows, ss, iou_threshold)
    })?;
    Ok(PyArray1::from_vec(py, kept.into_iter().map(|i| i as i64).collect()))
}

/// Normalizes a uint8 BGR (H, W, 3) image into a float32 RGB (3, H, W) array in place.
#[pyfunction]
#[pyo3(signature = (image, out, mean = IMAGENET_MEAN.to_vec(), std = IMAGENET_STD.to_vec()))]
fn normalize_image<'py>(py: Python<'py>, image: &Bound<'py, PyAny>, out: &Bound<'py, PyAny>, mean: Vec<f64>, std: Vec<f64>) -> PyResult<()> {
    let img = typed_array::<u8>(image, &|| "image".into(), "uint8")?;
    let dst = typed_array::<f32>(out, &|| "out".into(), "float32")?;
    let shape = img.shape().to_vec();
    if shape.len() != 3 || shape[2] != 3 {
        return Err(PyValueError::new_err(format!("image has shape {}; expected (H, W, 3)", shape_string(&shape))));
    }
    let (h, w) = (shape[0], shape[1]);
    if dst.shape() != [3, h, w] {
        return Err(PyValueError::new_err(format!(
            "out has shape {}; expected (3, {h}, {w}) for an image of shape {}",
            shape_string(dst.shape()),
            shape_string(&shape)
        )));
    }
    if !img.is_c_contiguous() {
        return Err(PyValueError::new_err("image must be C-contiguous (use numpy.ascontiguousarray)"));
    }
    if !dst.is_c_contiguous() {
        return Err(PyValueError::new_err("out must be C-contiguous"));
    }
    let three = |name: &str, v: &[f64]| -> PyResult<[f64; 3]> {
        <[f64; 3]>::try_from(v).map_err(|_| PyValueError::new_err(format!("{name} has {} values; expected 3 (R, G, B)", v.len())))
    };
    let lut = NormalizeLut::new(three("mean", &mean)?, three("std", &std)?).map_err(to_py_err)?;
    let src = img.try_readonly().map_err(|e| PyValueError::new_err(format!("image cannot be read: {e}")))?;
    let mut dst_rw = dst
        .try_readwrite()
        .map_err(|e| PyValueError::new_err(format!("out cannot be written (read-only or in use): {e}")))?;
    let src_slice = src.as_slice().map_err(|e| PyValueError::new_err(format!("image: {e}")))?;
    let dst_slice = dst_rw.as_slice_mut().map_err(|e| PyValueError::new_err(format!("out: {e}")))?;
    run_detached(py, "normalize_image", || normalize_bgr_to_rgb_chw(&lut, src_slice, h, w, dst_slice))
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
