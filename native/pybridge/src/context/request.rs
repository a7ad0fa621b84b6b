//! What a caller hands an executor, and how the answer goes back.

use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::time::Instant;

use crate::convert::{PyObject, Value};
use crate::runtime::Interp;

use super::namespace::Namespace;

/// Source code for `eval`/`exec`: text when it was valid UTF-8, raw bytes
/// otherwise (Python's compiler then reports the decoding error itself).
#[derive(Debug, Clone)]
pub enum Code {
    Text(String),
    Bytes(Vec<u8>),
}

impl Code {
    pub fn from_bytes(bytes: &[u8]) -> Code {
        match std::str::from_utf8(bytes) {
            Ok(s) => Code::Text(s.to_owned()),
            Err(_) => Code::Bytes(bytes.to_vec()),
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        match self {
            Code::Text(s) => s.as_bytes(),
            Code::Bytes(b) => b,
        }
    }
}

/// One unit of work for an executor.
#[derive(Debug)]
pub enum Job {
    /// Evaluate an expression; `locals` are visible to this evaluation only.
    Eval {
        code: Code,
        locals: Vec<(Value, Value)>,
        namespace: Arc<Namespace>,
    },
    /// Run statements in the caller's namespace.
    Exec {
        code: Code,
        namespace: Arc<Namespace>,
    },
    /// Call `module.function(*args, **kwargs)`; module `__main__` means the
    /// caller's namespace (`namespace`).
    Call {
        module: String,
        function: String,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
        namespace: Option<Arc<Namespace>>,
    },
    GetAttr {
        obj: PyObject,
        name: String,
    },
    CallMethod {
        obj: PyObject,
        name: String,
        args: Vec<Value>,
        kwargs: Vec<(Value, Value)>,
    },
    /// Re-import a module from disk.
    Reload {
        module: String,
    },
    /// Run `Eval` or `Call` and answer with a handle on an iterator over
    /// what it returned (`iter(result)`, or `result.__aiter__()` for an
    /// async iterable) instead of the value: a stream's start.
    Iterate(Box<Job>),
    /// Up to `max` next items of an iterator handle made by `Iterate`
    /// (answered with [`Outcome::Batch`]).
    Next {
        iter: PyObject,
        max: usize,
    },
    /// Closes an iterator handle: a generator's `close()` (its `finally`
    /// runs), an async generator's `aclose()`; nothing for other iterators.
    Close {
        iter: PyObject,
    },
}

/// Why a call failed: every kind of `%Py.Error{}` the native side produces
/// (`nif/error.rs` names each one's atom).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ErrorKind {
    /// A Python exception, by class name (`"ValueError"`).
    Python(String),
    /// A value could not cross the bridge.
    Conversion,
    /// The call ran out of time, or was cancelled, while its result was
    /// being converted.
    Timeout,
    /// The context was closed before the call ran.
    Closed,
    /// The interpreter is not running.
    NotStarted,
    /// The context's queue held `max_queue` calls already.
    Overloaded,
    /// A namespace was handed to a context it does not belong to.
    BadArg,
    /// A shared dict was used after it was destroyed.
    Destroyed,
    /// A shared dict's `incr` met a value that is not an integer.
    NotInteger,
    /// A shared dict's backend failed (a SQLite file that is read-only,
    /// corrupt or on a full disk, an unreachable server).
    Backend,
    /// A bug in pybridge itself (a Rust panic, or no executor thread could
    /// be started), caught so the worker and the context keep running.
    Internal,
}

/// A failed call, ready to become `%Py.Error{}`.
#[derive(Debug, Clone)]
pub struct ErrorInfo {
    pub kind: ErrorKind,
    pub message: String,
    pub traceback: Option<String>,
}

impl ErrorInfo {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        ErrorInfo {
            kind,
            message: message.into(),
            traceback: None,
        }
    }
}

/// The result of a job.
#[derive(Debug)]
pub enum Outcome {
    Value(Value),
    /// Success without a value (`exec`, `reload`).
    Done,
    Error(ErrorInfo),
    /// Items of a stream (a `Next` job), and how the batch ended.
    Batch {
        items: Vec<Value>,
        end: BatchEnd,
    },
    /// The job returned a coroutine: the worker hands it to the
    /// interpreter's event loop, which replies when it is done. Never
    /// reaches a [`Reply`].
    Await(Awaiting),
}

