//! Containers (`list`, `tuple`, `dict`, `set`, `frozenset` and their
//! subclasses): one [`Frame`] per container being converted on the walk's
//! explicit stack.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;

use super::super::{ConvertError, Value};
use super::scalars::scalar;
use crate::limits::MAX_TUPLE_ARITY;

/// A container being converted.
pub(super) enum Frame<'py> {
    /// A list or a list subclass (read through the list storage).
    List {
        obj: Bound<'py, PyAny>,
        next: ffi::Py_ssize_t,
        /// The size when conversion started.
        len: ffi::Py_ssize_t,
        out: Vec<Value>,
    },
    /// A tuple or a tuple subclass.
    Tuple {
        obj: Bound<'py, PyAny>,
        next: ffi::Py_ssize_t,
        len: ffi::Py_ssize_t,
        out: Vec<Value>,
    },
    /// A dict or a dict subclass (read through the dict storage).
    Dict {
        obj: Bound<'py, PyAny>,
        pos: ffi::Py_ssize_t,
        len: ffi::Py_ssize_t,
        out: Vec<(Value, Value)>,
        /// The converted key whose value is being converted.
        key: Option<Value>,
        /// The value of a key that is being converted.
        pending: Option<Bound<'py, PyAny>>,
    },
    /// A set or frozenset (or subclass), read through its iterator.
    Set {
        obj: Bound<'py, PyAny>,
        iter: Bound<'py, PyAny>,
        out: Vec<Value>,
    },
}

fn capacity(len: ffi::Py_ssize_t) -> usize {
    usize::try_from(len).unwrap_or(0)
}

impl<'py> Frame<'py> {
    /// `obj` must be a list or list subclass.
    pub(super) fn list(obj: &Bound<'py, PyAny>) -> Self {
        // SAFETY: `obj` is a live list (caller checked) and the GIL is held.
        let len = unsafe { ffi::PyList_Size(obj.as_ptr()) };
        Frame::List {
            obj: obj.clone(),
            next: 0,
            len,
            out: Vec::with_capacity(capacity(len)),
        }
    }

    /// `obj` must be a tuple or tuple subclass.
    pub(super) fn tuple(obj: &Bound<'py, PyAny>) -> Result<Self, ConvertError> {
        // SAFETY: `obj` is a live tuple (caller checked) and the GIL is held.
        let len = unsafe { ffi::PyTuple_Size(obj.as_ptr()) };
        if capacity(len) > MAX_TUPLE_ARITY {
            return Err(ConvertError(format!(
                "cannot convert a tuple of {len} items: BEAM tuples hold at most {MAX_TUPLE_ARITY}"
            )));
        }
        Ok(Frame::Tuple {
            obj: obj.clone(),
            next: 0,
            len,
            out: Vec::with_capacity(capacity(len)),
        })
    }

    /// `obj` must be a dict or dict subclass.
    pub(super) fn dict(obj: &Bound<'py, PyAny>) -> Self {
        // SAFETY: `obj` is a live dict (caller checked) and the GIL is held.
        let len = unsafe { ffi::PyDict_Size(obj.as_ptr()) };
        Frame::Dict {
            obj: obj.clone(),
            pos: 0,
            len,
            out: Vec::with_capacity(capacity(len)),
            key: None,
            pending: None,
        }
    }

    /// `obj` must be a set, frozenset or subclass.
    pub(super) fn set(obj: &Bound<'py, PyAny>) -> Result<Self, ConvertError> {
        let iter = obj
            .try_iter()
            .map_err(|e| ConvertError::python("cannot iterate over a set", e))?
            .into_any();
        Ok(Frame::Set {
            obj: obj.clone(),
            iter,
            out: Vec::with_capacity(obj.len().unwrap_or(0)),
        })
    }

