//! Python → [`Value`].
//!
//! Exact built-in types take `ffi` fast paths (a type pointer comparison and
//! one C call for scalars). Subclasses of `int`, `float`, `str`, `bytes`,
//! `list`, `tuple`, `dict`, `set` and `frozenset` convert like their base
//! (an `IntEnum` member becomes an integer, a namedtuple a tuple, an
//! `OrderedDict` a map); `bytearray` becomes bytes; `erlang.Pid`/`erlang.Ref`
//! become pids and references. Everything else is passed by reference as a
//! [`Value::Object`] — nothing is silently stringified or turned into `None`.
//!
//! The walk is iterative (an explicit stack), so it cannot overflow the
//! thread's stack; nesting is limited to [`MAX_DEPTH`] levels, which also
//! stops a list that contains itself.

use std::ptr::addr_of_mut;

use num_bigint::BigInt;
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::sync::critical_section::with_critical_section;
use pyo3::types::{
    PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PyList, PySet, PyString, PyTuple,
};

use super::erlang_types::term_value;
use super::value::REPR_LIMIT;
use super::{ConvertError, PyObject, Value, MAX_DEPTH};

/// Converts a Python object to a [`Value`].
pub fn from_py(obj: &Bound<'_, PyAny>) -> Result<Value, ConvertError> {
    match classify(obj)? {
        Step::Leaf(v) => Ok(v),
        Step::Container(frame) => run(obj.py(), frame),
    }
}

/// Wraps any object as a [`Value::Object`] (by reference, with its type
/// name and a truncated repr), without looking at its type.
pub fn to_object(obj: &Bound<'_, PyAny>) -> PyObject {
    PyObject::new(obj.clone().unbind(), type_name(obj), repr_of(obj))
}

/// `type(obj).__module__ + "." + type(obj).__qualname__`.
pub fn type_name(obj: &Bound<'_, PyAny>) -> String {
    let ty = obj.get_type();
    let qualname = match ty.qualname() {
        Ok(q) => q.to_string_lossy().into_owned(),
        Err(_) => "?".to_owned(),
    };
    match ty.module() {
        Ok(m) => format!("{}.{qualname}", m.to_string_lossy()),
        Err(_) => qualname,
    }
}

/// `repr(obj)` cut to at most [`REPR_LIMIT`] bytes at a char boundary
/// (ending in "..." when cut); `<unrepresentable TYPE object>` if `repr`
/// raises.
pub fn repr_of(obj: &Bound<'_, PyAny>) -> String {
    match obj.repr() {
        Ok(r) => truncate(r.to_string_lossy().into_owned()),
        Err(_) => truncate(format!("<unrepresentable {} object>", type_name(obj))),
    }
}

fn truncate(mut s: String) -> String {
    if s.len() > REPR_LIMIT {
        let mut end = REPR_LIMIT - 3;
        while !s.is_char_boundary(end) {
            end -= 1;
        }
        s.truncate(end);
        s.push_str("...");
    }
    s
}

