//! The native functions behind `erlang.call`, `erlang.send` and
//! `erlang.self` (python/erlang/_callback.py), made into a module
//! `erlang._callback_native` in every interpreter (see `runtime/interp/support.rs`).
//!
//! Answers come back as tuples the Python side turns into values or
//! exceptions, so the exception classes stay Python's own:
//!
//! | tuple                              | meaning                           |
//! |------------------------------------|-----------------------------------|
//! | `(VALUE, value)`                   | the function returned `value`     |
//! | `(RAISED, kind, reason, message)`  | it raised, exited or threw        |
//! | `(UNKNOWN, message)`               | no function has that name         |
//! | `(FAILED, message)`                | not delivered or not answered     |
//! | `(TIMEOUT, message)`               | the waiting call ran out of time  |

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyModule, PyString, PyTuple};

use super::{Answer, SendError, Slot};
use crate::convert::from_py::from_py;
use crate::convert::to_py::to_py;
use crate::convert::Value;
use crate::shared_dict::python::in_interp;

pub const VALUE: u8 = 0;
pub const RAISED: u8 = 1;
pub const UNKNOWN: u8 = 2;
pub const FAILED: u8 = 3;
pub const TIMEOUT: u8 = 4;

/// `erlang.send`'s statuses.
pub const SENT: u8 = 0;
pub const NO_PROCESS: u8 = 1;
pub const NOT_SENT: u8 = 2;

fn name_of(name: &Bound<'_, PyAny>) -> PyResult<String> {
    match name.cast::<PyString>() {
        Ok(s) => Ok(s.to_cow()?.into_owned()),
        Err(_) => Err(PyTypeError::new_err(format!(
            "a callback name is a str, not {}",
            name.get_type().name()?
        ))),
    }
}

/// The arguments, each converted on its own (a list of values on the BEAM side).
fn convert_args(py: Python<'_>, args: &Bound<'_, PyTuple>) -> PyResult<Result<Vec<Value>, String>> {
    in_interp(py, || {
        let mut values = Vec::with_capacity(args.len());
        for arg in args.iter() {
            match from_py(&arg) {
                Ok(v) => values.push(v),
                Err(e) => return Ok(Err(format!("a callback argument cannot cross: {}", e.0))),
            }
        }
        Ok(Ok(values))
    })
}

fn answer_tuple<'py>(py: Python<'py>, answer: Answer) -> PyResult<Bound<'py, PyTuple>> {
    let convert = |v: &Value| -> PyResult<Bound<'py, PyAny>> {
        in_interp(py, || to_py(py, v).map_err(|e| PyValueError::new_err(e.0)))
    };
    match answer {
        Answer::Value(v) => match convert(&v) {
            Ok(obj) => PyTuple::new(py, [VALUE.into_pyobject(py)?.into_any(), obj]),
            Err(e) => {
                (FAILED, format!("the callback's result cannot cross: {e}")).into_pyobject(py)
            }
        },
        Answer::Raised {
            kind,
            reason,
            message,
        } => {
            let reason = convert(&reason).unwrap_or_else(|_| py.None().into_bound(py));
            (RAISED, kind, reason, message).into_pyobject(py)
        }
        Answer::Unknown(m) => (UNKNOWN, m).into_pyobject(py),
        Answer::Failed(m) => (FAILED, m).into_pyobject(py),
        Answer::Timeout(m) => (TIMEOUT, m).into_pyobject(py),
    }
}

/// `call(name, args)`: runs the BEAM function `name` with `args` (a tuple)
/// and waits for its answer, without the GIL.
#[pyfunction]
fn call<'py>(
    py: Python<'py>,
    name: &Bound<'py, PyAny>,
    args: &Bound<'py, PyTuple>,
) -> PyResult<Bound<'py, PyTuple>> {
    let name = name_of(name)?;
    let answer = match convert_args(py, args)? {
        Ok(args) => py.detach(|| super::call(&name, args)),
        Err(why) => Answer::Failed(why),
    };
    answer_tuple(py, answer)
}

/// Slots of requests started with `start`, by id, until `forget`.
static PENDING: Mutex<Option<HashMap<u64, Arc<Slot>>>> = Mutex::new(None);
static NEXT_ID: AtomicU64 = AtomicU64::new(1);

fn pending(id: u64) -> PyResult<Arc<Slot>> {
    PENDING
        .lock()
        .as_ref()
        .and_then(|p| p.get(&id).cloned())
        .ok_or_else(|| PyValueError::new_err(format!("no pending callback {id}")))
}

/// `start(name, args)`: sends the request to the BEAM's callback pool and
/// returns its id at once; `wait`, `done` and `forget` take it. Raises
/// `RuntimeError` when it cannot be sent.
#[pyfunction]
fn start(py: Python<'_>, name: &Bound<'_, PyAny>, args: &Bound<'_, PyTuple>) -> PyResult<u64> {
    let name = name_of(name)?;
    let args = convert_args(py, args)?.map_err(PyValueError::new_err)?;
    let slot = super::start(&name, args).map_err(pyo3::exceptions::PyRuntimeError::new_err)?;
    let id = NEXT_ID.fetch_add(1, Ordering::Relaxed);
    PENDING
        .lock()
        .get_or_insert_with(HashMap::new)
        .insert(id, slot);
    Ok(id)
}

