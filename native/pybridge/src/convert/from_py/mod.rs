//! Python → [`Value`].
//!
//! Exact built-in types take `ffi` fast paths ([`scalars`]). Subclasses of
//! `int`, `float`, `str`, `bytes`, `list`, `tuple`, `dict`, `set` and
//! `frozenset` convert like their base (an `IntEnum` member becomes an
//! integer, a namedtuple a tuple, an `OrderedDict` a map); `bytearray`
//! becomes bytes; `erlang.Pid`/`erlang.Ref` become pids and references.
//! Everything else is passed by reference as a [`Value::Object`]
//! ([`objects`]) — nothing is silently stringified or turned into `None`.
//!
//! The walk is iterative (an explicit stack of [`containers`] frames), so it
//! cannot overflow the thread's stack; nesting is limited to [`MAX_DEPTH`]
//! levels, which also stops a list that contains itself.

mod budget;
mod containers;
mod objects;
mod scalars;

use std::ptr::addr_of_mut;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{
    PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

use super::erlang_types::term_value;
use super::{ConvertError, Value};
use crate::limits::MAX_DEPTH;

use budget::Budget;
use containers::{depth_error, Frame};
use scalars::{bytes_value, int_value, is_exact, scalar, str_value};

pub use budget::{max_items, set_max_items, Limits};
pub use objects::{repr_of, to_object, type_name};

/// Converts a Python object to a [`Value`], within the configured item cap.
pub fn from_py(obj: &Bound<'_, PyAny>) -> Result<Value, ConvertError> {
    from_py_within(obj, &Limits::default())
}

/// Converts a Python object to a [`Value`] within `limits`.
pub fn from_py_within(obj: &Bound<'_, PyAny>, limits: &Limits<'_>) -> Result<Value, ConvertError> {
    let mut budget = Budget::new(limits);
    match classify(obj, &budget)? {
        Step::Leaf(v) => Ok(v),
        Step::Container(frame) => run(obj.py(), frame, &mut budget),
    }
}

enum Step<'py> {
    Leaf(Value),
    Container(Frame<'py>),
}

/// Converts a scalar or starts a container frame.
fn classify<'py>(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Step<'py>, ConvertError> {
    let py = obj.py();
    let ptr = obj.as_ptr();
    // SAFETY: `obj` keeps `ptr` alive and proves the GIL is held.
    if let Some(v) = unsafe { scalar(py, ptr)? } {
        return Ok(Step::Leaf(v));
    }
    // Exact containers, then subclasses and the rest.
    // SAFETY: as above; type objects are compared by address only.
    let exact = unsafe {
        if is_exact(ptr, addr_of_mut!(ffi::PyList_Type)) {
            Some(Frame::list(obj, budget)?)
        } else if is_exact(ptr, addr_of_mut!(ffi::PyTuple_Type)) {
            Some(Frame::tuple(obj, budget)?)
        } else if is_exact(ptr, addr_of_mut!(ffi::PyDict_Type)) {
            Some(Frame::dict(obj, budget)?)
        } else if is_exact(ptr, addr_of_mut!(ffi::PySet_Type))
            || is_exact(ptr, addr_of_mut!(ffi::PyFrozenSet_Type))
        {
            Some(Frame::set(obj, budget)?)
        } else {
            None
        }
    };
    if let Some(frame) = exact {
        return Ok(Step::Container(frame));
    }
    slow(obj, budget)
}

fn slow<'py>(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Step<'py>, ConvertError> {
    let py = obj.py();
    let ptr = obj.as_ptr();
    if let Ok(ba) = obj.cast::<PyByteArray>() {
        return Ok(Step::Leaf(Value::Bytes(ba.to_vec())));
    }
    if let Some(term) = term_value(obj)? {
        return Ok(Step::Leaf(term));
    }
    // Subclasses of the built-in types convert like their base.
    if obj.is_instance_of::<PyInt>() {
        // SAFETY: `obj` is an int subclass kept alive by `obj`; GIL held.
        return unsafe { int_value(py, ptr) }.map(Step::Leaf);
    }
    if let Ok(f) = obj.cast::<PyFloat>() {
        return Ok(Step::Leaf(Value::Float(f.value())));
    }
    if obj.is_instance_of::<PyString>() {
        // SAFETY: a str subclass kept alive by `obj`; GIL held.
        return unsafe { str_value(py, ptr) }.map(Step::Leaf);
    }
    if obj.is_instance_of::<PyBytes>() {
        // SAFETY: a bytes subclass kept alive by `obj`; GIL held.
        return unsafe { bytes_value(py, ptr) }.map(Step::Leaf);
    }
    if obj.is_instance_of::<PyList>() {
        return Ok(Step::Container(Frame::list(obj, budget)?));
    }
    if obj.is_instance_of::<PyTuple>() {
        return Ok(Step::Container(Frame::tuple(obj, budget)?));
    }
    if obj.is_instance_of::<PyDict>() {
        return Ok(Step::Container(Frame::dict(obj, budget)?));
    }
    if obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>() {
        return Ok(Step::Container(Frame::set(obj, budget)?));
    }
    Ok(Step::Leaf(Value::Object(to_object(obj))))
}

/// Converts the container of `root` with an explicit stack.
fn run<'py>(py: Python<'py>, root: Frame<'py>, budget: &mut Budget) -> Result<Value, ConvertError> {
    let mut stack: Vec<Frame<'py>> = Vec::with_capacity(8);
    stack.push(root);
    let result = walk(py, &mut stack, budget);
    for frame in stack.drain(..).rev() {
        frame.dispose();
    }
    result
}

fn walk<'py>(
    py: Python<'py>,
    stack: &mut Vec<Frame<'py>>,
    budget: &mut Budget,
) -> Result<Value, ConvertError> {
    let mut done: Option<Value> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return done.ok_or_else(|| ConvertError("internal: empty conversion".into()));
        };
        if let Some(v) = done.take() {
            top.accept(v);
        }
        match top.next_child(py, budget)? {
            Some(child) => match classify(&child, budget)? {
                Step::Leaf(v) => {
                    // Wrapping an object ran its `__repr__`, which can be
                    // slow: check the call is still wanted after each.
                    if matches!(v, Value::Object(_)) {
                        budget.ran_python(py)?;
                    }
                    done = Some(v);
                }
                Step::Container(frame) => {
                    if stack.len() >= MAX_DEPTH {
                        let err = depth_error(stack, &child);
                        frame.dispose();
                        return Err(err);
                    }
                    stack.push(frame);
                }
            },
            None => {
                if let Some(frame) = stack.pop() {
                    done = Some(frame.finish()?);
                }
            }
        }
    }
}

#[cfg(test)]
mod hostile_tests;
#[cfg(test)]
mod tests;