    fn obj(&self) -> &Bound<'py, PyAny> {
        match self {
            Frame::List { obj, .. }
            | Frame::Tuple { obj, .. }
            | Frame::Dict { obj, .. }
            | Frame::Set { obj, .. } => obj,
        }
    }

    /// Takes the converted child returned by the last `next_child`.
    pub(super) fn accept(&mut self, v: Value) {
        match self {
            Frame::List { out, .. } | Frame::Tuple { out, .. } | Frame::Set { out, .. } => {
                out.push(v)
            }
            Frame::Dict { out, key, .. } => match key.take() {
                // `v` is a key; its value is in `pending`.
                None => *key = Some(v),
                Some(k) => out.push((k, v)),
            },
        }
    }

    /// Converts exact scalars inline and returns the next child that needs
    /// `classify`, or `None` when the container is complete.
    pub(super) fn next_child(
        &mut self,
        py: Python<'py>,
    ) -> Result<Option<Bound<'py, PyAny>>, ConvertError> {
        match self {
            // On free-threaded Python another thread may change the list or
            // dict meanwhile: its items are read inside a critical section
            // on it (a no-op with the GIL), left before any Python code runs.
            Frame::List {
                obj,
                next,
                len,
                out,
            } => with_critical_section(obj, || loop {
                // SAFETY (whole block): `obj` is a live list, the GIL is held
                // (or, free-threaded, its critical section). The size is re-read every step because converting an
                // object (its repr) may run Python code that resizes the
                // list; with `next < size` GetItem returns a valid borrowed
                // item, used before any Python code can run or turned into a
                // strong reference.
                unsafe {
                    if *next >= *len {
                        return Ok(None);
                    }
                    if *next >= ffi::PyList_Size(obj.as_ptr()) {
                        return Err(changed_size("list"));
                    }
                    let item = ffi::PyList_GetItem(obj.as_ptr(), *next);
                    if item.is_null() {
                        return Err(ConvertError::python("cannot read a list", PyErr::fetch(py)));
                    }
                    *next += 1;
                    match scalar(py, item)? {
                        Some(v) => out.push(v),
                        None => return Ok(Some(Bound::from_borrowed_ptr(py, item))),
                    }
                }
            }),
            Frame::Tuple {
                obj,
                next,
                len,
                out,
            } => {
                while *next < *len {
                    // SAFETY: `obj` is a live tuple (immutable) and
                    // `next < len`, so GetItem returns a valid borrowed item,
                    // used at once or turned into a strong reference.
                    unsafe {
                        let item = ffi::PyTuple_GetItem(obj.as_ptr(), *next);
                        if item.is_null() {
                            return Err(ConvertError::python(
                                "cannot read a tuple",
                                PyErr::fetch(py),
                            ));
                        }
                        *next += 1;
                        match scalar(py, item)? {
                            Some(v) => out.push(v),
                            None => return Ok(Some(Bound::from_borrowed_ptr(py, item))),
                        }
                    }
                }
                Ok(None)
            }
            Frame::Dict {
                obj,
                pos,
                out,
                key,
                pending,
                ..
            } => {
                if let Some(v) = pending.take() {
                    return Ok(Some(v));
                }
                with_critical_section(obj, || loop {
                    let mut k: *mut ffi::PyObject = std::ptr::null_mut();
                    let mut v: *mut ffi::PyObject = std::ptr::null_mut();
                    // SAFETY: `obj` is a live dict and the GIL is held (or,
                    // free-threaded, its critical section). PyDict_Next is memory-safe even if the dict changed
                    // since the last call. `k`/`v` are borrowed: they are used
                    // by `scalar` (which runs no Python code) or turned into
                    // strong references before anything else can run.
                    unsafe {
                        if ffi::PyDict_Next(obj.as_ptr(), pos, &mut k, &mut v) == 0 {
                            return Ok(None);
                        }
                        match scalar(py, k)? {
                            Some(kv) => match scalar(py, v)? {
                                Some(vv) => out.push((kv, vv)),
                                None => {
                                    *key = Some(kv);
                                    return Ok(Some(Bound::from_borrowed_ptr(py, v)));
                                }
                            },
                            None => {
                                *pending = Some(Bound::from_borrowed_ptr(py, v));
                                return Ok(Some(Bound::from_borrowed_ptr(py, k)));
                            }
                        }
                    }
                })
            }
            Frame::Set { iter, out, .. } => loop {
                // SAFETY: `iter` is a live iterator and the GIL is held;
                // PyIter_Next returns a new reference, or NULL at the end or
                // on error (distinguished by PyErr_Occurred).
                unsafe {
                    let item = ffi::PyIter_Next(iter.as_ptr());
                    if item.is_null() {
                        if ffi::PyErr_Occurred().is_null() {
                            return Ok(None);
                        }
                        return Err(ConvertError::python(
                            "cannot iterate over a set",
                            PyErr::fetch(py),
                        ));
                    }
                    let item = Bound::from_owned_ptr(py, item);
                    match scalar(py, item.as_ptr())? {
                        Some(v) => out.push(v),
                        None => return Ok(Some(item)),
                    }
                }
            },
        }
    }

    pub(super) fn finish(self) -> Result<Value, ConvertError> {
        Ok(match self {
            Frame::List { obj, len, out, .. } => {
                // SAFETY: `obj` is a live list and the GIL is held.
                if unsafe { ffi::PyList_Size(obj.as_ptr()) } != len {
                    Value::List(out).dispose();
                    return Err(changed_size("list"));
                }
                Value::List(out)
            }
            Frame::Tuple { out, .. } => Value::Tuple(out),
            Frame::Dict { obj, len, out, .. } => {
                // SAFETY: `obj` is a live dict and the GIL is held.
                if unsafe { ffi::PyDict_Size(obj.as_ptr()) } != len {
                    Value::Map(out).dispose();
                    return Err(changed_size("dict"));
                }
                if let Some(err) = binary_collision("dict", out.iter().map(|(k, _)| k)) {
                    Value::Map(out).dispose();
                    return Err(err);
                }
                Value::Map(out)
            }
            Frame::Set { out, .. } => {
                if let Some(err) = binary_collision("set", out.iter()) {
                    Value::Set(out).dispose();
                    return Err(err);
                }
                Value::Set(out)
            }
        })
    }

    /// Drops the partial result without deep recursion.
    pub(super) fn dispose(self) {
        match self {
            Frame::List { out, .. } | Frame::Tuple { out, .. } | Frame::Set { out, .. } => {
                Value::List(out).dispose()
            }
            Frame::Dict { out, key, .. } => {
                Value::Map(out).dispose();
                if let Some(k) = key {
                    k.dispose();
                }
            }
        }
    }
}

