//! Contexts: the executors that run Python for the BEAM.
//!
//! A context owns a FIFO queue and a home worker thread with its own Python
//! thread state. The home worker takes the GIL once and drains the queue under
//! that one hold, so a burst of small calls costs one GIL acquisition, not one
//! per call, and every call normally runs on the same OS thread (objects tied
//! to a thread, such as sqlite3 connections, keep working).
//!
//! When the home worker is stuck in one long call (one that released the GIL
//! in `time.sleep`, I/O or numpy, or one that computes for long) while calls
//! wait, the [`monitor`] opens the overflow: parked overflow workers (or new
//! ones, up to `max_workers`) take the waiting calls until the home worker is
//! free again. Overflow workers parked for long exit.
//!
//! Each BEAM process gets its own namespace in each context it uses
//! ([`Namespace`]); the context also keeps a bounded cache of compiled code.
//!
//! A context runs in the main interpreter, shared with the other contexts,
//! or in a sub-interpreter of its own with its own GIL
//! ([`ContextConfig::subinterpreter`], see [`crate::runtime::Interp`]).

mod code_cache;
mod execute;
mod monitor;
mod namespace;
mod queue_bound;
mod request;
mod stats;
mod stream;
mod submit;
mod worker;

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;

use crossbeam_channel::{Receiver, Sender};
use parking_lot::{Mutex, RwLock};
use pyo3::{Py, PyAny};

use crate::limits::{DEFAULT_CODE_CACHE_SIZE, DEFAULT_MAX_QUEUE, DEFAULT_MAX_WORKERS};
use crate::runtime::{CpuHint, Interp};

pub use monitor::cancel;
pub use namespace::Namespace;
pub use queue_bound::{Overload, Waker};
pub use request::{
    Awaiting, BatchEnd, CallState, Cancel, Code, ErrorInfo, ErrorKind, Job, Outcome, Reply,
    Request, Timing,
};
pub use stats::StatsSnapshot;
pub use submit::SubmitError;

pub(crate) use execute::error_info;

use code_cache::CodeCache;
use queue_bound::QueueBound;
use stats::Stats;
use worker::WorkerSlot;

/// How a context is set up.
#[derive(Debug, Clone)]
pub struct ContextConfig {
    /// The pool the context belongs to (`"default"`, `"io"`, ...).
    pub pool: String,
    /// 1-based position in the pool.
    pub index: usize,
    /// Upper bound on worker threads (calls that run at once).
    pub max_workers: usize,
    /// Compiled code objects kept per context.
    pub code_cache_size: usize,
    /// Run in a sub-interpreter of its own, with its own GIL (CPython 3.12+),
    /// instead of the main interpreter.
    pub subinterpreter: bool,
    /// Most calls waiting in the queue; see [`queue_bound`].
    pub max_queue: usize,
    /// What happens to a call beyond `max_queue`.
    pub overload: Overload,
}

impl Default for ContextConfig {
    fn default() -> Self {
        ContextConfig {
            pool: "default".into(),
            index: 1,
            max_workers: DEFAULT_MAX_WORKERS,
            code_cache_size: DEFAULT_CODE_CACHE_SIZE,
            subinterpreter: false,
            max_queue: DEFAULT_MAX_QUEUE,
            overload: Overload::Refuse,
        }
    }
}

/// Work on a context's queue.
enum Task {
    Call(Request),
    /// Drop the references released to the interpreter (a namespace).
    Collect,
    /// Make one worker exit (on close).
    Stop,
}

