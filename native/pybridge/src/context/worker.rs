//! Executor threads: take the GIL once, drain the queue, let go.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crossbeam_channel::RecvTimeoutError;
use parking_lot::Mutex;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::runtime::ThreadState;

use super::request::{CallState, ErrorInfo, ErrorKind, Outcome, Request};
use super::{execute, Shared, Task};

/// Stack of a worker thread: deep conversions and C-level recursion in
/// Python need more than the 2 MiB Rust default.
const STACK_SIZE: usize = 16 * 1024 * 1024;
/// An extra worker idle this long exits.
const IDLE_RETIRE: Duration = Duration::from_secs(10);
/// Calls run under one GIL hold before giving other threads a chance at it.
const BATCH: usize = 64;

/// What the monitor can see of a worker.
#[derive(Debug, Default)]
pub(crate) struct WorkerSlot {
    pub(super) ident: AtomicU64,
    pub(super) current: Mutex<Option<Arc<CallState>>>,
}

/// Starts one more worker for `shared`.
pub(super) fn spawn(shared: &Arc<Shared>) -> std::io::Result<()> {
    let n = shared.workers.fetch_add(1, Ordering::AcqRel) + 1;
    let slot = Arc::new(WorkerSlot::default());
    shared.slots.lock().push(slot.clone());
    let thread_shared = shared.clone();
    let name = format!(
        "py-{}-{}-{}",
        shared.config.pool, shared.config.index, n
    );
    let spawned = std::thread::Builder::new()
        .name(name)
        .stack_size(STACK_SIZE)
        .spawn(move || run(thread_shared, slot));
    if spawned.is_err() {
        shared.workers.fetch_sub(1, Ordering::AcqRel);
    }
    spawned.map(|_| ())
}

fn run(shared: Arc<Shared>, slot: Arc<WorkerSlot>) {
    let mut tstate = ThreadState::new();
    slot.ident.store(tstate.ident(), Ordering::Release);
    let mut retired = false;
    loop {
        shared.idle.fetch_add(1, Ordering::AcqRel);
        let next = shared.rx.recv_timeout(IDLE_RETIRE);
        shared.idle.fetch_sub(1, Ordering::AcqRel);
        let task = match next {
            Ok(Task::Stop) | Err(RecvTimeoutError::Disconnected) => break,
            Ok(task) => task,
            Err(RecvTimeoutError::Timeout) => {
                if try_retire(&shared) {
                    retired = true;
                    break;
                }
                continue;
            }
        };
        if tstate.with_gil(|py| drain(py, &shared, &slot, task)) {
            break;
        }
    }
    shared.slots.lock().retain(|s| !Arc::ptr_eq(s, &slot));
    if !retired {
        shared.workers.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Lets an idle worker go, keeping at least one per open context.
fn try_retire(shared: &Shared) -> bool {
    let mut n = shared.workers.load(Ordering::Acquire);
    while n > 1 {
        match shared
            .workers
            .compare_exchange(n, n - 1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => return true,
            Err(actual) => n = actual,
        }
    }
    false
}

/// Runs `first` and whatever else is queued, holding the GIL. Returns true
/// when told to stop.
fn drain(py: Python<'_>, shared: &Shared, slot: &WorkerSlot, first: Task) -> bool {
    let mut task = first;
    let mut ran = 0usize;
    loop {
        match task {
            Task::Stop => return true,
            Task::Release(obj) => drop(obj),
            Task::Call(request) => run_call(py, shared, slot, request),
        }
        ran += 1;
        if ran % BATCH == 0 {
            // Let other contexts' workers at the GIL.
            py.detach(std::thread::yield_now);
        }
        match shared.rx.try_recv() {
            Ok(next) => task = next,
            Err(_) => return false,
        }
    }
}

fn run_call(py: Python<'_>, shared: &Shared, slot: &WorkerSlot, request: Request) {
    let Request { job, reply, state } = request;
    if !state.start() {
        shared.stats.dropped(true);
        return;
    }
    if shared.closed.load(Ordering::Acquire) {
        shared.stats.dropped(false);
        if state.finish() {
            let error = ErrorInfo::new(ErrorKind::Closed, "the context was closed before the call ran");
            reply.send(Outcome::Error(error));
        }
        return;
    }
    shared.progress.fetch_add(1, Ordering::Relaxed);
    let ident = slot.ident.load(Ordering::Relaxed);
    state.set_running_on(ident);
    *slot.current.lock() = Some(state.clone());

    let started = Instant::now();
    let outcome = execute::run(py, shared, job);
    let busy = started.elapsed().as_nanos() as u64;

    *slot.current.lock() = None;
    state.set_running_on(0);
    shared
        .stats
        .finished(busy, matches!(outcome, Outcome::Error(_)));
    if state.finish() {
        reply.send(outcome);
    } else {
        shared.stats.cancelled_while_running();
        // An interrupt aimed at this call may still be pending; it must not
        // hit the next one.
        // SAFETY: we hold the GIL; a NULL exception clears any pending
        // asynchronous exception of this thread.
        unsafe { ffi::PyThreadState_SetAsyncExc(ident as _, std::ptr::null_mut()) };
        drop(outcome);
    }
}