/// Converting an item ran Python code (a `__repr__`) that resized the
/// container being converted.
fn changed_size(what: &str) -> ConvertError {
    ConvertError(format!("{what} changed size during conversion"))
}

pub(super) fn depth_error(stack: &[Frame<'_>], child: &Bound<'_, PyAny>) -> ConvertError {
    if stack.iter().any(|f| f.obj().is(child)) {
        let name = match child.get_type().name() {
            Ok(n) => n.to_string_lossy().into_owned(),
            Err(_) => "container".to_owned(),
        };
        ConvertError(format!(
            "cannot convert a {name} that contains itself (a reference cycle)"
        ))
    } else {
        ConvertError::too_deep()
    }
}

/// `str` and `bytes` keys both become binaries on the BEAM, so `'a'` and
/// `b'a'` in one dict or set would silently merge: that is an error instead.
fn binary_collision<'a>(what: &str, keys: impl Iterator<Item = &'a Value>) -> Option<ConvertError> {
    let keys: Vec<&Value> = keys.collect();
    let has_str = keys.iter().any(|k| matches!(k, Value::Str(_)));
    let has_bytes = keys.iter().any(|k| matches!(k, Value::Bytes(_)));
    if !(has_str && has_bytes) {
        return None;
    }
    let mut seen = std::collections::HashSet::new();
    for key in keys {
        let bytes: &[u8] = match key {
            Value::Str(s) => s.as_bytes(),
            Value::Bytes(b) => b,
            _ => continue,
        };
        if !seen.insert(bytes) {
            return Some(ConvertError(format!(
                "cannot convert a {what} with both a str and a bytes key {:?}: they are the same binary on the BEAM",
                String::from_utf8_lossy(bytes)
            )));
        }
    }
    None
}
