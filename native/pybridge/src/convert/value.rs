//! The GIL-free intermediate representation of a value crossing the bridge.
//!
//! Terms are decoded into a [`Value`] on the BEAM side without touching Python,
//! and Python objects are turned into a [`Value`] under one GIL hold. Plain
//! data (everything but [`Value::Object`]) can be stored, cloned and read by
//! the BEAM without the GIL, which is what SharedDicts build on.

use std::sync::Arc;

use num_bigint::BigInt;
use pyo3::prelude::*;

use super::ConvertError;
use crate::runtime::Interp;

/// One value on its way between the BEAM and Python.
#[derive(Debug, Clone)]
pub enum Value {
    /// Python `None`, BEAM `nil`.
    None,
    Bool(bool),
    Int(i64),
    /// An integer outside the `i64` range.
    BigInt(BigInt),
    /// Any float, including nan and the infinities (the BEAM side encodes
    /// those as `:nan`, `:infinity` and `:neg_infinity`).
    Float(f64),
    /// A UTF-8 string: Python `str`; a BEAM binary that is valid UTF-8, or an atom.
    Str(String),
    /// Raw bytes: Python `bytes`/`bytearray`; a BEAM binary that is not UTF-8,
    /// or one wrapped with `Py.bytes/1`.
    Bytes(Vec<u8>),
    List(Vec<Value>),
    Tuple(Vec<Value>),
    /// Key/value pairs in iteration order.
    Map(Vec<(Value, Value)>),
    /// Python `set`/`frozenset`, BEAM `MapSet`.
    Set(Vec<Value>),
    /// A BEAM pid, in the external term format (Python `erlang.Pid`).
    Pid(Vec<u8>),
    /// A BEAM reference, in the external term format (Python `erlang.Ref`).
    Ref(Vec<u8>),
    /// Any other Python object, passed by reference.
    Object(PyObject),
}

/// A Python object kept alive from the BEAM side (`%Py.Object{}`).
///
/// A shared handle one pointer wide (so that [`Value`] stays 32 bytes, which
/// matters for long lists). Cloning only bumps an `Arc`, so it needs no GIL.
/// The object belongs to the interpreter that made it and is usable only
/// there ([`ObjectData::bind`]); when the last clone is dropped, the Python
/// reference is handed to that interpreter to be released with it attached.
/// The other fields are read through `Deref`: `o.type_name`, `o.repr`.
#[derive(Debug, Clone)]
pub struct PyObject(Arc<ObjectData>);

/// What a [`PyObject`] handle points to.
#[derive(Debug)]
pub struct ObjectData {
    /// Always `Some` until dropped.
    obj: Option<Py<PyAny>>,
    owner: Arc<Interp>,
    /// `type(obj).__module__ + "." + type(obj).__qualname__`
    pub type_name: String,
    /// `repr(obj)`, truncated to [`REPR_BYTES`](crate::limits::REPR_BYTES) bytes.
    pub repr: String,
}

impl PyObject {
    /// Wraps an object of the interpreter the calling thread is attached to.
    pub fn new(obj: Py<PyAny>, type_name: String, repr: String) -> Self {
        PyObject(Arc::new(ObjectData {
            obj: Some(obj),
            owner: Interp::current_arc(),
            type_name,
            repr,
        }))
    }
}

#[cfg(test)]
impl PyObject {
    /// A handle with the given owner (tests of reference release).
    pub(crate) fn with_owner(obj: Py<PyAny>, owner: Arc<Interp>) -> Self {
        PyObject(Arc::new(ObjectData {
            obj: Some(obj),
            owner,
            type_name: "test".into(),
            repr: "<test>".into(),
        }))
    }
}

impl ObjectData {
    /// The object, when `py` is attached to the interpreter it belongs to.
    pub fn bind<'py>(&self, py: Python<'py>) -> Result<&Bound<'py, PyAny>, ConvertError> {
        match &self.obj {
            Some(obj) if self.owner.is(Interp::current()) => Ok(obj.bind(py)),
            _ => Err(ConvertError(format!(
                "the Python object {} belongs to another interpreter: \
                 objects of a sub-interpreter context can only be used in that context",
                self.repr
            ))),
        }
    }
}