/// Whether `ptr`'s type is exactly the static type object `ty`.
///
/// # Safety
/// `ptr` must point to a live Python object and the GIL must be held.
#[inline(always)]
unsafe fn is_exact(ptr: *mut ffi::PyObject, ty: *mut ffi::PyTypeObject) -> bool {
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
unsafe fn scalar(py: Python<'_>, ptr: *mut ffi::PyObject) -> Result<Option<Value>, ConvertError> {
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

/// Largest integer the BEAM is sure to represent (its bignums top out a
/// little above 32 million bits); bigger ones are an error, not a surprise.
pub const MAX_INT_BITS: u64 = 32_000_000;

/// # Safety
/// `ptr` must be a live `int` (or subclass) and the GIL held.
unsafe fn int_value(py: Python<'_>, ptr: *mut ffi::PyObject) -> Result<Value, ConvertError> {
    let mut overflow: std::os::raw::c_int = 0;
    // SAFETY: caller's contract; `overflow` is a valid out-pointer.
    let v = unsafe { ffi::PyLong_AsLongLongAndOverflow(ptr, &mut overflow) };
    if overflow != 0 {
        // SAFETY: `ptr` is live; from_borrowed_ptr takes a new strong reference.
        let obj = unsafe { Bound::from_borrowed_ptr(py, ptr) };
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
unsafe fn str_value(py: Python<'_>, ptr: *mut ffi::PyObject) -> Result<Value, ConvertError> {
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
unsafe fn bytes_value(py: Python<'_>, ptr: *mut ffi::PyObject) -> Result<Value, ConvertError> {
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

enum Step<'py> {
    Leaf(Value),
    Container(Frame<'py>),
}

/// Converts a scalar or starts a container frame.
fn classify<'py>(obj: &Bound<'py, PyAny>) -> Result<Step<'py>, ConvertError> {
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
            Some(Frame::list(obj))
        } else if is_exact(ptr, addr_of_mut!(ffi::PyTuple_Type)) {
            Some(Frame::tuple(obj)?)
        } else if is_exact(ptr, addr_of_mut!(ffi::PyDict_Type)) {
            Some(Frame::dict(obj))
        } else if is_exact(ptr, addr_of_mut!(ffi::PySet_Type))
            || is_exact(ptr, addr_of_mut!(ffi::PyFrozenSet_Type))
        {
            Some(Frame::set(obj)?)
        } else {
            None
        }
    };
    if let Some(frame) = exact {
        return Ok(Step::Container(frame));
    }
    slow(obj)
}

fn slow<'py>(obj: &Bound<'py, PyAny>) -> Result<Step<'py>, ConvertError> {
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
        return Ok(Step::Container(Frame::list(obj)));
    }
    if obj.is_instance_of::<PyTuple>() {
        return Ok(Step::Container(Frame::tuple(obj)?));
    }
    if obj.is_instance_of::<PyDict>() {
        return Ok(Step::Container(Frame::dict(obj)));
    }
    if obj.is_instance_of::<PySet>() || obj.is_instance_of::<PyFrozenSet>() {
        return Ok(Step::Container(Frame::set(obj)?));
    }
    Ok(Step::Leaf(Value::Object(to_object(obj))))
}

/// A container being converted.
enum Frame<'py> {
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

/// The most items a BEAM tuple can hold.
pub const MAX_TUPLE_LEN: usize = (1 << 24) - 1;

fn capacity(len: ffi::Py_ssize_t) -> usize {
    usize::try_from(len).unwrap_or(0)
}

