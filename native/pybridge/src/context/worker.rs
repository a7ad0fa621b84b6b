//! Executor threads: take the GIL once, drain the queue, let go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::limits::{CALLS_PER_GIL_CHECK, GIL_SLICE, PYTHON_THREAD_STACK_BYTES};
use crate::runtime::{Kind, ThreadState};

use super::request::{CallState, ErrorInfo, ErrorKind, Outcome, Request, Timing};
use super::{execute, ContextState, Task};

/// An overflow worker parked this long exits.
const IDLE_RETIRE: Duration = Duration::from_secs(10);
/// How often an overflow worker re-checks that the overflow is still open.
const OVERFLOW_POLL: Duration = Duration::from_millis(1);
/// How long a draining home worker keeps the GIL waiting for the next call.
const HOLD_GIL_FOR: Duration = Duration::from_micros(3);
/// How long the home worker polls its queue before parking.
const SPIN: Duration = Duration::from_micros(50);

/// What the monitor can see of a worker.
#[derive(Debug, Default)]
pub(crate) struct WorkerSlot {
    /// Python's ident of the worker's thread, set and read by that thread
    /// (Relaxed).
    pub(super) ident: AtomicU64,
    pub(super) current: Mutex<Option<Arc<CallState>>>,
}

/// Starts a worker: the home worker when the context is created, overflow
/// workers when the monitor finds the home worker stuck in a long call.
pub(super) fn spawn(context: &Arc<ContextState>, home: bool) -> std::io::Result<()> {
    let n = context.workers.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = Arc::new(WorkerSlot::default());
    context.slots.lock().push(slot.clone());
    let thread_slot = slot.clone();
    let thread_context = context.clone();
    let name = format!("py-{}-{}-{}", context.config.pool, context.config.index, n);
    let spawned = std::thread::Builder::new()
        .name(name)
        .stack_size(PYTHON_THREAD_STACK_BYTES)
        .spawn(move || {
            if home {
                run_home(&thread_context, &thread_slot)
            } else {
                run_overflow(&thread_context, &thread_slot)
            }
            thread_context
                .slots
                .lock()
                .retain(|s| !Arc::ptr_eq(s, &thread_slot));
        });
    if spawned.is_err() {
        context.workers.fetch_sub(1, Ordering::AcqRel);
        context.slots.lock().retain(|s| !Arc::ptr_eq(s, &slot));
    }
    spawned.map(|_| ())
}

/// The home worker runs every call unless it is stuck, so Python objects
/// tied to a thread (an sqlite3 connection) keep working across calls.
/// Executor threads run as batch work at a lower CPU priority than the
/// BEAM's schedulers, so CPU-bound Python cannot make BEAM processes late on
/// a busy machine.
const NICENESS: libc::c_int = 10;

fn lower_priority() {
    if !crate::runtime::batch_priority() {
        return;
    }
    #[cfg(target_os = "linux")]
    // SAFETY: gettid has no preconditions; SCHED_BATCH with priority 0 and a
    // higher nice value on our own thread need no privilege and only affect
    // how the kernel schedules this thread.
    unsafe {
        let tid = libc::gettid();
        let param = libc::sched_param { sched_priority: 0 };
        libc::sched_setscheduler(tid, libc::SCHED_BATCH, &param);
        libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, NICENESS);
    }
}

