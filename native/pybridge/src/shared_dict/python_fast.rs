//! The hot methods of a Python `SharedDict`, `get` and `set`, as native
//! callables bound to one dict (`_shared_dict_native.bind(id)`), which
//! `SharedDict.__init__` puts in the instance's `get` and `set` slots.
//!
//! `sd.get(k)` then costs a slot read and one vectorcall straight into
//! Rust: no Python frame, no `(kind, payload)` tuple, no lookup of the dict
//! by id, no keyword dict (`ttl=` arrives as a keyword name beside the
//! positional arguments, `METH_FASTCALL | METH_KEYWORDS`). The callable's
//! `self` is a capsule holding the dict. Rare outcomes go back to Python:
//! a value that is not plain data is pickled, and a full dict raised, by
//! `erlang._shared_dict._set_other`; a pickled value read is unpickled with
//! the interpreter's `pickle.loads`, kept in its state (each
//! sub-interpreter has its own).
//!
//! A dict that waits on a disk or network (SQLite, Redis) is used without
//! the GIL, as the module functions do.

use std::ffi::{c_void, CStr};
use std::ptr::null_mut;
use std::sync::Arc;

use pyo3::exceptions::{PyOverflowError, PySystemError, PyTypeError, PyValueError};
use pyo3::ffi;
use pyo3::prelude::*;
use pyo3::types::{PyFloat, PyInt, PyString, PyTuple};

use super::python::{err, in_interp, key_str, status_of, NOT_PLAIN, OK};
use super::{Condition, SharedDict, Stored};
use crate::convert::from_py::from_py;
use crate::convert::to_py::to_py;
use crate::runtime::Interp;

const CAPSULE: &CStr = c"pybridge.shared_dict";

/// A `PyMethodDef` in a static: CPython only reads it.
struct MethodDef(ffi::PyMethodDef);

// SAFETY: the definition is never written after it is built; CPython reads
// it (name, flags, function, doc) from any thread holding the GIL.
unsafe impl Sync for MethodDef {}

static GET: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"get".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: get_entry,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"get(key, default=None)\n--\n\nThe value of ``key``, or ``default`` when it is missing or expired."
        .as_ptr(),
});

static SET: MethodDef = MethodDef(ffi::PyMethodDef {
    ml_name: c"set".as_ptr(),
    ml_meth: ffi::PyMethodDefPointer {
        PyCFunctionFastWithKeywords: set_entry,
    },
    ml_flags: ffi::METH_FASTCALL | ffi::METH_KEYWORDS,
    ml_doc: c"set(key, value, ttl=None)\n--\n\nStores ``value``; ``ttl`` in seconds makes the key expire."
        .as_ptr(),
});

unsafe extern "C" fn drop_capsule(capsule: *mut ffi::PyObject) {
    // SAFETY: the capsule was made by `bind` with a pointer from
    // `Box::into_raw`, released exactly once, here.
    unsafe {
        let ptr = ffi::PyCapsule_GetPointer(capsule, CAPSULE.as_ptr());
        if !ptr.is_null() {
            drop(Box::from_raw(ptr as *mut Arc<SharedDict>));
        } else {
            ffi::PyErr_Clear();
        }
    }
}

