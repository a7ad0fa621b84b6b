//! asyncio: coroutines awaited on an event loop per interpreter, on a
//! thread of its own, so a waiting coroutine holds no executor thread.
//!
//! A call whose result is a coroutine (calling an `async def` function) does
//! not reply from its worker: the worker hands the coroutine, the call's
//! [`Reply`] and its [`CallState`] to [`hand_off`] and moves on. The
//! coroutine runs as an asyncio task on the interpreter's loop (started on
//! first use, `python/pybridge/_aio.py`), and its waiter converts the
//! result and replies, exactly once, like a worker would. Its first step
//! runs at once on the worker when the loop is idle ("eager start", see
//! `_aio.py`): a coroutine that finishes without suspending is answered from
//! the worker, without waking the loop's thread. The call stays
//! *running* meanwhile, so the caller cancels it as any other; the loop's
//! sweep sees the cancellation (or the deadline, or the handle dropped by a
//! dead caller) and cancels the task, raising `CancelledError` inside.
//!
//! The loop of a sub-interpreter stops when its context closes ([`stop`]);
//! the main interpreter's runs for the life of the VM.

use std::sync::Arc;
use std::time::Instant;

use parking_lot::Mutex;
use pyo3::prelude::*;
use pyo3::types::{PyCFunction, PyDict, PyModule, PyTuple};

use crate::context::{
    error_info, Awaiting, BatchEnd, CallState, ErrorInfo, ErrorKind, Outcome, Reply, Timing,
};
use crate::convert::from_py::{from_py_within, Limits};
use crate::limits::PYTHON_THREAD_STACK_BYTES;
use crate::runtime::{Interp, ThreadState};

/// Source of `pybridge._aio` (python/pybridge/_aio.py).
const AIO_SOURCE: &std::ffi::CStr = match std::ffi::CStr::from_bytes_with_nul(
    concat!(include_str!("../../../../python/pybridge/_aio.py"), "\0").as_bytes(),
) {
    Ok(source) => source,
    Err(_) => panic!("python/pybridge/_aio.py contains a NUL byte"),
};

const MODULE_NAME: &str = "pybridge._aio";

/// Held while `pybridge._aio` is being executed: executing it puts it in
/// `sys.modules` before it has run, and another thread (an overflow worker,
/// or any thread of a free-threaded Python) must not use it half made.
static LOADING: Mutex<()> = Mutex::new(());

