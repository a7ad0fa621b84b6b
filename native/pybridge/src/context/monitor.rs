//! One background thread watching every context: it adds a worker when all
//! of a context's workers are stuck in long calls, and interrupts calls that
//! ran past their deadline (a caller that died cannot cancel its own call).
//! A second thread delivers interrupts, since that needs the GIL.

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock, Weak};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use parking_lot::Mutex;
use pyo3::ffi;

use crate::runtime::{Interp, Kind, ThreadState};

use super::request::{CallState, Cancel};
use super::{worker, Shared};

const BUSY_TICK: Duration = Duration::from_millis(1);
const IDLE_TICK: Duration = Duration::from_millis(5);
/// Past its deadline by this much, a call is interrupted even if its caller
/// never cancelled it.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

static CONTEXTS: Mutex<Vec<Weak<Shared>>> = Mutex::new(Vec::new());
static INTERRUPTS: OnceLock<Sender<Arc<CallState>>> = OnceLock::new();

pub(super) fn register(shared: &Arc<Shared>) {
    start();
    CONTEXTS.lock().push(Arc::downgrade(shared));
}

/// Asks the interrupter to raise `pybridge.Timeout` in the thread running `state`.
pub(crate) fn interrupt(state: Arc<CallState>) {
    if let Some(tx) = INTERRUPTS.get() {
        let _ = tx.send(state);
    }
}

/// Cancels a call from the caller's side, interrupting it if it is running.
pub fn cancel(state: &Arc<CallState>) -> Cancel {
    let result = state.cancel();
    if let Cancel::Cancelled { was_running: true } = result {
        interrupt(state.clone());
    }
    result
}

fn start() {
    INTERRUPTS.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<CallState>>();
        let _ = std::thread::Builder::new()
            .name("py-interrupter".into())
            .spawn(move || {
                let mut tstate = ThreadState::new();
                for state in rx {
                    let interp = state.interp().clone();
                    // The Timeout class of the call's interpreter, set up by
                    // the worker before any call ran there.
                    let Some(exc) = interp.timeout_class() else {
                        continue;
                    };
                    // SAFETY: this thread has no thread state attached
                    // between iterations, and the closure only makes C API
                    // calls valid under the GIL.
                    unsafe {
                        interp.service(&mut tstate, || {
                            let ident = state.running_on();
                            if ident != 0 {
                                // SAFETY: we hold the interpreter's GIL, and
                                // the worker sets or clears `running_on` only
                                // while holding it, so `ident` still runs this
                                // call; `exc` is a live exception class of
                                // this interpreter (SetAsyncExc takes a new
                                // reference).
                                ffi::PyThreadState_SetAsyncExc(ident as _, exc);
                            }
                        })
                    };
                }
            });
        let _ = std::thread::Builder::new()
            .name("py-monitor".into())
            .spawn(watch);
        tx
    });
}

/// Ticks a context must stay stuck while Python computes before it gets
/// another worker.
const COMPUTE_STALL_TICKS: u32 = 10;

/// What the monitor remembers of a context between ticks.
#[derive(Default)]
struct Stall {
    progress: Option<u64>,
    /// Consecutive ticks the home worker has been in the same call with
    /// calls waiting.
    ticks: u32,
    /// Consecutive ticks of those on which the GIL was free.
    free_ticks: u32,
}

/// How often the monitor may return freed memory to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(1);

/// Taking the GIL faster than this means the stuck call released it.
const GIL_FREE: Duration = Duration::from_micros(500);
const GIL_PROBE_GAP: Duration = Duration::from_micros(200);
/// Workers added to one context per tick, at most: the top of the ramp
/// (200 sleeping calls get their workers within a few ticks; a misjudged
/// stall costs little).
const SPAWN_PER_TICK: usize = 32;