/// `(get, set)` bound to `dict`.
pub(super) fn bind<'py>(
    py: Python<'py>,
    dict: Arc<SharedDict>,
) -> PyResult<(Bound<'py, PyAny>, Bound<'py, PyAny>)> {
    let raw = Box::into_raw(Box::new(dict)) as *mut c_void;
    // SAFETY: the GIL is held (`py`); on failure the pointer is taken back.
    let capsule = unsafe { ffi::PyCapsule_New(raw, CAPSULE.as_ptr(), Some(drop_capsule)) };
    if capsule.is_null() {
        // SAFETY: `raw` came from `Box::into_raw` and no capsule owns it.
        drop(unsafe { Box::from_raw(raw as *mut Arc<SharedDict>) });
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `capsule` is a new reference we own.
    let capsule = unsafe { Bound::from_owned_ptr(py, capsule) };
    let function = |def: &'static MethodDef| -> PyResult<Bound<'py, PyAny>> {
        // SAFETY: the GIL is held; `def` is static and never written (the
        // cast to `*mut` is the C API's signature only); the function keeps
        // its own reference to the capsule.
        unsafe {
            let f = ffi::PyCFunction_NewEx(
                &def.0 as *const ffi::PyMethodDef as *mut ffi::PyMethodDef,
                capsule.as_ptr(),
                null_mut(),
            );
            Bound::from_owned_ptr_or_err(py, f)
        }
    };
    Ok((function(&GET)?, function(&SET)?))
}

/// The dict a bound function's `self` (its capsule) holds.
///
/// # Safety
/// `capsule` is the `self` CPython passes to a function made by [`bind`],
/// and the GIL is held.
unsafe fn dict_of<'a>(capsule: *mut ffi::PyObject) -> PyResult<&'a Arc<SharedDict>> {
    // SAFETY: per the contract; the pointer, when not null, came from
    // `Box::into_raw` and the capsule (alive during the call) owns it.
    unsafe {
        let ptr = ffi::PyCapsule_GetPointer(capsule, CAPSULE.as_ptr()) as *const Arc<SharedDict>;
        if ptr.is_null() {
            let py = Python::assume_attached();
            return Err(PyErr::take(py)
                .unwrap_or_else(|| PySystemError::new_err("not a bound SharedDict method")));
        }
        Ok(&*ptr)
    }
}

/// The arguments of a vectorcall, matched to `names` (positional first,
/// then by keyword); the first `required` must be given.
///
/// # Safety
/// `args` holds `nargs` positional arguments followed by one per name in
/// `kwnames` (a tuple or null), all borrowed for the call; the GIL is held.
unsafe fn arguments<'py, const N: usize>(
    py: Python<'py>,
    function: &str,
    names: [&str; N],
    required: usize,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> PyResult<[Option<Bound<'py, PyAny>>; N]> {
    let mut out: [Option<Bound<'py, PyAny>>; N] = std::array::from_fn(|_| None);
    let nargs = usize::try_from(nargs).unwrap_or(0);
    if nargs > N {
        return Err(PyTypeError::new_err(format!(
            "{function}() takes at most {N} arguments ({nargs} given)"
        )));
    }
    for (i, slot) in out.iter_mut().enumerate().take(nargs) {
        // SAFETY: `i < nargs`, per the contract.
        *slot = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(i)) });
    }
    if !kwnames.is_null() {
        // SAFETY: `kwnames` is a tuple of str, per the contract.
        let kwnames = unsafe { Bound::from_borrowed_ptr(py, kwnames) };
        let kwnames = kwnames.cast::<PyTuple>()?;
        for (j, name) in kwnames.iter().enumerate() {
            let name = name.cast::<PyString>()?;
            let name = name.to_str()?;
            let Some(i) = names.iter().position(|n| *n == name) else {
                return Err(PyTypeError::new_err(format!(
                    "{function}() got an unexpected keyword argument '{name}'"
                )));
            };
            if out[i].is_some() {
                return Err(PyTypeError::new_err(format!(
                    "{function}() got multiple values for argument '{name}'"
                )));
            }
            // SAFETY: keyword values follow the positional ones.
            out[i] = Some(unsafe { Bound::from_borrowed_ptr(py, *args.add(nargs + j)) });
        }
    }
    if let Some(missing) = out.iter().take(required).position(Option::is_none) {
        return Err(PyTypeError::new_err(format!(
            "{function}() missing required argument '{}'",
            names[missing]
        )));
    }
    Ok(out)
}

/// Runs `f` as a C function's body: its error is set as the Python
/// exception (null returned), a panic becomes a `SystemError`.
fn entry(f: impl FnOnce(Python<'_>) -> PyResult<Py<PyAny>>) -> *mut ffi::PyObject {
    // SAFETY: CPython calls the functions of `GET` and `SET` with the GIL
    // held by the calling thread.
    let py = unsafe { Python::assume_attached() };
    let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(py)));
    let result = outcome.unwrap_or_else(|_| {
        Err(PySystemError::new_err(
            "internal error in SharedDict (a panic)",
        ))
    });
    match result {
        Ok(obj) => obj.into_ptr(),
        Err(e) => {
            e.restore(py);
            null_mut()
        }
    }
}

unsafe extern "C" fn get_entry(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry(|py| {
        // SAFETY: CPython calls this as `GET`'s function: `slf` is the
        // capsule `bind` made, the arguments as `arguments` expects.
        let (d, [k, default]) = unsafe {
            (
                dict_of(slf)?,
                arguments(py, "get", ["key", "default"], 1, args, nargs, kwnames)?,
            )
        };
        let k = k.ok_or_else(|| PyTypeError::new_err("get() missing required argument 'key'"))?;
        get(py, d, &k, default)
    })
}

