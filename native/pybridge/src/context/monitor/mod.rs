//! One background thread watching every context, once per tick: it starts
//! overflow workers when a context's home worker is stuck in a long call
//! ([`overflow`]), cancels calls that ran past their deadline
//! ([`interrupt`]; a second thread delivers the interrupts, since that needs
//! the GIL), has released Python references collected ([`collector`], a
//! third thread, since finalisers run user code) and returns freed memory to
//! the OS. The monitor and the interrupter never run Python code themselves.

mod collector;
mod interrupt;
mod overflow;

use std::collections::HashMap;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::runtime::{Interp, Kind, ThreadState};

use super::{ContextState, Task};

pub use interrupt::cancel;
use overflow::Stall;

const BUSY_TICK: Duration = Duration::from_millis(1);
const IDLE_TICK: Duration = Duration::from_millis(5);
/// How often the monitor may return freed memory to the OS.
const TRIM_EVERY: Duration = Duration::from_secs(1);

static CONTEXTS: Mutex<Vec<Weak<ContextState>>> = Mutex::new(Vec::new());

pub(super) fn register(context: &Arc<ContextState>) {
    interrupt::start(|| {
        let _ = std::thread::Builder::new()
            .name("py-monitor".into())
            .spawn(watch);
    });
    CONTEXTS.lock().push(Arc::downgrade(context));
}

fn watch() {
    let mut tstate = ThreadState::in_main();
    let mut stalls: HashMap<usize, Stall> = HashMap::new();
    let mut released_seen = 0u64;
    let mut last_trim = Instant::now();
    loop {
        let contexts: Vec<Arc<ContextState>> = {
            let mut all = CONTEXTS.lock();
            all.retain(|w| w.strong_count() > 0);
            all.iter().filter_map(Weak::upgrade).collect()
        };
        let mut busy = false;
        let now = Instant::now();
        for context in &contexts {
            let stall = stalls.entry(key_of(context)).or_default();
            busy |= check(context, stall, now, &mut tstate);
        }
        stalls.retain(|key, _| contexts.iter().any(|s| key_of(s) == *key));
        // References released where no worker will collect them (closed
        // contexts, handles of objects no context asked for again).
        if Interp::main().has_garbage() {
            collector::wake();
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

fn key_of(context: &Arc<ContextState>) -> usize {
    Arc::as_ptr(context) as usize
}

/// One tick for one context. Returns true when the context has work queued
/// or running.
fn check(
    context: &Arc<ContextState>,
    stall: &mut Stall,
    now: Instant,
    tstate: &mut ThreadState,
) -> bool {
    let queued = context.rx.len();
    // `%Py.Object{}`s the BEAM let go of wait in their interpreter until a
    // worker collects them; a sub-interpreter's idle context is asked to.
    // (The main interpreter's garbage the monitor collects itself.)
    if queued == 0
        && context.interp.kind() == Kind::Sub
        && context.interp.has_garbage()
        && !context.closed.load(Ordering::SeqCst)
    {
        let _ = context.tx.send(Task::Collect);
    }
    overflow::check(context, stall, queued, tstate);
    let running = interrupt::enforce_deadlines(context, now);
    queued > 0 || running
}
