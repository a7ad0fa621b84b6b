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

use crate::runtime::{timeout_exception, ThreadState};

use super::request::{CallState, Cancel};
use super::{worker, Shared};

const BUSY_TICK: Duration = Duration::from_millis(1);
const IDLE_TICK: Duration = Duration::from_millis(5);
/// Workers added to a stuck context per tick, at most.
const SPAWN_PER_TICK: usize = 4;
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
                    tstate.with_gil(|py| {
                        let ident = state.running_on();
                        if ident == 0 {
                            return;
                        }
                        if let Ok(exc) = timeout_exception(py) {
                            // SAFETY: we hold the GIL, and the worker sets or
                            // clears `running_on` only while holding it, so
                            // `ident` still runs this call; `exc` is a valid
                            // exception class (SetAsyncExc takes a new reference).
                            unsafe { ffi::PyThreadState_SetAsyncExc(ident as _, exc.as_ptr()) };
                        }
                    });
                }
            });
        let _ = std::thread::Builder::new()
            .name("py-monitor".into())
            .spawn(watch);
        tx
    });
}

/// How often the monitor may return freed memory to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(1);

fn watch() {
    let mut last_progress: HashMap<usize, u64> = HashMap::new();
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
            if shared.closed.load(Ordering::Acquire) {
                continue;
            }
            busy |= check(shared, &mut last_progress, now);
        }
        last_progress.retain(|key, _| contexts.iter().any(|s| key_of(s) == *key));
        if now.duration_since(last_trim) >= TRIM_EVERY {
            last_trim = now;
            crate::runtime::trim_if_released(&mut released_seen);
        }
        drop(contexts);
        std::thread::sleep(if busy { BUSY_TICK } else { IDLE_TICK });
    }
}

fn key_of(shared: &Arc<Shared>) -> usize {
    Arc::as_ptr(shared) as usize
}

/// Opens the overflow while the home worker is stuck in one call with calls
/// waiting, waking parked overflow workers or adding new ones. Returns true
/// when the context has work queued or running.
fn check(shared: &Arc<Shared>, last_progress: &mut HashMap<usize, u64>, now: Instant) -> bool {
    let queued = shared.rx.len();
    let progress = shared.progress.load(Ordering::Relaxed);
    let previous = last_progress.insert(key_of(shared), progress);
    let stuck = previous == Some(progress) && shared.home_running.load(Ordering::Relaxed);
    if queued > 0 && stuck {
        shared.overflow_open.store(true, Ordering::Release);
        let parked = shared.parked.load(Ordering::Acquire);
        for _ in 0..queued.min(parked) {
            let _ = shared.wake_tx.send(());
        }
        let room = shared
            .config
            .max_workers
            .saturating_sub(shared.workers.load(Ordering::Acquire));
        let wanted = queued.saturating_sub(parked).min(SPAWN_PER_TICK).min(room);
        for _ in 0..wanted {
            if worker::spawn(shared, false).is_err() {
                break;
            }
        }
    } else if queued == 0 || !shared.home_running.load(Ordering::Relaxed) {
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
