//! A dict's events: what happened to a key ([`EventKind`]), who hears of it
//! ([`Listener`]), and [`SharedDict::raise`], the one place events are
//! counted and handed over.

use std::sync::atomic::Ordering;
use std::sync::Arc;

use super::backend::{Item, RawEvent};
use super::{clock, telemetry, DictError, SharedDict};

/// What happened to a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// Written (put, update, incr).
    Put,
    /// Deleted, taken or evicted.
    Delete,
    /// Expired (found by a read-modify-write or by the sweeper).
    Expire,
    /// Read (a get that found the key). Raised only while a listener asked
    /// for it ([`SharedDict::listen_access`]), never counted.
    Access,
}

/// Something interested in a dict's events (BEAM subscribers, Python
/// callbacks, later telemetry). Called after the change, outside the store's
/// lock, on the thread that made the change (a scheduler, a Python thread,
/// the sweeper): it must only hand the event over, never block. `value` is
/// the value written or removed, when the backend reported it.
pub trait Listener: Send + Sync {
    fn event(&self, kind: EventKind, key: &str, value: Option<&Item>);

    /// Whether this listener uses the events' values (a backend that must
    /// fetch or decode them does so only when one does).
    fn wants_values(&self) -> bool {
        false
    }

    /// `key`'s per-key lock was released (waiters may try again).
    fn unlocked(&self, _key: &str) {}

    /// The dict was destroyed (from whichever side); no event follows.
    fn destroyed(&self) {}
}

impl SharedDict {
    /// Whether a listener uses the events' values (a backend that must
    /// fetch or decode an event's value skips that when none does).
    pub(crate) fn wants_values(&self) -> bool {
        self.listeners.read().iter().any(|l| l.wants_values())
    }

    /// Whether anything hears of this dict's writes now: a listener that
    /// wants events, or telemetry. Acquire: a listener whose
    /// [`listen`](Self::listen) or [`set_listening`](Self::set_listening)
    /// returned before is seen.
    #[inline]
    pub(super) fn heard(&self) -> bool {
        self.active.load(Ordering::Acquire) != 0 || telemetry::enabled()
    }

    /// The one place events are raised: counted, then handed to listeners
    /// (all of a batch counted first: a listener never sees an event that
    /// `stats` does not count yet).
    pub(super) fn raise(&self, events: &[RawEvent]) {
        if events.is_empty() {
            return;
        }
        self.count(events);
        self.hand_over(events);
    }

    /// Hands `events` to the listeners without counting them: a backend
    /// that counts them itself, for every node (Redis, see
    /// `Backend::shared_counts`).
    pub(crate) fn raise_counted(&self, events: &[RawEvent]) {
        if !events.is_empty() {
            self.hand_over(events);
        }
    }

    #[inline]
    fn count(&self, events: &[RawEvent]) {
        match events {
            [] => {}
            // A write's one event: one counter.
            [one] if one.kind != EventKind::Expire => self.stats.record_one(one.kind),
            _ => {
                // The wall clock only dates expiries.
                let wall = if events.iter().any(|e| e.kind == EventKind::Expire) {
                    clock::wall_ms()
                } else {
                    0
                };
                self.stats
                    .record(events.iter().map(|e| (e.kind, &*e.key)), wall);
            }
        }
    }

    /// Hands counted `events` to telemetry and the listeners.
    #[inline]
    fn hand_over(&self, events: &[RawEvent]) {
        // One relaxed load when nobody listens to telemetry.
        if telemetry::enabled() {
            telemetry::emit(self, events);
        }
        if self.active.load(Ordering::Acquire) == 0 {
            return;
        }
        let listeners = self.listeners.read();
        if listeners.is_empty() {
            return;
        }
        for e in events {
            // A scalar value becomes a shared item here, only when
            // someone listens.
            let value = e.value.as_ref().map(|v| v.to_item());
            for listener in listeners.iter() {
                listener.event(e.kind, &e.key, value.as_ref());
            }
        }
    }

    /// Makes reads raise `Access` events from now on (for the listeners
    /// that want them; the others ignore them).
    pub fn listen_access(&self) {
        self.wants_access.store(true, Ordering::Relaxed);
    }

    /// Adds a listener for every later event.
    pub fn listen(&self, listener: Arc<dyn Listener>) -> Result<(), DictError> {
        self.listen_as(listener, true)
    }

    /// Adds a listener that wants no events until it says so with
    /// [`set_listening`](Self::set_listening) (it is told of unlocks and of
    /// the destruction meanwhile).
    pub fn listen_idle(&self, listener: Arc<dyn Listener>) -> Result<(), DictError> {
        self.listen_as(listener, false)
    }

    fn listen_as(&self, listener: Arc<dyn Listener>, active: bool) -> Result<(), DictError> {
        {
            // `destroy` sets the flag before it takes the listeners: a
            // listener is either taken (and told) or refused.
            let mut listeners = self.listeners.write();
            if self.destroyed.load(Ordering::Acquire) {
                return Err(DictError::Destroyed);
            }
            listeners.push(listener);
        }
        if active {
            self.active.fetch_add(1, Ordering::AcqRel);
        }
        Ok(())
    }

    /// An idle listener starts (`true`) or stops (`false`) wanting events.
    /// Each listener calls it only to change its state, so the calls of one
    /// listener alternate, starting with `true`.
    pub fn set_listening(&self, on: bool) {
        if on {
            self.active.fetch_add(1, Ordering::AcqRel);
        } else {
            self.active.fetch_sub(1, Ordering::AcqRel);
        }
    }
}
