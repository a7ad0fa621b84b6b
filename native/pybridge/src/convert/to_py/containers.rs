//! The frames that build lists, tuples, dicts and sets during the walk.

use pyo3::ffi;
use pyo3::prelude::*;

use super::keys::{dict_set, set_add};
use super::scalars::{owned, scalar};
use crate::convert::{ConvertError, Value};

/// The frame that builds a container value; `hashable` when it will be a
/// set member or dict key.
pub(super) fn container<'v, 'py>(
    py: Python<'py>,
    v: &'v Value,
    hashable: bool,
) -> Result<Frame<'v, 'py>, ConvertError> {
    Ok(match v {
        Value::List(items) => Frame::seq(py, items, SeqKind::List)?,
        Value::Tuple(items) if hashable => Frame::seq(py, items, SeqKind::HashableTuple)?,
        Value::Tuple(items) => Frame::seq(py, items, SeqKind::Tuple)?,
        Value::Map(pairs) => Frame::dict(py, pairs)?,
        Value::Set(items) => Frame::set(py, items, hashable)?,
        _ => {
            return Err(ConvertError(format!(
                "internal: {} is no container",
                v.kind()
            )))
        }
    })
}

#[derive(Clone, Copy, PartialEq, Eq)]
pub(super) enum SeqKind {
    List,
    Tuple,
    /// A tuple that is (part of) a set member or dict key: its sets become
    /// frozensets.
    HashableTuple,
}

/// A container being built.
pub(super) enum Frame<'v, 'py> {
    /// A list or tuple, created at its final size and filled in order
    /// (as CPython itself does: the empty slots are NULL, which its
    /// deallocator and GC accept).
    Seq {
        items: &'v [Value],
        next: usize,
        seq: Bound<'py, PyAny>,
        kind: SeqKind,
    },
    Dict {
        pairs: &'v [(Value, Value)],
        next: usize,
        dict: Bound<'py, PyAny>,
        /// The converted key of `pairs[next]`, while its value is converted.
        key: Option<Bound<'py, PyAny>>,
    },
    Set {
        items: &'v [Value],
        next: usize,
        set: Bound<'py, PyAny>,
        /// Finish as a frozenset.
        frozen: bool,
    },
}

impl<'v, 'py> Frame<'v, 'py> {
    pub(super) fn seq(
        py: Python<'py>,
        items: &'v [Value],
        kind: SeqKind,
    ) -> Result<Self, ConvertError> {
        // A Vec never holds more than isize::MAX bytes, so its length fits.
        let n = items.len() as ffi::Py_ssize_t;
        // SAFETY: under the GIL; the constructors return a new reference or NULL.
        let seq = unsafe {
            match kind {
                SeqKind::List => owned(py, ffi::PyList_New(n), "a list")?,
                SeqKind::Tuple | SeqKind::HashableTuple => {
                    owned(py, ffi::PyTuple_New(n), "a tuple")?
                }
            }
        };
        Ok(Frame::Seq {
            items,
            next: 0,
            seq,
            kind,
        })
    }

    pub(super) fn dict(py: Python<'py>, pairs: &'v [(Value, Value)]) -> Result<Self, ConvertError> {
        // SAFETY: under the GIL; PyDict_New returns a new reference or NULL.
        let dict = unsafe { owned(py, ffi::PyDict_New(), "a dict")? };
        Ok(Frame::Dict {
            pairs,
            next: 0,
            dict,
            key: None,
        })
    }

    pub(super) fn set(
        py: Python<'py>,
        items: &'v [Value],
        frozen: bool,
    ) -> Result<Self, ConvertError> {
        // SAFETY: under the GIL; PySet_New(NULL) returns a new empty set or NULL.
        let set = unsafe { owned(py, ffi::PySet_New(std::ptr::null_mut()), "a set")? };
        Ok(Frame::Set {
            items,
            next: 0,
            set,
            frozen,
        })
    }