/// A coroutine to await on the event loop, and what its result is.
#[derive(Debug)]
pub struct Awaiting {
    pub coroutine: pyo3::Py<pyo3::PyAny>,
    /// Its result is a stream batch (`pybridge._aio.next_batch`), not a value.
    pub batch: bool,
}

/// How a batch of stream items ended.
#[derive(Debug)]
pub enum BatchEnd {
    /// The iterator may have more.
    More,
    /// The iterator is exhausted.
    Done,
    /// The iterator raised after the batch's items.
    Failed(ErrorInfo),
}

/// How long a call waited in its context's queue and then ran, in
/// microseconds (for telemetry).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Timing {
    pub queue_us: u64,
    pub run_us: u64,
}

impl Timing {
    /// The timing of a call queued at `queued`, started at `started` and
    /// finished at `finished`.
    pub fn between(queued: Instant, started: Instant, finished: Instant) -> Timing {
        let micros = |d: std::time::Duration| u64::try_from(d.as_micros()).unwrap_or(u64::MAX);
        Timing {
            queue_us: micros(started.saturating_duration_since(queued)),
            run_us: micros(finished.saturating_duration_since(started)),
        }
    }
}

/// Delivers an [`Outcome`] to whoever is waiting (a BEAM process, a test).
pub trait Reply: Send {
    fn send(self: Box<Self>, outcome: Outcome, timing: Timing);

    /// The BEAM process waiting for this reply, as the target of callbacks
    /// the call makes (None: the call has no BEAM caller, e.g. in tests).
    fn caller(&self) -> Option<Box<dyn crate::callback::Caller>> {
        None
    }
}

const QUEUED: u8 = 0;
const RUNNING: u8 = 1;
const CANCELLED: u8 = 2;
const REPLIED: u8 = 3;

/// The life of one call, shared by the caller (who may cancel it) and the
/// executor (who runs it). Transitions are atomic, so exactly one of
/// "the reply is sent" and "the caller was told it never will be" happens.
#[derive(Debug)]
pub struct CallState {
    /// QUEUED → RUNNING → REPLIED, or → CANCELLED. Acquire/Release (AcqRel
    /// to change it): whoever wins a transition owns what follows (sending
    /// the reply, or telling the caller none will come).
    state: AtomicU8,
    /// Python thread ident of the worker running the call, 0 when none.
    /// A lock, not the GIL, keeps the interrupter from aiming at a thread
    /// that has moved on to another call: a free-threaded interpreter has no
    /// GIL to exclude the worker while the interrupter holds it.
    running_on: parking_lot::Mutex<u64>,
    /// The sub-interpreter the call runs in (None: the main interpreter).
    /// Set once by the worker that takes the call; the interrupter attaches
    /// to it to raise the timeout there.
    interp: std::sync::OnceLock<Arc<Interp>>,
    /// The callback the call's thread waits on, woken when the call is
    /// cancelled (the thread waits without the GIL, where no interrupt
    /// reaches it).
    callback: parking_lot::Mutex<Option<Arc<crate::callback::Slot>>>,
    /// When the caller stops waiting; past it, the monitor interrupts the call
    /// even if the caller died without cancelling.
    pub deadline: Option<Instant>,
    /// Set when the call's coroutine was handed to the event loop
    /// ([`crate::aio`]): the caller's handle going away then cancels it.
    awaited: std::sync::atomic::AtomicBool,
}

/// What [`CallState::cancel`] found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cancel {
    /// The call will never reply (it had not started, or it is being interrupted).
    Cancelled { was_running: bool },
    /// The reply has been (or is being) sent.
    Replied,
}

impl CallState {
    pub fn new(deadline: Option<Instant>) -> Arc<Self> {
        Arc::new(CallState {
            state: AtomicU8::new(QUEUED),
            running_on: parking_lot::Mutex::new(0),
            interp: std::sync::OnceLock::new(),
            callback: parking_lot::Mutex::new(None),
            deadline,
            awaited: std::sync::atomic::AtomicBool::new(false),
        })
    }