/// A context's state: shared by its handle, its workers, its namespaces and
/// the monitor.
pub(crate) struct ContextState {
    config: ContextConfig,
    /// The interpreter the context runs in: the main one, or its own.
    interp: Arc<Interp>,
    tx: Sender<Task>,
    rx: Receiver<Task>,
    /// Held shared while queueing a call and exclusively while closing, so
    /// no call can be queued behind the workers' Stop tasks.
    gate: RwLock<()>,
    /// Set once, by `close`. SeqCst, like `parked`: `close` sets it and then
    /// reads `parked` while a parking overflow worker counts itself in
    /// `parked` and then reads it; only SeqCst rules out both reading the
    /// old value (a worker left parked in a closed context).
    closed: AtomicBool,
    /// Worker threads alive. Acquire/Release (AcqRel to change it): the
    /// worker that takes it to zero drops the context's Python references,
    /// after every other worker's last use of them.
    workers: AtomicUsize,
    /// Overflow workers waiting for the overflow to open. SeqCst: see `closed`.
    parked: AtomicUsize,
    wake_tx: Sender<()>,
    wake_rx: Receiver<()>,
    /// Set by the monitor while the home worker is stuck and calls wait.
    /// This and the two below are hints (Relaxed): no data is handed over
    /// through them, calls travel through the channel.
    overflow_open: AtomicBool,
    /// True while the home worker runs a call.
    home_running: AtomicBool,
    /// Bumped each time the home worker starts a call; the monitor compares
    /// it between ticks to tell a busy home worker from a stuck one.
    home_progress: AtomicU64,
    /// The home worker's OS thread (Linux), for the monitor to see where a
    /// long call is blocked.
    home_thread: std::sync::OnceLock<worker::OsThread>,
    /// Where the home worker and the last submitter ran: neither spins for
    /// the other when they share a core (see [`CpuHint`]).
    home_cpu: CpuHint,
    caller_cpu: CpuHint,
    /// Workers waiting on the BEAM for a callback's answer (GIL released).
    /// While any is, overflow workers take calls at once: the callback may
    /// call back into this context. A hint like `overflow_open`, except
    /// between `wait_on_beam` and `Context::submit`, which fence around it
    /// so that a call queued as a worker starts waiting is never missed.
    beam_waits: AtomicUsize,
    /// Overflow workers polling the queue, free to take a call.
    polling: AtomicUsize,
    slots: Mutex<Vec<Arc<WorkerSlot>>>,
    code_cache: Mutex<CodeCache>,
    stats: Stats,
    /// At most `max_queue` calls in `rx`; the callers beyond it.
    bound: QueueBound,
}

impl std::fmt::Debug for ContextState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("pool", &self.config.pool)
            .field("index", &self.config.index)
            .finish()
    }
}

impl ContextState {
    /// Hands a Python reference back to the context's interpreter, to be
    /// dropped with it attached, and nudges a worker to do it now unless a
    /// collection is already due. In a closed context it waits for the
    /// monitor (main interpreter) or the end of the sub-interpreter.
    fn release(&self, obj: Py<PyAny>) {
        if self.interp.release(obj) && !self.closed.load(Ordering::SeqCst) {
            // `rx` lives in `self`, so the send cannot fail.
            let _ = self.tx.send(Task::Collect);
        }
    }

    /// True when the home worker last ran on the calling thread's core:
    /// waiting for its answer by spinning would only slow it down.
    #[cfg(feature = "nif")]
    pub(crate) fn shares_my_cpu(&self) -> bool {
        self.home_cpu.is_mine()
    }
}

/// A handle on one executor. Cloning is cheap; the executor stops when
/// [`Context::close`] is called or the last handle is dropped.
#[derive(Debug, Clone)]
pub struct Context {
    handle: Arc<Handle>,
}

/// Owned by the handles only (workers, namespaces and the monitor hold
/// `ContextState`), so its drop marks the last handle going away.
#[derive(Debug)]
struct Handle {
    state: Arc<ContextState>,
}

impl Drop for Handle {
    fn drop(&mut self) {
        close(&self.state);
    }
}

