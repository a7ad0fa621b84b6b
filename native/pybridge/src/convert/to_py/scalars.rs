//! Leaves: non-container [`Value`]s to Python objects, with raw `ffi` calls
//! on the hot path.

use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;

use crate::convert::erlang_types::{new_beam_id, BeamId};
use crate::convert::{ConvertError, Value};

/// Takes ownership of a new reference returned by a C API call, or turns a
/// NULL return into an error.
///
/// # Safety
/// `ptr` must be NULL or a new (owned) reference, and the call that
/// returned it must have been made with the GIL held (`py`).
pub(super) unsafe fn owned<'py>(
    py: Python<'py>,
    ptr: *mut ffi::PyObject,
    what: &str,
) -> Result<Bound<'py, PyAny>, ConvertError> {
    // SAFETY: guaranteed by the caller.
    unsafe { Bound::from_owned_ptr_or_err(py, ptr) }
        .map_err(|e| ConvertError::python(&format!("cannot create {what}"), e))
}

/// Converts a non-container value; `Ok(None)` for containers.
#[inline]
pub(super) fn scalar<'py>(
    py: Python<'py>,
    v: &Value,
) -> Result<Option<Bound<'py, PyAny>>, ConvertError> {
    let obj = match v {
        Value::Int(i) => {
            // SAFETY: we hold the GIL (`py`); PyLong_FromLongLong returns a new
            // reference or NULL with an exception set, as `owned` expects.
            unsafe { owned(py, ffi::PyLong_FromLongLong(*i), "an int")? }
        }
        Value::Float(f) => {
            // SAFETY: as above, PyFloat_FromDouble returns a new reference or NULL.
            unsafe { owned(py, ffi::PyFloat_FromDouble(*f), "a float")? }
        }
        Value::Str(s) => {
            // SAFETY: `s` is valid UTF-8 of `s.len()` bytes (a Rust String,
            // so len <= isize::MAX); the call copies it and returns a new
            // reference or NULL, under the GIL.
            unsafe {
                owned(
                    py,
                    ffi::PyUnicode_FromStringAndSize(
                        s.as_ptr().cast::<c_char>(),
                        s.len() as ffi::Py_ssize_t,
                    ),
                    "a str",
                )?
            }
        }
        Value::Bytes(b) => {
            // SAFETY: `b` is `b.len()` readable bytes (len <= isize::MAX for a
            // Vec); the call copies them and returns a new reference or NULL.
            unsafe {
                owned(
                    py,
                    ffi::PyBytes_FromStringAndSize(
                        b.as_ptr().cast::<c_char>(),
                        b.len() as ffi::Py_ssize_t,
                    ),
                    "a bytes object",
                )?
            }
        }
        Value::Bool(b) => {
            // SAFETY: Py_True/Py_False are immortal singletons that are valid
            // while the interpreter runs (we hold the GIL); Py_NewRef returns
            // a new strong reference to them.
            unsafe {
                let p = if *b { ffi::Py_True() } else { ffi::Py_False() };
                Bound::from_owned_ptr(py, ffi::Py_NewRef(p))
            }
        }
        Value::None => {
            // SAFETY: as for the booleans, with the `None` singleton.
            unsafe { Bound::from_owned_ptr(py, ffi::Py_NewRef(ffi::Py_None())) }
        }
        Value::BigInt(b) => b
            .into_pyobject(py)
            .map_err(|e| ConvertError::python("cannot create an int", e))?
            .into_any(),
        Value::Pid(etf) => new_beam_id(py, BeamId::Pid, etf)?,
        Value::Ref(etf) => new_beam_id(py, BeamId::Ref, etf)?,
        Value::Object(o) => o.bind(py)?.clone(),
        Value::List(_) | Value::Tuple(_) | Value::Map(_) | Value::Set(_) => return Ok(None),
    };
    Ok(Some(obj))
}