/// `wait(id, timeout=None)`: the answer tuple, or None if it did not come
/// within `timeout` seconds. Waits without the GIL.
#[pyfunction]
#[pyo3(signature = (id, timeout = None))]
fn wait<'py>(
    py: Python<'py>,
    id: u64,
    timeout: Option<f64>,
) -> PyResult<Option<Bound<'py, PyTuple>>> {
    let slot = pending(id)?;
    let deadline = match timeout {
        Some(t) if t.is_finite() && t >= 0.0 => {
            Some(Instant::now() + Duration::from_secs_f64(t.min(1e9)))
        }
        Some(t) if t.is_nan() || t < 0.0 => {
            return Err(PyValueError::new_err(
                "timeout must be a non-negative number",
            ))
        }
        _ => None,
    };
    if !py.detach(|| slot.wait_ready(deadline)) {
        return Ok(None);
    }
    match slot.take() {
        Some(answer) => answer_tuple(py, answer).map(Some),
        None => Err(PyValueError::new_err(format!(
            "the answer of callback {id} was already taken"
        ))),
    }
}

/// `done(id)`: True once the answer is there.
#[pyfunction]
fn done(id: u64) -> PyResult<bool> {
    Ok(pending(id)?.is_ready())
}

/// `wakeup_fd(id, fd)`: has one byte written to `fd` when the answer
/// arrives (at once if it is there), e.g. an asyncio loop's wake-up pipe;
/// -1 for none (the descriptor set before is not written after this).
#[pyfunction]
fn wakeup_fd(id: u64, fd: i32) -> PyResult<()> {
    pending(id)?.set_wakeup_fd(fd);
    Ok(())
}

/// `forget(id)`: drops the request's slot (a late answer goes nowhere,
/// and writes to no wake-up descriptor: its owner may close it).
#[pyfunction]
fn forget(id: u64) {
    let slot = PENDING.lock().as_mut().and_then(|p| p.remove(&id));
    if let Some(slot) = slot {
        slot.set_wakeup_fd(-1);
    }
}

/// `send(pid, message)`: `(SENT, None)`, `(NO_PROCESS, why)` or `(NOT_SENT, why)`.
#[pyfunction]
fn send(
    py: Python<'_>,
    pid: &Bound<'_, PyAny>,
    message: &Bound<'_, PyAny>,
) -> PyResult<(u8, Option<String>)> {
    let (pid, message) = in_interp(py, || {
        let convert = |o: &Bound<'_, PyAny>| from_py(o).map_err(|e| PyValueError::new_err(e.0));
        Ok((convert(pid)?, convert(message)?))
    })?;
    if !matches!(pid, Value::Pid(_)) {
        return Err(PyTypeError::new_err("erlang.send takes an erlang.Pid"));
    }
    Ok(match py.detach(|| super::send(&pid, &message)) {
        Ok(()) => (SENT, None),
        Err(SendError::NoProcess) => (NO_PROCESS, Some("no such process".into())),
        Err(SendError::Other(why)) => (NOT_SENT, Some(why)),
    })
}

/// `self_pid()`: the pid of the BEAM process whose call this thread runs,
/// or None outside a call.
#[pyfunction]
fn self_pid(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    match super::self_pid() {
        Some(pid) => in_interp(py, || {
            to_py(py, &pid).map_err(|e| PyValueError::new_err(e.0))
        })
        .map(Some),
        None => Ok(None),
    }
}

/// The module `erlang._callback_native`.
pub fn module(py: Python<'_>) -> PyResult<Bound<'_, PyModule>> {
    let m = PyModule::new(py, "erlang._callback_native")?;
    m.add_function(wrap_pyfunction!(call, &m)?)?;
    m.add_function(wrap_pyfunction!(start, &m)?)?;
    m.add_function(wrap_pyfunction!(wait, &m)?)?;
    m.add_function(wrap_pyfunction!(done, &m)?)?;
    m.add_function(wrap_pyfunction!(wakeup_fd, &m)?)?;
    m.add_function(wrap_pyfunction!(forget, &m)?)?;
    m.add_function(wrap_pyfunction!(send, &m)?)?;
    m.add_function(wrap_pyfunction!(self_pid, &m)?)?;
    for (name, value) in [
        ("VALUE", VALUE),
        ("RAISED", RAISED),
        ("UNKNOWN", UNKNOWN),
        ("FAILED", FAILED),
        ("TIMEOUT", TIMEOUT),
        ("SENT", SENT),
        ("NO_PROCESS", NO_PROCESS),
        ("NOT_SENT", NOT_SENT),
    ] {
        m.add(name, value)?;
    }
    Ok(m)
}
