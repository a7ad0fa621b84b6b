//! [`Value`] → Python.
//!
//! The walk is iterative (an explicit stack of partly built containers), so
//! it cannot overflow the thread's stack; nesting is still limited to
//! [`MAX_DEPTH`] levels. Scalars inside containers are converted inline with
//! raw `ffi` calls, which keeps long flat lists cheap.
//!
//! Mapping: Str → `str`, Bytes → `bytes`, Int/BigInt → `int`, Float →
//! `float`, Bool → `bool`, None → `None`, List → `list`, Tuple → `tuple`,
//! Map → `dict`, Set → `set`, Pid → `erlang.Pid`, Ref → `erlang.Ref`,
//! Object → the object itself. A Set where Python needs something hashable
//! (a set member or dict key, also inside a tuple there) becomes a
//! `frozenset`, so sets of sets and frozenset keys round-trip.
//!
//! This file holds the entry points and the walk ([`run`]); [`scalars`]
//! converts leaves with raw `ffi` calls, [`containers`] holds the frames
//! that build lists, tuples, dicts and sets, and [`keys`] inserts dict keys
//! and set members and reports keys that collide in Python.

mod containers;
mod keys;
mod scalars;

use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::{ConvertError, Value};
use crate::limits::MAX_DEPTH;

use containers::{container, Frame, SeqKind};
use scalars::scalar;

/// Converts a [`Value`] to a new Python object.
pub fn to_py<'py>(py: Python<'py>, v: &Value) -> Result<Bound<'py, PyAny>, ConvertError> {
    match scalar(py, v)? {
        Some(obj) => Ok(obj),
        None => run(py, container(py, v, false)?),
    }
}

/// Converts key/value pairs (a BEAM map: kwargs, locals) to a `dict`.
pub fn map_to_dict<'py>(
    py: Python<'py>,
    pairs: &[(Value, Value)],
) -> Result<Bound<'py, PyDict>, ConvertError> {
    let obj = run(py, Frame::dict(py, pairs)?)?;
    // SAFETY: a Dict frame finishes with the `dict` it created.
    Ok(unsafe { obj.cast_into_unchecked() })
}

/// Converts values (call arguments) to a `tuple`.
pub fn to_py_tuple<'py>(
    py: Python<'py>,
    items: &[Value],
) -> Result<Bound<'py, PyTuple>, ConvertError> {
    let obj = run(py, Frame::seq(py, items, SeqKind::Tuple)?)?;
    // SAFETY: a Tuple frame finishes with the `tuple` it built.
    Ok(unsafe { obj.cast_into_unchecked() })
}

/// Builds the container of `root` with an explicit stack.
fn run<'v, 'py>(py: Python<'py>, root: Frame<'v, 'py>) -> Result<Bound<'py, PyAny>, ConvertError> {
    let mut stack: Vec<Frame<'v, 'py>> = Vec::with_capacity(8);
    stack.push(root);
    let mut done: Option<Bound<'py, PyAny>> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return done.ok_or_else(|| ConvertError("internal: empty conversion".into()));
        };
        if let Some(obj) = done.take() {
            top.accept(obj)?;
        }
        match top.next_child(py)? {
            Some((child, hashable)) => match scalar(py, child)? {
                // `next_child` only returns containers, but stay correct anyway.
                Some(obj) => done = Some(obj),
                None => {
                    if stack.len() >= MAX_DEPTH {
                        return Err(ConvertError::too_deep());
                    }
                    stack.push(container(py, child, hashable)?);
                }
            },
            None => {
                if let Some(frame) = stack.pop() {
                    done = Some(frame.finish(py)?);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