/// An OS thread, as the monitor can observe it from outside.
#[derive(Debug, Clone, Copy)]
pub(crate) struct OsThread(#[cfg(target_os = "linux")] libc::pid_t);

impl OsThread {
    /// The calling thread, where the OS lets other threads observe it.
    fn this_thread() -> Option<OsThread> {
        #[cfg(target_os = "linux")]
        {
            // SAFETY: gettid has no preconditions.
            Some(OsThread(unsafe { libc::gettid() }))
        }
        #[cfg(not(target_os = "linux"))]
        None
    }

    /// True when the thread is asleep in the kernel on something other than
    /// a futex: `time.sleep`, a socket, a pipe, `select`... CPython releases
    /// the GIL around all of those. (A futex wait may be a wait for the GIL
    /// itself, so it proves nothing.) False when unknown.
    pub(crate) fn blocked_outside_futex(self) -> bool {
        #[cfg(target_os = "linux")]
        {
            let path = format!("/proc/self/task/{}/wchan", self.0);
            match std::fs::read_to_string(path) {
                Ok(wchan) => {
                    let wchan = wchan.trim();
                    !(wchan.is_empty() || wchan == "0" || wchan.starts_with("futex"))
                }
                Err(_) => false,
            }
        }
        #[cfg(not(target_os = "linux"))]
        false
    }
}

fn run_home(context: &Arc<ContextState>, slot: &WorkerSlot) {
    lower_priority();
    if let Some(thread) = OsThread::this_thread() {
        let _ = context.home_thread.set(thread);
    }
    let mut tstate = ThreadState::in_interp(&context.interp);
    slot.ident.store(tstate.ident(), Ordering::Relaxed);
    // A new sub-interpreter gets its `pybridge` and `erlang` modules before
    // any call, so that even a first `import erlang` finds them. (A failure
    // here comes back with the first call that needs them.)
    tstate.with_gil(|py| {
        let _ = context.interp.state(py);
    });
    while let Ok(task) = next_task(context) {
        if matches!(task, Task::Stop) {
            break;
        }
        if tstate.with_gil(|py| drain(py, context, slot, task, true)) {
            break;
        }
    }
    retire(context, &mut tstate);
}

/// A worker leaves. The last one drops the context's Python references
/// (compiled code, released namespaces) while it can still attach: once
/// the workers are gone nothing may drop them without the interpreter
/// attached (see [`crate::runtime::Interp`]).
fn retire(context: &ContextState, tstate: &mut ThreadState) {
    if context.workers.fetch_sub(1, Ordering::AcqRel) == 1 {
        tstate.with_gil(|py| {
            context.code_cache.lock().clear();
            // A sub-interpreter's event loop ends with its context (the
            // main interpreter's serves every main context).
            if context.interp.kind() == Kind::Sub {
                crate::aio::stop(py);
            }
            context.interp.collect(py);
        });
    }
}

/// The next task for the home worker. It polls for a short while before
/// parking: a caller in a loop sends its next call within microseconds, and
/// waking a parked thread costs more than that.
fn next_task(context: &ContextState) -> Result<Task, crossbeam_channel::RecvError> {
    context.home_cpu.record();
    if context.caller_cpu.is_mine() {
        // The caller needs this core to send its next call: give it up.
        return context.rx.recv();
    }
    let polled = crate::runtime::poll_for(SPIN, || match context.rx.try_recv() {
        Err(crossbeam_channel::TryRecvError::Empty) => None,
        other => Some(other),
    });
    match polled {
        Some(Ok(task)) => Ok(task),
        Some(Err(_)) => Err(crossbeam_channel::RecvError),
        None => context.rx.recv(),
    }
}

/// An overflow worker takes calls only while the monitor keeps the overflow
/// open (the home worker is stuck and calls are waiting); otherwise it parks,
/// and it exits after [`IDLE_RETIRE`] parked.
fn run_overflow(context: &Arc<ContextState>, slot: &WorkerSlot) {
    lower_priority();
    let mut tstate = ThreadState::in_interp(&context.interp);
    slot.ident.store(tstate.ident(), Ordering::Relaxed);
    // A new overflow worker was started for a waiting call: go straight to work.
    let mut woken = true;
    'parked: loop {
        if !woken {
            // Counted as parked before checking `closed`: `close` sets
            // `closed` before reading the count, so either this worker sees
            // the flag or `close` sends it a wake-up.
            context.parked.fetch_add(1, Ordering::SeqCst);
            let wake = if context.closed.load(Ordering::SeqCst) {
                Err(crossbeam_channel::RecvTimeoutError::Disconnected)
            } else {
                context.wake_rx.recv_timeout(IDLE_RETIRE)
            };
            context.parked.fetch_sub(1, Ordering::SeqCst);
            if wake.is_err() {
                break;
            }
        }
        woken = false;
        if context.closed.load(Ordering::SeqCst) {
            break;
        }
        // Counted as polling while it waits on the queue, so that a worker
        // waiting on the BEAM knows a call queued now is taken at once.
        let polling = Polling::new(context);
        while overflowing(context) {
            match context.rx.recv_timeout(OVERFLOW_POLL) {
                Ok(Task::Stop) => break 'parked,
                Ok(task) => {
                    polling.pause();
                    if tstate.with_gil(|py| drain(py, context, slot, task, false)) {
                        break 'parked;
                    }
                    polling.resume();
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => break 'parked,
            }
        }
    }
    retire(context, &mut tstate);
}

/// An overflow worker's count in `ContextState::polling`, while it polls.
struct Polling<'a> {
    context: &'a ContextState,
    counted: std::cell::Cell<bool>,
}

impl<'a> Polling<'a> {
    fn new(context: &'a ContextState) -> Self {
        context.polling.fetch_add(1, Ordering::SeqCst);
        Polling {
            context,
            counted: std::cell::Cell::new(true),
        }
    }

