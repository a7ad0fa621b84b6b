//! Telemetry's tap on every dict's events (`[:pybridge, :shared_dict, _]`).
//!
//! [`super::SharedDict::raise`], the one place events are raised, hands each
//! batch to the tap installed here when telemetry is switched on. Off (no
//! telemetry handler attached, or the telemetry library absent), a write
//! pays one relaxed atomic load. The tap only hands the batch over (the NIF
//! layer queues it to its events thread), so a writer never waits for a
//! handler.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::OnceLock;

use super::backend::RawEvent;
use super::{EventKind, SharedDict};

/// One event as telemetry sees it: what happened, and the key when the
/// dict was made with `telemetry_keys: true`.
pub type TapEvent = (EventKind, Option<String>);

/// Receives a dict's batch of events: the dict, then the events in order.
pub type Tap = dyn Fn(&SharedDict, Vec<TapEvent>) + Send + Sync;

static ENABLED: AtomicBool = AtomicBool::new(false);
static TAP: OnceLock<Box<Tap>> = OnceLock::new();

/// Installs the tap (once per OS process; later calls are ignored).
pub fn install(tap: Box<Tap>) {
    let _ = TAP.set(tap);
}

/// Switches telemetry of every dict on or off.
pub fn set_enabled(on: bool) {
    ENABLED.store(on, Ordering::Relaxed);
}

/// Whether the tap is called.
#[inline]
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Hands a batch to the tap: keys only for dicts that asked for them.
pub(super) fn emit(dict: &SharedDict, events: &[RawEvent]) {
    let Some(tap) = TAP.get() else {
        return;
    };
    let keys = dict.telemetry_keys();
    let batch = events
        .iter()
        .map(|e| (e.kind, keys.then(|| e.key.to_string())))
        .collect();
    tap(dict, batch);
}
