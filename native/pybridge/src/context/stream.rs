//! Streams (`Py.stream`): an iterator handle kept between calls, and its
//! items fetched in batches.
//!
//! A stream is three kinds of job on the ordinary call path: `Iterate`
//! makes the handle (a `%Py.Object{}` like any other), `Next` fetches a
//! batch of items and `Close` ends it early. The handle is the iterator
//! itself, so when the BEAM lets go of it (its consumer exited) the
//! generator is released like any object, and CPython closes a generator it
//! frees: its `finally` blocks run. Async iterators take the same jobs; their
//! batches run as a coroutine on the interpreter's event loop ([`crate::aio`]).

use std::time::Instant;

use pyo3::exceptions::PyTypeError;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::convert::from_py::{from_py_within, Limits};
use crate::convert::PyObject;
use crate::limits::STREAM_FLUSH;

use super::execute::error_info;
use super::request::{Awaiting, BatchEnd, ErrorInfo, ErrorKind, Outcome};

/// The iterator a stream walks over `obj`: `iter(obj)`, or
/// `obj.__aiter__()` for an async iterable that is not also a plain one.
pub(super) fn iterate<'py>(obj: &Bound<'py, PyAny>) -> PyResult<Bound<'py, PyAny>> {
    match obj.try_iter() {
        Ok(iter) => Ok(iter.into_any()),
        Err(err) => {
            if obj.hasattr("__aiter__")? {
                obj.call_method0("__aiter__")
            } else {
                Err(err)
            }
        }
    }
}

/// Up to `max` next items of the iterator `iter`. A batch ends early once it
/// has run for [`STREAM_FLUSH`] with at least one item, so a slow generator's
/// items are not held back.
pub(super) fn next(py: Python<'_>, iter: &PyObject, max: usize, limits: &Limits<'_>) -> Outcome {
    let obj = match iter.bind(py) {
        Ok(obj) => obj,
        Err(err) => return Outcome::Error(ErrorInfo::new(ErrorKind::Conversion, err.0)),
    };
    // SAFETY: `obj` is a live object and `py` proves the GIL is held;
    // PyIter_Check only reads its type.
    if unsafe { ffi::PyIter_Check(obj.as_ptr()) } == 0 {
        return match async_batch(py, obj, max) {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Error(error_info(py, err)),
        };
    }
    let started = Instant::now();
    let mut items = Vec::with_capacity(max.min(4096));
    while items.len() < max {
        // SAFETY: the GIL is held and `obj` is an iterator (checked above),
        // which is what PyIter_Next requires. It returns a new reference, or
        // NULL when exhausted (no exception) or on error (exception set).
        let item = unsafe { Bound::from_owned_ptr_or_opt(py, ffi::PyIter_Next(obj.as_ptr())) };
        let Some(item) = item else {
            let end = match PyErr::take(py) {
                None => BatchEnd::Done,
                Some(err) => BatchEnd::Failed(error_info(py, err)),
            };
            return Outcome::Batch { items, end };
        };
        match from_py_within(&item, limits) {
            Ok(value) => items.push(value),
            Err(err) => {
                let failed = ErrorInfo::new(ErrorKind::Conversion, err.0);
                return Outcome::Batch {
                    items,
                    end: BatchEnd::Failed(failed),
                };
            }
        }
        if started.elapsed() >= STREAM_FLUSH {
            break;
        }
    }
    Outcome::Batch {
        items,
        end: BatchEnd::More,
    }
}

/// A batch of an async iterator: a coroutine for the event loop.
fn async_batch(py: Python<'_>, obj: &Bound<'_, PyAny>, max: usize) -> PyResult<Outcome> {
    if !obj.hasattr("__anext__")? {
        return Err(PyTypeError::new_err(format!(
            "'{}' object is not an iterator",
            obj.get_type().name()?
        )));
    }
    let coroutine = crate::aio::next_batch(py, obj, max)?;
    Ok(Outcome::Await(Awaiting {
        coroutine: coroutine.unbind(),
        batch: true,
    }))
}

/// Ends a stream early: `close()` of a generator or of any iterator that
/// has one, `aclose()` of an async generator (awaited on the event loop);
/// nothing for the others.
pub(super) fn close(py: Python<'_>, iter: &PyObject) -> Outcome {
    let closed = iter
        .bind(py)
        .map_err(|e| PyTypeError::new_err(e.0))
        .and_then(|obj| {
            if obj.hasattr("aclose")? {
                let coroutine = crate::aio::aclose(py, obj)?;
                return Ok(Outcome::Await(Awaiting {
                    coroutine: coroutine.unbind(),
                    batch: false,
                }));
            }
            if obj.hasattr("close")? {
                obj.call_method0("close")?;
            }
            Ok(Outcome::Done)
        });
    closed.unwrap_or_else(|err| Outcome::Error(error_info(py, err)))
}
