//! The Python face of the store: the native functions behind
//! `erlang.SharedDict` and `erlang.state_*` (python/erlang/_shared_dict.py),
//! made into a module `erlang._shared_dict_native` in every interpreter
//! (see `runtime/interp/support.rs`), so every context, sub-interpreters included,
//! reaches the same Rust dicts.
//!
//! Values: plain data is converted to and from [`Value`]; for anything
//! else `put` answers [`NOT_PLAIN`] and the Python side pickles the value
//! and stores it with `put_pickled`. A read gives `(kind, payload)`:
//! [`MISSING`], [`PLAIN`] with a new object, or [`PICKLED`] with the pickle
//! (the Python side unpickles it). Every read makes new objects: mutating
//! what was read never changes what is stored.
//!
//! Errors: a destroyed dict raises `RuntimeError`, a key that is not a
//! `str` `TypeError`, `incr` of a non-integer `TypeError`; a full dict and
//! `put` of an existing key under `only_new` are status codes the Python
//! side turns into its own exceptions.

use std::sync::Arc;
use std::time::{Duration, Instant};

use pyo3::exceptions::{PyKeyError, PyOSError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyDict, PyList, PyModule, PyString, PyTuple};

use super::{
    callbacks, forget_call_lock, note_call_lock, BackendSpec, Bounds, Condition, DictError,
    DictOptions, Holder, SharedDict, Stored, Ttl,
};
use crate::convert::from_py::from_py;
use crate::convert::to_py::to_py;
use crate::convert::PyObject;
use crate::runtime::{Interp, Kind};

/// `get`'s kinds, and `put`'s statuses.
pub const MISSING: u8 = 0;
pub const PLAIN: u8 = 1;
pub const PICKLED: u8 = 2;
pub const OK: u8 = 0;
pub const NOT_PLAIN: u8 = 1;
pub const FULL: u8 = 2;
pub const EXISTS: u8 = 3;

pub(super) fn err(e: DictError) -> PyErr {
    match e {
        DictError::NotInteger(_) => PyTypeError::new_err(e.to_string()),
        DictError::NameTaken(_) => PyValueError::new_err(e.to_string()),
        DictError::Backend(_) => PyOSError::new_err(e.to_string()),
        _ => PyRuntimeError::new_err(e.to_string()),
    }
}

fn dict(id: u64) -> PyResult<Arc<SharedDict>> {
    thread_local! {
        /// The dict this thread used last: a loop on one dict skips the
        /// registry's lock.
        static LAST: std::cell::RefCell<Option<(u64, std::sync::Weak<SharedDict>)>> =
            const { std::cell::RefCell::new(None) };
    }
    let cached = LAST.with_borrow(|last| match last {
        Some((last_id, weak)) if *last_id == id => weak.upgrade(),
        _ => None,
    });
    if let Some(d) = cached.filter(|d| !d.is_destroyed()) {
        return Ok(d);
    }
    let d = SharedDict::by_id(id)
        .ok_or_else(|| PyRuntimeError::new_err(DictError::Destroyed.to_string()))?;
    LAST.with_borrow_mut(|last| *last = Some((id, Arc::downgrade(&d))));
    Ok(d)
}

/// Runs `f` on `d`, without the GIL when its backend may wait on a disk or
/// a network (other Python threads run meanwhile).
fn on<T: Send>(
    py: Python<'_>,
    d: &Arc<SharedDict>,
    f: impl FnOnce(&Arc<SharedDict>) -> T + Send,
) -> T {
    if d.blocking() {
        py.detach(|| f(d))
    } else {
        f(d)
    }
}

/// Runs `f` on `key` as a `&str`, borrowed from the `str` object when it
/// is valid UTF-8 (no copy), else as [`key`] makes it.
pub(super) fn key_str<R>(key_obj: &Bound<'_, PyAny>, f: impl FnOnce(&str) -> R) -> PyResult<R> {
    if let Ok(s) = key_obj.cast::<PyString>() {
        if let Ok(s) = s.to_str() {
            return Ok(f(s));
        }
    }
    let k = key(key_obj)?;
    Ok(f(&k))
}

