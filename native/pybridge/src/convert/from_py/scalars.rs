//! Exact scalars (`int`, `float`, `str`, `bytes`, `bool`, `None`) by `ffi`
//! fast paths: a type pointer comparison and one C call, no Python code run.

use std::ptr::addr_of_mut;

use num_bigint::BigInt;
use pyo3::ffi;
use pyo3::prelude::*;

use super::super::{ConvertError, Value};
use crate::limits::MAX_INT_BITS;

/// Whether `ptr`'s type is exactly the static type object `ty`.
///
/// # Safety
/// `ptr` must point to a live Python object and the GIL must be held.
#[inline(always)]
pub(super) unsafe fn is_exact(ptr: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> bool {
    // SAFETY: guaranteed by the caller; Py_TYPE reads the object header.
    unsafe { ffi::Py_TYPE(ptr) == ty }
}

/// Converts exact scalar types (int, float, str, bytes, bool, None) without
/// running any Python code; `Ok(None)` for everything else.
///
/// # Safety
/// `ptr` must be a valid (possibly borrowed) reference for the duration of
/// the call and the GIL must be held.
#[inline]
pub(super) unsafe fn scalar(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
) -> Result<Option<Value>, ConvertError> {
    // SAFETY: `ptr` is live and the GIL is held (caller's contract); the
    // static type objects are only compared by address, never written.
    unsafe {
        if is_exact(ptr, addr_of_mut!(ffi::PyLong_Type)) {
            return int_value(py, ptr).map(Some);
        }
        if is_exact(ptr, addr_of_mut!(ffi::PyFloat_Type)) {
            // An exact float cannot fail to convert.
            return Ok(Some(Value::Float(ffi::PyFloat_AsDouble(ptr))));
        }
        if is_exact(ptr, addr_of_mut!(ffi::PyUnicode_Type)) {
            return str_value(py, ptr).map(Some);
        }
        if is_exact(ptr, addr_of_mut!(ffi::PyBool_Type)) {
            return Ok(Some(Value::Bool(ptr == ffi::Py_True())));
        }
        if ptr == ffi::Py_None() {
            return Ok(Some(Value::None));
        }
        if is_exact(ptr, addr_of_mut!(ffi::PyBytes_Type)) {
            return bytes_value(py, ptr).map(Some);
        }
    }
    Ok(None)
}

/// # Safety
/// `ptr` must be a live `int` (or subclass) and the GIL held.
pub(super) unsafe fn int_value(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
) -> Result<Value, ConvertError> {
    let mut overflow: std::os::raw::c_int = 0;
    // SAFETY: caller's contract; `overflow` is a valid out-pointer.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(ptr, &mut overflow) };
    if overflow != 0 {
        // The methods below run on an exact int: PyNumber_Index copies an
        // int subclass into one without calling any of its methods, so a
        // subclass's own `bit_length` or `to_bytes` cannot lie to us. It
        // returns a new reference (or NULL with an exception set).
        // SAFETY: `ptr` is live and the GIL is held.
        let obj = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyNumber_Index(ptr)) }
            .map_err(|e| ConvertError::python("cannot convert an int", e))?;
        let bits: u64 = obj
            .call_method0("bit_length")
            .and_then(|b| b.extract())
            .map_err(|e| ConvertError::python("cannot convert an int", e))?;
        if bits > MAX_INT_BITS {
            return Err(ConvertError(format!(
                "cannot convert an int of {bits} bits: the BEAM's integers hold at most {MAX_INT_BITS} bits"
            )));
        }
        return obj
            .extract::<BigInt>()
            .map(Value::BigInt)
            .map_err(|e| ConvertError::python("cannot convert an int", e));
    }
    // SAFETY: GIL held; PyErr_Occurred only reads the thread's error state.
    if v == -1 && unsafe { !ffi::PyErr_Occurred().is_null() } {
        return Err(ConvertError::python(
            "cannot convert an int",
            PyErr::fetch(py),
        ));
    }
    Ok(Value::Int(v))
}

/// # Safety
/// `ptr` must be a live `str` (or subclass) and the GIL held.
pub(super) unsafe fn str_value(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
) -> Result<Value, ConvertError> {
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: caller's contract; `len` is a valid out-pointer. The returned
    // buffer is owned by the str object, which outlives this function.
    let data = unsafe { ffi::PyUnicode_AsUTF8AndSize(ptr, &mut len) };
    if data.is_null() {
        return Err(ConvertError::python(
            "cannot convert a str that is not valid Unicode",
            PyErr::fetch(py),
        ));
    }
    // SAFETY: on success `data` points to `len` bytes (len >= 0) of UTF-8:
    // CPython's strict UTF-8 encoder never yields invalid UTF-8 (lone
    // surrogates make it fail, handled above). We copy before returning.
    let s = unsafe {
        let bytes = std::slice::from_raw_parts(data.cast::<u8>(), len as usize);
        std::str::from_utf8_unchecked(bytes)
    };
    Ok(Value::Str(s.to_owned()))
}

/// # Safety
/// `ptr` must be a live `bytes` (or subclass) and the GIL held.
pub(super) unsafe fn bytes_value(
    py: Python<'_>,
    ptr: *mut ffi::PyObject,
) -> Result<Value, ConvertError> {
    let mut data: *mut std::os::raw::c_char = std::ptr::null_mut();
    let mut len: ffi::Py_ssize_t = 0;
    // SAFETY: caller's contract; both out-pointers are valid.
    if unsafe { ffi::PyBytes_AsStringAndSize(ptr, &mut data, &mut len) } != 0 {
        return Err(ConvertError::python(
            "cannot convert a bytes object",
            PyErr::fetch(py),
        ));
    }
    // SAFETY: on success `data` points to the object's `len` bytes, alive
    // while `ptr` is; we copy them at once.
    let bytes = unsafe { std::slice::from_raw_parts(data.cast::<u8>(), len as usize) };
    Ok(Value::Bytes(bytes.to_vec()))
}