    fn pause(&self) {
        if self.counted.replace(false) {
            self.context.polling.fetch_sub(1, Ordering::SeqCst);
        }
    }

    fn resume(&self) {
        if !self.counted.replace(true) {
            self.context.polling.fetch_add(1, Ordering::SeqCst);
        }
    }
}

impl Drop for Polling<'_> {
    fn drop(&mut self) {
        self.pause();
    }
}

/// Overflow workers take calls only while the home worker is in fact busy
/// and either the monitor has opened the overflow or a worker waits on the
/// BEAM for a callback (which may call back into this context), so that
/// calls stay on the home thread whenever it can take them.
fn overflowing(context: &ContextState) -> bool {
    (context.overflow_open.load(Ordering::Relaxed)
        || context.beam_waits.load(Ordering::Relaxed) > 0)
        && context.home_running.load(Ordering::Relaxed)
}

/// Runs `first` and whatever else is queued, holding the GIL. Overflow
/// workers stop draining when the overflow closes. Returns true when told to stop.
fn drain(
    py: Python<'_>,
    context: &Arc<ContextState>,
    slot: &WorkerSlot,
    first: Task,
    home: bool,
) -> bool {
    let mut task = first;
    let mut ran = 0usize;
    let mut held_since = Instant::now();
    // Namespaces of exited processes, `%Py.Object{}`s the BEAM let go of.
    context.interp.collect(py);
    loop {
        match task {
            Task::Stop => return true,
            Task::Collect => {
                context.interp.collect(py);
            }
            Task::Call(request) => {
                if home {
                    context.home_cpu.record();
                    context.home_progress.fetch_add(1, Ordering::Relaxed);
                    context.home_running.store(true, Ordering::Relaxed);
                    run_call(py, context, slot, request);
                    context.home_running.store(false, Ordering::Relaxed);
                } else {
                    run_call(py, context, slot, request);
                }
            }
        }
        ran += 1;
        if ran.is_multiple_of(CALLS_PER_GIL_CHECK) && held_since.elapsed() > GIL_SLICE {
            // Let other contexts' workers at the GIL.
            py.detach(std::thread::yield_now);
            held_since = Instant::now();
        }
        if !home && !overflowing(context) {
            return false;
        }
        // A caller in a loop sends its next call within microseconds: wait
        // for it a moment still holding the GIL, rather than paying for a
        // release and re-acquire. Other threads wait for the GIL at most
        // this long.
        let next = match context.rx.try_recv() {
            Ok(next) => Some(next),
            Err(_) if home && !context.caller_cpu.is_mine() => {
                crate::runtime::poll_for(HOLD_GIL_FOR, || context.rx.try_recv().ok())
            }
            Err(_) => None,
        };
        match next {
            Some(next) => task = next,
            None => return false,
        }
    }
}

fn run_call(py: Python<'_>, context: &Arc<ContextState>, slot: &WorkerSlot, request: Request) {
    let Request {
        job,
        reply,
        state,
        queued,
    } = request;
    // Off the queue: its place goes to the next call (or waiting caller).
    context.bound.release();
    // Who runs the call is known before it counts as running, so that an
    // interrupt for a running call always finds its thread.
    let ident = slot.ident.load(Ordering::Relaxed);
    if context.interp.kind() == Kind::Sub {
        state.set_interp(&context.interp);
    }
    state.set_running_on(ident);
    if !state.start() {
        state.clear_running_on(py);
        context.stats.dropped(true);
        return;
    }
    if context.closed.load(Ordering::SeqCst) {
        state.clear_running_on(py);
        context.stats.dropped(false);
        if state.finish() {
            let error = ErrorInfo::new(
                ErrorKind::Closed,
                "the context was closed before the call ran",
            );
            let now = Instant::now();
            reply.send(Outcome::Error(error), Timing::between(queued, now, now));
        }
        return;
    }
    *slot.current.lock() = Some(state.clone());
    // Callbacks the call makes go to the process waiting for `reply`.
    crate::callback::enter(state.clone(), context.clone(), reply);

    let started = Instant::now();
    let entry = super::job_namespace(&job).map(|n| n.enter(py, &state));
    // A panic must not take the worker (and with it the context) down.
    let outcome = match &entry {
        // Cancelled while waiting for the namespace: never ran.
        Some(Ok(None)) => {
            drop(job);
            Outcome::Done
        }
        Some(Err(err)) => {
            drop(job);
            Outcome::Error(execute::error_info(py, err.clone_ref(py)))
        }
        _ => std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            execute::run(py, context, job, &state)
        }))
        .unwrap_or_else(|panic| {
            let what = panic
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| panic.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Outcome::Error(ErrorInfo::new(
                ErrorKind::Internal,
                format!("pybridge internal error (please report it): {what}"),
            ))
        }),
    };
    let entry = entry.and_then(|e| e.ok().flatten());
    let finished = Instant::now();
    // Always there: `enter` above recorded it on this thread.
    let reply = crate::callback::leave();
    let busy =
        u64::try_from(finished.saturating_duration_since(started).as_nanos()).unwrap_or(u64::MAX);

    *slot.current.lock() = None;
    state.clear_running_on(py);
    // SharedDict locks the call took without `hold=True` end with it.
    crate::shared_dict::release_call_locks(ident);
    context
        .stats
        .finished(busy, matches!(outcome, Outcome::Error(_)));
    if let Outcome::Await(awaiting) = outcome {
        await_on_loop(
            py, context, awaiting, entry, reply, &state, queued, started, ident,
        );
        return;
    }
    let replied = state.finish();
    if !replied {
        context.stats.cancelled_while_running();
        // Consumed before the call's namespace is undone below, since
        // undoing may run finalisers.
        settle_interrupt(py, ident);
    }
    // Left (and let go of) before the caller hears back: it may drop its own
    // handle at once and expect the namespace gone.
    if let Some(entry) = entry {
        entry.leave(py, replied);
    }
    if let (true, Some(reply)) = (replied, reply) {
        reply.send(outcome, Timing::between(queued, started, finished));
    }
}