fn key<'a>(key: &'a Bound<'_, PyAny>) -> PyResult<std::borrow::Cow<'a, str>> {
    match key.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned().into()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "SharedDict keys are str, not {}",
            key.get_type().name()?
        ))),
    }
}

/// Runs a conversion with the calling thread's interpreter recorded: the
/// bridge's record is missing in a thread Python code started itself (it
/// would be taken for the main interpreter's), so it is set for the call
/// from the interpreter the thread is attached to.
pub(crate) fn in_interp<R>(py: Python<'_>, f: impl FnOnce() -> PyResult<R>) -> PyResult<R> {
    let current = Interp::current();
    // SAFETY: the GIL is held (`py`), so the calling thread has a current
    // thread state whose interpreter this reads.
    if unsafe { pyo3::ffi::PyInterpreterState_Get() } == current.as_ptr() {
        return f();
    }
    match Interp::running(py) {
        Some(interp) => Interp::with_recorded(&interp, f),
        None => Err(PyRuntimeError::new_err(
            "SharedDict values cannot be converted in an interpreter pybridge did not make",
        )),
    }
}

fn read<'py>(py: Python<'py>, stored: &Stored) -> PyResult<(u8, Bound<'py, PyAny>)> {
    match stored {
        Stored::Plain(v) => {
            let obj = in_interp(py, || to_py(py, v).map_err(|e| PyValueError::new_err(e.0)))?;
            Ok((PLAIN, obj))
        }
        Stored::Pickled { data, .. } => Ok((PICKLED, PyBytes::new(py, data).into_any())),
    }
}

/// The backend `backend` and `location` name (`"memory"`; `"sqlite"` and
/// a file path; `"redis"` and a URL).
fn spec(backend: &str, location: Option<String>) -> PyResult<BackendSpec> {
    match (backend, location) {
        ("memory", None) => Ok(BackendSpec::Memory),
        ("sqlite", Some(path)) if !path.is_empty() => Ok(BackendSpec::Sqlite(path.into())),
        ("sqlite", _) => Err(PyValueError::new_err(
            "backend='sqlite' needs path= (the SQLite file)",
        )),
        ("redis", Some(url)) if !url.is_empty() => Ok(BackendSpec::Redis(url)),
        ("redis", _) => Err(PyValueError::new_err(
            "backend='redis' needs url= (e.g. 'redis://127.0.0.1:6379/0')",
        )),
        (other, _) => Err(PyValueError::new_err(format!(
            "unknown SharedDict backend {other:?}: 'memory', 'sqlite' (with path=) or 'redis' (with url=)"
        ))),
    }
}

/// The id of the dict `target` names: a handle from the BEAM (a dict with
/// an `"id"`, as `%Py.SharedDict{}` arrives), an id, or a name (made when
/// missing and `create` is true, on the backend named by `backend`,
/// `location`, `prefix` and `pool_size`; an existing dict of that name must
/// be on that kind of backend).
#[pyfunction]
#[pyo3(signature = (target, create = false, backend = "memory", location = None, prefix = String::new(), pool_size = 1))]
fn open(
    py: Python<'_>,
    target: &Bound<'_, PyAny>,
    create: bool,
    backend: &str,
    location: Option<String>,
    prefix: String,
    pool_size: usize,
) -> PyResult<(u64, Option<String>)> {
    let found = if let Ok(name) = target.cast::<PyString>() {
        let name = name.to_cow()?.into_owned();
        let spec = spec(backend, location)?;
        match SharedDict::lookup(&name) {
            Some(d) if create && d.backend_kind() != backend => {
                return Err(PyValueError::new_err(format!(
                    "the shared dict {name:?} exists on the {} backend, not {backend}",
                    d.backend_kind()
                )))
            }
            Some(d) => Some(d),
            None if create => {
                let opts = DictOptions {
                    name: Some(name.clone()),
                    bounds: Bounds::default(),
                    backend: spec,
                    prefix,
                    pool_size: pool_size.max(1),
                };
                // Opening a file waits on the disk: without the GIL.
                let made = py.detach(|| {
                    let d = SharedDict::new(opts)?;
                    if let Err(e) = d.expire_due() {
                        // Closed again, so that a later open can retry.
                        d.destroy();
                        return Err(e);
                    }
                    Ok(d)
                });
                match made {
                    Ok(d) => Some(d),
                    // Made by someone else meanwhile.
                    Err(DictError::NameTaken(_)) => SharedDict::lookup(&name),
                    Err(e) => return Err(err(e)),
                }
            }
            None => {
                return Err(PyKeyError::new_err(format!(
                    "no shared dict named {name:?}"
                )))
            }
        }
    } else if let Ok(handle) = target.cast::<PyDict>() {
        let id = handle
            .get_item("id")?
            .ok_or_else(|| PyTypeError::new_err("not a SharedDict handle: no 'id'"))?;
        SharedDict::by_id(id.extract()?)
    } else if let Ok(id) = target.extract::<u64>() {
        SharedDict::by_id(id)
    } else {
        return Err(PyTypeError::new_err(format!(
            "SharedDict() takes a handle passed from the BEAM or a name, not {}",
            target.get_type().name()?
        )));
    };
    let d = found.ok_or_else(|| PyRuntimeError::new_err(DictError::Destroyed.to_string()))?;
    Ok((d.id(), d.name().map(str::to_owned)))
}