impl Drop for ObjectData {
    fn drop(&mut self) {
        if let Some(obj) = self.obj.take() {
            // Collected at the owner's next call, or by the monitor.
            let _ = self.owner.release(obj);
        }
    }
}

impl std::ops::Deref for PyObject {
    type Target = ObjectData;

    fn deref(&self) -> &ObjectData {
        &self.0
    }
}

impl Value {
    /// A short name of this value's kind, for error messages
    /// ("an integer", "a list", ...).
    pub fn kind(&self) -> &'static str {
        match self {
            Value::None => "None",
            Value::Bool(_) => "a boolean",
            Value::Int(_) | Value::BigInt(_) => "an integer",
            Value::Float(_) => "a float",
            Value::Str(_) => "a string",
            Value::Bytes(_) => "a binary",
            Value::List(_) => "a list",
            Value::Tuple(_) => "a tuple",
            Value::Map(_) => "a map",
            Value::Set(_) => "a set",
            Value::Pid(_) => "a pid",
            Value::Ref(_) => "a reference",
            Value::Object(_) => "a Python object",
        }
    }

    /// Drops this value without recursion.
    ///
    /// Plain `drop` of a value nested [`MAX_DEPTH`](crate::limits::MAX_DEPTH) levels deep recurses once
    /// per level, which is too much for a dirty scheduler's small stack; use
    /// this where a deep value may be dropped on a BEAM thread.
    pub fn dispose(self) {
        let mut pending = vec![self];
        while let Some(v) = pending.pop() {
            match v {
                Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                    pending.extend(items.into_iter().filter(Value::is_container));
                }
                Value::Map(pairs) => {
                    for (k, v) in pairs {
                        if k.is_container() {
                            pending.push(k);
                        }
                        if v.is_container() {
                            pending.push(v);
                        }
                    }
                }
                _ => {}
            }
        }
    }

    /// Whether this is a list, tuple, map or set.
    pub fn is_container(&self) -> bool {
        matches!(
            self,
            Value::List(_) | Value::Tuple(_) | Value::Map(_) | Value::Set(_)
        )
    }

    /// The size of this value, counted as one per value plus one per 64
    /// bytes of text or bytes, but never counting past `limit`: whether a
    /// result is small enough to encode on a BEAM scheduler costs at most
    /// `limit` steps, however big the value is. Iterative, like `dispose`.
    pub fn size_up_to(&self, limit: usize) -> usize {
        let mut size = 0;
        let mut pending = vec![self];
        while let Some(value) = pending.pop() {
            if size > limit {
                break;
            }
            size += 1;
            match value {
                Value::Str(s) => size += s.len() / 64,
                Value::Bytes(b) => size += b.len() / 64,
                Value::List(items) | Value::Tuple(items) | Value::Set(items) => {
                    pending.extend(items.iter().take(limit.saturating_sub(size) + 1));
                }
                Value::Map(pairs) => {
                    for (k, v) in pairs.iter().take(limit.saturating_sub(size) + 1) {
                        pending.push(k);
                        pending.push(v);
                    }
                }
                _ => {}
            }
        }
        size.min(limit + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn size_up_to_counts_values_and_long_text() {
        let v = Value::List(vec![
            Value::Int(1),
            Value::Str("x".repeat(640)),
            Value::Map(vec![(Value::Str("k".into()), Value::None)]),
        ]);
        // list + int + str (1 + 10) + map + key + value
        assert_eq!(v.size_up_to(100), 16);
        assert_eq!(Value::Int(1).size_up_to(0), 1);
    }

    #[test]
    fn size_up_to_stops_at_the_limit() {
        let big = Value::List((0..1_000_000).map(Value::Int).collect());
        assert_eq!(big.size_up_to(256), 257);
        let deep = (0..1_000).fold(Value::None, |v, _| Value::List(vec![v]));
        assert_eq!(deep.size_up_to(10), 11);
        deep.dispose();
    }
}
