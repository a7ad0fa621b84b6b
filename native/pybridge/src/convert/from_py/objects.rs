//! Python objects passed by reference: [`Value::Object`], with the type name
//! and a truncated repr the BEAM sees.

use pyo3::prelude::*;

use super::super::PyObject;
use crate::limits::{truncate, REPR_BYTES};

#[cfg(doc)]
use super::super::Value;

/// Wraps any object as a [`Value::Object`] (by reference, with its type
/// name and a truncated repr), without looking at its type.
pub fn to_object(obj: &Bound<'_, PyAny>) -> PyObject {
    PyObject::new(obj.clone().unbind(), type_name(obj), repr_of(obj))
}

/// `type(obj).__module__ + "." + type(obj).__qualname__`.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type();
    let qualname = match ty.qualname() {
        Ok(q) => q.to_string_lossy().into_owned(),
        Err(_) => "?".to_owned(),
    };
    match ty.module() {
        Ok(m) => format!("{}.{qualname}", m.to_string_lossy()),
        Err(_) => qualname,
    }
}

/// `repr(obj)` cut to at most [`REPR_BYTES`] bytes at a char boundary
/// (ending in "..." when cut); `<unrepresentable TYPE object>` if `repr`
/// raises.
pub fn repr_of(obj: &Bound<'_, PyAny>) -> String {
    match obj.repr() {
        Ok(r) => truncate(r.to_string_lossy().into_owned(), REPR_BYTES),
        Err(_) => truncate(
            format!("<unrepresentable {} object>", type_name(obj)),
            REPR_BYTES,
        ),
    }
}