#[pyfunction]
fn get<'py>(py: Python<'py>, id: u64, k: &Bound<'py, PyAny>) -> PyResult<(u8, Bound<'py, PyAny>)> {
    let d = dict(id)?;
    let k = key(k)?;
    match on(py, &d, |d| d.get(&k)).map_err(err)? {
        Some((item, _)) => read(py, &item),
        None => Ok((MISSING, py.None().into_bound(py))),
    }
}

pub(super) fn status_of(r: Result<u64, DictError>) -> PyResult<u8> {
    match r {
        Ok(_) => Ok(OK),
        Err(DictError::Full) => Ok(FULL),
        Err(DictError::Exists) => Ok(EXISTS),
        Err(e) => Err(err(e)),
    }
}

fn condition(only_new: bool) -> Condition {
    if only_new {
        Condition::Absent
    } else {
        Condition::Always
    }
}

/// Stores a plain value; [`NOT_PLAIN`] when it is not plain data.
#[pyfunction]
#[pyo3(signature = (id, k, value, ttl_ms = None, only_new = false))]
fn put(
    id: u64,
    k: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    ttl_ms: Option<u64>,
    only_new: bool,
) -> PyResult<u8> {
    let d = dict(id)?;
    let k = key(k)?;
    let plain = in_interp(value.py(), || {
        Ok(from_py(value).ok().and_then(|v| Stored::plain(v).ok()))
    })?;
    let Some(stored) = plain else {
        return Ok(NOT_PLAIN);
    };
    status_of(on(value.py(), &d, |d| {
        d.put(&k, stored, ttl_ms, condition(only_new))
    }))
}

/// Stores a pickle of a value of type `type_name`.
#[pyfunction]
#[pyo3(signature = (id, k, type_name, data, ttl_ms = None, only_new = false))]
fn put_pickled(
    py: Python<'_>,
    id: u64,
    k: &Bound<'_, PyAny>,
    type_name: String,
    data: Vec<u8>,
    ttl_ms: Option<u64>,
    only_new: bool,
) -> PyResult<u8> {
    let d = dict(id)?;
    let stored = Stored::Pickled { type_name, data };
    let k = key(k)?;
    status_of(on(py, &d, |d| {
        d.put(&k, stored, ttl_ms, condition(only_new))
    }))
}

/// Removes a key; whether it was there.
#[pyfunction]
fn delete(py: Python<'_>, id: u64, k: &Bound<'_, PyAny>) -> PyResult<bool> {
    let k = key(k)?;
    let taken = on(py, &dict(id)?, |d| d.take(&k).map(|v| v.is_some()));
    taken.map_err(err)
}

#[pyfunction]
fn keys<'py>(py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyList>> {
    let keys = on(py, &dict(id)?, |d| d.keys()).map_err(err)?;
    PyList::new(py, keys.iter().map(|k| &**k))
}