fn watch() {
    let mut tstate = ThreadState::new();
    let mut stalls: HashMap<usize, Stall> = HashMap::new();
    let mut released_seen = 0u64;
    let mut last_trim = Instant::now();
    loop {
        let contexts: Vec<Arc<Shared>> = {
            let mut all = CONTEXTS.lock();
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let mut busy = false;
        let now = Instant::now();
        for shared in &contexts {
            busy |= check(shared, &mut stalls, now, &mut tstate);
        }
        stalls.retain(|key, _| contexts.iter().any(|s| key_of(s) == *key));
        // References released where no worker will collect them (closed
        // contexts, handles of objects no context asked for again).
        if Interp::main().has_garbage() {
            tstate.with_gil(|py| Interp::main().collect(py));
        }
        if now.duration_since(last_trim) >= TRIM_EVERY {
            last_trim = now;
            crate::runtime::trim_if_released(&mut released_seen);
            crate::runtime::alloc::release_idle(TRIM_EVERY);
        }
        drop(contexts);
        std::thread::sleep(if busy { BUSY_TICK } else { IDLE_TICK });
    }
}

/// True when the GIL can be taken at once, twice in a row: a single quick
/// probe may just have slipped in while two busy threads handed it over.
fn gil_is_free(interp: &Interp, tstate: &mut ThreadState) -> bool {
    let mut probe = || {
        let started = Instant::now();
        // SAFETY: the monitor thread has no thread state attached here, and
        // the closure calls nothing.
        unsafe { interp.service(tstate, || ()) };
        started.elapsed() < GIL_FREE
    };
    probe() && {
        std::thread::sleep(GIL_PROBE_GAP);
        probe()
    }
}

/// True when every worker of the context is running a call.
fn all_busy(shared: &Shared) -> bool {
    shared
        .slots
        .lock()
        .iter()
        .all(|slot| slot.current.lock().is_some())
}

fn key_of(shared: &Arc<Shared>) -> usize {
    Arc::as_ptr(shared) as usize
}

/// Opens the overflow while the home worker is stuck in one call with calls
/// waiting. Returns true when the context has work queued or running.
///
/// How many overflow workers to add depends on why the home worker is stuck.
/// If the home worker is asleep in the kernel outside a futex, or the GIL is
/// free, its call released the GIL (sleep, I/O, numpy) and every waiting call
/// may be another such call: workers are added on a ramp (1, 2, 4, ... up to
/// [`SPAWN_PER_TICK`] per tick) while that lasts. Otherwise Python is computing and more threads
/// would only queue for the GIL: one more worker after
/// [`COMPUTE_STALL_TICKS`], so quick calls get in at the next GIL switch.
/// Deadlines are enforced in closed contexts too.
fn check(
    shared: &Arc<Shared>,
    stalls: &mut HashMap<usize, Stall>,
    now: Instant,
    tstate: &mut ThreadState,
) -> bool {
    let queued = shared.rx.len();
    let progress = shared.home_progress.load(Ordering::Relaxed);
    let stall = stalls.entry(key_of(shared)).or_default();
    let stuck = stall.progress == Some(progress) && shared.home_running.load(Ordering::Relaxed);
    stall.progress = Some(progress);
    stall.ticks = if stuck { stall.ticks + 1 } else { 0 };
    if !stuck {
        stall.free_ticks = 0;
    }
    // `%Py.Object{}`s the BEAM let go of wait in their interpreter until a
    // worker collects them; a sub-interpreter's idle context is asked to.
    // (The main interpreter's garbage the monitor collects itself.)
    if queued == 0
        && shared.interp.kind() == Kind::Sub
        && shared.interp.has_garbage()
        && !shared.closed.load(Ordering::Acquire)
    {
        let _ = shared.tx.send(super::Task::Collect);
    }
    if queued > 0 && stuck && !shared.closed.load(Ordering::Acquire) {
        shared.overflow_open.store(true, Ordering::Release);
        let parked = shared.parked.load(Ordering::Acquire);
        for _ in 0..queued.min(parked) {
            let _ = shared.wake_tx.send(());
        }
        let workers = shared.workers.load(Ordering::Acquire);
        let room = shared.config.max_workers.saturating_sub(workers);
        // A home worker asleep in the kernel (sleep, I/O) released the GIL,
        // whoever holds the GIL now (another context's computation, say).
        // Otherwise ask the GIL: a computation may have released it (numpy).
        let home_blocked = shared
            .home_thread
            .get()
            .is_some_and(|thread| thread.blocked_outside_futex());
        let gil_free = home_blocked || gil_is_free(&shared.interp, tstate);
        stall.free_ticks = if gil_free { stall.free_ticks + 1 } else { 0 };
        let wanted = if gil_free {
            // Each waiting call may be another blocking call (one spare for
            // the calls that arrive next), but a free GIL can also mean the
            // home worker is just slow to take it back on a loaded machine:
            // ramp up 1, 2, 4, ... per tick while the evidence lasts.
            let ramp = 1usize
                .checked_shl(stall.free_ticks - 1)
                .map_or(SPAWN_PER_TICK, |r| r.min(SPAWN_PER_TICK));
            (queued + 1).saturating_sub(parked).min(ramp)
        } else if stall.ticks >= COMPUTE_STALL_TICKS && parked == 0 && all_busy(shared) {
            // Computing for a while: one more thread, so a quick call waits
            // for the next GIL switch, not for a long computation. Stalls
            // shorter than this are GIL contention, which threads won't fix.
            stall.ticks = 0;
            1
        } else {
            0
        };
        for _ in 0..wanted.min(room) {
            if worker::spawn(shared, false).is_err() {
                break;
            }
        }
    } else {
        // The home worker is free (or moving again): calls go back to it.
        shared.overflow_open.store(false, Ordering::Release);
    }
    let mut running = false;
    for slot in shared.slots.lock().iter() {
        let current = slot.current.lock().clone();
        if let Some(state) = current {
            running = true;
            let overdue = state.deadline.is_some_and(|d| now > d + DEADLINE_GRACE);
            if overdue {
                cancel(&state);
            }
        }
    }
    queued > 0 || running
}