/// `pybridge._aio` in the attached interpreter, executed on first use.
fn module(py: Python<'_>) -> PyResult<Bound<'_, PyAny>> {
    if let Some(module) = loaded(py)? {
        return Ok(module);
    }
    // Waiting detached: the thread executing the module may need the GIL.
    let _loading = loop {
        if let Some(guard) = LOADING.try_lock() {
            break guard;
        }
        py.detach(|| drop(LOADING.lock()));
    };
    if let Some(module) = loaded(py)? {
        return Ok(module);
    }
    let module = PyModule::from_code(py, AIO_SOURCE, c"pybridge/_aio.py", c"pybridge._aio")?;
    py.import("sys")?
        .getattr("modules")?
        .set_item(MODULE_NAME, &module)?;
    Ok(module.into_any())
}

/// `pybridge._aio` once it has run to its end (it sets `_ready` last).
fn loaded(py: Python<'_>) -> PyResult<Option<Bound<'_, PyAny>>> {
    let modules = py.import("sys")?.getattr("modules")?;
    match modules.get_item(MODULE_NAME) {
        Ok(module) if module.hasattr("_ready")? => Ok(Some(module)),
        _ => Ok(None),
    }
}

/// The reply of a call awaited on the loop, taken once by its waiter.
struct Pending {
    reply: Box<dyn Reply>,
    queued: Instant,
    started: Instant,
}

/// Hands the coroutine of a call to the interpreter's event loop. The loop
/// replies through `reply` when it is done; on failure (no loop thread could
/// be started) the reply comes back with the error, for the worker to send.
pub(crate) fn hand_off(
    py: Python<'_>,
    interp: &Arc<Interp>,
    awaiting: Awaiting,
    reply: Box<dyn Reply>,
    state: Arc<CallState>,
    queued: Instant,
    started: Instant,
) -> Result<(), (Box<dyn Reply>, ErrorInfo)> {
    let coroutine = awaiting.coroutine.into_bound(py);
    let pending = Arc::new(Mutex::new(Some(Pending {
        reply,
        queued,
        started,
    })));
    let scheduled = schedule(py, interp, &coroutine, awaiting.batch, &pending, &state);
    match scheduled {
        Ok(()) => Ok(()),
        Err(err) => {
            let _ = coroutine.call_method0("close");
            let info = error_info(py, err);
            match pending.lock().take() {
                Some(pending) => Err((pending.reply, info)),
                // The waiter replied before the failure (the task ended in
                // its first step, then something failed): nothing to send.
                None => Ok(()),
            }
        }
    }
}

fn schedule(
    py: Python<'_>,
    interp: &Arc<Interp>,
    coroutine: &Bound<'_, PyAny>,
    batch: bool,
    pending: &Arc<Mutex<Option<Pending>>>,
    state: &Arc<CallState>,
) -> PyResult<()> {
    let aio = module(py)?;
    let (event_loop, new): (Bound<'_, PyAny>, bool) = aio.call_method0("loop")?.extract()?;
    if new {
        if let Err(err) = start_loop(interp, event_loop.clone().unbind()) {
            aio.call_method1("forget", (&event_loop,))?;
            return Err(pyo3::exceptions::PyRuntimeError::new_err(format!(
                "cannot start the asyncio thread: {err}"
            )));
        }
    }
    // One native callable for the loop's side (see `_aio.py`):
    // `waiter(task)` replies with the finished task's outcome (and returns
    // None), `waiter()` tells whether the caller gave up.
    let waiter_state = state.clone();
    let waiter_pending = pending.clone();
    let waiter = PyCFunction::new_closure(
        py,
        Some(c"waiter"),
        None,
        move |args: &Bound<'_, PyTuple>,
              _kwargs: Option<&Bound<'_, PyDict>>|
              -> PyResult<Option<bool>> {
            let state = &waiter_state;
            if args.is_empty() {
                return Ok(Some(
                    state.is_cancelled() || state.deadline.is_some_and(|d| Instant::now() >= d),
                ));
            }
            // Taken once, the lock let go at once (converting may release
            // the GIL); a cancelled call's caller was told no reply would
            // come (`finish` is false).
            let pending = waiter_pending.lock().take();
            if let Some(pending) = pending.filter(|_| state.finish()) {
                let outcome = settle(args.py(), &args.get_item(0)?, batch, state);
                let timing = Timing::between(pending.queued, pending.started, Instant::now());
                pending.reply.send(outcome, timing);
            }
            Ok(None)
        },
    )?;
    state.set_awaited();
    aio.call_method1("submit", (event_loop, coroutine, waiter))?;
    Ok(())
}

/// The outcome of a finished task.
fn settle(py: Python<'_>, task: &Bound<'_, PyAny>, batch: bool, state: &CallState) -> Outcome {
    let result = match task.call_method0("result") {
        Ok(result) => result,
        Err(err) => {
            let late = state.deadline.is_some_and(|d| Instant::now() >= d);
            // By name: asyncio's classes are per interpreter.
            let cancelled = err
                .get_type(py)
                .name()
                .is_ok_and(|name| name.to_string_lossy() == "CancelledError");
            if late && cancelled {
                return Outcome::Error(ErrorInfo::new(
                    ErrorKind::Timeout,
                    "the coroutine ran past its timeout and was cancelled",
                ));
            }
            return Outcome::Error(error_info(py, err));
        }
    };
    let cancelled = || state.is_cancelled();
    let limits = Limits {
        deadline: state.deadline,
        cancelled: Some(&cancelled),
        ..Limits::default()
    };
    if batch {
        return batch_outcome(py, &result, &limits)
            .unwrap_or_else(|err| Outcome::Error(error_info(py, err)));
    }
    match from_py_within(&result, &limits) {
        Ok(value) => Outcome::Value(value),
        Err(err) => Outcome::Error(ErrorInfo::new(ErrorKind::Conversion, err.0)),
    }
}

/// `(items, end)` from `pybridge._aio.next_batch` as a stream batch.
fn batch_outcome(
    py: Python<'_>,
    result: &Bound<'_, PyAny>,
    limits: &Limits<'_>,
) -> PyResult<Outcome> {
    let (list, end): (Bound<'_, PyAny>, Bound<'_, PyAny>) = result.extract()?;
    let mut items = Vec::new();
    for item in list.try_iter()? {
        match from_py_within(&item?, limits) {
            Ok(value) => items.push(value),
            Err(err) => {
                let end = BatchEnd::Failed(ErrorInfo::new(ErrorKind::Conversion, err.0));
                return Ok(Outcome::Batch { items, end });
            }
        }
    }
    let end = if end.is_none() {
        BatchEnd::More
    } else if end.is_truthy()? && end.is_instance_of::<pyo3::types::PyBool>() {
        BatchEnd::Done
    } else {
        BatchEnd::Failed(error_info(py, PyErr::from_value(end)))
    };
    Ok(Outcome::Batch { items, end })
}

/// Starts the thread that runs `event_loop` in `interp`.
fn start_loop(interp: &Arc<Interp>, event_loop: Py<PyAny>) -> std::io::Result<()> {
    let interp = interp.clone();
    // The loop object crosses to the new thread, where it is used and
    // dropped attached; should the thread not start, the closure (and the
    // reference in it) comes back to this attached thread and drops here.
    std::thread::Builder::new()
        .name("py-asyncio".into())
        .stack_size(PYTHON_THREAD_STACK_BYTES)
        .spawn(move || {
            let mut tstate = ThreadState::in_interp(&interp);
            tstate.with_gil(move |py| {
                let event_loop = event_loop.into_bound(py);
                if let Err(err) = module(py).and_then(|m| m.call_method1("run", (event_loop,))) {
                    err.print(py);
                }
            });
        })
        .map(|_| ())
}

/// A batch of up to `max` items of an async iterator, as a coroutine.
pub(crate) fn next_batch<'py>(
    py: Python<'py>,
    iter: &Bound<'py, PyAny>,
    max: usize,
) -> PyResult<Bound<'py, PyAny>> {
    module(py)?.call_method1("next_batch", (iter, max))
}

/// `aclose()` of an async generator, as a coroutine.
pub(crate) fn aclose<'py>(
    py: Python<'py>,
    iter: &Bound<'py, PyAny>,
) -> PyResult<Bound<'py, PyAny>> {
    module(py)?.call_method1("aclose", (iter,))
}

/// Stops the attached interpreter's loop, if it has one (its last context
/// is closing). Pending coroutines are cancelled; the loop's thread exits.
pub(crate) fn stop(py: Python<'_>) {
    let modules = py.import("sys").and_then(|sys| sys.getattr("modules"));
    if let Ok(aio) = modules.and_then(|m| m.get_item(MODULE_NAME)) {
        let _ = aio.call_method0("stop");
    }
}
