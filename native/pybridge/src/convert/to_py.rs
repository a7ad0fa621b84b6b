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

use std::os::raw::c_char;

use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyTuple};

use super::erlang_types::{new_beam_id, BeamId};
use super::keys::{beam_text, canonical, Target};
use super::{ConvertError, Value};
use crate::limits::MAX_DEPTH;

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

/// Takes ownership of a new reference returned by a C API call, or turns a
/// NULL return into an error.
///
/// # Safety
/// `ptr` must be NULL or a new (owned) reference, and the call that
/// returned it must have been made with the GIL held (`py`).
unsafe fn owned<'py>(
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
fn scalar<'py>(py: Python<'py>, v: &Value) -> Result<Option<Bound<'py, PyAny>>, ConvertError> {
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

/// The frame that builds a container value; `hashable` when it will be a
/// set member or dict key.
fn container<'v, 'py>(
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
enum SeqKind {
    List,
    Tuple,
    /// A tuple that is (part of) a set member or dict key: its sets become
    /// frozensets.
    HashableTuple,
}

/// A container being built.
enum Frame<'v, 'py> {
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
    fn seq(py: Python<'py>, items: &'v [Value], kind: SeqKind) -> Result<Self, ConvertError> {
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

    fn dict(py: Python<'py>, pairs: &'v [(Value, Value)]) -> Result<Self, ConvertError> {
        // SAFETY: under the GIL; PyDict_New returns a new reference or NULL.
        let dict = unsafe { owned(py, ffi::PyDict_New(), "a dict")? };
        Ok(Frame::Dict {
            pairs,
            next: 0,
            dict,
            key: None,
        })
    }

    fn set(py: Python<'py>, items: &'v [Value], frozen: bool) -> Result<Self, ConvertError> {
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
    fn accept(&mut self, obj: Bound<'py, PyAny>) -> Result<(), ConvertError> {
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
    fn next_child(&mut self, py: Python<'py>) -> Result<Option<(&'v Value, bool)>, ConvertError> {
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
    fn finish(self, py: Python<'py>) -> Result<Bound<'py, PyAny>, ConvertError> {
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

/// Sets `pairs[index]`, converted to `k` and `v`, in `dict`.
fn dict_set(
    dict: &Bound<'_, PyAny>,
    k: &Bound<'_, PyAny>,
    v: &Bound<'_, PyAny>,
    pairs: &[(Value, Value)],
    index: usize,
) -> Result<(), ConvertError> {
    // SAFETY: all three are valid objects (Bound) and the GIL is held;
    // PyDict_SetItem does not steal references. `dict` is a dict we created.
    let rc = unsafe { ffi::PyDict_SetItem(dict.as_ptr(), k.as_ptr(), v.as_ptr()) };
    if rc != 0 {
        let err = PyErr::fetch(dict.py());
        let kind = pairs.get(index).map_or("a key", |p| p.0.kind());
        return Err(ConvertError(format!(
            "cannot use {kind} as a Python dict key: {err}"
        )));
    }
    // SAFETY: `dict` is a live dict.
    if usize::try_from(unsafe { ffi::PyDict_Size(dict.as_ptr()) }) != Ok(index + 1) {
        let keys: Vec<&Value> = pairs.iter().map(|(k, _)| k).collect();
        return Err(collision("map", "keys", &keys, index));
    }
    Ok(())
}

/// Adds `items[index]`, converted to `item`, to `set`.
fn set_add(
    set: &Bound<'_, PyAny>,
    item: &Bound<'_, PyAny>,
    items: &[Value],
    index: usize,
) -> Result<(), ConvertError> {
    // SAFETY: both are valid objects and the GIL is held; PySet_Add does not
    // steal the reference. `set` is a set we created.
    let rc = unsafe { ffi::PySet_Add(set.as_ptr(), item.as_ptr()) };
    if rc != 0 {
        let err = PyErr::fetch(set.py());
        let kind = items.get(index).map_or("an item", Value::kind);
        return Err(ConvertError(format!(
            "cannot put {kind} in a Python set: {err}"
        )));
    }
    // SAFETY: `set` is a live set.
    if usize::try_from(unsafe { ffi::PySet_Size(set.as_ptr()) }) != Ok(index + 1) {
        let members: Vec<&Value> = items.iter().collect();
        return Err(collision("MapSet", "members", &members, index));
    }
    Ok(())
}

/// Key `index` of a map (or member of a `MapSet`) is equal in Python to an
/// earlier one, so the dict (or set) would silently keep only one: an
/// error naming both, as far as they can be told apart.
fn collision(what: &str, keys_word: &str, keys: &[&Value], index: usize) -> ConvertError {
    let key = keys.get(index).copied();
    let canon = key.and_then(|k| canonical(k, Target::Python));
    let earlier = canon.and_then(|c| {
        keys.iter()
            .take(index)
            .position(|k| canonical(k, Target::Python).as_ref() == Some(&c))
    });
    let text = |k: Option<&Value>| k.map_or_else(|| "?".to_owned(), beam_text);
    let named = match earlier {
        Some(first) => format!("{} and {}", text(keys.get(first).copied()), text(key)),
        None => format!("{} and an earlier one", text(key)),
    };
    ConvertError(format!(
        "cannot convert a {what} whose {keys_word} {named} are equal in Python, \
         and a {} holds each only once",
        if what == "map" { "dict" } else { "set" }
    ))
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
mod tests {
    use super::*;
    use crate::convert::from_py::from_py;
    use num_bigint::BigInt;
    use pyo3::types::PyAnyMethods;

    fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    fn check<'py>(py: Python<'py>, v: &Value, expect: &str) -> Bound<'py, PyAny> {
        let obj = to_py(py, v).expect("to_py");
        let locals = PyDict::new(py);
        locals.set_item("x", &obj).expect("set");
        let ok = py
            .eval(
                &std::ffi::CString::new(expect).expect("cstr"),
                None,
                Some(&locals),
            )
            .expect("eval");
        assert!(
            ok.is_truthy().expect("truthy"),
            "{expect} failed for {obj:?}"
        );
        obj
    }

    #[test]
    fn scalars() {
        with_py(|py| {
            check(py, &Value::None, "x is None");
            check(py, &Value::Bool(true), "x is True");
            check(py, &Value::Bool(false), "x is False");
            check(py, &Value::Int(-42), "type(x) is int and x == -42");
            check(py, &Value::Int(i64::MIN), "x == -2**63");
            check(py, &Value::Float(1.5), "type(x) is float and x == 1.5");
            check(py, &Value::Float(f64::NAN), "x != x");
            check(py, &Value::Float(f64::INFINITY), "x == float('inf')");
            check(py, &Value::Float(f64::NEG_INFINITY), "x == float('-inf')");
            check(py, &Value::Str("héllo ✓".into()), "x == 'héllo ✓'");
            check(py, &Value::Str(String::new()), "x == ''");
            check(
                py,
                &Value::Bytes(vec![0, 255, 1]),
                "x == b'\\x00\\xff\\x01'",
            );
            check(py, &Value::Bytes(vec![]), "type(x) is bytes and x == b''");
        });
    }

    #[test]
    fn big_ints() {
        with_py(|py| {
            let big: BigInt = "123456789012345678901234567890123456789"
                .parse()
                .expect("big");
            check(
                py,
                &Value::BigInt(big.clone()),
                "x == 123456789012345678901234567890123456789",
            );
            check(
                py,
                &Value::BigInt(-big),
                "x == -123456789012345678901234567890123456789",
            );
            check(py, &Value::BigInt(BigInt::from(i64::MAX) + 1), "x == 2**63");
        });
    }

    #[test]
    fn containers() {
        with_py(|py| {
            check(
                py,
                &Value::List(vec![Value::Int(1), Value::Str("a".into()), Value::None]),
                "x == [1, 'a', None]",
            );
            check(py, &Value::List(vec![]), "x == []");
            check(py, &Value::Tuple(vec![]), "x == ()");
            check(
                py,
                &Value::Tuple(vec![
                    Value::Int(1),
                    Value::List(vec![Value::Tuple(vec![Value::Bool(true)])]),
                ]),
                "x == (1, [(True,)])",
            );
            check(
                py,
                &Value::Map(vec![
                    (Value::Str("a".into()), Value::Int(1)),
                    (
                        Value::Tuple(vec![Value::Int(1), Value::Int(2)]),
                        Value::List(vec![Value::Map(vec![])]),
                    ),
                    (
                        Value::Int(3),
                        Value::Set(vec![Value::Int(1), Value::Int(2)]),
                    ),
                ]),
                "x == {'a': 1, (1, 2): [{}], 3: {1, 2}} and list(x) == ['a', (1, 2), 3]",
            );
            check(
                py,
                &Value::Set(vec![
                    Value::Str("a".into()),
                    Value::Tuple(vec![Value::Int(1)]),
                ]),
                "type(x) is set and x == {'a', (1,)}",
            );
            let d = map_to_dict(
                py,
                &[(Value::Str("k".into()), Value::List(vec![Value::Int(1)]))],
            )
            .expect("map_to_dict");
            assert_eq!(d.len(), 1);
            let t = to_py_tuple(py, &[Value::Int(1), Value::List(vec![])]).expect("tuple");
            assert_eq!(t.len(), 2);
        });
    }

    #[test]
    fn pid_ref_object() {
        with_py(|py| {
            let pid = check(
                py,
                &Value::Pid(vec![131, 1, 2]),
                "__import__('erlang').Pid is type(x)",
            );
            let r = check(
                py,
                &Value::Ref(vec![131, 3]),
                "__import__('erlang').Ref is type(x)",
            );
            match from_py(&pid).expect("pid back") {
                Value::Pid(b) => assert_eq!(b, vec![131, 1, 2]),
                v => panic!("{v:?}"),
            }
            match from_py(&r).expect("ref back") {
                Value::Ref(b) => assert_eq!(b, vec![131, 3]),
                v => panic!("{v:?}"),
            }
            let obj = py.eval(c"object()", None, None).expect("object");
            let v = from_py(&obj).expect("from_py");
            let back = to_py(py, &v).expect("to_py");
            assert!(back.is(&obj), "an Object converts back to the same object");
        });
    }

    #[test]
    fn sets_in_hashable_places_become_frozensets() {
        with_py(|py| {
            let inner = Value::Set(vec![Value::Int(1)]);
            check(
                py,
                &Value::Set(vec![inner.clone(), Value::Tuple(vec![inner.clone()])]),
                "type(x) is set and x == {frozenset({1}), (frozenset({1}),)}",
            );
            check(
                py,
                &Value::Map(vec![(inner.clone(), Value::List(vec![inner.clone()]))]),
                "x == {frozenset({1}): [{1}]} and type(x[frozenset({1})][0]) is set",
            );
            check(
                py,
                &Value::List(vec![Value::Tuple(vec![inner])]),
                "type(x[0][0]) is set",
            );
        });
    }

    #[test]
    fn unhashable_key_is_an_error() {
        with_py(|py| {
            let v = Value::Map(vec![(Value::List(vec![Value::Int(1)]), Value::Int(2))]);
            let err = to_py(py, &v).expect_err("unhashable");
            assert!(
                err.0.contains("a list") && err.0.contains("unhashable"),
                "{err}"
            );
            let v = Value::Map(vec![(Value::Map(vec![]), Value::Int(2))]);
            let err = to_py(py, &v).expect_err("unhashable");
            assert!(err.0.contains("a map"), "{err}");
            let v = Value::Set(vec![Value::Map(vec![])]);
            let err = to_py(py, &v).expect_err("unhashable");
            assert!(
                err.0.contains("a map") && err.0.contains("Python set"),
                "{err}"
            );
            // Nested containers that are ready before the key fails: no leak/crash.
            let v = Value::Map(vec![(
                Value::Tuple(vec![Value::Int(1), Value::List(vec![])]),
                Value::Int(2),
            )]);
            let err = to_py(py, &v).expect_err("unhashable tuple");
            assert!(err.0.contains("a tuple"), "{err}");
        });
    }

    #[test]
    fn keys_equal_in_python_are_errors() {
        with_py(|py| {
            // 1, 1.0 and true; "a" and :a (both Str by now); MapSet members.
            let v = Value::Map(vec![
                (Value::Int(1), Value::Str("int".into())),
                (Value::Float(1.0), Value::Str("float".into())),
            ]);
            let err = to_py(py, &v).expect_err("1 and 1.0");
            assert_eq!(
                err.0,
                "cannot convert a map whose keys 1 and 1.0 are equal in Python, \
                 and a dict holds each only once"
            );
            let v = Value::List(vec![Value::Map(vec![
                (Value::Bool(true), Value::None),
                (Value::Str("a".into()), Value::None),
                (Value::Int(1), Value::None),
            ])]);
            let err = to_py(py, &v).expect_err("true and 1");
            assert!(err.0.contains("keys true and 1 are equal"), "{err}");
            let v = Value::Set(vec![Value::Str("a".into()), Value::Str("a".into())]);
            let err = to_py(py, &v).expect_err("set");
            assert!(
                err.0.contains("MapSet whose members \"a\" and \"a\""),
                "{err}"
            );
            // NaNs stay apart in Python; so do str and bytes.
            let v = Value::Map(vec![
                (Value::Float(f64::NAN), Value::None),
                (Value::Float(f64::NAN), Value::None),
                (Value::Str("a".into()), Value::None),
                (Value::Bytes(b"a".to_vec()), Value::None),
            ]);
            assert_eq!(to_py(py, &v).expect("distinct").len().expect("len"), 4);
        });
    }

    fn nested(depth: usize) -> Value {
        let mut v = Value::Int(7);
        for i in 0..depth {
            v = if i % 2 == 0 {
                Value::List(vec![v])
            } else {
                Value::Map(vec![(Value::Int(0), v)])
            };
        }
        v
    }

    fn drop_deep(v: Value) {
        // Value's own Drop is recursive; drop it on a big stack.
        std::thread::Builder::new()
            .stack_size(64 << 20)
            .spawn(move || drop(v))
            .expect("spawn")
            .join()
            .expect("join");
    }

    #[test]
    fn deep_nesting() {
        with_py(|py| {
            let v = nested(MAX_DEPTH);
            let obj = to_py(py, &v).expect("MAX_DEPTH levels convert");
            drop_deep(v);
            let back = from_py(&obj).expect("and come back");
            drop_deep(back);
            let v = nested(MAX_DEPTH + 1);
            let err = to_py(py, &v).expect_err("too deep");
            assert_eq!(err.0, "value nests deeper than 10000 levels");
            drop_deep(v);
        });
    }

    #[test]
    fn big_list_round_trip_is_fast() {
        with_py(|py| {
            let v = Value::List((0..1_000_000).map(Value::Int).collect());
            let t = std::time::Instant::now();
            let obj = to_py(py, &v).expect("to_py");
            let t1 = t.elapsed();
            let back = from_py(&obj).expect("from_py");
            let t2 = t.elapsed();
            eprintln!("1M ints: to_py {t1:?}, total {t2:?}");
            match back {
                Value::List(items) => {
                    assert_eq!(items.len(), 1_000_000);
                    assert!(matches!(items[999_999], Value::Int(999_999)));
                }
                v => panic!("{}", v.kind()),
            }
        });
    }
}