    /// Called by the executor before running; false if it was cancelled.
    pub(super) fn start(&self) -> bool {
        self.state
            .compare_exchange(QUEUED, RUNNING, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    /// Called by the executor (or the event loop) when done; false if the
    /// caller cancelled meanwhile.
    pub(crate) fn finish(&self) -> bool {
        self.state
            .compare_exchange(RUNNING, REPLIED, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
    }

    pub fn cancel(&self) -> Cancel {
        let mut current = self.state.load(Ordering::Acquire);
        loop {
            let was_running = match current {
                QUEUED => false,
                RUNNING => true,
                CANCELLED => return Cancel::Cancelled { was_running: false },
                _ => return Cancel::Replied,
            };
            match self.state.compare_exchange(
                current,
                CANCELLED,
                Ordering::AcqRel,
                Ordering::Acquire,
            ) {
                Ok(_) => {
                    if was_running {
                        if let Some(slot) = self.callback.lock().take() {
                            slot.fulfil(crate::callback::Answer::Timeout(
                                "the call waiting on this callback was cancelled (timeout)".into(),
                            ));
                        }
                    }
                    return Cancel::Cancelled { was_running };
                }
                Err(actual) => current = actual,
            }
        }
    }

    /// Runs `send`, which sends the call's caller a message of the call
    /// (a callback request, output) built already, unless the call is
    /// cancelled: None then, and nothing is sent. [`CallState::cancel`] takes
    /// the same lock once it has marked the call cancelled, so such a message
    /// is either in the caller's mailbox before `cancel` returns or never
    /// sent (see [`crate::callback::Gate`], the way to it). `cancel` may run
    /// on a BEAM scheduler and waits for `send`: keep it to the send.
    pub(crate) fn unless_cancelled<T>(&self, send: impl FnOnce() -> T) -> Option<T> {
        let _callback = self.callback.lock();
        (!self.is_cancelled()).then(send)
    }

    /// Records the callback the call's thread waits on (None when done).
    pub(crate) fn set_callback(&self, slot: Option<Arc<crate::callback::Slot>>) {
        *self.callback.lock() = slot;
    }

    /// Marks the call as awaited on the event loop.
    pub(crate) fn set_awaited(&self) {
        self.awaited.store(true, Ordering::Release);
    }

    /// True once the call's coroutine was handed to the event loop.
    pub fn is_awaited(&self) -> bool {
        self.awaited.load(Ordering::Acquire)
    }

    pub fn is_cancelled(&self) -> bool {
        self.state.load(Ordering::Acquire) == CANCELLED
    }

    /// Records the worker thread that will run the call, before it starts
    /// (so an interrupt for a running call always finds it).
    pub(super) fn set_running_on(&self, thread_ident: u64) {
        *self.running_on.lock() = thread_ident;
    }

    /// The thread running the call, 0 when none (for the tests).
    #[cfg(test)]
    pub(super) fn running_on(&self) -> u64 {
        *self.running_on.lock()
    }

    /// True while a worker runs the call (for the tests).
    #[cfg(test)]
    pub(super) fn is_running(&self) -> bool {
        self.state.load(Ordering::Acquire) == RUNNING
    }

    /// Forgets the worker thread, once the call has stopped running.
    pub(super) fn clear_running_on(&self, py: pyo3::Python<'_>) {
        if let Some(mut ident) = self.running_on.try_lock() {
            *ident = 0;
            return;
        }
        // The interrupter holds the lock. On a free-threaded Python it may be
        // waiting for this thread to stop for `SetAsyncExc` (which stops
        // every thread), so wait for the lock detached.
        py.detach(|| *self.running_on.lock() = 0);
    }

    /// Runs `interrupt` with the ident of the thread running the call, if
    /// one is, holding the lock that keeps that thread on this call
    /// meanwhile (it clears the ident before moving on).
    pub(super) fn with_running_thread(&self, interrupt: impl FnOnce(u64)) {
        let ident = self.running_on.lock();
        if *ident != 0 {
            interrupt(*ident);
        }
    }

    /// Records the sub-interpreter the call runs in.
    pub(super) fn set_interp(&self, interp: &Arc<Interp>) {
        let _ = self.interp.set(interp.clone());
    }

    /// The interpreter the call runs in.
    pub(super) fn interp(&self) -> &Arc<Interp> {
        self.interp.get().unwrap_or_else(|| Interp::main())
    }
}

/// A job with its reply channel and shared call state.
pub struct Request {
    pub job: Job,
    pub reply: Box<dyn Reply>,
    pub state: Arc<CallState>,
    /// When the job was queued.
    pub queued: Instant,
}

impl std::fmt::Debug for Request {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Request").field("job", &self.job).finish()
    }
}