/// `[(key, kind, payload)]`.
#[pyfunction]
fn items<'py>(py: Python<'py>, id: u64) -> PyResult<Bound<'py, PyList>> {
    let entries = on(py, &dict(id)?, |d| d.entries()).map_err(err)?;
    let list = PyList::empty(py);
    for (k, item) in entries {
        let (kind, payload) = read(py, &item)?;
        list.append(PyTuple::new(
            py,
            [
                PyString::new(py, &k).into_any(),
                kind.into_pyobject(py)?.into_any(),
                payload,
            ],
        )?)?;
    }
    Ok(list)
}

#[pyfunction]
fn size(py: Python<'_>, id: u64) -> PyResult<usize> {
    on(py, &dict(id)?, |d| d.len()).map_err(err)
}

#[pyfunction]
fn incr<'py>(
    py: Python<'py>,
    id: u64,
    k: &Bound<'py, PyAny>,
    by: i64,
) -> PyResult<Bound<'py, PyAny>> {
    let k = key(k)?;
    let v = on(py, &dict(id)?, |d| d.incr(&k, by)).map_err(err)?;
    in_interp(py, || to_py(py, &v).map_err(|e| PyValueError::new_err(e.0)))
}

/// Milliseconds left, -1 for no expiry, `None` when missing.
#[pyfunction]
fn ttl(py: Python<'_>, id: u64, k: &Bound<'_, PyAny>) -> PyResult<Option<i64>> {
    let k = key(k)?;
    Ok(match on(py, &dict(id)?, |d| d.ttl(&k)).map_err(err)? {
        Some(Ttl::Ms(ms)) => Some(i64::try_from(ms).unwrap_or(i64::MAX)),
        Some(Ttl::Infinity) => Some(-1),
        None => None,
    })
}

#[pyfunction]
fn expire(py: Python<'_>, id: u64, k: &Bound<'_, PyAny>, ms: u64) -> PyResult<bool> {
    let k = key(k)?;
    on(py, &dict(id)?, |d| d.expire(&k, ms)).map_err(err)
}

#[pyfunction]
fn persist(py: Python<'_>, id: u64, k: &Bound<'_, PyAny>) -> PyResult<bool> {
    let k = key(k)?;
    on(py, &dict(id)?, |d| d.persist(&k)).map_err(err)
}

#[pyfunction]
fn clear(py: Python<'_>, id: u64) -> PyResult<()> {
    on(py, &dict(id)?, |d| d.clear().map(|_| ())).map_err(err)
}

#[pyfunction]
fn destroy(py: Python<'_>, id: u64) {
    if let Some(d) = SharedDict::by_id(id) {
        on(py, &d, |d| d.destroy());
    }
}

/// Takes `key`'s lock for thread `thread`, waiting up to `timeout` seconds
/// (forever for `None`) with the GIL released. Unless `hold`, the lock is
/// released when the thread's current context call ends.
#[pyfunction]
#[pyo3(signature = (id, k, thread, timeout = None, hold = false))]
fn lock(
    py: Python<'_>,
    id: u64,
    k: &Bound<'_, PyAny>,
    thread: u64,
    timeout: Option<f64>,
    hold: bool,
) -> PyResult<bool> {
    let d = dict(id)?;
    let k = key(k)?.into_owned();
    let deadline = match timeout {
        Some(t) if t.is_finite() && t >= 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(t.min(1e9)))
        }
        Some(t) if t.is_nan() || t < 0.0 => {
            return Err(PyValueError::new_err("timeout must be >= 0 or None"))
        }
        _ => None,
    };
    let taken = py
        .detach(|| d.lock_wait(&k, Holder::Python(thread), deadline))
        .map_err(err)?;
    if taken && !hold {
        note_call_lock(thread, id, &k);
    }
    Ok(taken)
}

#[pyfunction]
fn unlock(py: Python<'_>, id: u64, k: &Bound<'_, PyAny>, thread: u64) -> PyResult<bool> {
    let k = key(k)?;
    forget_call_lock(thread, id, &k);
    let d = dict(id)?;
    // A Redis round trip: without the GIL.
    on(py, &d, |d| d.unlock(&k, Holder::Python(thread))).map_err(err)
}