impl Context {
    /// Starts a context with one worker thread; the interpreter must be running.
    pub fn new(config: ContextConfig) -> Result<Context, SubmitError> {
        if !crate::runtime::is_initialized() {
            return Err(SubmitError::NotInitialized);
        }
        let interp = if config.subinterpreter {
            crate::runtime::new_subinterpreter().map_err(SubmitError::Interpreter)?
        } else {
            Interp::main().clone()
        };
        // The channel itself is unbounded: `bound` limits the calls in it,
        // and the few other tasks (Collect, Stop) must never be refused.
        let (tx, rx) = crossbeam_channel::unbounded();
        let (wake_tx, wake_rx) = crossbeam_channel::unbounded();
        let context = Arc::new(ContextState {
            bound: QueueBound::new(config.max_queue, config.overload),
            interp,
            code_cache: Mutex::new(CodeCache::new(config.code_cache_size)),
            config: ContextConfig {
                max_workers: config.max_workers.max(1),
                ..config
            },
            tx,
            rx,
            gate: RwLock::new(()),
            closed: AtomicBool::new(false),
            workers: AtomicUsize::new(0),
            parked: AtomicUsize::new(0),
            wake_tx,
            wake_rx,
            overflow_open: AtomicBool::new(false),
            home_running: AtomicBool::new(false),
            home_progress: AtomicU64::new(0),
            home_cpu: CpuHint::default(),
            caller_cpu: CpuHint::default(),
            home_thread: std::sync::OnceLock::new(),
            beam_waits: AtomicUsize::new(0),
            polling: AtomicUsize::new(0),
            slots: Mutex::new(Vec::new()),
            stats: Stats::default(),
        });
        worker::spawn(&context, true).map_err(|e| SubmitError::Spawn(e.to_string()))?;
        monitor::register(&context);
        Ok(Context {
            handle: Arc::new(Handle { state: context }),
        })
    }

    fn state(&self) -> &Arc<ContextState> {
        &self.handle.state
    }

    /// A new, empty namespace for one BEAM process in this context.
    pub fn new_namespace(&self) -> Arc<Namespace> {
        Arc::new(Namespace::new(self.state().clone()))
    }

    /// Stops accepting calls, answers queued ones with a `Closed` error and
    /// lets the workers exit. Calls already running finish first.
    pub fn close(&self) {
        close(self.state());
    }

    /// True when nothing is queued and the home worker is not running a call:
    /// a call submitted now starts at once.
    pub fn is_idle(&self) -> bool {
        let s = self.state();
        s.rx.is_empty() && !s.home_running.load(Ordering::Relaxed)
    }

    /// The context's state, for what asks [`ContextState::shares_my_cpu`]
    /// (clone it to ask later without keeping the context open).
    #[cfg(feature = "nif")]
    pub(crate) fn state_ref(&self) -> &Arc<ContextState> {
        self.state()
    }

    /// True when both handles are on the same context.
    pub fn same_as(&self, other: &Context) -> bool {
        Arc::ptr_eq(self.state(), other.state())
    }

    /// True when the context runs in a sub-interpreter of its own.
    pub fn is_subinterpreter(&self) -> bool {
        self.state().interp.kind() == crate::runtime::Kind::Sub
    }

    /// Counters for introspection and the dashboard.
    pub fn stats(&self) -> StatsSnapshot {
        let s = self.state();
        StatsSnapshot {
            max_queue: s.bound.max() as u64,
            overloaded_total: s.bound.overloaded_total(),
            ..s.stats.snapshot(
                s.bound.queued(),
                s.workers.load(Ordering::Acquire),
                s.parked.load(Ordering::SeqCst),
            )
        }
    }
}

fn close(context: &ContextState) {
    let _closing = context.gate.write();
    if context.closed.swap(true, Ordering::SeqCst) {
        return;
    }
    let workers = context.workers.load(Ordering::Acquire);
    for _ in 0..workers.max(1) {
        let _ = context.tx.send(Task::Stop);
    }
    // Parked overflow workers must come and take their Stop too.
    context.overflow_open.store(true, Ordering::Relaxed);
    for _ in 0..context.parked.load(Ordering::SeqCst) {
        let _ = context.wake_tx.send(());
    }
    // Callers waiting for room submit again and get `Closed`.
    context.bound.wake_all();
}

fn job_namespace(job: &Job) -> Option<&Arc<Namespace>> {
    match job {
        Job::Eval { namespace, .. } | Job::Exec { namespace, .. } => Some(namespace),
        Job::Call { namespace, .. } => namespace.as_ref(),
        Job::Iterate(inner) => job_namespace(inner),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
