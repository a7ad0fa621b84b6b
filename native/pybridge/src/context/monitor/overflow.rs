//! Starting overflow workers: when a context's home worker is stuck in one
//! call while calls wait, the monitor opens the overflow and adds workers.

use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::limits::SPAWN_PER_TICK;
use crate::runtime::{Interp, ThreadState};

use super::super::{worker, ContextState};

/// Ticks a context must stay stuck while Python computes before it gets
/// another worker.
const COMPUTE_STALL_TICKS: u32 = 10;
/// Taking the GIL faster than this means the stuck call released it.
const GIL_FREE: Duration = Duration::from_micros(500);
const GIL_PROBE_GAP: Duration = Duration::from_micros(200);

/// What the monitor remembers of a context between ticks.
#[derive(Default)]
pub(super) struct Stall {
    progress: Option<u64>,
    /// Consecutive ticks the home worker has been in the same call with
    /// calls waiting.
    ticks: u32,
    /// Consecutive ticks of those on which the GIL was free.
    free_ticks: u32,
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
fn all_busy(context: &ContextState) -> bool {
    context
        .slots
        .lock()
        .iter()
        .all(|slot| slot.current.lock().is_some())
}

/// Opens the overflow while the home worker is stuck in one call with
/// `queued` calls waiting, and closes it when the home worker is free.
///
/// How many overflow workers to add depends on why the home worker is stuck.
/// If the home worker is asleep in the kernel outside a futex, or the GIL is
/// free, its call released the GIL (sleep, I/O, numpy) and every waiting call
/// may be another such call: workers are added on a ramp (1, 2, 4, ... up to
/// [`SPAWN_PER_TICK`] per tick) while that lasts. Otherwise Python is
/// computing and more threads would only queue for the GIL: one more worker
/// after [`COMPUTE_STALL_TICKS`], so quick calls get in at the next GIL switch.
pub(super) fn check(
    context: &Arc<ContextState>,
    stall: &mut Stall,
    queued: usize,
    tstate: &mut ThreadState,
) {
    let progress = context.home_progress.load(Ordering::Relaxed);
    let stuck = stall.progress == Some(progress) && context.home_running.load(Ordering::Relaxed);
    stall.progress = Some(progress);
    stall.ticks = if stuck { stall.ticks + 1 } else { 0 };
    if !stuck {
        stall.free_ticks = 0;
    }
    if !(queued > 0 && stuck && !context.closed.load(Ordering::SeqCst)) {
        // The home worker is free (or moving again): calls go back to it.
        context.overflow_open.store(false, Ordering::Relaxed);
        return;
    }
    context.overflow_open.store(true, Ordering::Relaxed);
    let parked = context.parked.load(Ordering::SeqCst);
    for _ in 0..queued.min(parked) {
        let _ = context.wake_tx.send(());
    }
    let workers = context.workers.load(Ordering::Acquire);
    let room = context.config.max_workers.saturating_sub(workers);
    // A home worker asleep in the kernel (sleep, I/O) released the GIL,
    // whoever holds the GIL now (another context's computation, say).
    // Otherwise ask the GIL: a computation may have released it (numpy).
    let home_blocked = context
        .home_thread
        .get()
        .is_some_and(|thread| thread.blocked_outside_futex());
    let gil_free = home_blocked || gil_is_free(&context.interp, tstate);
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
    } else if stall.ticks >= COMPUTE_STALL_TICKS && parked == 0 && all_busy(context) {
        // Computing for a while: one more thread, so a quick call waits
        // for the next GIL switch, not for a long computation. Stalls
        // shorter than this are GIL contention, which threads won't fix.
        stall.ticks = 0;
        1
    } else {
        0
    };
    for _ in 0..wanted.min(room) {
        if worker::spawn(context, false).is_err() {
            break;
        }
    }
}