/// Registers `runner` (the Python side's `_Callback`) for the events in
/// `mask` (bits of [`callbacks::event_bit`]), of every key or of `k` only;
/// returns the callback's id. Only from the main interpreter: callbacks run
/// on pybridge's callback context, which lives there.
#[pyfunction]
#[pyo3(signature = (id, mask, runner, k = None, timeout = None))]
fn register_callback(
    py: Python<'_>,
    id: u64,
    mask: u8,
    runner: &Bound<'_, PyAny>,
    k: Option<&Bound<'_, PyAny>>,
    timeout: Option<f64>,
) -> PyResult<u64> {
    let d = dict(id)?;
    let main = Interp::running(py).is_some_and(|i| i.kind() == Kind::Main);
    if !main {
        return Err(PyRuntimeError::new_err(
            "SharedDict callbacks can only be registered from the main interpreter \
             (not from a sub-interpreter context)",
        ));
    }
    let timeout = match timeout {
        None => None,
        Some(t) if t.is_finite() && t > 0.0 => Some(Duration::from_secs_f64(t.min(1e9))),
        Some(_) => return Err(PyValueError::new_err("timeout must be > 0 or None")),
    };
    let key = k.map(|k| key(k).map(|k| k.into_owned())).transpose()?;
    let type_name = runner.get_type().name()?.to_string();
    let runner = PyObject::new(runner.clone().unbind(), type_name, String::new());
    let reg = callbacks::Registration {
        mask,
        key,
        runner,
        timeout,
    };
    callbacks::register(&d, reg).map_err(|e| match e {
        callbacks::RegisterError::Dict(e) => err(e),
        callbacks::RegisterError::Executor(e) => {
            PyRuntimeError::new_err(format!("cannot start the callback context: {e}"))
        }
    })
}

/// Turns callback `cb` on or off; False when there is no such callback.
#[pyfunction]
fn set_callback_enabled(cb: u64, enabled: bool) -> bool {
    callbacks::set_enabled(cb, enabled)
}

/// Removes callback `cb`; False when there is no such callback.
#[pyfunction]
fn unregister_callback(cb: u64) -> bool {
    callbacks::unregister(cb)
}

/// `(get, set)`: the dict's `get` and `set` as native callables bound to
/// it (see `python_fast.rs`), for `SharedDict.__init__`.
#[pyfunction]
fn bind(py: Python<'_>, id: u64) -> PyResult<(Bound<'_, PyAny>, Bound<'_, PyAny>)> {
    super::python_fast::bind(py, dict(id)?)
}

/// The module `erlang._shared_dict_native` for the attached interpreter.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "erlang._shared_dict_native")?;
    m.add_function(wrap_pyfunction!(open, &m)?)?;
    m.add_function(wrap_pyfunction!(bind, &m)?)?;
    m.add_function(wrap_pyfunction!(get, &m)?)?;
    m.add_function(wrap_pyfunction!(put, &m)?)?;
    m.add_function(wrap_pyfunction!(put_pickled, &m)?)?;
    m.add_function(wrap_pyfunction!(delete, &m)?)?;
    m.add_function(wrap_pyfunction!(keys, &m)?)?;
    m.add_function(wrap_pyfunction!(items, &m)?)?;
    m.add_function(wrap_pyfunction!(size, &m)?)?;
    m.add_function(wrap_pyfunction!(incr, &m)?)?;
    m.add_function(wrap_pyfunction!(ttl, &m)?)?;
    m.add_function(wrap_pyfunction!(expire, &m)?)?;
    m.add_function(wrap_pyfunction!(persist, &m)?)?;
    m.add_function(wrap_pyfunction!(clear, &m)?)?;
    m.add_function(wrap_pyfunction!(destroy, &m)?)?;
    m.add_function(wrap_pyfunction!(lock, &m)?)?;
    m.add_function(wrap_pyfunction!(unlock, &m)?)?;
    m.add_function(wrap_pyfunction!(register_callback, &m)?)?;
    m.add_function(wrap_pyfunction!(set_callback_enabled, &m)?)?;
    m.add_function(wrap_pyfunction!(unregister_callback, &m)?)?;
    Ok(m)
}
