//! Conversion between [`Value`] and Python objects.
//!
//! `to_py` builds Python objects from a [`Value`]; `from_py` turns a Python
//! object into a [`Value`]. Both walk the whole value once under one GIL hold
//! and fail with a [`ConvertError`] instead of overflowing the stack.

pub mod erlang_types;
pub mod etf;
pub mod from_py;
pub mod keys;
pub mod seal;
pub mod to_py;
pub mod value;

pub use value::{ObjectData, PyObject, Value};

use crate::limits::MAX_DEPTH;

/// Why a value could not be converted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConvertError(pub String);

impl ConvertError {
    /// The error for a value nested deeper than [`MAX_DEPTH`] levels, the
    /// same in every direction.
    pub fn too_deep() -> Self {
        ConvertError(format!("value nests deeper than {MAX_DEPTH} levels"))
    }

    /// A Python exception raised while converting, with what was being done.
    pub fn python(context: &str, err: pyo3::PyErr) -> Self {
        ConvertError(format!("{context}: {err}"))
    }
}

impl std::fmt::Display for ConvertError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for ConvertError {}