/// The call returned a coroutine: the event loop awaits it and replies
/// (see [`crate::aio`]), unless the caller gave up already.
#[allow(clippy::too_many_arguments)]
fn await_on_loop(
    py: Python<'_>,
    context: &Arc<ContextState>,
    awaiting: super::Awaiting,
    entry: Option<super::namespace::Entry>,
    reply: Option<Box<dyn super::Reply>>,
    state: &Arc<CallState>,
    queued: Instant,
    started: Instant,
    ident: u64,
) {
    let cancelled = state.is_cancelled();
    // (The reply is always there: `callback::enter` recorded it.)
    let reply = match reply {
        Some(reply) if !cancelled => reply,
        _ => {
            if cancelled {
                context.stats.cancelled_while_running();
                settle_interrupt(py, ident);
            }
            // Closed, so Python does not warn that it was never awaited.
            let _ = awaiting.coroutine.bind(py).call_method0("close");
            if let Some(entry) = entry {
                entry.leave(py, false);
            }
            return;
        }
    };
    if let Some(entry) = entry {
        entry.leave(py, true);
    }
    // The coroutine's first step may run here (see `crate::aio`).
    let handed = crate::callback::stepping(context, || {
        crate::aio::hand_off(
            py,
            &context.interp,
            awaiting,
            reply,
            state.clone(),
            queued,
            started,
        )
    });
    if let Err((reply, info)) = handed {
        if state.finish() {
            reply.send(
                Outcome::Error(info),
                Timing::between(queued, started, Instant::now()),
            );
        }
    }
}

/// Makes sure no interrupt aimed at a cancelled call is left pending on this
/// thread, so that the thread's next call runs as on a fresh thread.
///
/// Clearing the pending exception (`PyThreadState_SetAsyncExc` with NULL) is
/// not enough: before CPython 3.13 it leaves the interpreter's "asynchronous
/// exception" flag set, which only raising the exception resets. With the
/// flag stuck, every bytecode boundary of every thread handles work that is
/// not there, and under `sys.settrace`, `sys.setprofile` or `cProfile`
/// CPython re-handles it at the same instruction forever (a hang). So the
/// interrupt is raised on purpose, the way CPython consumes one: post
/// `pybridge.Timeout` (replacing any pending exception), evaluate a trivial
/// code object, whose first instruction raises it, and discard it.
fn settle_interrupt(py: Python<'_>, ident: u64) {
    let Some(timeout) = crate::runtime::Interp::current().timeout_class() else {
        // No call has run in this interpreter's set-up state: nothing to clear.
        return;
    };
    // SAFETY: we hold the GIL; `ident` is this thread, `timeout` a live class
    // of its interpreter (SetAsyncExc takes a new reference).
    unsafe { ffi::PyThreadState_SetAsyncExc(ident as _, timeout) };
    let raised = py
        .run(c"None", Some(&pyo3::types::PyDict::new(py)), None)
        .is_err();
    if !raised {
        // Not reached on the CPythons we know; never leave it pending.
        // SAFETY: as above; NULL clears the pending exception.
        unsafe { ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut()) };
    }
}
