//! Containers (`list`, `tuple`, `dict`, `set`, `frozenset` and their
//! subclasses): one [`Frame`] per container being converted on the walk's
//! explicit stack.
//!
//! A frame starts by taking a snapshot of the container: strong references
//! to its items (a dict's keys and values), read from the container's own
//! storage while no Python code can run (inside a critical section on
//! free-threaded Python). Converting the items may then run any Python code
//! (a `__repr__`, a finaliser, another thread while the walk lets go of the
//! GIL), and whatever that code does to the container, the frame converts
//! the items the container held when its turn came: a consistent snapshot,
//! never a dangling borrowed reference. Sizes are the storage's real counts:
//! no `__len__`, `__iter__` or `keys()` of a subclass is ever called.

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;

use super::super::keys::{self, Target};
use super::super::{ConvertError, Value};
use super::budget::Budget;
use super::objects::repr_of;
use super::scalars::scalar;
use crate::limits::MAX_TUPLE_ARITY;

/// Output vectors never reserve room for more items than this up front;
/// past it they grow as items arrive.
const PREALLOCATE_AT_MOST: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    List,
    Tuple,
    /// Items are the keys and values, alternating.
    Dict,
    Set,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::List => "list",
            Kind::Tuple => "tuple",
            Kind::Dict => "dict",
            Kind::Set => "set",
        }
    }
}

enum Out {
    Seq(Vec<Value>),
    Map {
        pairs: Vec<(Value, Value)>,
        /// The converted key whose value comes next.
        key: Option<Value>,
    },
}

/// A container being converted.
pub(super) struct Frame<'py> {
    /// The container itself (to recognise a cycle).
    obj: Bound<'py, PyAny>,
    kind: Kind,
    /// The snapshot: owned references to the items.
    items: Vec<Bound<'py, PyAny>>,
    next: usize,
    out: Out,
    /// A key (or set member) needed more than the exact-scalar fast path:
    /// keys that are distinct in Python may then be equal on the BEAM.
    odd_keys: bool,
}

impl<'py> Frame<'py> {
    fn new(obj: &Bound<'py, PyAny>, kind: Kind, items: Vec<Bound<'py, PyAny>>) -> Self {
        let n = items.len().min(PREALLOCATE_AT_MOST);
        let out = match kind {
            Kind::Dict => Out::Map {
                pairs: Vec::with_capacity(n / 2),
                key: None,
            },
            _ => Out::Seq(Vec::with_capacity(n)),
        };
        Frame {
            obj: obj.clone(),
            kind,
            items,
            next: 0,
            out,
            odd_keys: false,
        }
    }

