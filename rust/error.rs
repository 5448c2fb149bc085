//! Errors of the native postprocessor. Every failure is a value, never a panic; the
//! Python bindings turn [`Error::is_type_error`] ones into `TypeError`, all others into
//! `ValueError`.

use crate::layout::{OutputId, OutputKind, NUM_LEVELS};
use std::fmt;

/// Why an input or a parameter was refused.
#[derive(Clone, Debug, PartialEq)]
pub enum Error {
    /// Not 6 tensors of one kind.
    OutputCount { kind: OutputKind, got: usize },
    /// A tensor is not a numpy array (bindings only).
    NotAnArray { output: OutputId, type_name: String },
    /// A tensor does not hold float32 values (bindings only).
    Dtype { output: OutputId, dtype: String },
    /// Wrong rank or per-image shape; `shape` is the full shape received.
    Shape { output: OutputId, shape: Vec<usize> },
    /// Batch size differs from that of `outputs[0]`.
    BatchMismatch { output: OutputId, batch: usize, expected: usize },
    /// A raw slice given to the core API has the wrong number of values.
    Length { output: OutputId, len: usize, expected: usize },
    /// NaN or +-inf somewhere in the tensor for this batch item.
    NonFinite { output: OutputId, item: usize },
    /// A constructor parameter outside its range.
    InvalidParameter { name: &'static str, value: String, expected: &'static str },
    /// Any other bad argument value (shape, layout, range): a `ValueError`.
    InvalidArgument(String),
    /// Any other argument of the wrong type or dtype: a `TypeError`.
    InvalidType(String),
}

impl Error {
    /// True for errors that Python reports as `TypeError` (wrong type or dtype).
    pub fn is_type_error(&self) -> bool {
        matches!(self, Error::NotAnArray { .. } | Error::Dtype { .. } | Error::InvalidType(_))
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
            Error::NotAnArray { output, type_name } => {
                write!(f, "{output} is a {type_name}; expected a numpy.ndarray of float32")
            }
            Error::Dtype { output, dtype } => write!(f, "{output} has dtype {dtype}; expected float32"),
            Error::Shape { output, shape } => {
                write!(f, "{output} has shape ")?;
                write_shape(f, shape)?;
                let [c, h, w] = output.image_shape();
                write!(f, "; expected (N, {c}, {h}, {w})")
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
            Error::InvalidArgument(msg) | Error::InvalidType(msg) => f.write_str(msg),
        }
    }
}

impl std::error::Error for Error {}

/// Formats a shape as Python prints it, e.g. `(1, 486, 8, 7)` or `(3,)`.
pub fn shape_string(shape: &[usize]) -> String {
    struct S<'a>(&'a [usize]);
    impl fmt::Display for S<'_> {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write_shape(f, self.0)
        }
    }
    S(shape).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_the_tensor() {
        let e = Error::NonFinite { output: OutputId::offsets(2), item: 0 };
        assert_eq!(e.to_string(), "outputs[8] (box offsets, level 2) contains NaN or infinite values (batch item 0)");
        assert_eq!(e.clone().with_item(3).to_string().rsplit(' ').next(), Some("3)"));
        let e = Error::OutputCount { kind: OutputKind::BoxOffsets, got: 5 };
        assert_eq!(e.to_string(), "got 5 box offsets tensors; expected 6 (outputs[6]..outputs[11], one per level)");
        let e = Error::Dtype { output: OutputId::logits(0), dtype: "float64".into() };
        assert!(e.is_type_error());
        assert_eq!(e.to_string(), "outputs[0] (class logits, level 0) has dtype float64; expected float32");
        assert!(!Error::InvalidArgument("x".into()).is_type_error());
        assert_eq!(shape_string(&[3]), "(3,)");
        assert_eq!(shape_string(&[]), "()");
    }
}