fn get(
    py: Python<'_>,
    d: &SharedDict,
    k: &Bound<'_, PyAny>,
    default: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let found = key_str(k, |k| {
        if d.blocking() {
            py.detach(|| d.get(k))
        } else {
            d.get(k)
        }
    })?;
    let item = match found.map_err(err)? {
        Some((item, _)) => item,
        None => return Ok(default.map_or_else(|| py.None(), Bound::unbind)),
    };
    match &*item {
        Stored::Plain(v) => in_interp(py, || to_py(py, v).map_err(|e| PyValueError::new_err(e.0)))
            .map(Bound::unbind),
        Stored::Pickled { data, .. } => {
            // This interpreter's own `pickle.loads`, kept in its state.
            let loads = in_interp(py, || {
                Ok(Interp::current().state(py)?.pickle_loads.clone_ref(py))
            })?;
            Ok(loads
                .bind(py)
                .call1((pyo3::types::PyBytes::new(py, data),))?
                .unbind())
        }
    }
}

unsafe extern "C" fn set_entry(
    slf: *mut ffi::PyObject,
    args: *const *mut ffi::PyObject,
    nargs: ffi::Py_ssize_t,
    kwnames: *mut ffi::PyObject,
) -> *mut ffi::PyObject {
    entry(|py| {
        // SAFETY: as in `get_entry`.
        let (d, [k, value, ttl]) = unsafe {
            (
                dict_of(slf)?,
                arguments(py, "set", ["key", "value", "ttl"], 2, args, nargs, kwnames)?,
            )
        };
        let (Some(k), Some(value)) = (k, value) else {
            return Err(PyTypeError::new_err("set() missing required arguments"));
        };
        set(py, d, &k, &value, ttl)
    })
}

/// `ttl` seconds as milliseconds, rounded up, as `_ttl_ms` in
/// `_shared_dict.py` does.
fn ttl_ms(ttl: Option<Bound<'_, PyAny>>) -> PyResult<Option<u64>> {
    let Some(ttl) = ttl.filter(|t| !t.is_none()) else {
        return Ok(None);
    };
    let invalid = || {
        let repr = ttl.repr().map_or_else(|_| "?".into(), |r| r.to_string());
        PyValueError::new_err(format!(
            "ttl must be a number of seconds >= 0 or None, not {repr}"
        ))
    };
    if ttl.is_instance_of::<pyo3::types::PyBool>() {
        return Err(invalid());
    }
    if ttl.is_instance_of::<PyInt>() {
        if ttl.lt(0)? {
            return Err(invalid());
        }
        let s: u64 = ttl.extract()?;
        return s
            .checked_mul(1000)
            .map(Some)
            .ok_or_else(|| PyOverflowError::new_err("ttl too large"));
    }
    if let Ok(f) = ttl.cast::<PyFloat>() {
        let s = f.value();
        if s.is_nan() || s < 0.0 {
            return Err(invalid());
        }
        let ms = (s * 1000.0).ceil();
        if !ms.is_finite() || ms >= u64::MAX as f64 {
            return Err(PyOverflowError::new_err(
                "cannot convert float infinity to integer",
            ));
        }
        return Ok(Some(ms as u64));
    }
    Err(invalid())
}

fn set(
    py: Python<'_>,
    d: &Arc<SharedDict>,
    k: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    ttl: Option<Bound<'_, PyAny>>,
) -> PyResult<Py<PyAny>> {
    let ms = ttl_ms(ttl)?;
    let plain = in_interp(py, || {
        Ok(from_py(value).ok().and_then(|v| Stored::plain(v).ok()))
    })?;
    let status = match plain {
        None => NOT_PLAIN,
        Some(stored) => {
            let put = key_str(k, |k| {
                if d.blocking() {
                    py.detach(|| d.put(k, stored, ms, Condition::Always))
                } else {
                    d.put(k, stored, ms, Condition::Always)
                }
            })?;
            status_of(put)?
        }
    };
    if status != OK {
        // Pickling, and the exception of a full dict, are Python's.
        let other = py.import("erlang._shared_dict")?.getattr("_set_other")?;
        other.call1((d.id(), status, k, value, ms))?;
    }
    Ok(py.None())
}