    /// `obj` must be a list or list subclass.
    pub(super) fn list(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Self, ConvertError> {
        let py = obj.py();
        let items = with_critical_section(obj, || {
            // SAFETY (whole block): `obj` is a live list and the GIL is held
            // (or, free-threaded, its critical section), so nothing changes
            // it while this runs no Python code; with `i < size` GetItem
            // returns a valid borrowed item, turned into an owned one at once.
            unsafe {
                let size = ffi::PyList_Size(obj.as_ptr());
                let n = usize::try_from(size).unwrap_or(0);
                budget.room_for(n)?;
                let mut items = Vec::with_capacity(n);
                for i in 0..size {
                    let item = ffi::PyList_GetItem(obj.as_ptr(), i);
                    if item.is_null() {
                        return Err(ConvertError::python("cannot read a list", PyErr::fetch(py)));
                    }
                    items.push(Bound::from_borrowed_ptr(py, item));
                }
                Ok(items)
            }
        })?;
        Ok(Frame::new(obj, Kind::List, items))
    }

    /// `obj` must be a tuple or tuple subclass.
    pub(super) fn tuple(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Self, ConvertError> {
        let py = obj.py();
        // SAFETY: `obj` is a live tuple (caller checked) and the GIL is held.
        let size = unsafe { ffi::PyTuple_Size(obj.as_ptr()) };
        let n = usize::try_from(size).unwrap_or(0);
        if n > MAX_TUPLE_ARITY {
            return Err(ConvertError(format!(
                "cannot convert a tuple of {n} items: BEAM tuples hold at most {MAX_TUPLE_ARITY}"
            )));
        }
        budget.room_for(n)?;
        let mut items = Vec::with_capacity(n);
        for i in 0..size {
            // SAFETY: `obj` is a live tuple (immutable) and `i < size`, so
            // GetItem returns a valid borrowed item, owned at once.
            unsafe {
                let item = ffi::PyTuple_GetItem(obj.as_ptr(), i);
                if item.is_null() {
                    return Err(ConvertError::python(
                        "cannot read a tuple",
                        PyErr::fetch(py),
                    ));
                }
                items.push(Bound::from_borrowed_ptr(py, item));
            }
        }
        Ok(Frame::new(obj, Kind::Tuple, items))
    }

    /// `obj` must be a dict or dict subclass.
    pub(super) fn dict(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Self, ConvertError> {
        let py = obj.py();
        let items = with_critical_section(obj, || {
            // SAFETY (whole block): `obj` is a live dict and the GIL is held
            // (or, free-threaded, its critical section); PyDict_Next reads
            // the storage and runs no Python code, and the borrowed key and
            // value are owned before the next step.
            unsafe {
                let size = ffi::PyDict_Size(obj.as_ptr());
                let n = usize::try_from(size).unwrap_or(0);
                budget.room_for(n.saturating_mul(2))?;
                let mut items = Vec::with_capacity(n * 2);
                let mut pos: ffi::Py_ssize_t = 0;
                let mut k: *mut ffi::PyObject = std::ptr::null_mut();
                let mut v: *mut ffi::PyObject = std::ptr::null_mut();
                while ffi::PyDict_Next(obj.as_ptr(), &mut pos, &mut k, &mut v) != 0 {
                    items.push(Bound::from_borrowed_ptr(py, k));
                    items.push(Bound::from_borrowed_ptr(py, v));
                }
                Ok(items)
            }
        })?;
        Ok(Frame::new(obj, Kind::Dict, items))
    }

    /// `obj` must be a set, frozenset or subclass.
    ///
    /// Read through a private `frozenset` copy: copying a set (or subclass)
    /// into an empty one reads its storage and stored hashes, running no
    /// `__iter__`, `__hash__` or `__eq__`, and the copy's own iterator
    /// cannot be disturbed by anyone.
    pub(super) fn set(obj: &Bound<'py, PyAny>, budget: &Budget) -> Result<Self, ConvertError> {
        let py = obj.py();
        let fail = |e| ConvertError::python("cannot read a set", e);
        // SAFETY: `obj` is a live set or frozenset (caller checked) and the
        // GIL is held; both calls return a new reference or NULL with an
        // exception set.
        let copy = unsafe { Bound::from_owned_ptr_or_err(py, ffi::PyFrozenSet_New(obj.as_ptr())) }
            .map_err(fail)?;
        // SAFETY: `copy` is a live frozenset.
        let size = unsafe { ffi::PySet_Size(copy.as_ptr()) };
        let n = usize::try_from(size).unwrap_or(0);
        budget.room_for(n)?;
        let mut items = Vec::with_capacity(n);
        for item in copy.try_iter().map_err(fail)? {
            items.push(item.map_err(fail)?);
        }
        Ok(Frame::new(obj, Kind::Set, items))
    }

    /// Takes the converted child returned by the last `next_child`.
    pub(super) fn accept(&mut self, v: Value) {
        match &mut self.out {
            Out::Seq(out) => out.push(v),
            Out::Map { pairs, key } => match key.take() {
                None => *key = Some(v),
                Some(k) => pairs.push((k, v)),
            },
        }
    }

    /// Converts exact scalars inline and returns the next child that needs
    /// `classify`, or `None` when the container is complete.
    pub(super) fn next_child(
        &mut self,
        py: Python<'py>,
        budget: &mut Budget,
    ) -> Result<Option<Bound<'py, PyAny>>, ConvertError> {
        while let Some(item) = self.items.get(self.next) {
            let is_key = match self.kind {
                Kind::Dict => self.next.is_multiple_of(2),
                Kind::Set => true,
                Kind::List | Kind::Tuple => false,
            };
            self.next += 1;
            budget.count(py)?;
            // SAFETY: `item` is an owned reference (the snapshot) and the
            // GIL is held.
            match unsafe { scalar(py, item.as_ptr())? } {
                Some(v) => self.accept(v),
                None => {
                    self.odd_keys |= is_key;
                    return Ok(Some(item.clone()));
                }
            }
        }
        Ok(None)
    }

    pub(super) fn finish(self) -> Result<Value, ConvertError> {
        let collision = match (&self.out, self.kind) {
            (Out::Map { pairs, .. }, _) => self.collision(pairs.iter().map(|(k, _)| k)),
            (Out::Seq(members), Kind::Set) => self.collision(members.iter()),
            _ => None,
        };
        let value = match (self.out, self.kind) {
            (Out::Map { pairs, .. }, _) => Value::Map(pairs),
            (Out::Seq(items), Kind::List) => Value::List(items),
            (Out::Seq(items), Kind::Tuple) => Value::Tuple(items),
            (Out::Seq(items), _) => Value::Set(items),
        };
        match collision {
            None => Ok(value),
            Some(err) => {
                value.dispose();
                Err(err)
            }
        }
    }

    /// Two keys (or set members) that would be one BEAM term: the map or
    /// `MapSet` would silently keep only one of them (and the VM's builder
    /// of large maps crashes on them).
    fn collision<'a>(&self, keys: impl Iterator<Item = &'a Value> + Clone) -> Option<ConvertError> {
        // Distinct exact str, int, float, bytes, bool and None keys stay
        // distinct, except NaNs and a str beside bytes of the same text.
        let suspect = self.odd_keys || {
            let (mut nan, mut text, mut bytes) = (false, false, false);
            for k in keys.clone() {
                match k {
                    Value::Float(f) => nan |= f.is_nan(),
                    Value::Str(_) => text = true,
                    Value::Bytes(_) => bytes = true,
                    _ => {}
                }
            }
            nan || (text && bytes)
        };
        if !suspect {
            return None;
        }
        let keys: Vec<&Value> = keys.collect();
        let (first, second) = keys::first_collision(keys.iter().copied(), Target::Beam)?;
        let (what, stride) = match self.kind {
            Kind::Dict => ("keys", 2),
            _ => ("members", 1),
        };
        let repr = |i: usize| {
            self.items
                .get(i * stride)
                .map_or_else(|| "?".to_owned(), repr_of)
        };
        Some(ConvertError(format!(
            "cannot convert a {} whose {what} {} and {} would both become the BEAM term {}, \
             which a {} holds only once",
            self.kind.name(),
            repr(first),
            repr(second),
            keys::beam_text(keys[first]),
            if self.kind == Kind::Dict {
                "map"
            } else {
                "MapSet"
            },
        )))
    }

    /// Drops the partial result without deep recursion.
    pub(super) fn dispose(self) {
        match self.out {
            Out::Seq(out) => Value::List(out).dispose(),
            Out::Map { pairs, key } => {
                Value::Map(pairs).dispose();
                if let Some(k) = key {
                    k.dispose();
                }
            }
        }
    }
}

pub(super) fn depth_error(stack: &[Frame<'_>], child: &Bound<'_, PyAny>) -> ConvertError {
    if stack.iter().any(|f| f.obj.is(child)) {
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
