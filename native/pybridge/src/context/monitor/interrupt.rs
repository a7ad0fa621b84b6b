//! Interrupting calls: the interrupter thread raises `pybridge.Timeout` in
//! the thread running a cancelled call (that needs the call's GIL), and the
//! monitor cancels calls that ran past their deadline (a caller that died
//! cannot cancel its own call).

use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use pyo3::ffi;

use crate::runtime::ThreadState;

use super::super::request::{CallState, Cancel};
use super::super::ContextState;

/// Past its deadline by this much, a call is interrupted even if its caller
/// never cancelled it.
const DEADLINE_GRACE: Duration = Duration::from_millis(50);

static INTERRUPTS: OnceLock<Sender<Arc<CallState>>> = OnceLock::new();

/// Asks the interrupter to raise `pybridge.Timeout` in the thread running `state`.
fn interrupt(state: Arc<CallState>) {
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

/// Starts the interrupter thread, once; `then` runs the first time only
/// (to start the monitor beside it).
pub(super) fn start(then: impl FnOnce()) {
    INTERRUPTS.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::unbounded::<Arc<CallState>>();
        let _ = std::thread::Builder::new()
            .name("py-interrupter".into())
            .spawn(move || {
                let mut tstate = ThreadState::in_main();
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
                            state.with_running_thread(|ident| {
                                // SAFETY: we are attached to the call's
                                // interpreter; the worker cannot clear
                                // `running_on` (and move on to another call)
                                // while we hold its lock, so `ident` still
                                // runs this call; `exc` is a live exception
                                // class of this interpreter (SetAsyncExc
                                // takes a new reference).
                                ffi::PyThreadState_SetAsyncExc(ident as _, exc);
                            })
                        })
                    };
                }
            });
        then();
        tx
    });
}

/// Cancels the context's running calls that are past their deadline (in
/// closed contexts too). Returns true when any call is running.
pub(super) fn enforce_deadlines(context: &ContextState, now: Instant) -> bool {
    let mut running = false;
    for slot in context.slots.lock().iter() {
        let current = slot.current.lock().clone();
        if let Some(state) = current {
            running = true;
            let overdue = state.deadline.is_some_and(|d| now > d + DEADLINE_GRACE);
            if overdue {
                cancel(&state);
            }
        }
    }
    running
}
