//! Errors of the native postprocessor. Every failure is a value, never a panic (a panic
//! in native code is caught by the bindings and becomes [`Error::Panic`]); the Python
//! bindings turn each into the exception its [`Error::kind`] names, in one place.

use crate::layout::{OutputId, OutputKind, NUM_LEVELS};
use std::fmt;

/// What an error is about, named as in the messages: one of the model's output tensors
/// (`outputs[k] (class logits, level l)`) or a function argument (`boxes`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Subject {
    Output(OutputId),
    Argument(&'static str),
}

impl fmt::Display for Subject {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Subject::Output(output) => output.fmt(f),
            Subject::Argument(name) => f.write_str(name),
        }
    }
}

/// The Python exception an [`Error`] becomes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorKind {
    /// `TypeError`: an argument of the wrong type or dtype.
    Type,
    /// `ValueError`: a value, shape, layout or range refused.
    Value,
    /// `RuntimeError`: a bug in the native code (a caught panic).
    Runtime,
}

/// Why an input or a parameter was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// Not 6 tensors of one kind.
    OutputCount { kind: OutputKind, got: usize },
    /// An argument that must be a list or tuple of the 6 tensors is not one (bindings only).
    NotASequence { argument: &'static str, type_name: String },
    /// Not a numpy array (bindings only); `dtype` is the one expected.
    NotAnArray { subject: Subject, type_name: String, dtype: &'static str },
    /// A numpy array of another dtype than `expected` (bindings only).
    Dtype { subject: Subject, dtype: String, expected: &'static str },
    /// An output tensor of the wrong rank or per-image shape; `shape` is the full shape
    /// received.
    Shape { output: OutputId, shape: Vec<usize> },
    /// A function argument of the wrong shape (bindings only).
    ArgumentShape { argument: &'static str, shape: Vec<usize>, expected: String },
    /// A function argument with the wrong number of values (bindings only).
    ArgumentLength { argument: &'static str, len: usize, expected: &'static str },
    /// An array that must be C-contiguous is not (bindings only); `hint` says what to do.
    NotContiguous { argument: &'static str, hint: &'static str },
    /// An array that cannot be borrowed: read-only when it must be written, or already
    /// borrowed mutably (bindings only).
    Borrow { subject: Subject, write: bool, reason: String },
    /// Batch size differs from that of `outputs[0]`.
    BatchMismatch { output: OutputId, batch: usize, expected: usize },
    /// A raw slice given to the core API has the wrong number of values.
    Length { output: OutputId, len: usize, expected: usize },
    /// NaN or +-inf somewhere in the tensor for this batch item.
    NonFinite { output: OutputId, item: usize },
    /// A constructor parameter outside its range.
    InvalidParameter { name: &'static str, value: String, expected: &'static str },
    /// A constructor parameter of the wrong type (bindings only).
    ParameterType { name: &'static str, type_name: String, expected: &'static str },
    /// Any other bad argument value.
    InvalidArgument(String),
    /// A panic in native code, caught before it reached Python: a bug.
    Panic { operation: &'static str, message: String },
}

impl Error {
    /// The Python exception this error becomes (decided by the variant alone).
    pub fn kind(&self) -> ErrorKind {
        match self {
            Error::NotASequence { .. } | Error::NotAnArray { .. } | Error::Dtype { .. } | Error::ParameterType { .. } => {
                ErrorKind::Type
            }
            Error::Panic { .. } => ErrorKind::Runtime,
            Error::OutputCount { .. }
            | Error::Shape { .. }
            | Error::ArgumentShape { .. }
            | Error::ArgumentLength { .. }
            | Error::NotContiguous { .. }
            | Error::Borrow { .. }
            | Error::BatchMismatch { .. }
            | Error::Length { .. }
            | Error::NonFinite { .. }
            | Error::InvalidParameter { .. }
            | Error::InvalidArgument(_) => ErrorKind::Value,
        }
    }

    /// The error of a caught panic's payload (a `&str` or `String` message).
    #[cfg(any(feature = "python", test))]
    pub(crate) fn from_panic(operation: &'static str, payload: &(dyn std::any::Any + Send)) -> Self {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| s.to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "unknown panic".into());
        Error::Panic { operation, message }
    }

    /// Tags a whole-image error with its batch item (only [`Error::NonFinite`] has one).
    pub(crate) fn with_item(self, item: usize) -> Self {
        match self {
            Error::NonFinite { output, .. } => Error::NonFinite { output, item },
            other => other,
        }
    }
}

fn write_shape(f: &mut fmt::Formatter<'_>, shape: &[usize]) -> fmt::Result {
    f.write_str("(")?;
    for (i, d) in shape.iter().enumerate() {
        if i > 0 {
            f.write_str(", ")?;
        }
        write!(f, "{d}")?;
    }
    if shape.len() == 1 {
        f.write_str(",")?;
    }
    f.write_str(")")
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::OutputCount { kind, got } => {
                let first = match kind {
                    OutputKind::ClassLogits => 0,
                    OutputKind::BoxOffsets => NUM_LEVELS,
                };
                write!(
                    f,
                    "got {got} {} tensors; expected {NUM_LEVELS} (outputs[{first}]..outputs[{}], one per level)",
                    kind.name(),
                    first + NUM_LEVELS - 1
                )
            }
            Error::NotASequence { argument, type_name } => write!(
                f,
                "{argument} is a {type_name}; expected a list or tuple of {NUM_LEVELS} numpy float32 arrays"
            ),
            Error::NotAnArray { subject, type_name, dtype } => {
                write!(f, "{subject} is a {type_name}; expected a numpy.ndarray of {dtype}")
            }
            Error::Dtype { subject, dtype, expected } => write!(f, "{subject} has dtype {dtype}; expected {expected}"),
            Error::Shape { output, shape } => {
                write!(f, "{output} has shape ")?;
                write_shape(f, shape)?;
                let [c, h, w] = output.image_shape();
                write!(f, "; expected (N, {c}, {h}, {w})")
            }
            Error::ArgumentShape { argument, shape, expected } => {
                write!(f, "{argument} has shape ")?;
                write_shape(f, shape)?;
                write!(f, "; expected {expected}")
            }
            Error::ArgumentLength { argument, len, expected } => {
                write!(f, "{argument} has {len} values; expected {expected}")
            }
            Error::NotContiguous { argument, hint } => write!(f, "{argument} must be C-contiguous ({hint})"),
            Error::Borrow { subject, write: false, reason } => write!(f, "{subject} cannot be read: {reason}"),
            Error::Borrow { subject, write: true, reason } => {
                write!(f, "{subject} cannot be written (read-only or in use): {reason}")
            }
            Error::BatchMismatch { output, batch, expected } => write!(
                f,
                "{output} has batch size {batch}; expected {expected} (the batch size of outputs[0])"
            ),
            Error::Length { output, len, expected } => {
                write!(f, "{output} has {len} values per image; expected {expected}")
            }
            Error::NonFinite { output, item } => {
                write!(f, "{output} contains NaN or infinite values (batch item {item})")
            }
            Error::InvalidParameter { name, value, expected } => {
                write!(f, "{name} = {value} is out of range; expected {expected}")
            }
            Error::ParameterType { name, type_name, expected } => {
                write!(f, "{name} is a {type_name}; expected {expected}")
            }
            Error::InvalidArgument(msg) => f.write_str(msg),
            Error::Panic { operation, message } => write!(f, "internal error in native {operation}: {message}"),
        }
    }
}

impl std::error::Error for Error {}

/// Checks the full (N, C, F, F) shape of an output tensor and returns its batch size N.
///
/// `batch`: the batch size the tensor must have (that of `outputs[0]`), if known.
/// Errors: [`Error::Shape`] for a wrong rank or per-image shape, [`Error::BatchMismatch`].
pub fn check_output_shape(output: OutputId, shape: &[usize], batch: Option<usize>) -> Result<usize, Error> {
    if shape.len() != 4 || shape[1..] != output.image_shape() {
        return Err(Error::Shape { output, shape: shape.to_vec() });
    }
    match batch {
        Some(expected) if shape[0] != expected => {
            Err(Error::BatchMismatch { output, batch: shape[0], expected })
        }
        _ => Ok(shape[0]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_check() {
        let id = OutputId::logits(3);
        assert_eq!(check_output_shape(id, &[2, 486, 7, 7], None).unwrap(), 2);
        assert_eq!(check_output_shape(id, &[2, 486, 7, 7], Some(2)).unwrap(), 2);
        let e = check_output_shape(id, &[1, 486, 8, 7], None).unwrap_err();
        assert_eq!(e.to_string(), "outputs[3] (class logits, level 3) has shape (1, 486, 8, 7); expected (N, 486, 7, 7)");
        assert!(check_output_shape(id, &[486, 7, 7], None).is_err());
        let e = check_output_shape(OutputId::offsets(1), &[2, 24, 25, 25], Some(1)).unwrap_err();
        assert!(e.to_string().contains("batch size 2"), "{e}");
    }

    #[test]
    fn messages_name_the_tensor() {
        let e = Error::NonFinite { output: OutputId::offsets(2), item: 0 };
        assert_eq!(e.to_string(), "outputs[8] (box offsets, level 2) contains NaN or infinite values (batch item 0)");
        assert_eq!(e.clone().with_item(3).to_string().rsplit(' ').next(), Some("3)"));
        let e = Error::OutputCount { kind: OutputKind::BoxOffsets, got: 5 };
        assert_eq!(e.to_string(), "got 5 box offsets tensors; expected 6 (outputs[6]..outputs[11], one per level)");
        let e = Error::Dtype { subject: Subject::Output(OutputId::logits(0)), dtype: "float64".into(), expected: "float32" };
        assert_eq!(e.kind(), ErrorKind::Type);
        assert_eq!(e.to_string(), "outputs[0] (class logits, level 0) has dtype float64; expected float32");
        assert_eq!(Error::InvalidArgument("x".into()).kind(), ErrorKind::Value);
        let e = Error::ArgumentShape { argument: "scores", shape: vec![3], expected: "(K,)".into() };
        assert_eq!(e.to_string(), "scores has shape (3,); expected (K,)");
        let e = Error::ArgumentShape { argument: "boxes", shape: vec![], expected: "(K, 4)".into() };
        assert_eq!(e.to_string(), "boxes has shape (); expected (K, 4)");
        let e = Error::NotAnArray { subject: Subject::Argument("image"), type_name: "list".into(), dtype: "uint8" };
        assert_eq!(e.to_string(), "image is a list; expected a numpy.ndarray of uint8");
        let e = Error::from_panic("decode", &"index out of bounds");
        assert_eq!((e.kind(), e.to_string()), (ErrorKind::Runtime, "internal error in native decode: index out of bounds".into()));
        let e = Error::from_panic("nms", &String::from("boom"));
        assert_eq!(e.to_string(), "internal error in native nms: boom");
        assert_eq!(Error::from_panic("nms", &42).to_string(), "internal error in native nms: unknown panic");
    }
}
