//! The collector: a thread of its own that drops the main interpreter's
//! released references when no context worker does (closed contexts,
//! handles of objects no context asked for again).
//!
//! Dropping a reference may run any Python finaliser (`__del__`, a weakref
//! callback), and a finaliser may take its time or block. The monitor only
//! wakes the collector, so a slow finaliser holds up nothing but later
//! collections: never the monitor's overflow workers and deadlines, nor the
//! interrupter.

use std::sync::OnceLock;

use crossbeam_channel::{Sender, TrySendError};

use crate::runtime::{Interp, ThreadState};

static WAKE: OnceLock<Sender<()>> = OnceLock::new();

/// Asks the collector to drop the main interpreter's released references;
/// returns at once. A request made while one is pending or being served is
/// merged with it (the collector takes the whole list each time).
pub(super) fn wake() {
    let tx = WAKE.get_or_init(|| {
        let (tx, rx) = crossbeam_channel::bounded::<()>(1);
        // Without a collector (no thread could be started), context workers
        // still collect at the start of each batch of calls.
        let _ = std::thread::Builder::new()
            .name("py-collector".into())
            .spawn(move || {
                let mut tstate = ThreadState::in_main();
                for () in rx {
                    tstate.with_gil(|py| Interp::main().collect(py));
                }
            });
        tx
    });
    // Full: a wake-up is pending already. Disconnected: no collector.
    let _: Result<(), TrySendError<()>> = tx.try_send(());
}