impl<'py> Frame<'py> {
    /// `obj` must be a list or list subclass.
    fn list(obj: &Bound<'py, PyAny>) -> Self {
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
    fn tuple(obj: &Bound<'py, PyAny>) -> Result<Self, ConvertError> {
        // SAFETY: `obj` is a live tuple (caller checked) and the GIL is held.
        let len = unsafe { ffi::PyTuple_Size(obj.as_ptr()) };
        if capacity(len) > MAX_TUPLE_LEN {
            return Err(ConvertError(format!(
                "cannot convert a tuple of {len} items: BEAM tuples hold at most {MAX_TUPLE_LEN}"
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
    fn dict(obj: &Bound<'py, PyAny>) -> Self {
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
    fn set(obj: &Bound<'py, PyAny>) -> Result<Self, ConvertError> {
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
    fn accept(&mut self, v: Value) {
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
    fn next_child(&mut self, py: Python<'py>) -> Result<Option<Bound<'py, PyAny>>, ConvertError> {
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

    fn finish(self) -> Result<Value, ConvertError> {
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
    fn dispose(self) {
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

fn depth_error(stack: &[Frame<'_>], child: &Bound<'_, PyAny>) -> ConvertError {
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

/// Converts the container of `root` with an explicit stack.
fn run<'py>(py: Python<'py>, root: Frame<'py>) -> Result<Value, ConvertError> {
    let mut stack: Vec<Frame<'py>> = Vec::with_capacity(8);
    stack.push(root);
    let result = walk(py, &mut stack);
    for frame in stack.drain(..).rev() {
        frame.dispose();
    }
    result
}

fn walk<'py>(py: Python<'py>, stack: &mut Vec<Frame<'py>>) -> Result<Value, ConvertError> {
    let mut done: Option<Value> = None;
    loop {
        let Some(top) = stack.last_mut() else {
            return done.ok_or_else(|| ConvertError("internal: empty conversion".into()));
        };
        if let Some(v) = done.take() {
            top.accept(v);
        }
        match top.next_child(py)? {
            Some(child) => match classify(&child)? {
                Step::Leaf(v) => done = Some(v),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::convert::to_py::to_py;
    use pyo3::types::PyAnyMethods;

    fn with_py<R>(f: impl FnOnce(Python<'_>) -> R) -> R {
        Python::initialize();
        Python::attach(f)
    }

    fn eval<'py>(py: Python<'py>, code: &str) -> Bound<'py, PyAny> {
        let code = std::ffi::CString::new(code).expect("cstr");
        py.eval(&code, None, None).expect("eval")
    }

    fn conv(py: Python<'_>, code: &str) -> Value {
        from_py(&eval(py, code)).expect(code)
    }

    /// Python → Value → Python gives an equal object of the same type.
    fn round_trip(py: Python<'_>, code: &str) {
        let obj = eval(py, code);
        let v = from_py(&obj).expect(code);
        let back = to_py(py, &v).expect("to_py");
        assert!(
            back.get_type().is(obj.get_type()),
            "{code}: type {} became {}",
            obj.get_type(),
            back.get_type()
        );
        assert!(back.eq(&obj).expect("eq"), "{code}: {back:?} != {obj:?}");
    }

    #[test]
    fn values_stay_small() {
        // Long lists hold one Value per item: keep it at 4 words.
        assert!(std::mem::size_of::<Value>() <= 32);
    }

    #[test]
    fn scalars() {
        with_py(|py| {
            assert!(matches!(conv(py, "None"), Value::None));
            assert!(matches!(conv(py, "True"), Value::Bool(true)));
            assert!(matches!(conv(py, "False"), Value::Bool(false)));
            assert!(matches!(conv(py, "-1"), Value::Int(-1)));
            assert!(matches!(conv(py, "2**63-1"), Value::Int(i64::MAX)));
            assert!(matches!(conv(py, "-2**63"), Value::Int(i64::MIN)));
            assert!(matches!(conv(py, "1.25"), Value::Float(f) if f == 1.25));
            assert!(matches!(conv(py, "float('nan')"), Value::Float(f) if f.is_nan()));
            assert!(matches!(conv(py, "float('inf')"), Value::Float(f) if f == f64::INFINITY));
            assert!(matches!(conv(py, "float('-inf')"), Value::Float(f) if f == f64::NEG_INFINITY));
            assert!(matches!(conv(py, "'héllo ✓'"), Value::Str(s) if s == "héllo ✓"));
            assert!(matches!(conv(py, "b'\\x00\\xff'"), Value::Bytes(b) if b == [0, 255]));
            assert!(matches!(conv(py, "bytearray(b'\\x01\\x02')"), Value::Bytes(b) if b == [1, 2]));
            for code in [
                "None",
                "True",
                "False",
                "0",
                "-12345",
                "2**63-1",
                "-2**63",
                "1.5",
                "float('inf')",
                "float('-inf')",
                "''",
                "'ünïcode ✓ 𝄞'",
                "b''",
                "b'\\x00\\xff'",
            ] {
                round_trip(py, code);
            }
            // nan != nan, so check it by hand.
            let back = to_py(py, &conv(py, "float('nan')")).expect("to_py");
            assert!(back.ne(&back).expect("ne"));
        });
    }

    #[test]
    fn bytearray_becomes_bytes() {
        with_py(|py| {
            let v = conv(py, "bytearray(b'abc')");
            let back = to_py(py, &v).expect("to_py");
            assert!(back.is_exact_instance_of::<PyBytes>());
            assert_eq!(back.extract::<Vec<u8>>().expect("bytes"), b"abc");
        });
    }

    #[test]
    fn big_ints() {
        with_py(|py| {
            match conv(py, "2**63") {
                Value::BigInt(b) => assert_eq!(b, BigInt::from(i64::MAX) + 1),
                v => panic!("{v:?}"),
            }
            match conv(py, "-2**63-1") {
                Value::BigInt(b) => assert_eq!(b, BigInt::from(i64::MIN) - 1),
                v => panic!("{v:?}"),
            }
            for code in [
                "2**63",
                "-2**63-1",
                "3**500",
                "-(7**1000)",
                "[2**100, -2**100]",
            ] {
                round_trip(py, code);
            }
        });
    }

    #[test]
    fn containers() {
        with_py(|py| {
            for code in [
                "[]",
                "()",
                "{}",
                "set()",
                "[1, 'a', None, 2.5, b'x', [True, (1, 2)]]",
                "(1, [2, (3, {4: 5})])",
                "{'a': 1, (1, 2): [3], 4: {'x': {1, 2}}, None: (), b'k': 1.5}",
                "{1, 'a', (1, 2), frozenset({1})}",
                "{(1, (2, 3)): {(4,): [5]}}",
                "[[[[[]]]]]",
            ] {
                round_trip(py, code);
            }
            match conv(py, "{'b': 1, 'a': 2}") {
                Value::Map(pairs) => {
                    assert!(matches!(&pairs[0], (Value::Str(k), Value::Int(1)) if k == "b"));
                    assert!(matches!(&pairs[1], (Value::Str(k), Value::Int(2)) if k == "a"));
                }
                v => panic!("{v:?}"),
            }
        });
    }

    #[test]
    fn sets_and_frozensets() {
        with_py(|py| {
            match conv(py, "{1, 2, 3}") {
                Value::Set(items) => assert_eq!(items.len(), 3),
                v => panic!("{v:?}"),
            }
            match conv(py, "frozenset({'a', (1, 2)})") {
                Value::Set(items) => assert_eq!(items.len(), 2),
                v => panic!("{v:?}"),
            }
            let back = to_py(py, &conv(py, "frozenset({1, 2})")).expect("to_py");
            assert!(back.is_exact_instance_of::<PySet>());
        });
    }

    #[test]
    fn subclasses_convert_like_their_base() {
        with_py(|py| {
            let code = c"\
import enum, collections
class Color(enum.IntEnum):
    RED = 1
class Name(str): pass
class Plain(enum.Enum):
    A = 1
class MyList(list): pass
Point = collections.namedtuple('Point', 'x y')
class F(float): pass
class B(bytes): pass
values = {
    'intenum': Color.RED,
    'str': Name('bob'),
    'plain': Plain.A,
    'list': MyList([1, 2]),
    'point': Point(1, 2),
    'ordered': collections.OrderedDict([('a', 1)]),
    'default': collections.defaultdict(list, {'k': [1]}),
    'float': F(2.5),
    'bytes': B(b'x'),
    'counter': collections.Counter('aab'),
}
";
            let globals = PyDict::new(py);
            py.run(code, Some(&globals), None).expect("setup");
            let values = globals.get_item("values").expect("get").expect("values");
            let get = |k: &str| from_py(&values.get_item(k).expect("item")).expect(k);
            assert!(matches!(get("intenum"), Value::Int(1)));
            assert!(matches!(get("str"), Value::Str(s) if s == "bob"));
            assert!(
                matches!(get("plain"), Value::Object(o) if o.type_name.ends_with(".Plain") && o.repr == "<Plain.A: 1>")
            );
            assert!(matches!(get("list"), Value::List(l) if l.len() == 2));
            assert!(matches!(get("point"), Value::Tuple(t) if t.len() == 2));
            assert!(matches!(get("ordered"), Value::Map(m) if m.len() == 1));
            assert!(matches!(get("default"), Value::Map(m) if m.len() == 1));
            assert!(matches!(get("float"), Value::Float(f) if f == 2.5));
            assert!(matches!(get("bytes"), Value::Bytes(b) if b == b"x"));
            assert!(matches!(get("counter"), Value::Map(m) if m.len() == 2));
        });
    }

    #[test]
    fn objects() {
        with_py(|py| {
            let dt = eval(py, "__import__('datetime').datetime(2024, 1, 2, 3, 4, 5)");
            match from_py(&dt).expect("datetime") {
                Value::Object(o) => {
                    assert_eq!(o.type_name, "datetime.datetime");
                    assert_eq!(o.repr, "datetime.datetime(2024, 1, 2, 3, 4, 5)");
                    assert!(o.bind(py).expect("bind").is(&dt));
                    let back = to_py(py, &Value::Object(o)).expect("to_py");
                    assert!(back.is(&dt));
                }
                v => panic!("{v:?}"),
            }
            match conv(py, "object()") {
                Value::Object(o) => {
                    assert_eq!(o.type_name, "builtins.object");
                    assert!(o.repr.starts_with("<object object at "));
                }
                v => panic!("{v:?}"),
            }
            // Objects nested in containers, and as dict keys.
            match conv(py, "{__import__('datetime').date(2020, 1, 1): [1j]}") {
                Value::Map(pairs) => {
                    assert!(
                        matches!(&pairs[0].0, Value::Object(o) if o.type_name == "datetime.date")
                    );
                    assert!(matches!(&pairs[0].1, Value::List(l)
                        if matches!(&l[0], Value::Object(o) if o.type_name == "builtins.complex" && o.repr == "1j")));
                }
                v => panic!("{v:?}"),
            }
            round_trip(
                py,
                "{__import__('datetime').date(2020, 1, 1): [1j, range(3)]}",
            );
        });
    }

    #[test]
    fn repr_is_truncated_and_failures_are_named() {
        with_py(|py| {
            let globals = PyDict::new(py);
            py.run(
                c"\
class Long:
    def __repr__(self): return 'é' * 500
class Bad:
    def __repr__(self): raise ValueError('no')
",
                Some(&globals),
                None,
            )
            .expect("setup");
            let long = eval_in(py, "Long()", &globals);
            match from_py(&long).expect("long") {
                Value::Object(o) => {
                    assert!(o.repr.len() <= REPR_LIMIT, "{}", o.repr.len());
                    assert!(o.repr.ends_with("..."));
                    assert!(o.repr.starts_with("éé"));
                }
                v => panic!("{v:?}"),
            }
            let bad = eval_in(py, "Bad()", &globals);
            match from_py(&bad).expect("bad") {
                Value::Object(o) => {
                    assert_eq!(o.repr, "<unrepresentable builtins.Bad object>");
                    assert_eq!(o.type_name, "builtins.Bad");
                }
                v => panic!("{v:?}"),
            }
            assert!(PyErr::take(py).is_none(), "no exception left set");
        });
    }

    fn eval_in<'py>(
        py: Python<'py>,
        code: &str,
        globals: &Bound<'py, PyDict>,
    ) -> Bound<'py, PyAny> {
        let code = std::ffi::CString::new(code).expect("cstr");
        py.eval(&code, Some(globals), None).expect("eval")
    }

    #[test]
    fn lone_surrogate_is_an_error() {
        with_py(|py| {
            let err = from_py(&eval(py, "['ok', '\\ud800']")).expect_err("surrogate");
            assert!(err.0.contains("not valid Unicode"), "{err}");
            assert!(PyErr::take(py).is_none());
        });
    }

    #[test]
    fn self_containing_values_are_errors() {
        with_py(|py| {
            let globals = PyDict::new(py);
            py.run(
                c"\
a = [1]
a.append(a)
d = {}
d['me'] = [d]
",
                Some(&globals),
                None,
            )
            .expect("setup");
            let err = from_py(&eval_in(py, "a", &globals)).expect_err("cycle");
            assert_eq!(
                err.0,
                "cannot convert a list that contains itself (a reference cycle)"
            );
            let err = from_py(&eval_in(py, "d", &globals)).expect_err("cycle");
            assert!(err.0.contains("contains itself"), "{err}");
            // A shared (non-cyclic) object is fine.
            let v = from_py(&eval_in(
                py,
                "[a[:1], a[:1], (lambda x: [x, x])([1])]",
                &globals,
            ))
            .expect("shared");
            assert!(matches!(v, Value::List(l) if l.len() == 3));
        });
    }

    #[test]
    fn deep_nesting_gives_a_clear_error() {
        with_py(|py| {
            let globals = PyDict::new(py);
            py.run(
                c"\
ok = []
cur = ok
for _ in range(9999):
    nxt = []
    cur.append(nxt)
    cur = nxt
deep = [ok]
deep_tuple = ()
for _ in range(20000):
    deep_tuple = (deep_tuple,)
",
                Some(&globals),
                None,
            )
            .expect("setup");
            let v = from_py(&eval_in(py, "ok", &globals)).expect("10,000 levels are fine");
            v.dispose();
            let err = from_py(&eval_in(py, "deep", &globals)).expect_err("10,001 levels");
            assert_eq!(err.0, "value nests deeper than 10000 levels");
            let err = from_py(&eval_in(py, "deep_tuple", &globals)).expect_err("20,000 levels");
            assert_eq!(err.0, "value nests deeper than 10000 levels");
        });
    }

    #[test]
    fn containers_resized_by_a_repr_are_errors() {
        with_py(|py| {
            let globals = PyDict::new(py);
            py.run(
                c"\
class Grow:
    def __init__(self, target): self.target = target
    def __repr__(self):
        self.target.append(Grow(self.target)) if isinstance(self.target, list) \
            else self.target.setdefault(len(self.target), 0)
        return 'Grow'
l = []
l.append(Grow(l))
d = {}
d['a'] = Grow(d)
",
                Some(&globals),
                None,
            )
            .expect("setup");
            let err = from_py(&eval_in(py, "l", &globals)).expect_err("list grew");
            assert_eq!(err.0, "list changed size during conversion");
            let err = from_py(&eval_in(py, "d", &globals)).expect_err("dict grew");
            assert_eq!(err.0, "dict changed size during conversion");
        });
    }

    #[test]
    fn dict_values_that_need_frames() {
        with_py(|py| {
            // Keys and values of every shape, including objects whose repr
            // runs Python code.
            round_trip(
                py,
                "{(1,): (2,), 'a': [1], frozenset({1}): {2: 3}, 1.5: None, \
                 __import__('decimal').Decimal('1.5'): __import__('fractions').Fraction(1, 3)}",
            );
        });
    }

    #[test]
    fn str_and_bytes_keys_that_merge_on_the_beam_are_errors() {
        Python::initialize();
        Python::attach(|py| {
            let d = py.eval(c"{'a': 1, b'a': 2}", None, None).unwrap();
            let err = from_py(&d).unwrap_err();
            assert!(err.0.contains("both a str and a bytes key"), "{err}");
            let s = py.eval(c"{'a', b'a'}", None, None).unwrap();
            assert!(from_py(&s).is_err());
            // Different contents are fine.
            let ok = py.eval(c"{'a': 1, b'b': 2}", None, None).unwrap();
            assert!(matches!(from_py(&ok), Ok(Value::Map(pairs)) if pairs.len() == 2));
        });
    }

    #[test]
    fn ints_too_big_for_the_beam_are_errors() {
        Python::initialize();
        Python::attach(|py| {
            let big = py.eval(c"1 << 33_000_000", None, None).unwrap();
            let err = from_py(&big).unwrap_err();
            assert!(err.0.contains("at most 32000000 bits"), "{err}");
            let fine = py.eval(c"1 << 1_000_000", None, None).unwrap();
            assert!(matches!(from_py(&fine), Ok(Value::BigInt(_))));
        });
    }
}