    /// Takes the converted child asked for by the last `next_child`.
    pub(super) fn accept(&mut self, obj: Bound<'py, PyAny>) -> Result<(), ConvertError> {
        match self {
            Frame::Seq {
                next, seq, kind, ..
            } => seq_set(seq, *kind, next.saturating_sub(1), obj)?,
            Frame::Dict {
                pairs,
                next,
                dict,
                key,
            } => match key.take() {
                None => *key = Some(obj),
                Some(k) => {
                    dict_set(dict, &k, &obj, pairs, *next)?;
                    *next += 1;
                }
            },
            Frame::Set {
                items, next, set, ..
            } => set_add(set, &obj, items, next.wrapping_sub(1))?,
        }
        Ok(())
    }

    /// Converts scalar children inline and returns the next child that
    /// needs a frame of its own (and whether it must be hashable), or `None`
    /// when this container is complete.
    pub(super) fn next_child(
        &mut self,
        py: Python<'py>,
    ) -> Result<Option<(&'v Value, bool)>, ConvertError> {
        match self {
            Frame::Seq {
                items,
                next,
                seq,
                kind,
            } => {
                let items: &'v [Value] = items;
                while let Some(v) = items.get(*next) {
                    *next += 1;
                    match scalar(py, v)? {
                        Some(obj) => seq_set(seq, *kind, next.saturating_sub(1), obj)?,
                        None => return Ok(Some((v, *kind == SeqKind::HashableTuple))),
                    }
                }
                Ok(None)
            }
            Frame::Dict {
                pairs,
                next,
                dict,
                key,
            } => {
                let pairs: &'v [(Value, Value)] = pairs;
                while let Some((k, v)) = pairs.get(*next) {
                    let kobj = match key.take() {
                        Some(kobj) => kobj,
                        None => match scalar(py, k)? {
                            Some(kobj) => kobj,
                            None => return Ok(Some((k, true))),
                        },
                    };
                    match scalar(py, v)? {
                        Some(vobj) => {
                            dict_set(dict, &kobj, &vobj, pairs, *next)?;
                            *next += 1;
                        }
                        None => {
                            *key = Some(kobj);
                            return Ok(Some((v, false)));
                        }
                    }
                }
                Ok(None)
            }
            Frame::Set {
                items, next, set, ..
            } => {
                let items: &'v [Value] = items;
                while let Some(v) = items.get(*next) {
                    *next += 1;
                    match scalar(py, v)? {
                        Some(obj) => set_add(set, &obj, items, *next - 1)?,
                        None => return Ok(Some((v, true))),
                    }
                }
                Ok(None)
            }
        }
    }

    /// The finished container.
    pub(super) fn finish(self, py: Python<'py>) -> Result<Bound<'py, PyAny>, ConvertError> {
        match self {
            Frame::Seq { seq, .. } => Ok(seq),
            Frame::Dict { dict, .. } => Ok(dict),
            Frame::Set { set, frozen, .. } => {
                if !frozen {
                    return Ok(set);
                }
                // SAFETY: under the GIL; `set` is a valid iterable and
                // PyFrozenSet_New returns a new reference or NULL.
                unsafe { owned(py, ffi::PyFrozenSet_New(set.as_ptr()), "a frozenset") }
            }
        }
    }
}

/// Stores `item` at `index` of a list or tuple made by `Frame::seq`.
fn seq_set(
    seq: &Bound<'_, PyAny>,
    kind: SeqKind,
    index: usize,
    item: Bound<'_, PyAny>,
) -> Result<(), ConvertError> {
    // SAFETY: `seq` is the list/tuple `Frame::seq` created with one slot per
    // item, `index` is in range and each index is set once, under the GIL.
    // SetItem steals the reference `into_ptr` hands over, even on failure.
    let rc = unsafe {
        let i = index as ffi::Py_ssize_t;
        match kind {
            SeqKind::List => ffi::PyList_SetItem(seq.as_ptr(), i, item.into_ptr()),
            SeqKind::Tuple | SeqKind::HashableTuple => {
                ffi::PyTuple_SetItem(seq.as_ptr(), i, item.into_ptr())
            }
        }
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(ConvertError::python(
            "cannot fill a list or tuple",
            PyErr::fetch(seq.py()),
        ))
    }
}
